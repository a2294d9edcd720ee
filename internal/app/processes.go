package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/internal/devredis"
	"github.com/claude-relay/claude-relay/internal/health"
	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/sidecar"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/sidecar/sched"
	"github.com/claude-relay/claude-relay/store"
)

// Options are what the command line passes to a process mode.
type Options struct {
	Listen    string // override HOST:PORT
	ConfigDir string // override CLAUDE_RELAY_CONFIG_DIR
	DataDir   string // override CLAUDE_RELAY_DATA_DIR
	Stdout    io.Writer
	Stderr    io.Writer
	Ready     func(addr net.Addr) // called once listening (tests)
	Grace     time.Duration       // shutdown grace for streams; default 30s

	// ControlURL (sidecar) overrides CLAUDE_RELAY_CONTROL_URL: take the configuration from
	// this control plane instead of local HCL.
	ControlURL string
	// PluginDir overrides CLAUDE_RELAY_PLUGIN_DIR: where the provider plugin binaries are.
	PluginDir string
}

func (o *Options) defaults(env *config.Env) {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Listen == "" {
		o.Listen = net.JoinHostPort(env.Host, strconv.Itoa(env.Port))
	}
	if o.ConfigDir == "" {
		o.ConfigDir = env.ConfigDir
	}
	if o.DataDir == "" {
		o.DataDir = env.DataDir
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	if o.PluginDir != "" {
		env.PluginDir = o.PluginDir
	}
}

// newBase prepares what every process mode shares: the secrets are checked, logging and
// metrics set up, Redis connected and the store opened over the crypto provider. Without a
// configured Redis, inMemory (dev mode) starts the in-memory Redis-protocol store instead
// of connecting to the default address; storeLabel says which store it is.
func newBase(ctx context.Context, env *config.Env, opts *Options, inMemory bool) (b *Base, storeLabel string, err error) {
	if err := env.CheckSecrets(); err != nil {
		return nil, "", err
	}
	log, files, err := newLogger(env, opts.Stderr)
	if err != nil {
		return nil, "", err
	}
	b = &Base{Env: env, Log: log, Files: files, Metrics: metrics.NewRegistry()}
	metrics.RegisterProcess(b.Metrics)
	if files != nil {
		b.closers = append(b.closers, files.Close)
	}
	var rdb redis.UniversalClient
	if inMemory && !env.RedisConfigured() {
		mem, err := devredis.Start(ctx)
		if err != nil {
			b.Close()
			return nil, "", err
		}
		b.closers = append(b.closers, mem.Close)
		log.Warn(devredis.Banner)
		rdb, storeLabel = mem.Client(), "IN-MEMORY (lost on exit; set REDIS_URL or REDIS_HOST for a real Redis)"
	} else {
		rc := redisConfig(env)
		c, err := store.Connect(ctx, rc)
		if err != nil {
			b.Close()
			return nil, "", err
		}
		b.closers = append(b.closers, c.Close)
		registerRedisPool(b.Metrics, c, rc.PoolSize)
		rdb, storeLabel = c, "Redis at "+env.RedisAddr()
	}
	if err := b.openStore(ctx, rdb); err != nil {
		b.Close()
		return nil, "", err
	}
	return b, storeLabel, nil
}

// healthChecks are the components behind GET /health.
func (b *Base) healthChecks() []health.Check {
	return append([]health.Check{
		{Name: "redis", Check: func(ctx context.Context) error { return b.Redis.Ping(ctx).Err() }},
		{Name: "logger", Check: func(context.Context) error {
			if b.Files == nil {
				return nil
			}
			return b.Files.Check()
		}},
	}, b.pluginHealth...)
}

// dataPlane is a sidecar with its background workers.
type dataPlane struct {
	srv      *sidecar.Server
	auth     *sidecar.CachedAuth
	accounts *sidecar.StoreAccounts
	recorder *sidecar.Recorder
	sched    *sched.Scheduler
	// load receives the sidecar's requests in flight and streams (the store: Redis).
	load sidecar.LoadSink
}

func (b *Base) newDataPlane(dataDir, id string, extraHealth ...health.Check) (*dataPlane, error) {
	spool, err := dataPath(dataDir, "usage-spool.jsonl")
	if err != nil {
		return nil, err
	}
	// The auth provider's start is bounded by the plugin host's own start timeout.
	auth, err := b.startAuth(context.Background())
	if err != nil {
		return nil, err
	}
	accounts := sidecar.NewStoreAccounts(b.Store, b.Log, time.Second)
	// Closed before Redis (closers run in reverse): the renewer stops and calls already
	// queued are sent.
	lim := limits.New(b.Store.Client(), b.Store.Schema(), limits.Options{Logger: b.Log})
	b.closers = append(b.closers, func() error { lim.Close(); return nil })
	dp := &dataPlane{
		auth:     sidecar.NewCachedAuth(auth, b.Store, b.Log, authCacheTTL, authNegativeTTL),
		accounts: accounts,
		recorder: sidecar.NewRecorder(b.Store, sidecar.RecorderOptions{Logger: b.Log, Metrics: b.Metrics, SpoolPath: spool}),
		// A 401 on an OAuth account asks the control plane for one refresh and waits
		// briefly for the new token before the account is parked as unauthorized.
		sched: sched.New(b.Store.Client(), b.Store.Schema(), sched.Options{Logger: b.Log, Refresher: accounts.Refresher(5 * time.Second)}),
		load:  b.Store,
	}
	dp.srv = sidecar.New(sidecar.Options{
		Logger:         b.Log,
		Version:        Version,
		Auth:           dp.auth,
		Accounts:       dp.accounts,
		Usage:          dp.recorder,
		Metrics:        b.Metrics,
		RequestTimeout: b.Env.RequestTimeout,
		Health:         append(b.healthChecks(), extraHealth...),
		Limits:         lim,
		Scheduler:      dp.sched,
		Retention:      b.Store,
		Keys:           b.Store,
		SidecarID:      id,
	})
	return dp, nil
}

// run starts the workers; the returned wait blocks until they have stopped (the
// recorder flushes after ctx ends, so it outlives the HTTP server's drain).
func (dp *dataPlane) run(ctx, recorderCtx context.Context) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(5)
	go func() { defer wg.Done(); dp.auth.Run(ctx) }()
	go func() { defer wg.Done(); dp.srv.ReportLoad(ctx, dp.load, sidecar.DefaultLoadEvery) }()
	go func() { defer wg.Done(); dp.sched.Run(ctx) }()
	go func() { defer wg.Done(); dp.accounts.Run(ctx) }()
	go func() { defer wg.Done(); dp.recorder.Run(recorderCtx, 10*time.Second) }()
	return wg.Wait
}

// RunSidecar runs the data plane until ctx ends: following the control plane at
// -control-plane or CLAUDE_RELAY_CONTROL_URL, else reading its own HCL.
func RunSidecar(ctx context.Context, env *config.Env, opts Options) error {
	opts.defaults(env)
	b, _, err := newBase(ctx, env, &opts, false)
	if err != nil {
		return err
	}
	defer b.Close()
	var f feed
	if url := opts.controlURL(env); url != "" {
		f, err = remoteFeed(b, url, opts.DataDir)
	} else {
		f, err = localFeed(ctx, b, opts.ConfigDir)
	}
	if err != nil {
		return err
	}
	dp, err := b.startSidecar(ctx, opts, f)
	if err != nil {
		return err
	}
	return runDataPlane(ctx, b, dp, opts, dp.srv, f.hup)
}

// runDataPlane serves h until ctx ends, with the data plane's workers and hup on SIGHUP.
func runDataPlane(ctx context.Context, b *Base, dp *dataPlane, opts Options, h http.Handler, hup func(context.Context)) error {
	workers, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	recCtx, stopRecorder := context.WithCancel(context.WithoutCancel(ctx))
	wait := dp.run(workers, recCtx)
	go onHUP(ctx, hup)
	b.Log.Info("sidecar listening", "addr", opts.Listen, "version", Version, "max_connections", b.Env.MaxConnections)
	err := serve(ctx, b.Log, b.Metrics, opts.Listen, b.connLimits(b.Env.MaxConnections), h, opts.Grace, opts.Ready)
	// Streams have drained (or the grace ran out): flush usage, then stop.
	stopRecorder()
	stopWorkers()
	wait()
	return err
}

// RunControl runs the control plane's admin API until ctx ends.
func RunControl(ctx context.Context, env *config.Env, opts Options) error {
	if opts.Listen == "" {
		opts.Listen = env.ControlAddr
	}
	opts.defaults(env)
	b, _, err := newBase(ctx, env, &opts, false)
	if err != nil {
		return err
	}
	defer b.Close()
	dist, err := newDistribution(ctx, b, opts.ConfigDir)
	if err != nil {
		return err
	}
	go dist.Run(ctx)
	go onHUP(ctx, reloadForHUP(b, dist.Source))
	started := time.Now()
	details := func(ctx context.Context) configapi.Health {
		return health.Report(ctx, Version, started, b.healthChecks())
	}
	mux, cp, err := b.startControlPlane(ctx, opts, dist, details, adminBootstrap(env, opts.Stdout))
	if err != nil {
		return err
	}
	mux.Handle("GET "+sidecar.KeyUsagePath, cp.KeyUsageHandler())
	mux.Handle("GET /metrics", b.Metrics.Handler())
	mux.Handle("GET /health", health.Handler(Version, started, b.healthChecks()))
	b.Log.Info("control plane listening", "addr", opts.Listen, "version", Version, "max_connections", env.ControlMaxConnections)
	return serve(ctx, b.Log, b.Metrics, opts.Listen, b.connLimits(env.ControlMaxConnections), mux, opts.Grace, opts.Ready)
}

// startControlPlane starts the admin API over dist (its alerts, its OAuth token refresh,
// the admin bootstrap) and returns the mux that control plane and dev mode share: the admin
// API, the web console and the sidecars' long-poll. own reports this process's health.
func (b *Base) startControlPlane(ctx context.Context, opts Options, dist *controlplane.Distribution, own func(context.Context) configapi.Health, admin controlplane.AdminBootstrap) (*http.ServeMux, *controlplane.Server, error) {
	key, err := b.adminSigningKey(opts.DataDir)
	if err != nil {
		return nil, nil, err
	}
	alerter, err := startAlerts(ctx, b, dist, own)
	if err != nil {
		return nil, nil, err
	}
	cp, err := controlplane.New(controlplane.Options{Store: b.Store, SigningKey: key, Admin: admin, Logger: b.Log, Config: dist, Alerts: alerter, OAuth: oauthConfig(b.Env), Health: own})
	if err != nil {
		return nil, nil, err
	}
	if err := cp.Bootstrap(ctx); err != nil {
		return nil, nil, fmt.Errorf("create admin: %w", err)
	}
	go cp.RefreshTokens(ctx) // OAuth token refresh
	mux := http.NewServeMux()
	mux.Handle("/admin/", cp.Handler())
	if err := mountConsole(mux, cp, b.Log); err != nil {
		return nil, nil, err
	}
	mux.Handle(configapi.Path, dist.Server.Handler())
	return mux, cp, nil
}

// oauthConfig is the Claude OAuth client the environment names (CLAUDE_RELAY_OAUTH_*).
func oauthConfig(env *config.Env) controlplane.OAuthConfig {
	return controlplane.OAuthConfig{
		AuthorizeURL: env.OAuthAuthorizeURL, TokenURL: env.OAuthTokenURL, ClientID: env.OAuthClientID,
		RedirectURI: env.OAuthRedirectURI, Scopes: env.OAuthScopes,
	}
}

// controlURL is the -control-plane flag, else CLAUDE_RELAY_CONTROL_URL.
func (o *Options) controlURL(env *config.Env) string {
	if o.ControlURL != "" {
		return o.ControlURL
	}
	return env.ControlURL
}
