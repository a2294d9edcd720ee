package limits

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// renewChunk is how many lease renewals go in one pipeline.
const renewChunk = 512

// renewer keeps the concurrency leases and reservations of running requests alive: every third of the lease
// TTL it renews all of them in pipelines, from one goroutine that runs only while leases are
// live. A request therefore costs no goroutine or timer of its own, and ten thousand open
// streams cost one pipeline burst per period instead of ten thousand tickers.
type renewer struct {
	mu      sync.Mutex
	live    map[*Lease]struct{}
	running bool
	closed  bool
	stop    chan struct{} // closed by close
	wg      sync.WaitGroup
}

// add registers a lease admitted just now and starts the renewing goroutine if none runs.
func (r *renewer) add(l *Limiter, ls *Lease) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if r.live == nil {
		r.live = make(map[*Lease]struct{})
		r.stop = make(chan struct{})
	}
	r.live[ls] = struct{}{}
	if !r.running {
		r.running = true
		r.wg.Add(1)
		go r.run(l)
	}
}

// remove forgets a lease; a renewal already in flight for it finds it released and does
// nothing (the renew script checks that the lease is still there).
func (r *renewer) remove(ls *Lease) {
	r.mu.Lock()
	delete(r.live, ls)
	r.mu.Unlock()
}

// close stops renewing and waits for the goroutine.
func (r *renewer) close() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		if r.stop != nil {
			close(r.stop)
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// run renews every live lease each period; it returns when none is left at a tick, when the
// renewer is closed, or when the Limiter's context ends.
func (r *renewer) run(l *Limiter) {
	defer r.wg.Done()
	quit := func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}
	period := l.leaseTTL / 3
	t := time.NewTicker(period)
	defer t.Stop()
	var batch []*Lease
	for {
		select {
		case <-r.stop:
			quit()
			return
		case <-l.base.Done():
			quit()
			return
		case <-t.C:
		}
		r.mu.Lock()
		if len(r.live) == 0 {
			// Decided under the lock that add takes, so a lease added from now on starts a
			// new goroutine.
			r.running = false
			r.mu.Unlock()
			return
		}
		batch = batch[:0]
		for ls := range r.live {
			batch = append(batch, ls)
		}
		r.mu.Unlock()
		for i := 0; i < len(batch); i += renewChunk {
			l.renewLeases(batch[i:min(i+renewChunk, len(batch))], period)
		}
		clear(batch)
	}
}

// renewLeases moves the expiry of leases forward in one pipeline, bounded by timeout. It
// uses its own pipeline, not the request path's batcher, so a burst of renewals never
// delays an admission.
func (l *Limiter) renewLeases(leases []*Lease, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(l.base, timeout)
	defer cancel()
	exp := l.now().Add(l.leaseTTL).UnixMilli()
	ttl := l.leaseTTL.Milliseconds()
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(leases))
	for i, ls := range leases {
		cmds[i] = pipe.EvalSha(ctx, renewScript.Hash(), ls.leaseKeys(), ls.concID(), ls.res, exp, ttl)
	}
	_, _ = pipe.Exec(ctx) // errors are per command
	failed := 0
	var lastErr error
	for i, cmd := range cmds {
		err := cmd.Err()
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			ls := leases[i]
			err = renewScript.Run(ctx, l.rdb, ls.leaseKeys(), ls.concID(), ls.res, exp, ttl).Err()
		}
		if err != nil {
			failed++
			lastErr = err
		}
	}
	if failed > 0 {
		l.log.Warn("cannot renew concurrency leases; they expire unless a later renewal lands", "failed", failed, "of", len(leases), "error", lastErr)
	}
}
