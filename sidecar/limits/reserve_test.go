package limits_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/devredis"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
)

// worst is one request's worst case in these tests: $0.10 and 1000 tokens.
var worst = limits.Usage{Tokens: 1000, CostMicroUSD: 100_000}

// storm sends n concurrent requests, each worst-case, spread over the limiters; every
// admitted one holds its admission a random few milliseconds and is charged actual. A
// request refused for a reason that waiting a moment fixes (a concurrency slot, a
// reservation in flight) tries again, as a client honouring retry-after would, until it is
// admitted or refused for good. It returns how many were admitted and the most that were in
// flight at once.
func storm(t *testing.T, ls []*limits.Limiter, key string, set limits.Set, n int, actual limits.Usage) (admitted, peak int64) {
	t.Helper()
	var inFlight, ok, top atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			lease, ref, err := ls[i%len(ls)].AdmitUpTo(ctx, key, set, worst)
			for err == nil && ref != nil && (ref.Limit == limits.ConcurrencyLimit || ref.RetryAfter == time.Second) {
				time.Sleep(time.Millisecond)
				lease, ref, err = ls[i%len(ls)].AdmitUpTo(ctx, key, set, worst)
			}
			if err != nil {
				t.Error(err)
				return
			}
			if ref != nil {
				return
			}
			ok.Add(1)
			cur := inFlight.Add(1)
			for p := top.Load(); cur > p && !top.CompareAndSwap(p, cur); p = top.Load() {
			}
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			inFlight.Add(-1)
			if err := lease.Finish(ctx, actual); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	return ok.Load(), top.Load()
}

func TestReserveModeNeverChargesMoreThanTheBudgetAcrossTwoSidecars(t *testing.T) {
	rdb, prefix := testredis.New(t)
	c := testutil.NewClock(time.Date(2025, 6, 18, 10, 20, 0, 0, time.UTC))
	sidecars := []*limits.Limiter{newLimiter(t, rdb, prefix, c), newLimiter(t, rdb, prefix, c)}
	ctx := context.Background()
	// The budget fits ten worst-case requests: $1 a day, 10000 tokens a minute.
	set := limits.FromPolicy(&config.Policy{CostPerDayUSD: 1, TokensPerMinute: 10_000, LimitMode: config.LimitModeReserve})
	for _, actual := range []limits.Usage{worst, {Tokens: 400, CostMicroUSD: 30_000}} {
		key := "k" + strings.Repeat("+", int(actual.Tokens/400))
		admitted, peak := storm(t, sidecars, key, set, 50, actual)
		cost, _ := sidecars[0].Current(ctx, key, set.Counted[0])
		tokens, _ := sidecars[0].Current(ctx, key, set.Counted[1])
		if cost > 1_000_000 || tokens > 10_000 {
			t.Errorf("charged $%g and %d tokens, want at most the budget ($1, 10000 tokens)", float64(cost)/1e6, tokens)
		}
		if cost != admitted*actual.CostMicroUSD || peak > 10 {
			t.Errorf("charged %d µ$ for %d admitted (peak %d in flight), want %d each and at most 10 in flight", cost, admitted, peak, actual.CostMicroUSD)
		}
		if r, _ := sidecars[1].Reserved(ctx, key); r != (limits.Usage{}) {
			t.Errorf("reserved after every request settled: got %+v, want nothing", r)
		}
		t.Logf("actual %+v: %d of 50 admitted, peak %d in flight, charged $%g and %d tokens", actual, admitted, peak, float64(cost)/1e6, tokens)
	}
}

func TestChargeModeOvershootStaysUnderConcurrencyTimesTheWorstCase(t *testing.T) {
	rdb, prefix := testredis.New(t)
	c := testutil.NewClock(time.Date(2025, 6, 18, 10, 20, 0, 0, time.UTC))
	sidecars := []*limits.Limiter{newLimiter(t, rdb, prefix, c), newLimiter(t, rdb, prefix, c)}
	const conc = 5
	set := limits.FromPolicy(&config.Policy{CostPerDayUSD: 1, Concurrency: conc})
	admitted, _ := storm(t, sidecars, "k", set, 50, worst)
	cost, _ := sidecars[0].Current(context.Background(), "k", set.Counted[0])
	// Admitted while below $1; what the requests in flight at the last admission cost
	// lands after it: at most concurrency × the worst case.
	if bound := 1_000_000 + conc*worst.CostMicroUSD; cost >= bound {
		t.Errorf("charged %d µ$, want under the documented bound %d µ$", cost, bound)
	}
	t.Logf("charge mode: %d of 50 admitted, charged $%g against $1 (bound: under $%g)", admitted, float64(cost)/1e6, float64(1_000_000+conc*worst.CostMicroUSD)/1e6)
}

func TestAReservationThatDoesNotFitSaysWhatIsLeftAndWhenRetryingHelps(t *testing.T) {
	start := time.Date(2025, 6, 18, 10, 20, 0, 0, time.UTC)
	l, _ := clockedLimiter(t, start)
	ctx := context.Background()
	set := limits.FromPolicy(&config.Policy{CostPerDayUSD: 0.25, LimitModes: map[string]string{"cost_per_day_usd": "reserve"}})

	if _, ref, _ := l.AdmitUpTo(ctx, "k", set, limits.Usage{CostMicroUSD: 300_000}); ref == nil || ref.RetryAfter != 0 ||
		!strings.Contains(ref.Message(), "up to $0.3") || !strings.Contains(ref.Message(), "more than the whole limit of $0.25") {
		t.Fatalf("a request larger than the limit: got %+v, want a final refusal saying it can never fit", ref)
	}
	a, ref, err := l.AdmitUpTo(ctx, "k", set, worst)
	if err != nil || ref != nil {
		t.Fatalf("first: got %v %v, want admitted", ref, err)
	}
	b, _, _ := l.AdmitUpTo(ctx, "k", set, worst)
	// $0.20 reserved: a third $0.10 does not fit now, but will once they settle.
	_, ref, _ = l.AdmitUpTo(ctx, "k", set, worst)
	if ref == nil || !ref.Reservation || ref.Remaining() != 50_000 || ref.RetryAfter != time.Second ||
		!strings.Contains(ref.Message(), "$0.05 is left of $0.25 ($0 used, $0.2 reserved by requests in flight)") || !strings.Contains(ref.Message(), "retry shortly") {
		t.Fatalf("while two are in flight: got %+v %q, want $0.05 left, $0.2 reserved, retry in a second", ref, ref.Message())
	}
	a.Finish(ctx, limits.Usage{CostMicroUSD: 100_000})
	b.Finish(ctx, limits.Usage{CostMicroUSD: 80_000})
	_, ref, _ = l.AdmitUpTo(ctx, "k", set, worst)
	if ref == nil || ref.Remaining() != 70_000 || ref.RetryAfter != 14*time.Hour-20*time.Minute || !strings.Contains(ref.Message(), "resets at 2025-06-19T00:00:00Z") {
		t.Fatalf("after settling $0.18: got %+v %q, want $0.07 left until the day resets", ref, ref.Message())
	}
	if ls, ref, _ := l.AdmitUpTo(ctx, "k", set, limits.Usage{CostMicroUSD: 70_000}); ref != nil {
		t.Fatalf("a request that fits exactly: got %q, want admitted", ref.Message())
	} else {
		ls.Finish(ctx, limits.Usage{CostMicroUSD: 1})
	}
}

func TestACrashedSidecarsReservationIsReleasedAfterItsExpiry(t *testing.T) {
	rdb, prefix := testredis.New(t)
	c := testutil.NewClock(time.Now())
	crashed, alive := newLimiter(t, rdb, prefix, c), newLimiter(t, rdb, prefix, c)
	ctx := context.Background()
	set := limits.FromPolicy(&config.Policy{CostTotalUSD: 0.15, TokensPerDay: 1500, LimitMode: config.LimitModeReserve})
	if _, ref, err := crashed.AdmitUpTo(ctx, "k", set, worst); err != nil || ref != nil {
		t.Fatalf("got %v %v, want admitted", ref, err)
	}
	crashed.Close() // dies with the request in flight: nothing settles or renews it
	_, ref, _ := alive.AdmitUpTo(ctx, "k", set, worst)
	if ref == nil || ref.Reserved != worst.CostMicroUSD {
		t.Fatalf("while the dead sidecar's reservation lives: got %+v, want refused with $0.10 reserved", ref)
	}
	c.Set(c.Now().Add(3*time.Second + time.Millisecond)) // past the lease TTL
	ls, ref, err := alive.AdmitUpTo(ctx, "k", set, worst)
	if err != nil || ref != nil {
		t.Fatalf("after the reservation's deadline: got %v %v, want admitted", ref, err)
	}
	if r, _ := alive.Reserved(ctx, "k"); r != worst {
		t.Errorf("reserved: got %+v, want only the new request's %+v", r, worst)
	}
	ls.Finish(ctx, limits.Usage{Tokens: 10, CostMicroUSD: 10})
	if r, _ := alive.Reserved(ctx, "k"); r != (limits.Usage{}) {
		t.Errorf("reserved after settling: got %+v, want nothing", r)
	}
	if v, _ := alive.Current(ctx, "k", set.Counted[0]); v != 10 {
		t.Errorf("charged: got %d µ$, want 10 (the dead request is not charged)", v)
	}
}

func TestRenewalsKeepALongRequestsReservation(t *testing.T) {
	rdb, prefix := testredis.New(t)
	l := limits.New(rdb, store.NewSchema(prefix), limits.Options{LeaseTTL: 300 * time.Millisecond})
	defer l.Close()
	ctx := context.Background()
	set := limits.FromPolicy(&config.Policy{CostPerDayUSD: 0.15, LimitMode: config.LimitModeReserve})
	lease, ref, err := l.AdmitUpTo(ctx, "k", set, worst)
	if err != nil || ref != nil {
		t.Fatalf("got %v %v, want admitted", ref, err)
	}
	if !l.Renewing() {
		t.Fatal("no renewer runs for a lease that holds only a reservation")
	}
	deadline := time.Now().Add(900 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, ref, _ := l.AdmitUpTo(ctx, "k", set, worst); ref == nil {
			t.Fatal("a second request was admitted while the first's reservation should still hold")
		}
		time.Sleep(50 * time.Millisecond)
	}
	lease.Finish(ctx, limits.Usage{CostMicroUSD: 1})
}

func TestAnAbandonedAdmissionReleasesItsReservation(t *testing.T) {
	rdb, prefix := testredis.New(t)
	l := limits.New(rdb, store.NewSchema(prefix), limits.Options{})
	defer l.Close()
	set := limits.FromPolicy(&config.Policy{CostPerDayUSD: 1, LimitMode: config.LimitModeReserve})
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		go cancel()
		if ls, ref, err := l.AdmitUpTo(ctx, "k", set, worst); err == nil && ref == nil {
			ls.Finish(ctx, limits.Usage{})
		}
	}
	testutil.Eventually(t, 5*time.Second, "nothing reserved", func() bool { r, _ := l.Reserved(context.Background(), "k"); return r == limits.Usage{} })
}

func TestWorstCaseTakesTheDearestRateOfEveryTier(t *testing.T) {
	// claude-sonnet-4-5 in the built-in table: long context above 200k prompt tokens.
	sonnet := config.Price{Input: 3, Output: 15, CacheWrite5m: 3.75, CacheWrite1h: 6, CacheRead: 0.3,
		LongContext: config.PriceTier{AboveInputTokens: 200_000, Input: 6, Output: 22.5, CacheWrite5m: 7.5, CacheWrite1h: 12, CacheRead: 0.6}}
	opus := config.Price{Input: 5, Output: 25, CacheWrite5m: 6.25, CacheWrite1h: 10, CacheRead: 0.5}
	tests := []struct {
		name      string
		body, max int64
		prices    []config.Price
		want      limits.Usage
	}{
		{"cache write 1h is the dearest input", 1000, 100, []config.Price{opus}, limits.Usage{Tokens: 1100, CostMicroUSD: 1000*10 + 100*25}},
		{"a body below the tier's threshold cannot reach it", 200_000, 100, []config.Price{sonnet}, limits.Usage{Tokens: 200_100, CostMicroUSD: 200_000*6 + 100*15}},
		{"a body above it can", 200_001, 100, []config.Price{sonnet}, limits.Usage{Tokens: 200_101, CostMicroUSD: 200_001*12 + 100*45/2}},
		{"the dearest of several prices (a model_map target)", 1000, 100, []config.Price{sonnet, opus}, limits.Usage{Tokens: 1100, CostMicroUSD: 1000*10 + 100*25}},
		{"fractions round up", 1, 1, []config.Price{{Input: 0.3, Output: 0.3}}, limits.Usage{Tokens: 2, CostMicroUSD: 1}},
		{"negatives are nothing", -5, -1, []config.Price{opus}, limits.Usage{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := limits.WorstCase(tt.body, tt.max, tt.prices...); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReservationsRunOnTheDevModeStore(t *testing.T) {
	ctx := context.Background()
	mem, err := devredis.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	c := testutil.NewClock(time.Now())
	l := limits.New(mem.Client(), store.NewSchema("dev:"), limits.Options{Now: c.Now, LeaseTTL: time.Second})
	defer l.Close()
	if err := l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	set := limits.FromPolicy(&config.Policy{CostPerDayUSD: 0.15, Concurrency: 4, LimitMode: config.LimitModeReserve})
	a, ref, err := l.AdmitUpTo(ctx, "k", set, worst)
	if err != nil || ref != nil {
		t.Fatalf("got %v %v, want admitted", ref, err)
	}
	if _, ref, err := l.AdmitUpTo(ctx, "k", set, worst); err != nil || ref == nil || !ref.Reservation {
		t.Fatalf("second: got %v %v, want refused by the reservation", ref, err)
	}
	if err := a.Finish(ctx, limits.Usage{CostMicroUSD: 20_000}); err != nil {
		t.Fatal(err)
	}
	b, ref, err := l.AdmitUpTo(ctx, "k", set, worst)
	if err != nil || ref != nil {
		t.Fatalf("after settling: got %v %v, want admitted", ref, err)
	}
	c.Set(c.Now().Add(2 * time.Second)) // b's sidecar "dies": its reservation lapses
	if ls, ref, err := l.AdmitUpTo(ctx, "k", set, worst); err != nil || ref != nil {
		t.Fatalf("after the lapse: got %v %v, want admitted", ref, err)
	} else {
		ls.Finish(ctx, limits.Usage{CostMicroUSD: 1})
	}
	b.Finish(ctx, limits.Usage{CostMicroUSD: 1}) // late: charged, not subtracted twice
	if r, _ := l.Reserved(ctx, "k"); r != (limits.Usage{}) {
		t.Errorf("reserved at the end: got %+v, want nothing", r)
	}
}

// BenchmarkAdmitReserving compares, in the same run, one request's admission and finish
// with every token and cost limit in reserve mode (the worst case reserved, then settled)
// against the same limits in charge mode (today's admission): one caller at a time, and 64
// concurrent callers (auto-pipelined). Ratios above 1 are what reservations cost.
func BenchmarkAdmitReserving(b *testing.B) {
	l, _ := benchLimiter(b)
	pol := config.Policy{RequestsPerMinute: 1 << 40, RequestsPerDay: 1 << 40, TokensPerMinute: 1 << 40,
		TokensPerDay: 1 << 40, CostPerDayUSD: 1e9, CostPerWeekUSD: 1e9, CostPerMonthUSD: 1e9, CostTotalUSD: 1e9, Concurrency: 1 << 30}
	charge := limits.FromPolicy(&pol)
	pol.LimitMode = config.LimitModeReserve
	reserve := limits.FromPolicy(&pol)
	used := limits.Usage{Tokens: 100, CostMicroUSD: 100}
	one := func(set limits.Set, key string) {
		ctx := context.Background()
		lease, ref, err := l.AdmitUpTo(ctx, key, set, worst)
		if err != nil || ref != nil {
			b.Fatalf("got %v %v, want admitted", ref, err)
		}
		lease.Finish(ctx, used)
	}
	reportComparison(b, compareAdmissions(b, charge, reserve, one), "charge", "reserve")
}

func TestAConversationLimitTripsForThatConversationOnly(t *testing.T) {
	start := time.Date(2025, 6, 18, 10, 20, 30, 0, time.UTC)
	l, c := clockedLimiter(t, start)
	ctx := context.Background()
	// In reserve mode on purpose: conversation limits stay charged (breakers).
	pol := &config.Policy{ConversationRequestsPerMinute: 2, ConversationTokensPerMinute: 500, LimitMode: config.LimitModeReserve, TokensPerDay: 1 << 30}
	in := func(conv string) limits.Set { s := limits.FromPolicy(pol); s.Conversation = conv; return s }
	for i := range 2 {
		ls, ref, err := l.AdmitUpTo(ctx, "k", in("conv-a"), worst)
		if err != nil || ref != nil {
			t.Fatalf("conversation a, request %d: got %v %v, want admitted", i+1, ref, err)
		}
		ls.Finish(ctx, limits.Usage{Tokens: 100})
	}
	_, ref, _ := l.AdmitUpTo(ctx, "k", in("conv-a"), worst)
	if ref == nil || ref.Limit != "conversation_requests_per_minute" || !ref.Conversation ||
		!strings.Contains(ref.Message(), "2 requests used of 2 requests by this conversation") || ref.RetryAfter != 30*time.Second {
		t.Fatalf("conversation a, request 3: got %+v, want refused by conversation_requests_per_minute, naming the conversation, for 30 s", ref)
	}
	for _, conv := range []string{"conv-b", ""} { // another conversation; a request naming none
		ls, ref, err := l.AdmitUpTo(ctx, "k", in(conv), worst)
		if err != nil || ref != nil {
			t.Fatalf("conversation %q: got %v %v, want admitted", conv, ref, err)
		}
		ls.Finish(ctx, limits.Usage{Tokens: 600})
	}
	// conv-b's 600 tokens trip its own token limit, not conv-a's.
	if _, ref, _ := l.AdmitUpTo(ctx, "k", in("conv-b"), worst); ref == nil || ref.Limit != "conversation_tokens_per_minute" {
		t.Fatalf("conversation b after 600 tokens: got %+v, want refused by conversation_tokens_per_minute", ref)
	}
	tpm := limits.Limit{Name: "conversation_tokens_per_minute", Kind: limits.Tokens, Window: limits.Minute, PerConversation: true}
	if v, _ := l.ConversationCurrent(ctx, "k", "conv-a", tpm); v != 200 {
		t.Errorf("conversation a's tokens: got %d, want 200", v)
	}
	c.Set(start.Add(30 * time.Second))
	if ls, ref, _ := l.AdmitUpTo(ctx, "k", in("conv-a"), worst); ref != nil {
		t.Fatalf("conversation a in the next minute: got %q, want admitted", ref.Message())
	} else {
		ls.Finish(ctx, limits.Usage{})
	}
}

func TestFromPolicyAppliesLimitModesToTokenAndCostLimitsOnly(t *testing.T) {
	pol := &config.Policy{RequestsPerMinute: 5, TokensPerDay: 10, CostPerDayUSD: 1, CostTotalUSD: 9, ConversationTokensPerMinute: 3,
		LimitMode: config.LimitModeReserve, LimitModes: map[string]string{"cost_per_day_usd": config.LimitModeCharge}}
	got := map[string]bool{}
	for _, l := range limits.FromPolicy(pol).Counted {
		got[l.Name] = l.Reserve
	}
	want := map[string]bool{"requests_per_minute": false, "tokens_per_day": true, "cost_per_day_usd": false, "cost_total_usd": true, "conversation_tokens_per_minute": false}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s: got reserve %v (present %v), want %v", name, g, ok, w)
		}
	}
	if set := limits.FromPolicy(&config.Policy{CostPerDayUSD: 1}); set.Reserves() {
		t.Error("a policy without limit_mode reserves; want charge by default")
	}
}
