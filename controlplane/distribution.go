package controlplane

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configdist"
	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/store"
)

// DistributionOptions configures a Distribution.
type DistributionOptions struct {
	// Dir is the directory of *.hcl files to watch; "" serves the embedded default.
	Dir string
	// Store numbers the versions and holds the current snapshot and the sidecar registry.
	// Required.
	Store *store.Store
	// Logger receives reloads and their diagnostics; nil means no logging.
	Logger hclog.Logger
	// Metrics gets claude_relay_config_reloads_total{result} and
	// claude_relay_config_version; nil means a private registry.
	Metrics *metrics.Registry
	// SidecarSecrets verify sidecar tokens: the current JWT secret first, then any previous
	// one still accepted during a rotation.
	SidecarSecrets [][]byte
	// Debounce is how long the directory must stay quiet before a reload (default 100ms).
	Debounce time.Duration
	// Recheck is the period of the safety-net re-read of the directory and of Redis
	// (default 10s).
	Recheck time.Duration
	// Loader reads the HCL; the zero value reads the environment with os.LookupEnv.
	Loader config.Loader
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnReload, when set, hears every reload's outcome (configdist.SourceOptions.OnReload).
	OnReload func(ctx context.Context, refused bool, diagnostics string)
}

// Distribution is the control plane's configuration distribution, assembled from parts with
// one job each: the Source reads the HCL directory and publishes through the Publisher
// (versions numbered in Redis) into the Cache, which the Server serves to sidecars while
// the Registry records what they report. It holds no logic of its own beyond Run.
type Distribution struct {
	Source    *configdist.Source
	Cache     *configdist.SnapshotCache
	Publisher *StorePublisher
	Registry  *SidecarRegistry
	Server    *ConfigServer
}

// NewDistribution adopts the current snapshot from Redis (what this or another control
// plane published before), then reads the directory once. A broken directory is an error
// only when Redis has no snapshot to keep serving either.
func NewDistribution(ctx context.Context, opts DistributionOptions) (*Distribution, error) {
	if opts.Store == nil {
		return nil, errors.New("config: a store is required")
	}
	if opts.Recheck <= 0 {
		opts.Recheck = configdist.DefaultRecheck
	}
	cache := configdist.NewSnapshotCache()
	pub := NewStorePublisher(opts.Store, cache, opts.Logger, opts.Recheck)
	if err := pub.Follow(ctx); err != nil {
		return nil, err
	}
	src, err := configdist.NewSource(ctx, configdist.SourceOptions{
		Dir: opts.Dir, Publisher: pub, Cache: cache, Logger: opts.Logger, Metrics: opts.Metrics,
		Debounce: opts.Debounce, Recheck: opts.Recheck, Loader: opts.Loader, Now: opts.Now, OnReload: opts.OnReload,
	})
	if err != nil {
		return nil, err
	}
	reg := NewSidecarRegistry(opts.Store, opts.Now, opts.Logger)
	return &Distribution{
		Source:    src,
		Cache:     cache,
		Publisher: pub,
		Registry:  reg,
		Server:    NewConfigServer(cache, reg, opts.SidecarSecrets, opts.Now, opts.Logger),
	}, nil
}

// Run watches the directory and follows the other control planes until ctx ends; then it
// releases the held long-polls, so a shutting-down control plane does not wait for them.
func (d *Distribution) Run(ctx context.Context) {
	defer d.Cache.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.Publisher.Run(ctx) }()
	d.Source.Run(ctx)
	wg.Wait()
}
