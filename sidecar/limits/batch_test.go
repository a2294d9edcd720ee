package limits_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// countHook counts round trips: script pipelines, the commands in them, and commands sent
// alone.
// onPipeline, when set before traffic starts, runs before each pipeline is sent.
type countHook struct {
	pipelines, piped, singles atomic.Int64
	onPipeline                func()
}

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.singles.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) == 0 || slices.Contains([]string{"hello", "client", "auth", "select", "ping"}, cmds[0].Name()) {
			return next(ctx, cmds) // connection set-up, not ours
		}
		h.pipelines.Add(1)
		h.piped.Add(int64(len(cmds)))
		if h.onPipeline != nil {
			h.onPipeline()
		}
		return next(ctx, cmds)
	}
}

// hookedClient returns a client of its own to the same Redis (single or cluster) as rdb,
// with h on it.
// countedLimiter is a loaded limiter whose round trips to rdb h counts, on a clock stopped
// at 2025-06-18 10:20 UTC; it closes with the test.
func countedLimiter(t *testing.T, rdb redis.UniversalClient, prefix string, h *countHook) *limits.Limiter {
	t.Helper()
	c := testutil.NewClock(time.Date(2025, 6, 18, 10, 20, 0, 0, time.UTC))
	l := newLimiter(t, hookedClient(t, rdb, h), prefix, c)
	t.Cleanup(l.Close)
	return l
}

func hookedClient(t testing.TB, rdb redis.UniversalClient, h *countHook) redis.UniversalClient {
	t.Helper()
	var c redis.UniversalClient
	switch r := rdb.(type) {
	case *redis.Client:
		c = redis.NewClient(r.Options())
	case *redis.ClusterClient:
		c = redis.NewClusterClient(r.Options())
	default:
		t.Fatalf("unexpected client %T", rdb)
	}
	c.AddHook(h)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConcurrentAdmitsShareFewPipelinesAndNeverExceedTheConcurrencyLimit(t *testing.T) {
	rdb, prefix := testredis.New(t)
	h := &countHook{}
	l := countedLimiter(t, rdb, prefix, h)
	h.singles.Store(0)
	const (
		workers = 64
		each    = 20
		keys    = 4 // keys of different hash slots: on a cluster one batch spans nodes
		limit   = 5
	)
	set := limits.FromPolicy(&config.Policy{Concurrency: limit, RequestsPerMinute: 1 << 40})
	var inFlight [keys]atomic.Int64
	var peak [keys]atomic.Int64
	var admitted, calls atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			k := w % keys
			key := fmt.Sprintf("k%d", k)
			for range each {
				calls.Add(1)
				lease, ref, err := l.Admit(context.Background(), key, set)
				if err != nil {
					t.Error(err)
					return
				}
				if ref != nil {
					continue
				}
				admitted.Add(1)
				n := inFlight[k].Add(1)
				for p := peak[k].Load(); n > p && !peak[k].CompareAndSwap(p, n); p = peak[k].Load() {
				}
				inFlight[k].Add(-1)
				calls.Add(1)
				if err := lease.Finish(context.Background(), limits.Usage{}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	for k := range keys {
		if p := peak[k].Load(); p > limit {
			t.Errorf("key k%d: got %d admitted at once, want at most %d", k, p, limit)
		}
		if n, err := l.InFlight(context.Background(), fmt.Sprintf("k%d", k)); err != nil || n != 0 {
			t.Errorf("key k%d: got %d leases live after every finish (%v), want 0", k, n, err)
		}
	}
	if admitted.Load() == 0 {
		t.Fatal("nothing was admitted")
	}
	trips := h.pipelines.Load() + h.singles.Load()
	t.Logf("%d script calls (%d admitted) in %d pipelines, %d single commands", calls.Load(), admitted.Load(), h.pipelines.Load(), h.singles.Load())
	if h.piped.Load() != calls.Load() {
		t.Errorf("commands pipelined: got %d, want every call (%d)", h.piped.Load(), calls.Load())
	}
	if trips*4 > calls.Load() {
		t.Errorf("round trips: got %d for %d calls, want at most a quarter", trips, calls.Load())
	}
}

func TestAnAdmissionWhoseCallerGaveUpHoldsNoSlot(t *testing.T) {
	set := limits.FromPolicy(&config.Policy{Concurrency: 1, RequestsPerMinute: 100})
	reqs := set.Counted[0]
	tests := []struct {
		name string
		// whether the admission was already sent when its caller gave up
		inFlight bool
		// requests counted in the end: the abandoned one (if it ran) and the one after
		wantCount int64
	}{
		{"gave up while the pipeline was in flight", true, 2},
		{"gave up while queued behind another pipeline", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb, prefix := testredis.New(t)
			entered, release := make(chan struct{}, 16), make(chan struct{})
			var once sync.Once
			h := &countHook{onPipeline: func() {
				entered <- struct{}{}
				once.Do(func() { <-release }) // hold the first pipeline only
			}}
			l := countedLimiter(t, rdb, prefix, h)
			ctx := context.Background()

			blockerDone := make(chan error, 1)
			if !tt.inFlight {
				// Another key's admission holds the pipeline; ours queues behind it.
				go func() {
					lease, _, err := l.Admit(ctx, "other", set)
					if err == nil {
						err = lease.Finish(ctx, limits.Usage{})
					}
					blockerDone <- err
				}()
				<-entered
			}
			gone, cancel := context.WithCancel(ctx)
			admitDone := make(chan error, 1)
			go func() {
				_, _, err := l.Admit(gone, "k", set)
				admitDone <- err
			}()
			if tt.inFlight {
				<-entered // our admission is in the held pipeline
			}
			cancel()
			if err := <-admitDone; !errors.Is(err, context.Canceled) {
				t.Fatalf("abandoned admit: got %v, want context.Canceled", err)
			}
			close(release)
			if !tt.inFlight {
				if err := <-blockerDone; err != nil {
					t.Fatal(err)
				}
			}
			// The slot comes back (concurrency is 1: a new admission proves it).
			var lease *limits.Lease
			testutil.Eventually(t, 10*time.Second, "the abandoned admission's slot to be released", func() bool {
				ls, ref, err := l.Admit(ctx, "k", set)
				if err != nil {
					t.Fatal(err)
				}
				lease = ls
				return ref == nil
			})
			defer lease.Finish(ctx, limits.Usage{})
			if got, err := l.Current(ctx, "k", reqs); err != nil || got != tt.wantCount {
				t.Errorf("requests counted: got %d (%v), want %d", got, err, tt.wantCount)
			}
		})
	}
}

func TestAdmitRunsAfterRedisForgetsTheScripts(t *testing.T) {
	rdb, prefix := testredis.New(t)
	h := &countHook{}
	l := countedLimiter(t, rdb, prefix, h)
	ctx := context.Background()
	set := limits.FromPolicy(&config.Policy{Concurrency: 3, RequestsPerMinute: 100, TokensPerMinute: 1000})
	for round := range 2 {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var leases []*limits.Lease
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lease, ref, err := l.Admit(ctx, "k", set)
				if err != nil {
					t.Errorf("round %d: %v", round, err)
					return
				}
				if ref == nil {
					mu.Lock()
					leases = append(leases, lease)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if got := len(leases); got != 3 {
			t.Errorf("round %d: admitted %d, want 3 (the concurrency limit)", round, got)
		}
		// Finish meets NOSCRIPT too.
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		for _, ls := range leases {
			if err := ls.Finish(ctx, limits.Usage{Tokens: 1}); err != nil {
				t.Errorf("round %d: finish: %v", round, err)
			}
		}
	}
	if got, err := l.Current(ctx, "k", set.Counted[0]); err != nil || got != 6 {
		t.Errorf("tokens charged: got %d (%v), want 6", got, err)
	}
}

func TestAdmitAndFinishFailWhileRedisIsDown(t *testing.T) {
	srv := testredis.StartServer(t)
	addr := srv.Addr()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	l := limits.New(rdb, store.NewSchema("down:"), limits.Options{})
	defer l.Close()
	ctx := context.Background()
	if err := l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	set := limits.FromPolicy(&config.Policy{Concurrency: 100, RequestsPerMinute: 100})
	lease, ref, err := l.Admit(ctx, "k", set)
	if err != nil || ref != nil {
		t.Fatalf("got %v %v, want admitted", ref, err)
	}
	srv.Stop()
	if err := lease.Finish(ctx, limits.Usage{}); err == nil {
		t.Error("finish with Redis down: got nil, want an error")
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := l.Admit(ctx, "k", set); err == nil {
				t.Error("admit with Redis down: got nil, want an error")
			}
		}()
	}
	wg.Wait()
}

func TestALimiterRefusesCallsOnceClosedOrItsContextEnds(t *testing.T) {
	rdb, prefix := testredis.New(t)
	set := limits.FromPolicy(&config.Policy{Concurrency: 10})
	ctx := context.Background()
	tests := []struct {
		name string
		stop func(l *limits.Limiter, cancel context.CancelFunc)
	}{
		{"Close", func(l *limits.Limiter, _ context.CancelFunc) { l.Close() }},
		{"context", func(_ *limits.Limiter, cancel context.CancelFunc) { cancel() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lctx, cancel := context.WithCancel(ctx)
			defer cancel()
			l := limits.New(rdb, store.NewSchema(prefix), limits.Options{Context: lctx})
			lease, ref, err := l.Admit(ctx, "k-"+tt.name, set)
			if err != nil || ref != nil {
				t.Fatalf("got %v %v, want admitted", ref, err)
			}
			tt.stop(l, cancel)
			if _, _, err := l.Admit(ctx, "k-"+tt.name, set); err == nil {
				t.Error("admit after stop: got nil, want an error")
			}
			if err := lease.Finish(ctx, limits.Usage{}); err == nil {
				t.Error("finish after stop: got nil, want an error")
			}
		})
	}
}

// BenchmarkAdmitParallel measures admit+finish from 64 concurrent requests with
// auto-pipelining and without it (one round trip per call), in the same run.
func BenchmarkAdmitParallel(b *testing.B) {
	rdb, prefix := testredis.New(b)
	opts := limits.Options{LeaseTTL: time.Minute}
	batched := limits.New(rdb, store.NewSchema(prefix), opts)
	unbatched := limits.New(rdb, store.NewSchema(prefix), limits.Unbatched(opts))
	defer batched.Close()
	if err := batched.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	set := limits.FromPolicy(&config.Policy{RequestsPerMinute: 1 << 40, TokensPerMinute: 1 << 40, CostPerDayUSD: 1e9, Concurrency: 1 << 30})
	var keys [8]string // each worker's key, made outside the timed calls
	for i := range keys {
		keys[i] = fmt.Sprintf("bench%d", i)
	}
	timeIt := func(l *limits.Limiter) time.Duration {
		ctx := context.Background()
		return inParallel(64, 100, func(w int) {
			lease, ref, err := l.Admit(ctx, keys[w%8], set)
			if err != nil || ref != nil {
				b.Errorf("got %v %v, want admitted", ref, err)
				return
			}
			lease.Finish(ctx, limits.Usage{Tokens: 10, CostMicroUSD: 10})
		})
	}
	var with, without time.Duration
	for b.Loop() {
		without = timeIt(unbatched)
		with = timeIt(batched)
	}
	b.ReportMetric(float64(with.Nanoseconds()), "batched-ns/op")
	b.ReportMetric(float64(without.Nanoseconds()), "unbatched-ns/op")
	b.ReportMetric(float64(without)/float64(with), "unbatched/batched")
}

func TestSlowRedisIsLoggedOncePerInterval(t *testing.T) {
	srv := testredis.StartServer(t, "--enable-debug-command", "yes")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	var logs testutil.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
	l := limits.New(rdb, store.NewSchema("slow:"), limits.Options{Logger: log})
	defer l.Close()
	ctx := context.Background()
	set := limits.FromPolicy(&config.Policy{RequestsPerMinute: 1000, TokensPerMinute: 1 << 40})
	// A first charge creates the token counter (and sets its expiry in a second round
	// trip); the charges timed below are one pipeline each.
	first, _, err := l.Admit(ctx, "k", set)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Finish(ctx, limits.Usage{Tokens: 1}); err != nil {
		t.Fatal(err)
	}
	// Until two charges were slow: Redis is busy for 250 ms while one waits for it (on a
	// loaded machine the DEBUG SLEEP may come too late for a round; that round is not counted).
	slow := 0
	for round := 0; slow < 2 && round < 10; round++ {
		lease, ref, err := l.Admit(ctx, "k", set)
		if err != nil || ref != nil {
			t.Fatalf("got %v %v, want admitted", ref, err)
		}
		other := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		go func() { _ = other.Do(ctx, "DEBUG", "SLEEP", "0.25").Err(); other.Close() }()
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		if err := lease.Finish(ctx, limits.Usage{Tokens: 1}); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) >= 150*time.Millisecond {
			slow++
		}
		time.Sleep(250 * time.Millisecond) // let the sleep end before the next round
	}
	if slow < 2 {
		t.Fatalf("only %d charges met a sleeping Redis in 10 rounds", slow)
	}
	out := logs.String()
	if got := strings.Count(out, "slow Redis"); got != 1 {
		t.Fatalf("slow Redis warnings: got %d, want 1 (two slow pipelines within the interval)\n%s", got, out)
	}
	if !strings.Contains(out, "threshold=100ms") {
		t.Errorf("the warning does not name the threshold:\n%s", out)
	}
}
