package configdist

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
)

// Publisher numbers a valid snapshot and makes it current in a SnapshotCache.
type Publisher interface {
	// Publish fills in env's Epoch and Version and sets it (with rt, its compiled form)
	// in the cache, unless its content (SHA256) is already current: then it reports false
	// and fills in the current snapshot's epoch and version.
	Publish(ctx context.Context, env *configapi.Envelope, rt *config.Runtime) (published bool, err error)
}

// LocalPublisher numbers snapshots in memory, for a process that reads its own HCL and
// shares it with no one (the standalone sidecar): a random epoch per process, versions
// from 1. The control plane numbers them in Redis instead (controlplane.StorePublisher).
type LocalPublisher struct {
	cache *SnapshotCache
	epoch string

	mu      sync.Mutex
	version int64
}

// NewLocalPublisher returns a publisher into cache with a fresh epoch.
func NewLocalPublisher(cache *SnapshotCache) *LocalPublisher {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return &LocalPublisher{cache: cache, epoch: hex.EncodeToString(b)}
}

// Publish implements Publisher.
func (p *LocalPublisher) Publish(_ context.Context, env *configapi.Envelope, rt *config.Runtime) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := p.cache.Current(); cur != nil && cur.SHA256 == env.SHA256 {
		env.Epoch, env.Version = cur.Epoch, cur.Version
		return false, nil
	}
	p.version++
	env.Epoch, env.Version = p.epoch, p.version
	p.cache.Set(env, rt)
	return true, nil
}

var _ Publisher = (*LocalPublisher)(nil)
