package controlplane

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/config/configdist"
	"github.com/claude-relay/claude-relay/store"
)

// StorePublisher numbers snapshots in Redis, so that versions strictly increase across
// restarts and agree between the control planes sharing the store, and keeps a
// SnapshotCache in step with what any of them published (Follow, Run).
type StorePublisher struct {
	st      *store.Store
	cache   *configdist.SnapshotCache
	log     hclog.Logger
	recheck time.Duration
}

// NewStorePublisher returns a publisher into cache through st; Run re-reads the store every
// recheck as a safety net besides the announcements.
func NewStorePublisher(st *store.Store, cache *configdist.SnapshotCache, log hclog.Logger, recheck time.Duration) *StorePublisher {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &StorePublisher{st: st, cache: cache, log: log.Named("config"), recheck: recheck}
}

// Publish implements configdist.Publisher: it stores env as the current snapshot unless its
// hash already is, fills in its epoch and version, sets it in the cache and announces it to
// the other control planes.
func (p *StorePublisher) Publish(ctx context.Context, env *configapi.Envelope, rt *config.Runtime) (bool, error) {
	sc := &store.StoredConfig{SHA256: env.SHA256, Config: env.Config, CreatedAt: env.CreatedAt}
	published, err := p.st.PublishConfig(ctx, sc)
	if err != nil {
		return false, err
	}
	env.Epoch, env.Version = sc.Epoch, sc.Version
	if !published {
		// Same content as the stored current: serve that (its created_at), adopting it if
		// another control plane published it and this one has not caught up. Same content,
		// same runtime: rt is reused rather than compiled again.
		if cur := p.cache.Current(); cur == nil || cur.Epoch != env.Epoch || cur.Version != env.Version {
			if stored, err := p.current(ctx); err == nil && stored != nil && stored.SHA256 == env.SHA256 {
				p.cache.Set(stored, rt)
			} else if err == nil && stored != nil {
				_, _ = p.cache.Adopt(stored) // replaced since the script ran
			}
		}
		return false, nil
	}
	p.cache.Set(env, rt)
	if err := p.st.AnnounceConfig(ctx, env.Version); err != nil {
		p.log.Warn("cannot announce the new version to other control planes; they will see it at their next re-check", "error", err)
	}
	return true, nil
}

// current reads the store's current snapshot as an envelope; nil when there is none.
func (p *StorePublisher) current(ctx context.Context) (*configapi.Envelope, error) {
	sc, err := p.st.CurrentConfig(ctx)
	if err != nil || sc == nil {
		return nil, err
	}
	e := &configapi.Envelope{Epoch: sc.Epoch, Version: sc.Version, SHA256: sc.SHA256, CreatedAt: sc.CreatedAt, Config: sc.Config}
	if configapi.Hash(e.Config) != e.SHA256 {
		return nil, fmt.Errorf("current configuration %s/%d in Redis does not match its sha256", e.Epoch, e.Version)
	}
	return e, nil
}

// Follow adopts what the store holds as current, if newer than what the cache serves.
func (p *StorePublisher) Follow(ctx context.Context) error {
	e, err := p.current(ctx)
	if err != nil || e == nil {
		return err
	}
	adopted, err := p.cache.Adopt(e)
	if adopted {
		p.log.Info("configuration adopted from the store", "epoch", e.Epoch, "version", e.Version)
	}
	if err != nil {
		p.log.Warn("the adopted configuration does not compile in this control plane; the admin API trusts no proxy until it does", "error", err)
	}
	return nil
}

// Run follows the other control planes until ctx ends: their announcements, and a periodic
// re-read of the store as a safety net.
func (p *StorePublisher) Run(ctx context.Context) {
	sub := p.st.SubscribeConfig(ctx)
	defer sub.Close()
	announce := sub.Channel()
	recheck := time.NewTicker(p.recheck)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-recheck.C:
			if err := p.Follow(ctx); err != nil {
				p.log.Warn("cannot re-read the current configuration from the store", "error", err)
			}
		case _, ok := <-announce:
			if !ok {
				announce = nil
				continue
			}
			if err := p.Follow(ctx); err != nil {
				p.log.Warn("cannot read the configuration another control plane published", "error", err)
			}
		}
	}
}

var _ configdist.Publisher = (*StorePublisher)(nil)
