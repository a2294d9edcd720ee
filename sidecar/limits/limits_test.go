package limits_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
)

func TestEachLimitAdmitsUpToItsMaxThenRefusesUntilTheWindowResets(t *testing.T) {
	// Wednesday 2025-06-18 10:20:30 UTC.
	start := time.Date(2025, 6, 18, 10, 20, 30, 0, time.UTC)
	tests := []struct {
		name   string
		policy config.Policy
		// each admitted request is charged this much
		charge limits.Usage
		admit  int // requests admitted before the refusal
		after  time.Time
		want   string // in the refusal message
	}{
		{"requests_per_minute", config.Policy{RequestsPerMinute: 3}, limits.Usage{}, 3, start.Add(30 * time.Second), "3 requests used of 3"},
		{"requests_per_day", config.Policy{RequestsPerDay: 2}, limits.Usage{}, 2, time.Date(2025, 6, 19, 0, 0, 0, 0, time.UTC), "2 requests used of 2"},
		{"tokens_per_minute", config.Policy{TokensPerMinute: 1000}, limits.Usage{Tokens: 400}, 3, start.Add(30 * time.Second), "1200 tokens used of 1000"},
		{"tokens_per_day", config.Policy{TokensPerDay: 500}, limits.Usage{Tokens: 250}, 2, time.Date(2025, 6, 19, 0, 0, 0, 0, time.UTC), "500 tokens used of 500"},
		{"cost_per_day_usd", config.Policy{CostPerDayUSD: 1}, limits.Usage{CostMicroUSD: 600_000}, 2, time.Date(2025, 6, 19, 0, 0, 0, 0, time.UTC), "$1.2 used of $1"},
		{"cost_per_week_usd", config.Policy{CostPerWeekUSD: 2}, limits.Usage{CostMicroUSD: 1_000_000}, 2, time.Date(2025, 6, 23, 0, 0, 0, 0, time.UTC), "$2 used of $2"},
		{"cost_per_month_usd", config.Policy{CostPerMonthUSD: 3}, limits.Usage{CostMicroUSD: 2_000_000}, 2, time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC), "$4 used of $3"},
		{"cost_total_usd", config.Policy{CostTotalUSD: 1}, limits.Usage{CostMicroUSD: 1_000_000}, 1, time.Time{}, "never resets"},
	}
	rdb, prefix := testredis.New(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testutil.NewClock(start)
			l := newLimiter(t, rdb, prefix, c)
			ctx := context.Background()
			key := "k-" + tt.name
			set := limits.FromPolicy(&tt.policy)
			for i := range tt.admit {
				lease, ref, err := l.Admit(ctx, key, set)
				if err != nil || ref != nil {
					t.Fatalf("request %d: got refusal %v, error %v; want admitted", i+1, ref, err)
				}
				if err := lease.Finish(ctx, tt.charge); err != nil {
					t.Fatal(err)
				}
			}
			_, ref, err := l.Admit(ctx, key, set)
			if err != nil {
				t.Fatal(err)
			}
			if ref == nil {
				t.Fatalf("request %d: admitted, want refused by %s", tt.admit+1, tt.name)
			}
			msg := ref.Message()
			if ref.Limit != tt.name || !strings.Contains(msg, tt.name) || !strings.Contains(msg, tt.want) {
				t.Errorf("refusal: got %s %q, want %s naming %q", ref.Limit, msg, tt.name, tt.want)
			}
			if tt.after.IsZero() {
				if ref.RetryAfter != 0 || !ref.ResetAt.IsZero() {
					t.Errorf("a total limit: got retry after %s, reset %s, want none", ref.RetryAfter, ref.ResetAt)
				}
				return
			}
			if !ref.ResetAt.Equal(tt.after) || ref.RetryAfter != tt.after.Sub(start) {
				t.Errorf("reset: got %s (retry after %s), want %s (%s)", ref.ResetAt, ref.RetryAfter, tt.after, tt.after.Sub(start))
			}
			if !strings.Contains(msg, tt.after.Format(time.RFC3339)) {
				t.Errorf("message %q does not say when it resets (%s)", msg, tt.after.Format(time.RFC3339))
			}
			c.Set(tt.after)
			lease, ref, err := l.Admit(ctx, key, set)
			if err != nil || ref != nil {
				t.Fatalf("after the reset: got refusal %v, error %v; want admitted", ref, err)
			}
			lease.Finish(ctx, limits.Usage{})
		})
	}
}

func TestConcurrencyLeaseIsHeldUntilFinishAndExpiresWhenTheSidecarDies(t *testing.T) {
	l, c := clockedLimiter(t, time.Now())
	ctx := context.Background()
	set := limits.FromPolicy(&config.Policy{Concurrency: 2})
	a, _, _ := l.Admit(ctx, "k", set)
	b, _, _ := l.Admit(ctx, "k", set)
	if a == nil || b == nil {
		t.Fatal("the first two requests were not admitted")
	}
	_, ref, err := l.Admit(ctx, "k", set)
	if err != nil || ref == nil || ref.Limit != limits.ConcurrencyLimit || !strings.Contains(ref.Message(), "2 of 2") {
		t.Fatalf("third: got %v %v, want a concurrency refusal naming 2 of 2", ref, err)
	}
	a.Finish(ctx, limits.Usage{})
	a.Finish(ctx, limits.Usage{}) // a second finish does nothing
	d, ref, _ := l.Admit(ctx, "k", set)
	if ref != nil {
		t.Fatalf("after a release: got %v, want admitted", ref.Message())
	}
	// b and d belong to a sidecar that dies: nothing finishes them, nothing renews them
	// once the clock passes their TTL.
	c.Set(c.Now().Add(4 * time.Second))
	if n, _ := l.InFlight(ctx, "k"); n != 0 {
		t.Errorf("in flight after the lease TTL: got %d, want 0", n)
	}
	e, ref, _ := l.Admit(ctx, "k", set)
	if ref != nil {
		t.Fatalf("after the dead sidecar's leases expired: got %v, want admitted", ref.Message())
	}
	for _, ls := range []*limits.Lease{b, d, e} {
		ls.Finish(ctx, limits.Usage{})
	}
}

func TestLeaseHeartbeatKeepsALongRequestCounted(t *testing.T) {
	rdb, prefix := testredis.New(t)
	l := limits.New(rdb, store.NewSchema(prefix), limits.Options{LeaseTTL: 300 * time.Millisecond})
	ctx := context.Background()
	set := limits.FromPolicy(&config.Policy{Concurrency: 1})
	lease, ref, err := l.Admit(ctx, "k", set)
	if err != nil || ref != nil {
		t.Fatalf("got %v %v, want admitted", ref, err)
	}
	defer lease.Finish(ctx, limits.Usage{})
	// Three lease TTLs later the heartbeat has kept the slot taken.
	deadline := time.Now().Add(900 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, ref, _ := l.Admit(ctx, "k", set); ref == nil {
			t.Fatal("a second request was admitted while the first was still running")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConcurrentLimitersSharingRedisNeverAdmitMoreThanTheLimit(t *testing.T) {
	rdb, prefix := testredis.New(t)
	c := testutil.NewClock(time.Date(2025, 6, 18, 10, 20, 0, 0, time.UTC))
	sidecars := []*limits.Limiter{newLimiter(t, rdb, prefix, c), newLimiter(t, rdb, prefix, c), newLimiter(t, rdb, prefix, c)}
	const n = 7
	tests := []struct {
		name   string
		policy config.Policy
	}{
		{"requests_per_minute", config.Policy{RequestsPerMinute: n}},
		{"concurrency", config.Policy{Concurrency: n}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := limits.FromPolicy(&tt.policy)
			var admitted atomic.Int64
			var wg sync.WaitGroup
			for i := range 200 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					lease, ref, err := sidecars[i%3].Admit(context.Background(), "k-"+tt.name, set)
					if err != nil {
						t.Error(err)
					}
					if ref == nil {
						admitted.Add(1) // finished only at the end: every admission holds its slot
						t.Cleanup(func() { lease.Finish(context.Background(), limits.Usage{}) })
					}
				}()
			}
			wg.Wait()
			if got := admitted.Load(); got != n {
				t.Errorf("admitted: got %d, want %d", got, n)
			}
		})
	}
}

func TestWindowBounds(t *testing.T) {
	now := time.Date(2025, 6, 15, 23, 59, 59, 0, time.UTC) // a Sunday
	tests := []struct {
		w          limits.Window
		start, end string
	}{
		{limits.Minute, "2025-06-15T23:59:00Z", "2025-06-16T00:00:00Z"},
		{limits.Day, "2025-06-15T00:00:00Z", "2025-06-16T00:00:00Z"},
		{limits.Week, "2025-06-09T00:00:00Z", "2025-06-16T00:00:00Z"},
		{limits.Month, "2025-06-01T00:00:00Z", "2025-07-01T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.w), func(t *testing.T) {
			s, e := tt.w.Bounds(now)
			if got := s.Format(time.RFC3339) + " " + e.Format(time.RFC3339); got != tt.start+" "+tt.end {
				t.Errorf("got %s, want %s %s", got, tt.start, tt.end)
			}
		})
	}
}

// BenchmarkAdmit measures one request's limit check and finish (every limit kind and a
// concurrency lease) against a plain PING round trip measured in the same run.
func BenchmarkAdmit(b *testing.B) {
	l, rdb := benchLimiter(b)
	ctx := context.Background()
	set := limits.FromPolicy(&config.Policy{RequestsPerMinute: 1 << 40, RequestsPerDay: 1 << 40, TokensPerMinute: 1 << 40,
		TokensPerDay: 1 << 40, CostPerDayUSD: 1e9, CostPerWeekUSD: 1e9, CostPerMonthUSD: 1e9, CostTotalUSD: 1e9, Concurrency: 1 << 30})
	const rounds = 2000
	timeIt := func(f func()) time.Duration {
		t0 := time.Now()
		for range rounds {
			f()
		}
		return time.Since(t0) / rounds
	}
	var ping, admit, finish time.Duration
	leases := make([]*limits.Lease, 0, rounds)
	for b.Loop() {
		ping = timeIt(func() { rdb.Ping(ctx) })
		leases = leases[:0]
		admit = timeIt(func() {
			lease, _, _ := l.Admit(ctx, "bench", set) // one EVALSHA: every limit and the lease
			leases = append(leases, lease)
		})
		i := 0
		finish = timeIt(func() {
			leases[i].Finish(ctx, limits.Usage{Tokens: 100, CostMicroUSD: 100}) // one EVALSHA: charge and release
			i++
		})
	}
	b.ReportMetric(float64(ping.Nanoseconds()), "ping-ns")
	b.ReportMetric(float64(admit.Nanoseconds()), "admit-ns")
	b.ReportMetric(float64(admit)/float64(ping), "admit/ping")
	b.ReportMetric(float64(finish)/float64(ping), "finish/ping")
}

func TestOneRenewerKeepsThousandsOfLeasesAliveAndStopsWhenTheyFinish(t *testing.T) {
	rdb, prefix := testredis.New(t)
	const ttl = time.Second // roomy: renewals must land under -race on a loaded machine
	l := limits.New(rdb, store.NewSchema(prefix), limits.Options{LeaseTTL: ttl})
	defer l.Close()
	ctx := context.Background()
	// More leases than one renewal pipeline carries, spread over several keys.
	const n = 1300
	set := limits.FromPolicy(&config.Policy{Concurrency: n})
	leases := make([]*limits.Lease, 0, n)
	for i := range n {
		ls, ref, err := l.Admit(ctx, fmt.Sprintf("k%d", i%3), set)
		if err != nil || ref != nil {
			t.Fatalf("admit %d: got %v %v, want admitted", i, ref, err)
		}
		leases = append(leases, ls)
	}
	if !l.Renewing() {
		t.Fatal("no renewer runs while leases are live")
	}
	// Three TTLs later every lease is still counted: renewals landed for all of them.
	time.Sleep(3 * ttl)
	var total int64
	for k := range 3 {
		c, err := l.InFlight(ctx, fmt.Sprintf("k%d", k))
		if err != nil {
			t.Fatal(err)
		}
		total += c
	}
	if total != n {
		t.Fatalf("in flight after three lease TTLs: got %d, want %d", total, n)
	}
	for _, ls := range leases {
		if err := ls.Finish(ctx, limits.Usage{}); err != nil {
			t.Fatal(err)
		}
	}
	// With nothing live the renewer's goroutine ends at its next tick.
	deadline := time.Now().Add(2 * ttl)
	for l.Renewing() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l.Renewing() {
		t.Fatal("the renewer still runs with no live lease")
	}
	for k := range 3 {
		if c, _ := l.InFlight(ctx, fmt.Sprintf("k%d", k)); c != 0 {
			t.Errorf("key k%d in flight after every lease finished: got %d, want 0", k, c)
		}
	}
}

func TestClosedLimiterStopsRenewing(t *testing.T) {
	rdb, prefix := testredis.New(t)
	const ttl = 300 * time.Millisecond
	l := limits.New(rdb, store.NewSchema(prefix), limits.Options{LeaseTTL: ttl})
	ctx := context.Background()
	set := limits.FromPolicy(&config.Policy{Concurrency: 1})
	if _, ref, err := l.Admit(ctx, "k", set); err != nil || ref != nil {
		t.Fatalf("got %v %v, want admitted", ref, err)
	}
	l.Close() // as when a sidecar stops: its leases must lapse on their own
	if l.Renewing() {
		t.Fatal("the renewer still runs after Close")
	}
	time.Sleep(ttl + 100*time.Millisecond)
	if c, _ := l.InFlight(ctx, "k"); c != 0 {
		t.Fatalf("in flight a TTL after Close: got %d, want 0 (the lease was renewed after Close)", c)
	}
}

func TestChargedCountersExpireAfterTheirWindowAndTheTotalNever(t *testing.T) {
	rdb, prefix := testredis.New(t)
	now := time.Now()
	c := testutil.NewClock(now)
	l := newLimiter(t, rdb, prefix, c)
	ctx := context.Background()
	set := limits.FromPolicy(&config.Policy{TokensPerMinute: 1 << 40, CostTotalUSD: 1e6})
	for range 2 {
		lease, ref, err := l.Admit(ctx, "k", set)
		if err != nil || ref != nil {
			t.Fatalf("got %v %v, want admitted", ref, err)
		}
		if err := lease.Finish(ctx, limits.Usage{Tokens: 5, CostMicroUSD: 7}); err != nil {
			t.Fatal(err)
		}
	}
	schema := store.NewSchema(prefix)
	minute := schema.KeyLimitCounter("k", "tokens_per_minute", now.UTC().Truncate(time.Minute))
	if v, _ := rdb.Get(ctx, minute).Int64(); v != 10 {
		t.Errorf("tokens this minute: got %d, want 10", v)
	}
	ttl, err := rdb.PTTL(ctx, minute).Result()
	if err != nil || ttl <= time.Minute || ttl > 2*time.Minute {
		t.Errorf("minute counter TTL: got %v (%v), want past the window's end, at most a minute of slack later", ttl, err)
	}
	total := schema.KeyLimitCounter("k", "cost_total_usd", time.Time{})
	if v, _ := rdb.Get(ctx, total).Int64(); v != 14 {
		t.Errorf("total cost: got %d, want 14", v)
	}
	if ttl, _ := rdb.PTTL(ctx, total).Result(); ttl != -1 {
		t.Errorf("total counter TTL: got %v, want none (-1)", ttl)
	}
}

// Dev mode keeps everything in an embedded Redis (miniredis, whose Lua is gopher-lua): the
// scripts and commands limits send must run there too.
func TestLimitsRunOnTheDevModeStore(t *testing.T) {
	ctx := context.Background()
	l, _ := devLimiter(t)
	set := limits.FromPolicy(&config.Policy{RequestsPerMinute: 3, TokensPerDay: 1000, CostTotalUSD: 1, Concurrency: 2})
	for i := range 4 {
		lease, ref, err := l.Admit(ctx, "k", set)
		if err != nil {
			t.Fatalf("admit %d: %v", i, err)
		}
		if i == 3 {
			if ref == nil || ref.Limit != "requests_per_minute" {
				t.Fatalf("admit 4: got %v, want refused by requests_per_minute", ref)
			}
			break
		}
		if ref != nil {
			t.Fatalf("admit %d: refused by %s", i, ref.Limit)
		}
		if err := lease.Finish(ctx, limits.Usage{Tokens: 10, CostMicroUSD: 5}); err != nil {
			t.Fatalf("finish %d: %v", i, err)
		}
	}
	if n, err := l.InFlight(ctx, "k"); err != nil || n != 0 {
		t.Errorf("in flight after every finish: got %d (%v), want 0", n, err)
	}
	if v, _ := l.Current(ctx, "k", limits.Limit{Name: "tokens_per_day", Kind: limits.Tokens, Window: limits.Day}); v != 30 {
		t.Errorf("tokens charged: got %d, want 30", v)
	}
}

func TestRenewalsThatFailWhileRedisIsDownAreReported(t *testing.T) {
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	var logs testutil.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
	const ttl = 300 * time.Millisecond
	l := limits.New(rdb, store.NewSchema("down:"), limits.Options{Logger: log, LeaseTTL: ttl})
	defer l.Close()
	ctx := context.Background()
	lease, ref, err := l.Admit(ctx, "k", limits.FromPolicy(&config.Policy{Concurrency: 1}))
	if err != nil || ref != nil {
		t.Fatalf("got %v %v, want admitted", ref, err)
	}
	srv.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "cannot renew concurrency leases") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if out := logs.String(); !strings.Contains(out, "cannot renew concurrency leases") || !strings.Contains(out, "failed=1") {
		t.Fatalf("no warning for a renewal Redis did not take:\n%s", out)
	}
	// The request ends while Redis is still down: the release fails and says so; the lease
	// lapses by itself after its TTL.
	if err := lease.Finish(ctx, limits.Usage{}); err == nil {
		t.Error("Finish with Redis down: got nil, want an error")
	}
}
