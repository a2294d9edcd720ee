package limits_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
)

// commandCalls returns the calls of every command since the last CONFIG RESETSTAT, a
// script's own commands included (INFO commandstats).
func commandCalls(t *testing.T, rdb *redis.Client) map[string]int64 {
	t.Helper()
	s, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(s, "\r\n") {
		name, v, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || name == line {
			continue
		}
		n, _ := strconv.ParseInt(strings.SplitN(v, ",", 2)[0], 10, 64)
		out[name] = n
	}
	return out
}

// A request's limits write Redis only what changes: a charge is one INCRBY per counter once
// the window's counter exists, and the lease set's expiry is written when it runs low, not
// by every admission, while it always outlives the leases it holds.
func TestOnceCountersExistARequestWritesNoExpiry(t *testing.T) {
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	c := testutil.NewClock(time.Date(2025, 6, 18, 10, 20, 30, 0, time.UTC)) // mid-minute: no window ends
	const leaseTTL = time.Minute
	l := limits.New(rdb, store.NewSchema("w:"), limits.Options{Now: c.Now, LeaseTTL: leaseTTL})
	defer l.Close()
	set := limits.FromPolicy(&config.Policy{RequestsPerMinute: 1000, TokensPerDay: 1 << 40, CostPerDayUSD: 1e6, Concurrency: 100})
	u := limits.Usage{Tokens: 30, CostMicroUSD: 150}
	// A request in flight all along keeps the lease set; a first request creates the counters.
	held, ref, err := l.Admit(ctx, "k", set)
	if err != nil || ref != nil {
		t.Fatalf("got %v %v, want admitted", ref, err)
	}
	first, _, _ := l.Admit(ctx, "k", set)
	if err := first.Finish(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const n = 20
	conc := store.NewSchema("w:").KeyConcurrency("k")
	for i := range n {
		lease, ref, err := l.Admit(ctx, "k", set)
		if err != nil || ref != nil {
			t.Fatalf("admit %d: got %v %v, want admitted", i, ref, err)
		}
		if left, _ := rdb.PTTL(ctx, conc).Result(); left < leaseTTL-time.Second {
			t.Fatalf("admit %d: the lease set expires in %v, before the lease it holds (%v)", i, left, leaseTTL)
		}
		if err := lease.Finish(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	calls := commandCalls(t, rdb)
	for _, cmd := range []string{"set", "pexpire", "expire"} {
		if calls[cmd] != 0 {
			t.Errorf("%s: got %d calls in %d requests, want none", cmd, calls[cmd], n)
		}
	}
	// The request counter in the script, then the token and cost counters of the charge.
	if got, want := calls["incrby"], int64(3*n); got != want {
		t.Errorf("incrby: got %d calls, want %d", got, want)
	}
	for _, lim := range set.Counted {
		v, err := l.Current(ctx, "k", lim)
		want := map[limits.Kind]int64{limits.Requests: n + 2, limits.Tokens: (n + 1) * u.Tokens, limits.Cost: (n + 1) * u.CostMicroUSD}[lim.Kind]
		if err != nil || v != want {
			t.Errorf("%s: got %d (%v), want %d", lim.Name, v, err, want)
		}
	}
	if err := held.Finish(ctx, limits.Usage{}); err != nil {
		t.Fatal(err)
	}
}

// The charge that creates a window's counter (here the next minute's: the request ended
// after the window it was admitted in) gives it its expiry, in charge and in reserve mode.
func TestAChargeThatCreatesItsWindowsCounterGivesItItsExpiry(t *testing.T) {
	for _, mode := range []string{config.LimitModeCharge, config.LimitModeReserve} {
		t.Run(mode, func(t *testing.T) {
			rdb, prefix := testredis.New(t)
			ctx := context.Background()
			start := time.Date(2025, 6, 18, 10, 20, 50, 0, time.UTC)
			c := testutil.NewClock(start)
			l := newLimiter(t, rdb, prefix, c)
			defer l.Close()
			set := limits.FromPolicy(&config.Policy{TokensPerMinute: 1 << 40, LimitMode: mode})
			lease, ref, err := l.AdmitUpTo(ctx, "k", set, limits.Usage{Tokens: 100})
			if err != nil || ref != nil {
				t.Fatalf("got %v %v, want admitted", ref, err)
			}
			c.Set(start.Add(20 * time.Second)) // 10:21:10
			if err := lease.Finish(ctx, limits.Usage{Tokens: 42}); err != nil {
				t.Fatal(err)
			}
			key := store.NewSchema(prefix).KeyLimitCounter("k", "tokens_per_minute", start.Add(10*time.Second))
			if v, _ := rdb.Get(ctx, key).Int64(); v != 42 {
				t.Fatalf("10:21's counter: got %d, want 42", v)
			}
			// The window ends in 50 s, plus a minute of slack.
			if ttl, err := rdb.PTTL(ctx, key).Result(); err != nil || ttl <= 100*time.Second || ttl > 110*time.Second {
				t.Errorf("10:21's counter expires in %v (%v), want 110 s (50 s to the window's end and a minute of slack)", ttl, err)
			}
		})
	}
}
