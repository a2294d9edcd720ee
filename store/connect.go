package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig says how to reach Redis: a URL, a single address, Sentinel or Cluster.
// Precedence: URL, then ClusterAddrs, then SentinelMaster (with SentinelAddrs), then Addr.
type RedisConfig struct {
	// URL is redis://[user:pass@]host:port[/db], rediss:// for TLS, or unix:///path.
	URL string
	// Addr is host:port of a single server; default 127.0.0.1:6379.
	Addr string
	// Password authenticates to Redis (and is filled into URL when the URL has none).
	Password string
	// DB selects the database (single server and Sentinel only).
	DB int
	// SentinelMaster names the master set to ask SentinelAddrs for.
	SentinelMaster string
	// SentinelAddrs are the host:port of the Sentinels.
	SentinelAddrs []string
	// SentinelPassword authenticates to the Sentinels themselves (their requirepass).
	SentinelPassword string
	// ClusterAddrs are seed host:port of a Redis Cluster.
	ClusterAddrs []string
	// PoolSize caps connections per node; 0 means go-redis's default (10 per CPU).
	PoolSize int
	// DialTimeout bounds connecting; 0 means go-redis's default (5s).
	DialTimeout time.Duration
}

// Connect builds a redis.UniversalClient (single, Sentinel or Cluster) and PINGs it. On failure
// the error names where it tried, e.g. "failed to connect to Redis at 127.0.0.1:6390: dial tcp
// 127.0.0.1:6390: connect: connection refused", and never contains the password.
func Connect(ctx context.Context, cfg RedisConfig) (redis.UniversalClient, error) {
	secrets := []string{cfg.Password, cfg.SentinelPassword}
	if cfg.URL != "" {
		if u, err := url.Parse(cfg.URL); err == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok {
				secrets = append(secrets, pw)
			}
		}
	}
	rdb, where, err := newClient(cfg)
	if err != nil {
		return nil, redact(err, secrets, cfg.URL)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, redact(fmt.Errorf("failed to connect to Redis at %s: %w", where, err), secrets, cfg.URL)
	}
	return rdb, nil
}

func newClient(cfg RedisConfig) (redis.UniversalClient, string, error) {
	switch {
	case cfg.URL != "":
		opts, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, "", fmt.Errorf("invalid Redis URL: %w", err)
		}
		if opts.Password == "" && cfg.Password != "" {
			opts.Password = cfg.Password
		}
		if cfg.PoolSize > 0 {
			opts.PoolSize = cfg.PoolSize
		}
		if cfg.DialTimeout > 0 {
			opts.DialTimeout = cfg.DialTimeout
		}
		return redis.NewClient(opts), opts.Addr, nil
	case len(cfg.ClusterAddrs) > 0:
		opts := universal(cfg, cfg.ClusterAddrs)
		opts.IsClusterMode = true
		return redis.NewUniversalClient(opts), "cluster " + strings.Join(cfg.ClusterAddrs, ","), nil
	case cfg.SentinelMaster != "":
		if len(cfg.SentinelAddrs) == 0 {
			return nil, "", fmt.Errorf("redis sentinel master %q configured without sentinel addresses", cfg.SentinelMaster)
		}
		opts := universal(cfg, cfg.SentinelAddrs)
		opts.MasterName = cfg.SentinelMaster
		opts.SentinelPassword = cfg.SentinelPassword
		where := fmt.Sprintf("sentinel master %s via %s", cfg.SentinelMaster, strings.Join(cfg.SentinelAddrs, ","))
		return redis.NewUniversalClient(opts), where, nil
	default:
		addr := cfg.Addr
		if addr == "" {
			addr = "127.0.0.1:6379"
		}
		return redis.NewUniversalClient(universal(cfg, []string{addr})), addr, nil
	}
}

func universal(cfg RedisConfig, addrs []string) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:       addrs,
		Password:    cfg.Password,
		DB:          cfg.DB,
		PoolSize:    cfg.PoolSize,
		DialTimeout: cfg.DialTimeout,
	}
}

// redactedError hides secrets in the message while keeping the chain for errors.Is.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact removes secrets (and the raw URL, which may embed one) from err's message.
func redact(err error, secrets []string, rawURL string) error {
	msg := err.Error()
	if rawURL != "" {
		safe := "<redis url>"
		if u, perr := url.Parse(rawURL); perr == nil {
			safe = u.Redacted()
		}
		msg = strings.ReplaceAll(msg, rawURL, safe)
	}
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}
