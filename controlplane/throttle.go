package controlplane

import (
	"net/netip"
	"sync"
	"time"
)

// minSweep is the map size below which the guard never sweeps stale entries.
const minSweep = 1024

// loginGuard bounds password guessing at the admin API (logins and the current-password
// check of a password change) without ever locking an account:
//
//   - Per client address: after limit failures within window, the address is refused until
//     the oldest of them leaves the window. One check at a time per address.
//   - In total: failures from every address draw on one budget of burst failures that refills
//     one per interval. A failure that finds the budget spent makes its address wait for the
//     next free turn before its next guess. An address without such a wait is never delayed,
//     so the right password from an address that has not been guessing goes through at once,
//     whatever others are doing.
//
// IPv6 clients are counted per /64 (one host usually holds a whole /64). The guard is in
// memory, per control plane process. It is safe for concurrent use.
type loginGuard struct {
	limit    int
	window   time.Duration
	burst    int
	interval time.Duration

	mu      sync.Mutex
	addrs   map[string]*guardEntry
	tat     time.Time // when the total budget is full again (GCRA's theoretical arrival time)
	sweepAt int
}

// guardEntry is what the guard remembers of one address.
type guardEntry struct {
	failures []time.Time // within the window, ascending, at most limit
	busy     bool        // a check from this address is under way
	nextAt   time.Time   // the total budget's turn of this address's next guess
}

// guardRefusal says why an attempt was refused and for how long.
type guardRefusal int

// Reasons the guard refuses an attempt.
const (
	guardAllowed    guardRefusal = iota
	guardLocked                  // too many failures from this address
	guardPaced                   // this address's next turn under the total budget is later
	guardConcurrent              // a check from this address is under way
)

func newLoginGuard(limit int, window time.Duration, burst int, interval time.Duration) *loginGuard {
	return &loginGuard{limit: limit, window: window, burst: burst, interval: interval,
		addrs: make(map[string]*guardEntry), sweepAt: minSweep}
}

// guardKey is the address the guard counts ip under: IPv4 as is, IPv6 by its /64.
func guardKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// begin starts a check from addr at now. Unless it returns guardAllowed (and then the caller
// must end the check with succeeded, failed or abandoned), it records nothing and says how
// long until addr may try again (0 for guardConcurrent: as soon as the other check ends).
func (g *loginGuard) begin(now time.Time, addr string) (guardRefusal, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.maybeSweep(now)
	e := g.addrs[addr]
	if e == nil {
		e = &guardEntry{}
		g.addrs[addr] = e
	}
	e.failures = g.recent(e.failures, now)
	switch {
	case e.busy:
		return guardConcurrent, 0
	case len(e.failures) >= g.limit:
		return guardLocked, e.failures[len(e.failures)-g.limit].Add(g.window).Sub(now)
	case e.nextAt.After(now):
		return guardPaced, e.nextAt.Sub(now)
	}
	e.busy = true
	return guardAllowed, 0
}

// succeeded ends addr's check with the right password: the address's failures are forgotten.
func (g *loginGuard) succeeded(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.addrs, addr)
}

// failed ends addr's check with a wrong password: the failure counts against the address and
// the total budget. It returns how long addr must wait before its next guess (0: none).
func (g *loginGuard) failed(now time.Time, addr string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.addrs[addr]
	if e == nil {
		e = &guardEntry{}
		g.addrs[addr] = e
	}
	e.busy = false
	e.failures = append(g.recent(e.failures, now), now)
	if len(e.failures) > g.limit {
		e.failures = e.failures[len(e.failures)-g.limit:]
	}
	// GCRA over all failures: each one moves tat an interval on; a guess is free while tat
	// is at most burst intervals ahead, and waits for its turn beyond that.
	g.tat = later(g.tat, now).Add(g.interval)
	e.nextAt = g.tat.Add(-time.Duration(g.burst) * g.interval)
	wait := e.nextAt.Sub(now)
	if len(e.failures) >= g.limit {
		wait = max(wait, e.failures[len(e.failures)-g.limit].Add(g.window).Sub(now))
	}
	return max(wait, 0)
}

// abandoned ends addr's check without a verdict (the store failed): nothing is counted.
func (g *loginGuard) abandoned(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e := g.addrs[addr]; e != nil {
		e.busy = false
	}
}

// recent drops the failures that left the window.
func (g *loginGuard) recent(failures []time.Time, now time.Time) []time.Time {
	cutoff := now.Add(-g.window)
	i := 0
	for i < len(failures) && !failures[i].After(cutoff) {
		i++
	}
	if i == 0 {
		return failures
	}
	return append(failures[:0], failures[i:]...)
}

// maybeSweep forgets idle addresses (no failure in the window, no wait, no check under way)
// once the map has doubled in size since the last sweep, so memory stays proportional to
// recent activity.
func (g *loginGuard) maybeSweep(now time.Time) {
	if len(g.addrs) < g.sweepAt {
		return
	}
	cutoff := now.Add(-g.window)
	for k, e := range g.addrs {
		idle := !e.busy && !e.nextAt.After(now) && (len(e.failures) == 0 || !e.failures[len(e.failures)-1].After(cutoff))
		if idle {
			delete(g.addrs, k)
		}
	}
	g.sweepAt = max(minSweep, 2*len(g.addrs))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
