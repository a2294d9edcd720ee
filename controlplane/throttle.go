package controlplane

import (
	"sync"
	"time"
)

// minSweep is the map size below which the throttle never sweeps stale entries.
const minSweep = 1024

// throttle is an in-memory sliding-window counter of login attempts per key (client IP,
// username). It is per process: with several control planes behind a load balancer an
// attacker gets limit attempts per process. It is safe for concurrent use.
type throttle struct {
	limit  int
	window time.Duration

	mu      sync.Mutex
	hits    map[string][]time.Time // ascending; at most limit entries
	sweepAt int
}

func newThrottle(limit int, window time.Duration) *throttle {
	return &throttle{limit: limit, window: window, hits: make(map[string][]time.Time), sweepAt: minSweep}
}

// attempt records one attempt at now under every key, unless one of them already holds limit
// attempts within the window; then it records nothing and returns how long until the oldest
// of those leaves the window.
func (t *throttle) attempt(now time.Time, keys ...string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.maybeSweep(now)
	var wait time.Duration
	for _, k := range keys {
		recent := t.recent(k, now)
		if len(recent) >= t.limit {
			if w := recent[len(recent)-t.limit].Add(t.window).Sub(now); w > wait {
				wait = w
			}
		}
	}
	if wait > 0 {
		return wait
	}
	for _, k := range keys {
		t.hits[k] = append(t.recent(k, now), now)
	}
	return 0
}

// reset forgets every attempt under keys.
func (t *throttle) reset(keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		delete(t.hits, k)
	}
}

// recent drops k's attempts that left the window and returns the rest.
func (t *throttle) recent(k string, now time.Time) []time.Time {
	hits := t.hits[k]
	cutoff := now.Add(-t.window)
	i := 0
	for i < len(hits) && !hits[i].After(cutoff) {
		i++
	}
	if i > 0 {
		hits = append(hits[:0], hits[i:]...)
		t.hits[k] = hits
	}
	return hits
}

// maybeSweep deletes keys with no attempt in the window once the map has doubled in size
// since the last sweep, so memory stays proportional to recent activity.
func (t *throttle) maybeSweep(now time.Time) {
	if len(t.hits) < t.sweepAt {
		return
	}
	cutoff := now.Add(-t.window)
	for k, hits := range t.hits {
		if len(hits) == 0 || !hits[len(hits)-1].After(cutoff) {
			delete(t.hits, k)
		}
	}
	t.sweepAt = max(minSweep, 2*len(t.hits))
}
