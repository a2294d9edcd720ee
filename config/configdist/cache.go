package configdist

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
)

// ErrShuttingDown is returned by Poll once the cache is closed (the process is stopping); a
// sidecar should retry later (with backoff), possibly against another control plane.
var ErrShuttingDown = errors.New("control plane is shutting down")

// SnapshotCache holds the current snapshot with its compiled runtime and answers long-polls
// for it. It does not care who produces snapshots: a Source through a Publisher, or a
// control plane following what another one published. It is safe for concurrent use.
type SnapshotCache struct {
	cur atomic.Pointer[cached]

	mu    sync.Mutex
	notif chan struct{} // closed and replaced when cur changes

	stopping chan struct{}
	stopOnce sync.Once
}

// cached is one snapshot and its runtime, swapped in together.
type cached struct {
	env *configapi.Envelope
	rt  *config.Runtime
}

// NewSnapshotCache returns an empty cache.
func NewSnapshotCache() *SnapshotCache {
	return &SnapshotCache{notif: make(chan struct{}), stopping: make(chan struct{})}
}

// Current returns the snapshot being served; nil before the first one.
func (c *SnapshotCache) Current() *configapi.Envelope {
	if e := c.cur.Load(); e != nil {
		return e.env
	}
	return nil
}

// Runtime returns the current snapshot compiled; nil before the first one, or when a
// snapshot adopted from elsewhere does not compile here.
func (c *SnapshotCache) Runtime() *config.Runtime {
	if e := c.cur.Load(); e != nil {
		return e.rt
	}
	return nil
}

// Set makes env (compiled as rt) current if it is newer than what is served (see
// configapi.Envelope.Newer), and wakes the held polls. It reports whether it did.
func (c *SnapshotCache) Set(env *configapi.Envelope, rt *config.Runtime) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.cur.Load(); old != nil && !env.Newer(old.env.Epoch, old.env.Version) {
		return false
	}
	c.cur.Store(&cached{env: env, rt: rt})
	close(c.notif)
	c.notif = make(chan struct{})
	return true
}

// Adopt compiles env and sets it, unless it is not newer than what is served (then it does
// not compile it). A snapshot that does not compile is still adopted (it is what the
// fleet is being served), with no runtime, and the error says why.
func (c *SnapshotCache) Adopt(env *configapi.Envelope) (bool, error) {
	if old := c.Current(); old != nil && !env.Newer(old.Epoch, old.Version) {
		return false, nil
	}
	snap, err := env.Snapshot()
	var rt *config.Runtime
	if err == nil {
		rt, err = config.Compile(snap)
	}
	if err != nil {
		err = fmt.Errorf("snapshot %s/%d does not compile here: %w", env.Epoch, env.Version, err)
	}
	return c.Set(env, rt), err
}

// changed returns a channel closed when the current snapshot next changes.
func (c *SnapshotCache) changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notif
}

// Close releases the held polls with ErrShuttingDown, and makes later ones return it
// instead of waiting, so a stopping process does not wait for them.
func (c *SnapshotCache) Close() { c.stopOnce.Do(func() { close(c.stopping) }) }

// Poll serves one long-poll: it returns at once a snapshot the sidecar does not run yet (a
// newer version, or any version of another epoch), or waits for one until req.Wait (plus
// up to a tenth of it as jitter, so a fleet does not reconnect in step) or ctx ends, and
// then returns nil. A snapshot the sidecar refused (req's NACK) is not sent to it again.
// Once the cache is closed it returns ErrShuttingDown instead of waiting.
func (c *SnapshotCache) Poll(ctx context.Context, req configapi.PollRequest) (*configapi.Envelope, error) {
	var timeout <-chan time.Time
	if req.Wait > 0 {
		jitter := time.Duration(rand.Int64N(int64(req.Wait)/10 + 1))
		t := time.NewTimer(req.Wait + jitter)
		defer t.Stop()
		timeout = t.C
	}
	for {
		changed := c.changed()
		if cur := c.Current(); cur != nil && cur.Newer(req.Epoch, req.Version) &&
			!(cur.Epoch == req.NackEpoch && cur.Version == req.NackVersion) {
			return cur, nil
		}
		if timeout == nil {
			return nil, nil
		}
		select {
		case <-changed:
		case <-timeout:
			return nil, nil
		case <-ctx.Done():
			return nil, nil
		case <-c.stopping:
			return nil, ErrShuttingDown
		}
	}
}
