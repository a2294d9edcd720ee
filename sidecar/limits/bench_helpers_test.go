package limits_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/sidecar/limits"
)

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
		const workers, each = 64, 50
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					one(set, "bench"+strings.Repeat("x", w%8))
				}
			}()
		}
		wg.Wait()
		return time.Since(t0) / (workers * each)
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
