package limits_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
)

// queueLimiters returns two Limiters on the real clock sharing one Redis, as two sidecars.
func queueLimiters(t *testing.T, opts limits.Options) (a, b *limits.Limiter, rdb redis.UniversalClient, keys store.Schema) {
	t.Helper()
	rdb, prefix := testredis.New(t)
	keys = store.NewSchema(prefix)
	for _, l := range []**limits.Limiter{&a, &b} {
		*l = limits.New(rdb, keys, opts)
		t.Cleanup((*l).Close)
		if err := (*l).Load(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return a, b, rdb, keys
}

// queued waits until the key's queue in Redis holds n tickets.
func queued(t *testing.T, rdb redis.UniversalClient, keys store.Schema, key string, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := rdb.ZCard(context.Background(), keys.KeyQueue(key)).Result()
		if err == nil && got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue of %s: got %d tickets (error %v), want %d", key, got, err, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func queueSet(conc int, timeout time.Duration, max int) limits.Set {
	return limits.FromPolicy(&config.Policy{Concurrency: int64(conc), QueueTimeout: timeout.String(), QueueMax: max, RequestsPerMinute: 1000})
}

type admission struct {
	lease *limits.Lease
	ref   *limits.Refusal
	err   error
}

func admitAsync(ctx context.Context, l *limits.Limiter, key string, set limits.Set) <-chan admission {
	ch := make(chan admission, 1)
	go func() {
		lease, ref, err := l.Admit(ctx, key, set)
		ch <- admission{lease, ref, err}
	}()
	return ch
}

func TestQueuedRequestsAreAdmittedInArrivalOrderAcrossTwoLimiters(t *testing.T) {
	a, b, rdb, keys := queueLimiters(t, limits.Options{})
	ctx := context.Background()
	set := queueSet(1, 10*time.Second, 0)
	holder, ref, err := a.Admit(ctx, "k", set)
	if err != nil || ref != nil {
		t.Fatalf("first request: got %v, %v; want admitted", ref, err)
	}
	const waiters = 6
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range waiters {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lease, ref, err := l.Admit(ctx, "k", set)
			if err != nil || ref != nil {
				t.Errorf("waiter %d: got %v, %v; want admitted", i, ref, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if lease.Waited() <= 0 {
				t.Errorf("waiter %d: Waited %v, want > 0", i, lease.Waited())
			}
			time.Sleep(20 * time.Millisecond) // holds the slot: the next waits for this one
			lease.Finish(ctx, limits.Usage{})
		}()
		queued(t, rdb, keys, "k", int64(i+1))
	}
	if w := a.Stats().Waiting + b.Stats().Waiting; w != waiters {
		t.Errorf("waiting: got %d, want %d", w, waiters)
	}
	holder.Finish(ctx, limits.Usage{})
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("admission order: got %v, want 0..%d in arrival order", order, waiters-1)
		}
	}
	queued(t, rdb, keys, "k", 0)
}

func TestANewcomerDoesNotJumpAWaiterOfAnotherLimiter(t *testing.T) {
	a, b, rdb, keys := queueLimiters(t, limits.Options{})
	ctx := context.Background()
	set := queueSet(1, 10*time.Second, 0)
	holder, _, _ := a.Admit(ctx, "k", set)
	waiter := admitAsync(ctx, b, "k", set)
	queued(t, rdb, keys, "k", 1)
	holder.Finish(ctx, limits.Usage{}) // wakes nobody on b: its waiter finds the slot by polling
	newcomer := admitAsync(ctx, a, "k", set)
	w := <-waiter
	if w.err != nil || w.ref != nil {
		t.Fatalf("waiter: got %v, %v; want admitted", w.ref, w.err)
	}
	select {
	case n := <-newcomer:
		t.Fatalf("newcomer: got lease %v refusal %v error %v while the waiter holds the slot; want it queued", n.lease, n.ref, n.err)
	case <-time.After(100 * time.Millisecond):
	}
	w.lease.Finish(ctx, limits.Usage{})
	if n := <-newcomer; n.err != nil || n.ref != nil {
		t.Fatalf("newcomer after the waiter: got %v, %v; want admitted", n.ref, n.err)
	}
}

func TestQueueTimeoutRefusesWithRetryAfterAndLeavesTheQueue(t *testing.T) {
	a, _, rdb, keys := queueLimiters(t, limits.Options{})
	ctx := context.Background()
	set := queueSet(1, 150*time.Millisecond, 0)
	holder, _, _ := a.Admit(ctx, "k", set)
	defer holder.Finish(ctx, limits.Usage{})
	start := time.Now()
	lease, ref, err := a.Admit(ctx, "k", set)
	if err != nil || lease != nil || ref == nil {
		t.Fatalf("got lease %v refusal %v error %v; want a refusal", lease, ref, err)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("refused after %v, want after the 150ms queue_timeout", took)
	}
	if ref.Limit != limits.ConcurrencyLimit || ref.RetryAfter != time.Second || ref.Waited < 150*time.Millisecond {
		t.Errorf("refusal: got %+v, want concurrency with a 1s retry-after and Waited >= 150ms", ref)
	}
	if msg := ref.Message(); !strings.Contains(msg, "1 of 1 requests") || !strings.Contains(msg, "queue_timeout") {
		t.Errorf("message: got %q, want the in-flight count and the queue_timeout", msg)
	}
	if got := a.Stats().QueueTimeouts; got != 1 {
		t.Errorf("queue timeouts: got %d, want 1", got)
	}
	queued(t, rdb, keys, "k", 0)
}

func TestAWaiterWhoseClientLeavesFreesItsPlace(t *testing.T) {
	a, b, rdb, keys := queueLimiters(t, limits.Options{})
	ctx := context.Background()
	set := queueSet(1, 10*time.Second, 0)
	holder, _, _ := a.Admit(ctx, "k", set)
	leaving, leave := context.WithCancel(ctx)
	first := admitAsync(leaving, a, "k", set)
	queued(t, rdb, keys, "k", 1)
	second := admitAsync(ctx, b, "k", set)
	queued(t, rdb, keys, "k", 2)
	leave()
	if f := <-first; !errors.Is(f.err, context.Canceled) || f.lease != nil {
		t.Fatalf("leaving waiter: got lease %v refusal %v error %v; want context.Canceled", f.lease, f.ref, f.err)
	}
	queued(t, rdb, keys, "k", 1)
	holder.Finish(ctx, limits.Usage{})
	select {
	case s := <-second:
		if s.err != nil || s.ref != nil {
			t.Fatalf("next waiter: got %v, %v; want admitted", s.ref, s.err)
		}
		s.lease.Finish(ctx, limits.Usage{})
	case <-time.After(2 * time.Second):
		t.Fatal("the next waiter was not admitted after the slot freed")
	}
}

func TestAFullQueueRefusesAtOnce(t *testing.T) {
	a, _, rdb, keys := queueLimiters(t, limits.Options{})
	ctx := context.Background()
	set := queueSet(1, 10*time.Second, 1)
	holder, _, _ := a.Admit(ctx, "k", set)
	defer holder.Finish(ctx, limits.Usage{})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	admitAsync(cctx, a, "k", set)
	queued(t, rdb, keys, "k", 1)
	start := time.Now()
	_, ref, err := a.Admit(ctx, "k", set)
	if err != nil || ref == nil || !ref.QueueFull || ref.Queued != 1 {
		t.Fatalf("got refusal %+v error %v; want a full queue with 1 waiting", ref, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("refused after %v, want at once", took)
	}
	if msg := ref.Message(); !strings.Contains(msg, "queue_max") {
		t.Errorf("message: got %q, want it to name queue_max", msg)
	}
}

func TestADeadSidecarsTicketsExpireAndNoLongerHoldTheQueue(t *testing.T) {
	a, _, rdb, keys := queueLimiters(t, limits.Options{TicketTTL: 200 * time.Millisecond})
	ctx := context.Background()
	set := queueSet(1, 10*time.Second, 0)
	// A ticket left by a sidecar that died while its request waited: nobody polls it.
	now := time.Now().UnixMilli()
	rdb.ZAdd(ctx, keys.KeyQueue("k"), redis.Z{Score: 1, Member: "dead"})
	rdb.ZAdd(ctx, keys.KeyQueueDeadlines("k"), redis.Z{Score: float64(now + 100), Member: "dead"})
	rdb.Set(ctx, keys.KeyQueueSeq("k"), 1, time.Second)
	start := time.Now()
	lease, ref, err := a.Admit(ctx, "k", set)
	if err != nil || ref != nil {
		t.Fatalf("got %v, %v; want admitted once the dead ticket expired", ref, err)
	}
	defer lease.Finish(ctx, limits.Usage{})
	if took := time.Since(start); took < 50*time.Millisecond || took > 2*time.Second {
		t.Errorf("admitted after %v, want after the dead ticket's deadline (100ms)", took)
	}
	queued(t, rdb, keys, "k", 0)
}

func TestWithoutAQueueAFullKeyIsRefusedAtOnce(t *testing.T) {
	a, _, _, _ := queueLimiters(t, limits.Options{})
	ctx := context.Background()
	set := queueSet(1, 0, 0)
	holder, _, _ := a.Admit(ctx, "k", set)
	defer holder.Finish(ctx, limits.Usage{})
	_, ref, err := a.Admit(ctx, "k", set)
	if err != nil || ref == nil || ref.Waited != 0 || ref.QueueFull {
		t.Fatalf("got refusal %+v error %v; want an immediate concurrency refusal", ref, err)
	}
}

// BenchmarkAdmitQueueing compares, in the same run, one request's admission and finish on a
// key whose policy has a queue (queue_timeout set) but a free slot — the request does not
// wait — against the same policy without a queue (today's admission): one caller at a
// time, and 64 concurrent callers (auto-pipelined). A ratio near 1 is the promise that a
// queue costs a request that does not wait nothing (one ZCARD inside the same script).
func BenchmarkAdmitQueueing(b *testing.B) {
	l, _ := benchLimiter(b)
	pol := config.Policy{RequestsPerMinute: 1 << 40, RequestsPerDay: 1 << 40, TokensPerDay: 1 << 40, CostPerDayUSD: 1e9, Concurrency: 1 << 30}
	plain := limits.FromPolicy(&pol)
	pol.QueueTimeout = "30s"
	queue := limits.FromPolicy(&pol)
	used := limits.Usage{Tokens: 100, CostMicroUSD: 100}
	one := func(set limits.Set, key string) {
		ctx := context.Background()
		lease, ref, err := l.Admit(ctx, key, set)
		if err != nil || ref != nil || lease.Waited() != 0 {
			b.Fatalf("got %v %v, want admitted at once", ref, err)
		}
		lease.Finish(ctx, used)
	}
	reportComparison(b, compareAdmissions(b, plain, queue, one), "plain", "queue")
}

// Dev mode's embedded Redis (miniredis, gopher-lua) must run the queue's script too.
func TestTheQueueRunsOnTheDevModeStore(t *testing.T) {
	ctx := context.Background()
	l, mem := devLimiter(t)
	set := queueSet(1, 5*time.Second, 0)
	holder, ref, err := l.Admit(ctx, "k", set)
	if err != nil || ref != nil {
		t.Fatalf("first: got %v, %v; want admitted", ref, err)
	}
	waiter := admitAsync(ctx, l, "k", set)
	queued(t, mem, store.NewSchema("dev:"), "k", 1)
	holder.Finish(ctx, limits.Usage{})
	w := <-waiter
	if w.err != nil || w.ref != nil || w.lease.Waited() <= 0 {
		t.Fatalf("waiter: got %v, %v; want admitted after waiting", w.ref, w.err)
	}
	w.lease.Finish(ctx, limits.Usage{})
}

func TestAWaiterRefusedByAnotherLimitMeanwhileGetsThatRefusalAndLeaves(t *testing.T) {
	c := testutil.NewClock(time.Date(2025, 6, 18, 10, 20, 0, 0, time.UTC)) // no minute boundary mid-test
	a, b, rdb, keys := queueLimiters(t, limits.Options{Now: c.Now})
	ctx := context.Background()
	set := limits.FromPolicy(&config.Policy{Concurrency: 1, QueueTimeout: "10s", RequestsPerMinute: 2})
	holder, _, _ := a.Admit(ctx, "k", set) // 1 of 2 requests this minute
	first := admitAsync(ctx, a, "k", set)
	queued(t, rdb, keys, "k", 1)
	second := admitAsync(ctx, b, "k", set)
	queued(t, rdb, keys, "k", 2)
	holder.Finish(ctx, limits.Usage{})
	f := <-first // 2 of 2
	if f.err != nil || f.ref != nil {
		t.Fatalf("first waiter: got %v, %v; want admitted", f.ref, f.err)
	}
	defer f.lease.Finish(ctx, limits.Usage{})
	s := <-second
	if s.err != nil || s.ref == nil || s.ref.Limit != "requests_per_minute" || s.ref.Waited <= 0 {
		t.Fatalf("second waiter: got refusal %+v error %v; want requests_per_minute after waiting", s.ref, s.err)
	}
	queued(t, rdb, keys, "k", 0)
}
