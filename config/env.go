package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Environment variable names of the deployment contract.
const (
	EnvHost          = "HOST"
	EnvPort          = "PORT"
	EnvRedisURL      = "REDIS_URL"
	EnvRedisHost     = "REDIS_HOST"
	EnvRedisPort     = "REDIS_PORT"
	EnvRedisPassword = "REDIS_PASSWORD"
	EnvRedisDB       = "REDIS_DB"
	// EnvRedisSentinelMaster, EnvRedisSentinelAddrs and EnvRedisSentinelPassword select
	// Redis Sentinel; EnvRedisClusterNodes selects Redis Cluster.
	EnvRedisSentinelMaster   = "REDIS_SENTINEL_MASTER"
	EnvRedisSentinelAddrs    = "REDIS_SENTINEL_ADDRS"
	EnvRedisSentinelPassword = "REDIS_SENTINEL_PASSWORD"
	EnvRedisClusterNodes     = "REDIS_CLUSTER_NODES"
	EnvJWTSecret             = "CRS_SECURITY__JWT_SECRET"
	EnvJWTSecretPrev         = "CRS_SECURITY__JWT_SECRET_PREVIOUS"
	EnvControlURL            = "CLAUDE_RELAY_CONTROL_URL"
	EnvEncryptionKey         = "CRS_SECURITY__ENCRYPTION_KEY"
	EnvEncryptionKeyPrev     = "CRS_SECURITY__ENCRYPTION_KEY_PREVIOUS"
	EnvPluginDir             = "CLAUDE_RELAY_PLUGIN_DIR"
	EnvLogDir                = "LOG_DIR"
	EnvLogLevel              = "LOG_LEVEL"
	EnvRustLog               = "RUST_LOG"
	EnvMaxConnections        = "MAX_CONNECTIONS"
	EnvRequestTimeout        = "REQUEST_TIMEOUT"
	// EnvClientHeaderTimeout and EnvClientBodyTimeout bound how long a client may take to
	// send a request's headers and body, on every listener.
	EnvClientHeaderTimeout = "CLAUDE_RELAY_CLIENT_HEADER_TIMEOUT"
	EnvClientBodyTimeout   = "CLAUDE_RELAY_CLIENT_BODY_TIMEOUT"
	// EnvControlMaxConnections caps the control plane's concurrent client connections.
	EnvControlMaxConnections = "CLAUDE_RELAY_CONTROL_MAX_CONNECTIONS"
	EnvConfigDir             = "CLAUDE_RELAY_CONFIG_DIR"
	EnvDataDir               = "CLAUDE_RELAY_DATA_DIR"
	EnvLogRetentionDays      = "LOG_RETENTION_DAYS"
	EnvControlAddr           = "CLAUDE_RELAY_CONTROL_ADDR"
	EnvAdminUsername         = "ADMIN_USERNAME"
	EnvAdminPassword         = "ADMIN_PASSWORD"
	// EnvOAuthAuthorizeURL … EnvOAuthScopes override the Claude subscription OAuth client
	// (defaults: Claude Code's public client, see controlplane.DefaultOAuth…).
	EnvOAuthAuthorizeURL = "CLAUDE_RELAY_OAUTH_AUTHORIZE_URL"
	EnvOAuthTokenURL     = "CLAUDE_RELAY_OAUTH_TOKEN_URL"
	EnvOAuthClientID     = "CLAUDE_RELAY_OAUTH_CLIENT_ID"
	EnvOAuthRedirectURI  = "CLAUDE_RELAY_OAUTH_REDIRECT_URI"
	EnvOAuthScopes       = "CLAUDE_RELAY_OAUTH_SCOPES"
)

// Minimum and exact secret lengths, and the commands that make good ones.
const (
	MinJWTSecretLen      = 32
	EncryptionKeyLen     = 32
	jwtSecretCommand     = "openssl rand -base64 64"
	encryptionKeyCommand = "openssl rand -hex 16"
)

// EnvAlertBudgetInterval is how often the control plane checks keys' cost against their
// cost limits (day, week, month, total) for the budget alerts.
const EnvAlertBudgetInterval = "CLAUDE_RELAY_ALERT_BUDGET_INTERVAL"

// DefaultAlertBudgetInterval bounds the budget alerts' Redis reads (per interval: the key
// list and one pipelined GET per cost limit of each limited key).
const DefaultAlertBudgetInterval = 10 * time.Second

// Env is the process configuration from environment variables (and an
// optional .env file), as the predecessor's deployment guide defines them.
type Env struct {
	Host string // HOST, default 0.0.0.0
	// HostSet reports whether HOST was given: dev mode binds 127.0.0.1 unless it was.
	HostSet bool
	Port    int // PORT, default 3000

	RedisURL      string // REDIS_URL; wins over the REDIS_HOST family
	RedisHost     string // REDIS_HOST; empty with no REDIS_URL means no Redis
	RedisPort     int    // REDIS_PORT, default 6379
	RedisPassword string // REDIS_PASSWORD
	RedisDB       int    // REDIS_DB, default 0

	RedisSentinelMaster   string   // REDIS_SENTINEL_MASTER: master set name; enables Sentinel
	RedisSentinelAddrs    []string // REDIS_SENTINEL_ADDRS: comma-separated host:port of the Sentinels
	RedisSentinelPassword string   // REDIS_SENTINEL_PASSWORD: the Sentinels' own requirepass
	RedisClusterNodes     []string // REDIS_CLUSTER_NODES: comma-separated seed host:port; enables Cluster

	JWTSecret string // CRS_SECURITY__JWT_SECRET
	// JWTSecretPrevious is CRS_SECURITY__JWT_SECRET_PREVIOUS: during a rotation the control
	// plane still accepts sidecar tokens signed with it.
	JWTSecretPrevious string
	EncryptionKey     string // CRS_SECURITY__ENCRYPTION_KEY
	// EncryptionKeyPrevious is CRS_SECURITY__ENCRYPTION_KEY_PREVIOUS, comma-separated: older
	// keys still accepted for decryption while `claude-relay crypto rotate` re-encrypts.
	EncryptionKeyPrevious []string
	// PluginDir is CLAUDE_RELAY_PLUGIN_DIR: where the provider plugin binaries are; empty
	// means "plugins" beside the claude-relay binary.
	PluginDir string

	LogDir   string // LOG_DIR, default ./logs
	LogLevel string // LOG_LEVEL, else the claude_relay level in RUST_LOG; default info

	MaxConnections int           // MAX_CONNECTIONS, default 10000
	RequestTimeout time.Duration // REQUEST_TIMEOUT in milliseconds, default 600000
	// ClientHeaderTimeout bounds a request's line and headers, from their first byte.
	ClientHeaderTimeout time.Duration // CLAUDE_RELAY_CLIENT_HEADER_TIMEOUT, default 10s
	// ClientBodyTimeout is the longest a request body may pause (its first byte included),
	// and the grace after which it must average at least 1 KiB/s.
	ClientBodyTimeout time.Duration // CLAUDE_RELAY_CLIENT_BODY_TIMEOUT, default 30s

	ConfigDir string // CLAUDE_RELAY_CONFIG_DIR; empty means the embedded default
	DataDir   string // CLAUDE_RELAY_DATA_DIR, default ./data

	LogRetentionDays int // LOG_RETENTION_DAYS, default 30; 0 keeps logs forever

	ControlAddr string // CLAUDE_RELAY_CONTROL_ADDR, default 127.0.0.1:3100
	// ControlMaxConnections caps the control plane's concurrent client connections.
	ControlMaxConnections int // CLAUDE_RELAY_CONTROL_MAX_CONNECTIONS, default 1024
	// AlertBudgetInterval is how often the budget alerts read the keys' usage.
	AlertBudgetInterval time.Duration // CLAUDE_RELAY_ALERT_BUDGET_INTERVAL, default 10s
	// ControlURL is CLAUDE_RELAY_CONTROL_URL: when set, a sidecar takes its configuration
	// from this control plane instead of local HCL.
	ControlURL    string
	AdminUsername string // ADMIN_USERNAME, default admin
	AdminPassword string // ADMIN_PASSWORD; empty means generate one on first start

	// OAuth… override the Claude OAuth client's endpoints, id, redirect URI and scopes
	// (CLAUDE_RELAY_OAUTH_*); empty means the control plane's defaults.
	OAuthAuthorizeURL, OAuthTokenURL, OAuthClientID, OAuthRedirectURI, OAuthScopes string
}

// Env defaults.
const (
	DefaultHost           = "0.0.0.0"
	DefaultPort           = 3000
	DefaultRedisPort      = 6379
	DefaultLogDir         = "./logs"
	DefaultLogLevel       = "info"
	DefaultMaxConnections = 10000
	DefaultRequestTimeout = 600000 * time.Millisecond
	// DefaultClientHeaderTimeout and DefaultClientBodyTimeout bound a client's request.
	DefaultClientHeaderTimeout = 10 * time.Second
	DefaultClientBodyTimeout   = 30 * time.Second
	// DefaultControlMaxConnections leaves room for many sidecars' long-polls and the admins.
	DefaultControlMaxConnections = 1024
	DefaultDataDir               = "./data"
	DefaultLogRetentionDays      = 30
	DefaultControlAddr           = "127.0.0.1:3100"
	DefaultAdminUsername         = "admin"
)

// logLevel normalises a level name: hclog's names, any case, plus
// "warning".
func logLevel(s string) (string, bool) {
	switch l := strings.ToLower(strings.TrimSpace(s)); l {
	case "trace", "debug", "info", "warn", "error", "off":
		return l, true
	case "warning":
		return "warn", true
	}
	return "", false
}

// Lookup returns a lookup that consults lookup first and then dotenv, the
// precedence LoadEnv uses; it suits Loader.LookupEnv so that HCL's env()
// sees .env values too. Empty values count as unset.
func Lookup(lookup func(string) (string, bool), dotenv map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if lookup != nil {
			if v, ok := lookup(name); ok && v != "" {
				return v, true
			}
		}
		v, ok := dotenv[name]
		return v, ok && v != ""
	}
}

// LoadEnv reads the environment: lookup (normally os.LookupEnv) wins over
// dotenv (from ReadDotEnv), and an empty value counts as unset. Every
// problem is reported at once.
func LoadEnv(lookup func(string) (string, bool), dotenv map[string]string) (*Env, error) {
	get := Lookup(lookup, dotenv)
	p := envParser{get: get}
	_, hostSet := get(EnvHost)
	e := &Env{
		Host:                  p.str(EnvHost, DefaultHost),
		HostSet:               hostSet,
		Port:                  p.intRange(EnvPort, DefaultPort, 1, 65535),
		RedisURL:              p.str(EnvRedisURL, ""),
		RedisHost:             p.str(EnvRedisHost, ""),
		RedisPort:             p.intRange(EnvRedisPort, DefaultRedisPort, 1, 65535),
		RedisPassword:         p.str(EnvRedisPassword, ""),
		RedisDB:               p.intMin(EnvRedisDB, 0, 0),
		RedisSentinelMaster:   p.str(EnvRedisSentinelMaster, ""),
		RedisSentinelAddrs:    p.addrList(EnvRedisSentinelAddrs),
		RedisSentinelPassword: p.str(EnvRedisSentinelPassword, ""),
		RedisClusterNodes:     p.addrList(EnvRedisClusterNodes),
		JWTSecret:             p.str(EnvJWTSecret, ""),
		JWTSecretPrevious:     p.str(EnvJWTSecretPrev, ""),
		ControlURL:            p.str(EnvControlURL, ""),
		EncryptionKey:         p.str(EnvEncryptionKey, ""),
		EncryptionKeyPrevious: commaList(p.str(EnvEncryptionKeyPrev, "")),
		PluginDir:             p.str(EnvPluginDir, ""),
		LogDir:                p.str(EnvLogDir, DefaultLogDir),
		LogLevel:              p.logLevel(),
		MaxConnections:        p.intMin(EnvMaxConnections, DefaultMaxConnections, 1),
		RequestTimeout:        p.duration(EnvRequestTimeout, DefaultRequestTimeout),
		ClientHeaderTimeout:   p.duration(EnvClientHeaderTimeout, DefaultClientHeaderTimeout),
		ClientBodyTimeout:     p.duration(EnvClientBodyTimeout, DefaultClientBodyTimeout),
		ControlMaxConnections: p.intMin(EnvControlMaxConnections, DefaultControlMaxConnections, 1),
		AlertBudgetInterval:   p.duration(EnvAlertBudgetInterval, DefaultAlertBudgetInterval),
		ConfigDir:             p.str(EnvConfigDir, ""),
		DataDir:               p.str(EnvDataDir, DefaultDataDir),
		LogRetentionDays:      p.intMin(EnvLogRetentionDays, DefaultLogRetentionDays, 0),
		ControlAddr:           p.str(EnvControlAddr, DefaultControlAddr),
		AdminUsername:         p.str(EnvAdminUsername, DefaultAdminUsername),
		AdminPassword:         p.str(EnvAdminPassword, ""),
		OAuthAuthorizeURL:     p.str(EnvOAuthAuthorizeURL, ""),
		OAuthTokenURL:         p.str(EnvOAuthTokenURL, ""),
		OAuthClientID:         p.str(EnvOAuthClientID, ""),
		OAuthRedirectURI:      p.str(EnvOAuthRedirectURI, ""),
		OAuthScopes:           p.str(EnvOAuthScopes, ""),
	}
	if e.RedisURL != "" {
		if err := checkRedisURL(e.RedisURL); err != nil {
			p.errs = append(p.errs, err)
		}
	}
	if (e.RedisSentinelMaster == "") != (len(e.RedisSentinelAddrs) == 0) {
		p.errs = append(p.errs, fmt.Errorf("%s and %s go together: set both (the master set name and the Sentinels' host:port list) or neither",
			EnvRedisSentinelMaster, EnvRedisSentinelAddrs))
	}
	if e.RedisSentinelMaster != "" && len(e.RedisClusterNodes) > 0 {
		p.errs = append(p.errs, fmt.Errorf("%s and %s exclude each other: Redis is either Sentinel-managed or a Cluster",
			EnvRedisSentinelMaster, EnvRedisClusterNodes))
	}
	if err := errors.Join(p.errs...); err != nil {
		return nil, err
	}
	return e, nil
}

// addrList reads a comma-separated list of host:port addresses.
func (p *envParser) addrList(name string) []string {
	v, ok := p.get(name)
	if !ok {
		return nil
	}
	var addrs []string
	for _, a := range strings.Split(v, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			p.fail(name, "must be a comma-separated list of host:port, got %q", a)
			return nil
		}
		addrs = append(addrs, a)
	}
	return addrs
}

type envParser struct {
	get  func(string) (string, bool)
	errs []error
}

func (p *envParser) str(name, def string) string {
	if v, ok := p.get(name); ok {
		return strings.TrimSpace(v)
	}
	return def
}

func (p *envParser) fail(name, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
}

func (p *envParser) intRange(name string, def, lo, hi int) int {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo || n > hi {
		p.fail(name, "must be a number between %d and %d, got %q", lo, hi, v)
		return def
	}
	return n
}

func (p *envParser) intMin(name string, def, lo int) int {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo {
		p.fail(name, "must be a whole number of at least %d, got %q", lo, v)
		return def
	}
	return n
}

// duration reads a timeout: milliseconds as the contract's REQUEST_TIMEOUT says, or a Go
// duration such as "10m".
func (p *envParser) duration(name string, def time.Duration) time.Duration {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	s := strings.TrimSpace(v)
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms > 0 && ms <= int64(time.Duration(1<<63-1)/time.Millisecond) {
		return time.Duration(ms) * time.Millisecond
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d
	}
	p.fail(name, "must be a positive number of milliseconds (such as %d) or a duration (such as %q), got %q", def.Milliseconds(), shortDuration(def), v)
	return def
}

// shortDuration writes d without zero trailing units: "10m", not "10m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// logLevel reads LOG_LEVEL, else RUST_LOG ("debug", or directives such as
// "claude_relay=debug,tower=info", of which the claude_relay one or the
// bare level counts), else info.
func (p *envParser) logLevel() string {
	if v, ok := p.get(EnvLogLevel); ok {
		if lvl, ok := logLevel(v); ok {
			return lvl
		}
		p.fail(EnvLogLevel, "must be one of trace, debug, info, warn, error or off, got %q", v)
		return DefaultLogLevel
	}
	v, ok := p.get(EnvRustLog)
	if !ok {
		return DefaultLogLevel
	}
	lvl, err := rustLogLevel(v)
	if err != nil {
		p.fail(EnvRustLog, "%s", err)
		return DefaultLogLevel
	}
	return lvl
}

// rustLogLevel picks our level out of a RUST_LOG (tracing EnvFilter) value.
func rustLogLevel(v string) (string, error) {
	var bare, ours string
	for _, d := range strings.Split(v, ",") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		target, level, hasTarget := strings.Cut(d, "=")
		if !hasTarget {
			// A bare directive is a level, or a target enabled at every level.
			if _, ok := logLevel(d); ok {
				bare = d
			}
			continue
		}
		target = strings.TrimSpace(target)
		if target == "claude_relay" || target == "claude-relay" {
			ours = strings.TrimSpace(level)
		}
	}
	pick := ours
	if pick == "" {
		pick = bare
	}
	if pick == "" {
		return DefaultLogLevel, nil
	}
	lvl, ok := logLevel(pick)
	if !ok {
		return "", fmt.Errorf("level %q for claude_relay is not one of trace, debug, info, warn, error or off, in %q", pick, v)
	}
	return lvl, nil
}

func checkRedisURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: not a URL such as redis://:password@host:6379/0: %w", EnvRedisURL, redactURLError(err))
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		return nil
	}
	return fmt.Errorf("%s: scheme must be redis, rediss or unix, got %q", EnvRedisURL, u.Scheme)
}

// redactURLError drops the URL from a url.Parse error: it may hold a password.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// RedisConfigured reports whether an external Redis is configured; without
// one, dev mode uses its embedded store.
func (e *Env) RedisConfigured() bool {
	return e.RedisURL != "" || e.RedisHost != "" || len(e.RedisClusterNodes) > 0 || e.RedisSentinelMaster != ""
}

// RedisAddr describes the Redis server for messages: host:port (or the
// socket path), never the password.
func (e *Env) RedisAddr() string {
	switch {
	case e.RedisURL == "" && len(e.RedisClusterNodes) > 0:
		return "cluster " + strings.Join(e.RedisClusterNodes, ",")
	case e.RedisURL == "" && e.RedisSentinelMaster != "":
		return "sentinel master " + e.RedisSentinelMaster + " via " + strings.Join(e.RedisSentinelAddrs, ",")
	}
	if e.RedisURL != "" {
		u, err := url.Parse(e.RedisURL)
		if err != nil {
			return "(invalid REDIS_URL)"
		}
		if u.Scheme == "unix" {
			return u.Path
		}
		if u.Port() == "" {
			return net.JoinHostPort(u.Hostname(), strconv.Itoa(DefaultRedisPort))
		}
		return u.Host
	}
	if e.RedisHost == "" {
		return ""
	}
	return net.JoinHostPort(e.RedisHost, strconv.Itoa(e.RedisPort))
}

// CheckSecrets refuses secrets that are missing or too weak, naming the
// variable, the length found and how to generate a good one. Both problems
// are reported together. Lengths are counted in bytes.
func (e *Env) CheckSecrets() error {
	var errs []error
	if n := len(e.JWTSecret); n < MinJWTSecretLen {
		errs = append(errs, fmt.Errorf("%s must be at least %d characters (64+ recommended), got %d%s; generate one with: %s",
			EnvJWTSecret, MinJWTSecretLen, n, unsetNote(n), jwtSecretCommand))
	}
	if n := len(e.JWTSecretPrevious); n > 0 && n < MinJWTSecretLen {
		errs = append(errs, fmt.Errorf("%s must be at least %d characters when set, got %d; it holds the secret being rotated out",
			EnvJWTSecretPrev, MinJWTSecretLen, n))
	}
	if n := len(e.EncryptionKey); n != EncryptionKeyLen {
		errs = append(errs, fmt.Errorf("%s must be exactly %d characters, got %d%s; generate one with: %s",
			EnvEncryptionKey, EncryptionKeyLen, n, unsetNote(n), encryptionKeyCommand))
	}
	for i, k := range e.EncryptionKeyPrevious {
		if len(k) != EncryptionKeyLen {
			errs = append(errs, fmt.Errorf("%s: key #%d must be exactly %d characters like %s, got %d",
				EnvEncryptionKeyPrev, i+1, EncryptionKeyLen, EnvEncryptionKey, len(k)))
		}
	}
	return errors.Join(errs...)
}

// commaList splits a comma-separated value, dropping empty items.
func commaList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func unsetNote(n int) string {
	if n == 0 {
		return " (not set)"
	}
	return ""
}
