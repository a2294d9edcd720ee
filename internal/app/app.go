package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"
	"golang.org/x/net/netutil"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/health"
	"github.com/claude-relay/claude-relay/internal/httpserve"
	"github.com/claude-relay/claude-relay/internal/logging"
	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/store"
)

// Version is the product version, set at build time with -ldflags "-X …/internal/app.Version=…".
var Version = "0.1.0-dev"

// Base is what every process mode shares: environment, logging, metrics, Redis, store.
type Base struct {
	Env     *config.Env
	Log     hclog.Logger
	Files   *logging.Files
	Metrics *metrics.Registry
	Redis   redis.UniversalClient
	Store   *store.Store
	Crypto  contract.Crypto // the crypto provider (plugins.go)
	closers []func() error
	// pluginHealth are the provider plugins' /health components.
	pluginHealth []health.Check
}

// LoadEnv reads .env from the working directory and the process environment.
func LoadEnv() (*config.Env, error) {
	dotenv, err := config.ReadDotEnv(".env")
	if err != nil {
		return nil, err
	}
	return config.LoadEnv(os.LookupEnv, dotenv)
}

// newLogger sets up stderr and daily file logging as the environment asks.
func newLogger(env *config.Env, stderr io.Writer) (hclog.Logger, *logging.Files, error) {
	retention := env.LogRetentionDays
	if retention == 0 {
		retention = -1 // LOG_RETENTION_DAYS=0 keeps every file; logging reads 0 as its default
	}
	log, files, err := logging.New(logging.Options{
		Name:          "claude-relay",
		Level:         env.LogLevel,
		Dir:           env.LogDir,
		RetentionDays: retention,
		Stderr:        stderr,
	})
	if err != nil {
		return nil, nil, err
	}
	routeRedisLogs(log)
	return log, files, nil
}

// redisConfig maps the environment to store.RedisConfig: REDIS_URL, else REDIS_CLUSTER_NODES,
// else REDIS_SENTINEL_* (REDIS_PASSWORD and REDIS_DB apply to the master), else REDIS_HOST.
func redisConfig(env *config.Env) store.RedisConfig {
	addr := ""
	if env.RedisHost != "" {
		addr = net.JoinHostPort(env.RedisHost, fmt.Sprint(env.RedisPort))
	}
	return store.RedisConfig{
		URL:              env.RedisURL,
		Addr:             addr,
		Password:         env.RedisPassword,
		DB:               env.RedisDB,
		ClusterAddrs:     env.RedisClusterNodes,
		SentinelMaster:   env.RedisSentinelMaster,
		SentinelAddrs:    env.RedisSentinelAddrs,
		SentinelPassword: env.RedisSentinelPassword,
		PoolSize:         100,
		DialTimeout:      30 * time.Second,
	}
}

// openStore connects the store over rdb with the operator's encryption key.
func (b *Base) openStore(ctx context.Context, rdb redis.UniversalClient) error {
	b.Redis = rdb
	crypto, err := b.startCrypto(ctx)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, rdb, store.Options{Sealer: sealer(crypto)})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	b.Store, b.Crypto = st, crypto
	return nil
}

// Close releases everything in reverse order.
func (b *Base) Close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(errs...)
}

// connLimits bound a listener's clients: how many connections it holds at once and how long
// a request may take to arrive.
type connLimits struct {
	max      int // connections accepted at once; more wait in the listen queue; 0: no cap
	timeouts httpserve.Timeouts
}

// connLimits are the environment's client timeouts with a cap of max connections.
func (b *Base) connLimits(max int) connLimits {
	return connLimits{max: max, timeouts: httpserve.Timeouts{Header: b.Env.ClientHeaderTimeout, Body: b.Env.ClientBodyTimeout}}
}

// serve runs an HTTP server until ctx ends, then shuts it down gracefully: it stops
// accepting, lets in-flight requests and streams finish up to grace, and returns.
func serve(ctx context.Context, log hclog.Logger, m *metrics.Registry, addr string, lim connLimits, h http.Handler, grace time.Duration, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	if lim.max > 0 {
		ln = netutil.LimitListener(ln, lim.max)
		m.GaugeFunc("claude_relay_max_connections", "Client connections accepted at once (MAX_CONNECTIONS; the control plane's CLAUDE_RELAY_CONTROL_MAX_CONNECTIONS); more wait in the listen queue.", func() float64 {
			return float64(lim.max)
		})
	}
	ln = &countingListener{Listener: ln, open: m.Gauge("claude_relay_open_connections", "Client connections open now (keep-alive ones included).").With()}
	srv := &http.Server{
		// Every request is bounded from its first byte: the headers by ReadHeaderTimeout,
		// the body by the handler's idle and rate bounds (httpserve).
		Handler:           lim.timeouts.Handler(h),
		ReadHeaderTimeout: lim.timeouts.Header,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("grace period over; closing remaining connections", "error", err)
		srv.Close()
	}
	return nil
}

// dataPath returns a path under the data dir, creating the dir (0700).
func dataPath(dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create data dir %s: %w", dir, err)
	}
	return filepath.Join(dir, name), nil
}

// countingListener keeps a gauge of the connections it accepted that are still open.
type countingListener struct {
	net.Listener
	open *metrics.Gauge
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Inc()
	return &countedConn{Conn: c, open: l.open}, nil
}

type countedConn struct {
	net.Conn
	open *metrics.Gauge
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.open.Dec)
	return err
}

// registerRedisPool exports the Redis connection pool's state (the deployment guide asks
// that pool usage, connections ÷ size, stay under 80 %) and what the process sends to Redis.
func registerRedisPool(m *metrics.Registry, rdb redis.UniversalClient, size int) {
	registerRedisTraffic(m, rdb)
	m.GaugeFunc("claude_relay_redis_pool_size", "Connections the Redis pool may open (per node).", func() float64 { return float64(size) })
	m.GaugeFunc("claude_relay_redis_pool_connections", "Connections the Redis pool holds now, idle or in use.", func() float64 {
		return float64(rdb.PoolStats().TotalConns)
	})
	m.GaugeFunc("claude_relay_redis_pool_idle_connections", "Idle connections in the Redis pool.", func() float64 {
		return float64(rdb.PoolStats().IdleConns)
	})
	m.CounterFunc("claude_relay_redis_pool_timeouts_total", "Times a caller waited for a pool connection in vain.", func() float64 {
		return float64(rdb.PoolStats().Timeouts)
	})
	m.CounterFunc("claude_relay_redis_pool_misses_total", "Times the pool had no idle connection and dialed a new one.", func() float64 {
		return float64(rdb.PoolStats().Misses)
	})
}
