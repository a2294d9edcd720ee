package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/testredis"
)

// EnvUsageMemory runs TestUsageRedisMemoryPerMillionRequests when set to a number of
// requests (e.g. 1000000); it is a measurement, not part of make test:
//
//	CLAUDE_RELAY_USAGE_MEMORY=1000000 go test -run TestUsageRedisMemoryPerMillionRequests -v ./store/
const EnvUsageMemory = "CLAUDE_RELAY_USAGE_MEMORY"

// TestUsageRedisMemoryPerMillionRequests measures what usage recording costs Redis: on a
// dedicated redis-server, four writers (sidecars) record N requests over 1,000 relay keys,
// 10 accounts and 3 models on one day, one request per batch (a quiet sidecar's worst case
// for batch bookkeeping), and used_memory is read before, after a tenth of them and at the
// end. The usage hashes and the bookkeeping are per key, account, model and writer, so the
// second figure should match the first.
func TestUsageRedisMemoryPerMillionRequests(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(EnvUsageMemory))
	if n <= 0 {
		t.Skipf("a measurement: set %s=1000000 to run it", EnvUsageMemory)
	}
	const keys, accounts, writers = 1000, 10, 4
	models := []string{"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5"}
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 2 * writers})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	st, err := Open(ctx, rdb, Options{Sealer: sealer(t, testEncKey)})
	if err != nil {
		t.Fatal(err)
	}
	used := func() int64 {
		info, err := rdb.Info(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		t.Fatal("INFO memory has no used_memory")
		return 0
	}
	day := time.Now().UTC()
	record := func(from, to int) {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := from + w; i < to; i += writers {
					rec := UsageRecord{KeyID: fmt.Sprintf("key-%04d", i%keys), AccountID: fmt.Sprintf("acct-%02d", i%accounts),
						Model: models[i%len(models)], At: day,
						Usage: Usage{Requests: 1, InputTokens: 1200, OutputTokens: 300, CacheRead: 5000, CostMicroUSD: 9000}}
					if err := st.RecordUsageBatch(ctx, BatchID{Writer: fmt.Sprintf("writer-%d", w), Seq: uint64(i/writers + 1)}, rec); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	before := used()
	start := time.Now()
	record(0, n/10)
	tenth := used()
	record(n/10, n)
	end := used()
	dbsize := rdb.DBSize(ctx).Val()
	markers := len(rdb.Keys(ctx, "crs:usage:*:applied*").Val())
	mib := func(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }
	t.Logf("%d requests over %d keys, %d accounts, %d models, %d writers, one request per batch (%s)",
		n, keys, accounts, len(models), writers, time.Since(start).Round(time.Second))
	t.Logf("used_memory: before %s, after %d requests +%s, after %d requests +%s", mib(before), n/10, mib(tenth-before), n, mib(end-before))
	rest := int64(n - n/10)
	t.Logf("keys: %d in all, %d of them batch bookkeeping; growth over the last %d requests: %+d bytes (%.1f bytes per request, %s per million)",
		dbsize, markers, rest, end-tenth, float64(end-tenth)/float64(rest), mib((end-tenth)*1_000_000/rest))
	if markers != keys+accounts {
		t.Errorf("got %d bookkeeping keys, want %d (one per key and account)", markers, keys+accounts)
	}
}
