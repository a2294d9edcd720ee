package limits

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"
)

// errClosed is returned by calls made after the Limiter was closed or its context ended.
var errClosed = errors.New("limiter closed")

// batchTimeout bounds one pipeline (and its NOSCRIPT fallbacks): with Redis down every
// queued call gets an error, never a hang.
const batchTimeout = 5 * time.Second

// Call states: a waiting call is either delivered to its caller or abandoned by it, once.
const (
	callWaiting int32 = iota
	callAbandoned
	callDelivered
)

// scriptCall is one script run, or a short list of plain commands, queued by a request.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	// plain, when script is nil, are commands sent as they are, each an argument list
	// ("INCRBY", key, n). They cost Redis far less than a script; use them where the
	// commands need no atomic check. cmds are their replies, set before the call is
	// delivered; windowed are the charged counters among them (Lease.chargeCall).
	plain    [][]any
	cmds     []*redis.Cmd
	windowed []chargedCounter

	state atomic.Int32
	cmd   *redis.Cmd    // the result, set before done is closed
	done  chan struct{} // nil for a detached call nobody waits for
	// onAbandon, when set, is run by the batcher with the result of a call whose caller
	// gave up while it was in flight (it may have taken a concurrency slot).
	onAbandon func(cmd *redis.Cmd)
	// what names a detached call in logs
	what string
}

// batcher auto-pipelines script calls: whenever calls are queued and no pipeline is in
// flight, it sends everything queued as one pipeline; calls that arrive meanwhile go
// together in the next. A single caller is sent at once. Its goroutine stays while calls
// keep coming (so it is not started, and its stack not grown, for every burst) and ends
// after senderIdle without work, so an idle Limiter owns no goroutine.
type batcher struct {
	rdb  redis.UniversalClient
	log  hclog.Logger
	base context.Context // ends every pipeline and refuses new calls when done

	mu      sync.Mutex
	queue   []*scriptCall
	spare   []*scriptCall // the previous batch's slice, reused
	running bool
	closed  bool
	wake    chan struct{} // capacity 1: work arrived (or close) while the sender waits
	wg      sync.WaitGroup
	// pipelines counts pipelines sent and calls the calls in them (for tests and metrics).
	pipelines atomic.Int64
	calls     atomic.Int64
	// slow pipelines since the last warning, and when that was (unix ns)
	slowCount  atomic.Int64
	slowLogged atomic.Int64
}

func newBatcher(ctx context.Context, rdb redis.UniversalClient, log hclog.Logger) *batcher {
	return &batcher{rdb: rdb, log: log, base: ctx, wake: make(chan struct{}, 1)}
}

// enqueue queues c and starts the sender when none runs. It reports false when the batcher
// is closed.
func (b *batcher) enqueue(c *scriptCall) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.base.Err() != nil {
		return false
	}
	b.queue = append(b.queue, c)
	if !b.running {
		b.running = true
		b.wg.Add(1)
		go b.run()
	} else {
		b.signal()
	}
	return true
}

// signal wakes a waiting sender; a signal already pending is enough.
func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// senderIdle is how long the sender waits for new calls before its goroutine ends.
const senderIdle = 2 * time.Second

// do runs script with keys and args in the next pipeline and returns its result. When ctx
// ends first, do returns ctx's error at once; the call is then dropped if not yet sent,
// else its result goes to c.onAbandon.
func (b *batcher) do(ctx context.Context, c *scriptCall) (*redis.Cmd, error) {
	c.done = make(chan struct{})
	if !b.enqueue(c) {
		return nil, errClosed
	}
	select {
	case <-c.done:
		return c.cmd, nil
	case <-ctx.Done():
		if c.state.CompareAndSwap(callWaiting, callAbandoned) {
			return nil, ctx.Err()
		}
		<-c.done // delivered just now: the result is ours
		return c.cmd, nil
	}
}

// detach queues c with nobody waiting, for the next batch; failures are logged. Only the
// sender calls it (from onAbandon), so it queues even while closing: close waits for it.
func (b *batcher) detach(c *scriptCall) {
	b.mu.Lock()
	b.queue = append(b.queue, c)
	b.mu.Unlock()
}

// run sends batches until the queue is empty. Consecutive pipelines share one deadline
// context for up to a second, so a busy sender does not arm a timer per pipeline; each
// pipeline still gets between batchTimeout-1s and batchTimeout.
func (b *batcher) run() {
	defer b.wg.Done()
	var d deadline
	defer d.release()
	idle := time.NewTimer(senderIdle)
	defer idle.Stop()
	for {
		b.mu.Lock()
		batch := b.queue
		if len(batch) == 0 {
			if b.closed || b.base.Err() != nil {
				b.running = false
				b.mu.Unlock()
				return
			}
			b.mu.Unlock()
			idle.Reset(senderIdle)
			select {
			case <-b.wake:
				continue
			case <-b.base.Done():
				continue // sends what is queued, then ends
			case <-idle.C:
			}
			// Decided under the lock enqueue takes: a call queued from now on starts a new
			// sender.
			b.mu.Lock()
			if len(b.queue) == 0 {
				b.running = false
				b.mu.Unlock()
				return
			}
			b.mu.Unlock()
			continue
		}
		b.queue = b.spare[:0]
		b.mu.Unlock()
		b.send(d.get(b.base), batch)
		clear(batch)
		b.mu.Lock()
		b.spare = batch
		b.mu.Unlock()
	}
}

// deadline hands out a context ending batchTimeout after it was made, made again once it is
// a second old.
type deadline struct {
	ctx     context.Context
	cancel  context.CancelFunc
	created time.Time
}

func (d *deadline) get(base context.Context) context.Context {
	if now := time.Now(); d.ctx == nil || now.Sub(d.created) > time.Second {
		d.release()
		d.ctx, d.cancel = context.WithTimeout(base, batchTimeout)
		d.created = now
	}
	return d.ctx
}

func (d *deadline) release() {
	if d.cancel != nil {
		d.cancel()
	}
}

// send runs one batch as one pipeline and delivers each result; a call that meets NOSCRIPT
// is run again alone with Script.Run (EVALSHA, then EVAL).
func (b *batcher) send(ctx context.Context, batch []*scriptCall) {
	pipe := b.rdb.Pipeline()
	sent := make([]*scriptCall, 0, len(batch))
	cmds := make([][]*redis.Cmd, 0, len(batch))
	for _, c := range batch {
		if c.state.Load() == callAbandoned {
			continue // the caller is gone and nothing ran: drop it
		}
		sent = append(sent, c)
		cmds = append(cmds, queue(ctx, pipe, c))
	}
	if len(sent) == 0 {
		return
	}
	b.pipelines.Add(1)
	b.calls.Add(int64(len(sent)))
	start := time.Now()
	// Errors are per command. Exec reports the first; a nil reply is an answer, and its
	// time counts.
	_, err := pipe.Exec(ctx)
	if took := time.Since(start); took >= slowPipeline && (err == nil || errors.Is(err, redis.Nil)) {
		b.slow(took, len(sent))
	}
	for i, c := range sent {
		if c.script == nil {
			c.cmds = cmds[i]
		}
		b.deliver(c, result(ctx, b.rdb, c, cmds[i]))
	}
}

// slowPipeline is how long a limit pipeline may take before the relay says Redis is slow:
// every request waits for one, so this is latency its clients feel.
const slowPipeline = 100 * time.Millisecond

// slow logs a slow pipeline, at most once per slowLogEvery, with how many were slow since.
func (b *batcher) slow(took time.Duration, calls int) {
	n := b.slowCount.Add(1)
	now := time.Now().UnixNano()
	last := b.slowLogged.Load()
	if now-last < int64(slowLogEvery) || !b.slowLogged.CompareAndSwap(last, now) {
		return
	}
	b.slowCount.Add(-n)
	b.log.Warn("slow Redis: a limit pipeline took longer than it should; every request waits for one (check Redis latency, CPU and persistence)",
		"took", took.Round(time.Millisecond), "calls", calls, "slow_pipelines", n, "threshold", slowPipeline)
}

// slowLogEvery bounds the slow-Redis warnings to one per interval.
const slowLogEvery = 10 * time.Second

// queue adds c's commands to pipe.
func queue(ctx context.Context, pipe redis.Pipeliner, c *scriptCall) []*redis.Cmd {
	if c.script != nil {
		return []*redis.Cmd{pipe.EvalSha(ctx, c.script.Hash(), c.keys, c.args...)}
	}
	out := make([]*redis.Cmd, len(c.plain))
	for i, args := range c.plain {
		out[i] = pipe.Do(ctx, args...)
	}
	return out
}

// result is the outcome of c once its commands ran: the script's reply (run again alone
// after NOSCRIPT), or for plain commands the first that failed, else the last (a nil reply
// is no failure). Plain calls end with a command whose reply is never nil.
func result(ctx context.Context, rdb redis.UniversalClient, c *scriptCall, cmds []*redis.Cmd) *redis.Cmd {
	if c.script != nil {
		if redis.HasErrorPrefix(cmds[0].Err(), "NOSCRIPT") {
			return c.script.Run(ctx, rdb, c.keys, c.args...)
		}
		return cmds[0]
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return cmd
		}
	}
	return cmds[len(cmds)-1]
}

func (b *batcher) deliver(c *scriptCall, cmd *redis.Cmd) {
	c.cmd = cmd
	if c.state.CompareAndSwap(callWaiting, callDelivered) {
		if c.done != nil {
			close(c.done)
		} else if err := cmd.Err(); err != nil {
			b.log.Warn("cannot run "+c.what, "keys", c.keys, "error", err)
		}
		return
	}
	if c.onAbandon != nil {
		c.onAbandon(cmd)
	}
}

// close refuses new calls and waits until every queued call has been sent.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.signal()
	b.wg.Wait()
}
