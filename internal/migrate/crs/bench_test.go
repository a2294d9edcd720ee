package crs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/migrate/crs"
	"github.com/claude-relay/claude-relay/internal/migrate/crs/crstest"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/store"
)

// BenchmarkImport10000Keys measures a whole move-in of a CRS installation with 10,000 keys,
// each with three days of usage, and 20 accounts: read (one SCAN pass and pipelined reads),
// plan, and apply into a real Redis, with the progress callback the command draws its bar
// from. Run it with: go test -run '^$' -bench Import10000Keys -benchtime 1x ./internal/migrate/crs/
func BenchmarkImport10000Keys(b *testing.B) {
	ctx := context.Background()
	crsRDB, w := crsRedis(b)
	var accounts []string
	for i := range 20 {
		id, err := w.AddConsoleAccount(ctx, fmt.Sprint("console-", i), "https://api.anthropic.com", fmt.Sprintf("sk-ant-api03-bench-%030d", i), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		accounts = append(accounts, id)
	}
	seedStart := time.Now()
	for i := range 10_000 {
		id, _, err := w.AddKey(ctx, map[string]string{"name": fmt.Sprint("member-", i), "tags": `["team"]`,
			"rateLimitWindow": "60", "rateLimitRequests": "600", "totalCostLimit": "50", "concurrencyLimit": "4"})
		if err != nil {
			b.Fatal(err)
		}
		for d := range 3 {
			at := time.Now().Add(-time.Duration(d*24+1) * time.Hour)
			if err := w.Record(ctx, id, accounts[i%len(accounts)], "claude-sonnet-4-5", at, crstest.Usage{Input: 1000, Output: 100, RealCost: 0.0045, RatedCost: 0.0045}); err != nil {
				b.Fatal(err)
			}
		}
	}
	n, _ := crsRDB.DBSize(ctx).Result()
	b.Logf("CRS dataset: 10,000 keys, 20 accounts, %d Redis keys (seeded in %s)", n, time.Since(seedStart).Round(time.Millisecond))
	sealer, _ := aesgcm.New("0123456789abcdef0123456789abcdef")
	b.ResetTimer()
	for range b.N {
		rdb, prefix := testredis.New(b)
		st, err := store.Open(ctx, rdb, store.Options{Prefix: prefix, Sealer: sealer})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		ds, err := crs.Read(ctx, crsRDB, nil)
		if err != nil {
			b.Fatal(err)
		}
		read := time.Since(start)
		plan, err := crs.Build(ds, dec(b), crs.Options{})
		if err != nil {
			b.Fatal(err)
		}
		planned := time.Since(start)
		updates := 0
		res, err := crs.Apply(ctx, st, plan, []byte(crsKey), func(crs.Progress) { updates++ })
		if err != nil {
			b.Fatal(err)
		}
		total := time.Since(start)
		if res.KeysCreated != 10_000 {
			b.Fatalf("created %d keys, want 10000", res.KeysCreated)
		}
		b.Logf("import of 10,000 keys: %s (read %s, plan %s, apply %s; %d progress updates, %d usage records)",
			total.Round(time.Millisecond), read.Round(time.Millisecond), (planned - read).Round(time.Millisecond),
			(total - planned).Round(time.Millisecond), updates, res.UsageRecords)
		b.ReportMetric(total.Seconds(), "s/import")
	}
}
