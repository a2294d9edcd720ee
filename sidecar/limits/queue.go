package limits

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The wait queue lets a request that finds its key's concurrency full wait for a slot
// (policy queue_timeout) instead of getting a 429 at once, fairly in arrival order across
// every sidecar sharing Redis:
//
//   - admitScript does it all: a request that finds no free slot, or waiters ahead of it
//     that the free slots are for, takes a ticket in the key's KeyQueue ZSET scored by an
//     arrival number (KeyQueueSeq) and gets {-2, …} instead of a refusal. A newcomer counts
//     every waiter as ahead of it, so it cannot jump the queue; a request that finds a free
//     slot and an empty queue pays one ZCARD inside the same script: no extra round trip.
//   - wait polls that script with its ticket: it is admitted once its ticket is among the
//     first (max − in flight) waiters. Polls back off from pollMin to pollMax; a slot freed
//     on this sidecar (Lease.Finish) wakes its waiters of that key at once. Across sidecars
//     a freed slot is found by the next poll, at most pollMax later. Polling was chosen over
//     Pub/Sub: no subscription connection per sidecar, nothing to resubscribe after a
//     failover or a Cluster resharding, and the order is kept by the ticket ranks anyway.
//   - every poll moves the ticket's deadline (KeyQueueDeadlines) TicketTTL ahead; a dead
//     sidecar's tickets pass theirs and the next admission that finds the queue non-empty
//     sweeps them. A request whose client leaves, or whose queue_timeout passes, removes its
//     ticket at once (leave); the timeout answers the usual concurrency 429.
//
// Nothing is sent to the client while it waits.

// Queue timing.
const (
	defaultTicketTTL = 5 * time.Second
	pollMin          = 10 * time.Millisecond
	pollMax          = 200 * time.Millisecond
)

// queueState is a Limiter's waiting requests: counts for metrics and the wake-ups of local
// releases, per key.
type queueState struct {
	ticketTTL time.Duration
	waiting   atomic.Int64
	timeouts  atomic.Int64

	mu      sync.Mutex
	watches map[string]*watch
}

// watch is one key's wake-up: closed by the next release of a slot of that key on this
// sidecar; n counts the waiters holding it.
type watch struct {
	ch chan struct{}
	n  int
}

// watch returns the channel the next local release of keyID closes; call unwatch after.
func (q *queueState) watch(keyID string) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.watches == nil {
		q.watches = make(map[string]*watch)
	}
	w := q.watches[keyID]
	if w == nil {
		w = &watch{ch: make(chan struct{})}
		q.watches[keyID] = w
	}
	w.n++
	return w.ch
}

// unwatch gives back a channel from watch; the key's entry goes with its last waiter.
func (q *queueState) unwatch(keyID string, ch <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w := q.watches[keyID]; w != nil && w.ch == ch {
		if w.n--; w.n == 0 {
			delete(q.watches, keyID)
		}
	}
}

// wake tells this sidecar's waiters of keyID that a slot was released.
func (q *queueState) wake(keyID string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w := q.watches[keyID]; w != nil {
		close(w.ch)
		delete(q.watches, keyID)
	}
}

// pollEvery is the longest wait between two polls: a tenth of the ticket TTL at most, so a
// live waiter's ticket never expires.
func (q *queueState) pollEvery() time.Duration {
	return max(min(pollMax, q.ticketTTL/10), time.Millisecond)
}

// wait polls the admission of a queued request (queued is the script's {-2, arrival number,
// ahead, in flight}) until it is admitted, refused by another limit, its queue_timeout
// passes (a concurrency Refusal with Waited set) or ctx ends (ctx's error). It leaves the
// queue on every exit but admission, which the script already did.
func (l *Limiter) wait(ctx context.Context, lease *Lease, worst Usage, queued []int64) (*Lease, *Refusal, error) {
	start := time.Now()
	seq, ahead, inFlight := queued[1], queued[2], queued[3]
	l.queue.waiting.Add(1)
	defer l.queue.waiting.Add(-1)
	timeout := time.NewTimer(lease.set.QueueTimeout)
	defer timeout.Stop()
	backoff := pollMin
	poll := time.NewTimer(backoff)
	defer poll.Stop()
	for {
		wake := l.queue.watch(lease.keyID)
		select {
		case <-ctx.Done():
			l.queue.unwatch(lease.keyID, wake)
			l.leave(lease)
			return nil, nil, fmt.Errorf("wait in the queue of key %s: %w", lease.keyID, ctx.Err())
		case <-timeout.C:
			l.queue.unwatch(lease.keyID, wake)
			l.leave(lease)
			l.queue.timeouts.Add(1)
			return nil, &Refusal{Limit: ConcurrencyLimit, Max: int64(lease.set.Concurrency), Current: inFlight,
				RetryAfter: time.Second, Waited: time.Since(start), Queued: ahead}, nil
		case <-wake:
		case <-poll.C:
			backoff = min(backoff*2, l.queue.pollEvery())
		}
		l.queue.unwatch(lease.keyID, wake)
		res, resets, now, err := l.admitOnce(ctx, lease, worst, seq)
		if err != nil {
			// Also when ctx ended: a call dropped before it was sent has no onAbandon to
			// leave for it, and removing a ticket twice does nothing.
			l.leave(lease)
			return nil, nil, fmt.Errorf("wait in the queue of key %s: %w", lease.keyID, err)
		}
		switch {
		case len(res) == 0 || res[0] == -1:
			lease.waited = time.Since(start)
			l.admitted(lease)
			return lease, nil, nil
		case res[0] == -2 && len(res) >= 4:
			ahead, inFlight = res[2], res[3]
			poll.Reset(backoff)
			continue
		}
		// Refused by another limit (the script removed the ticket).
		r, err := refusal(lease.set, res, resets, now)
		if err != nil {
			return nil, nil, fmt.Errorf("wait in the queue of key %s: %w", lease.keyID, err)
		}
		r.Waited = time.Since(start)
		return nil, r, nil
	}
}

// leaveCall removes a lease's ticket from its key's queue.
func (ls *Lease) leaveCall() *scriptCall {
	k := ls.l.keys
	return &scriptCall{plain: [][]any{
		{"ZREM", k.KeyQueue(ls.keyID), ls.id},
		{"ZREM", k.KeyQueueDeadlines(ls.keyID), ls.id},
	}}
}

// leave removes the lease's ticket from the queue, whether or not its caller is still there
// (bounded to five seconds); when it cannot, the ticket expires after TicketTTL.
func (l *Limiter) leave(ls *Lease) {
	ctx, cancel := context.WithTimeout(l.base, 5*time.Second)
	defer cancel()
	cmd, err := l.run(ctx, ls.leaveCall())
	if err == nil {
		err = cmd.Err()
	}
	if err != nil {
		l.log.Warn("cannot leave a key's queue; the ticket expires by itself", "key", ls.keyID, "ttl", l.queue.ticketTTL, "error", err)
	}
}

// leaveDetached queues the removal of a ticket whose caller gave up while its admission was
// in flight (only the batcher's sender calls it, from onAbandon).
func (l *Limiter) leaveDetached(ls *Lease) {
	c := ls.leaveCall()
	c.what = "removal of an abandoned queue ticket"
	l.batch.detach(c)
}

// concurrencyMessage is a concurrency refusal as a person reads it.
func (r *Refusal) concurrencyMessage() string {
	switch {
	case r.QueueFull:
		return fmt.Sprintf("concurrency limit reached: %d of %d requests of this key are in flight and %d wait for a slot, as many as its queue holds (queue_max); retry when one finishes", r.Current, r.Max, r.Queued)
	case r.Waited > 0:
		return fmt.Sprintf("concurrency limit reached: %d of %d requests of this key are in flight; this request waited %s for a slot (queue_timeout) with %d ahead of it; retry when one finishes", r.Current, r.Max, r.Waited.Round(time.Millisecond), r.Queued)
	}
	return fmt.Sprintf("concurrency limit reached: %d of %d requests of this key are in flight; retry when one finishes", r.Current, r.Max)
}
