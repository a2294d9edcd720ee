package limits_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/devredis"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
)

// newLimiter is a loaded limiter on rdb under prefix, on c's clock, with a 3 s lease.
func newLimiter(t testing.TB, rdb redis.UniversalClient, prefix string, c *testutil.Clock) *limits.Limiter {
	t.Helper()
	l := limits.New(rdb, store.NewSchema(prefix), limits.Options{Now: c.Now, LeaseTTL: 3 * time.Second})
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l
}

// clockedLimiter is a loaded limiter on a Redis of the test's own, on a clock stopped at
// start, and that clock.
func clockedLimiter(t *testing.T, start time.Time) (*limits.Limiter, *testutil.Clock) {
	t.Helper()
	rdb, prefix := testredis.New(t)
	c := testutil.NewClock(start)
	return newLimiter(t, rdb, prefix, c), c
}

// devLimiter is a loaded limiter on dev mode's embedded Redis (miniredis, whose Lua is
// gopher-lua) under the "dev:" prefix, and that Redis's client; both close with the test.
func devLimiter(t *testing.T) (*limits.Limiter, redis.UniversalClient) {
	t.Helper()
	mem, err := devredis.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	l := limits.New(mem.Client(), store.NewSchema("dev:"), limits.Options{})
	t.Cleanup(l.Close)
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l, mem.Client()
}

// benchLimiter is a loaded limiter on the test Redis with a minute's lease, and its client.
func benchLimiter(b *testing.B) (*limits.Limiter, redis.UniversalClient) {
	rdb, prefix := testredis.New(b)
	l := limits.New(rdb, store.NewSchema(prefix), limits.Options{LeaseTTL: time.Minute})
	b.Cleanup(l.Close)
	if err := l.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	return l, rdb
}

// inParallel calls one each times from each of workers goroutines at once (worker w passes
// w) and returns the time per call.
func inParallel(workers, each int, one func(w int)) time.Duration {
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range workers {
		wg.Go(func() {
			for range each {
				one(w)
			}
		})
	}
	wg.Wait()
	return time.Since(t0) / time.Duration(workers*each)
}

// reportComparison reports the times of base and cand, named so, and cand's ratios to base
// serial and parallel: "<cand>/<base>" and "<cand>/<base>-parallel".
func reportComparison(b *testing.B, t admissionTimes, base, cand string) {
	b.ReportMetric(float64(t.baseSerial.Nanoseconds()), base+"-ns/op")
	b.ReportMetric(float64(t.candSerial.Nanoseconds()), cand+"-ns/op")
	b.ReportMetric(float64(t.candSerial)/float64(t.baseSerial), cand+"/"+base)
	b.ReportMetric(float64(t.candParallel)/float64(t.baseParallel), cand+"/"+base+"-parallel")
}

// admissionTimes is what compareAdmissions measured: the fastest round of each set, one
// caller after another (serial) and 64 callers at once (parallel), per admission.
type admissionTimes struct {
	baseSerial, candSerial, baseParallel, candParallel time.Duration
}

// compareAdmissions times one (an admission and its finish) under base and cand in
// alternated rounds and keeps the fastest round of each: on a shared machine the other
// load comes and goes, and the minimum is what the code costs.
func compareAdmissions(b *testing.B, base, cand limits.Set, one func(set limits.Set, key string)) admissionTimes {
	serial := func(set limits.Set) time.Duration {
		const rounds = 400
		t0 := time.Now()
		for range rounds {
			one(set, "bench")
		}
		return time.Since(t0) / rounds
	}
	parallel := func(set limits.Set) time.Duration {
		return inParallel(64, 50, func(w int) { one(set, "bench"+strings.Repeat("x", w%8)) })
	}
	var t admissionTimes
	low := func(d *time.Duration, v time.Duration) {
		if *d == 0 || v < *d {
			*d = v
		}
	}
	for b.Loop() {
		for range 5 {
			low(&t.baseSerial, serial(base))
			low(&t.candSerial, serial(cand))
			low(&t.baseParallel, parallel(base))
			low(&t.candParallel, parallel(cand))
		}
	}
	return t
}
