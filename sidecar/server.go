package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/internal/health"
	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/sidecar/sched"
	"github.com/claude-relay/claude-relay/store"
)

// Principal is who a relay key belongs to, as the auth provider reports it.
type Principal struct {
	KeyID  string
	Name   string
	Policy string
	// Limits override the policy's values where set (nil fields keep the policy's).
	Limits store.KeyLimits
	// AllowedModels and DeniedModels are the key's own model globs (nil: the policy decides).
	AllowedModels, DeniedModels []string
	// AllowedClients are the key's own client rules (nil: the policy decides).
	AllowedClients []string
	// AllowedCIDRs is the key's IP allowlist (nil: any address).
	AllowedCIDRs []netip.Prefix
	// Binding ties the key to one account or an account group (zero: any account).
	Binding store.KeyBinding
}

// ErrInvalidCredential wraps every "this credential is not accepted" outcome, as opposed
// to the auth backend being unavailable.
var ErrInvalidCredential = errors.New("invalid relay key")

// Authenticator checks a client credential. Errors wrapping ErrInvalidCredential are
// refusals (401); any other error means the backend could not decide (503, fail closed).
// The client address and route in AuthInput reach the auth provider (contract.AuthRequest's
// ClientIP and Route) for logging and auditing only: the sidecar checks the principal's
// per-request rules itself (see CachedAuth.Authenticate).
type Authenticator interface {
	Authenticate(ctx context.Context, in AuthInput) (Principal, error)
}

// AuthInput is what the relay knows about a request when it authenticates it: the
// credential, the client's address (after trusted proxies) and the matched route's name.
type AuthInput struct {
	Credential string
	ClientIP   netip.Addr
	Route      string
}

// Upstream is one schedulable upstream account with its decrypted credential.
type Upstream struct {
	ID, Name   string
	Credential string
	Priority   int // lower first
	// Kind is the account type (store.AccountType…); OAuth accounts send the credential
	// as a bearer token with the OAuth beta.
	Kind string
	// Group is the account group keys can be bound to.
	Group string
	// ModelMap renames request models for an Anthropic-compatible endpoint.
	ModelMap map[string]string
	// Caps bound the account's load across all sidecars (sched.AcquireCapacity).
	Caps store.AccountCaps
	// Transport, when set, carries this account's requests (its outbound proxy).
	Transport http.RoundTripper
	url       *url.URL
}

// NewUpstream validates an account's base URL and returns it ready to use.
func NewUpstream(id, name, baseURL, credential string, priority int) (*Upstream, error) {
	u, err := parseBaseURL(baseURL)
	if err != nil {
		return nil, fmt.Errorf("account %s: %w", id, err)
	}
	return &Upstream{ID: id, Name: name, Credential: credential, Priority: priority, url: u}, nil
}

// AccountSource lists the accounts requests may be sent to and records when one was used.
// The server calls Touch on the request path for every response it relays, so Touch must
// not block or do I/O itself (StoreAccounts batches and throttles the writes); a source that
// keeps no last-use times implements it as a no-op.
type AccountSource interface {
	Upstreams(ctx context.Context) ([]*Upstream, error)
	Touch(accountID string, at time.Time)
}

// UsageRecord is what one relayed request consumed.
type UsageRecord struct {
	KeyID, AccountID, Model string
	At                      time.Time
	Counts                  Counts
	CostUSD                 float64
	// Unpriced says no price matched Model: CostUSD is pricing_fallback's.
	Unpriced bool
	// Estimated says Counts.Output is the relay's estimate of what it relayed (the client
	// left before the upstream's final count), not the upstream's figure.
	Estimated bool
	// Refused says the relay answered the request itself without relaying it (an invalid
	// key, a rule, a limit, no account); Failed that it ended in an error once relayed (or
	// while being relayed). Either way Counts may be zero.
	Refused, Failed bool
	// Ledger is the request's record for the request ledger (written only when it is on).
	Ledger *store.LedgerEntry
}

// UsageSink takes usage records off the hot path. Record must not block.
type UsageSink interface {
	Record(UsageRecord)
}

// Options configures a Server.
type Options struct {
	Logger         hclog.Logger
	Version        string
	Auth           Authenticator
	Accounts       AccountSource
	Usage          UsageSink
	Metrics        *metrics.Registry
	RequestTimeout time.Duration // idle bound: no upstream byte for this long ends the request
	Health         []health.Check
	Transport      http.RoundTripper // default: NewTransport()
	Now            func() time.Time
	// Limits enforces the per-key limits of policies; nil refuses (503) keys whose policy
	// has counted or concurrency limits, rather than letting them run unlimited.
	Limits *limits.Limiter
	// Scheduler orders accounts and keeps their health; nil means one with local state
	// only (no parking shared with other sidecars, no sticky sessions).
	Scheduler *sched.Scheduler
	// Keys, when set, serves GET /v1/relay/usage (store.Store).
	Keys KeyRecords
	// Retention, when set, is given the usage block's retentions with every configuration
	// applied (store.Store: how long the report buckets the recorder writes live).
	Retention RetentionSetter
	// SidecarID names this sidecar in the request ledger's records.
	SidecarID string
}

// LedgerSetter takes the request ledger's settings (store.Store): nil turns it off.
type LedgerSetter interface {
	SetLedger(*store.LedgerSettings)
}

// RetentionSetter takes how long hourly and daily usage report buckets are kept.
type RetentionSetter interface {
	SetUsageRetention(hourly, daily time.Duration)
}

// Server is the sidecar's HTTP handler.
type Server struct {
	log       hclog.Logger
	opts      Options
	rt        atomic.Pointer[config.Runtime]
	started   time.Time
	transport http.RoundTripper
	now       func() time.Time
	limits    *limits.Limiter
	sched     *sched.Scheduler
	checks    []health.Check // GET /health's components and Health's
	m         serverMetrics
	mux       *http.ServeMux
	inFlight  atomic.Int64 // requests being answered (Load)
}

type serverMetrics struct {
	requests       *metrics.CounterVec
	upstreamTime   *metrics.HistogramVec
	activeStreams  *metrics.Gauge
	tokens         tokenCounters // resolved once: usage is accounted on every response
	upstreamErrors *metrics.CounterVec
	authErrors     *metrics.CounterVec
	limitRefusals  *metrics.CounterVec
	limitErrors    *metrics.Counter
	queueWait      *metrics.HistogramVec // outcome: how long requests waited in a key's queue
	queuePings     *metrics.Counter      // ping events sent to streamed requests waiting in a queue
	unpriced       *metrics.CounterVec
	windowUtil     *metrics.GaugeVec // account, window: the latest subscription-window reading
	windowReset    *metrics.GaugeVec
	rewarm         *metrics.CounterVec // reason: cache-write tokens of a moved conversation's first request
	moves          *metrics.CounterVec
}

// queueWaitBuckets are the upper bounds, in seconds, of claude_relay_queue_wait_seconds: from
// one poll to a long queue_timeout.
var queueWaitBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// New builds a sidecar. It serves 503 until a configuration is applied.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewRegistry()
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		log:       opts.Logger.Named("sidecar"),
		opts:      opts,
		started:   opts.Now(),
		transport: opts.Transport,
		now:       opts.Now,
		limits:    opts.Limits,
		sched:     opts.Scheduler,
	}
	if s.sched == nil {
		s.sched = sched.New(nil, store.Schema{}, sched.Options{Logger: opts.Logger, Now: opts.Now})
	}
	if s.transport == nil {
		s.transport = NewTransport()
	}
	r := opts.Metrics
	s.m = serverMetrics{
		requests:       r.Counter("claude_relay_requests_total", "Requests answered, by route and status.", "route", "status"),
		upstreamTime:   r.Histogram("claude_relay_upstream_response_seconds", "Time from sending a request upstream to its response headers.", metrics.DefaultLatencyBuckets, "route"),
		activeStreams:  r.Gauge("claude_relay_active_streams", "Responses being relayed right now.").With(),
		tokens:         newTokenCounters(r.Counter("claude_relay_tokens_total", "Tokens relayed, by kind.", "kind")),
		upstreamErrors: r.Counter("claude_relay_upstream_errors_total", "Upstream failures, by kind.", "kind"),
		authErrors:     r.Counter("claude_relay_auth_backend_errors_total", "Authentications that failed because the backend was unavailable.", "stage"),
		limitRefusals:  r.Counter("claude_relay_limit_refusals_total", "Requests refused by a key limit, by limit.", "limit"),
		limitErrors:    r.Counter("claude_relay_limit_errors_total", "Limit checks or charges that failed because Redis was unavailable.").With(),
		queueWait:      r.Histogram("claude_relay_queue_wait_seconds", "Time requests waited in a key's queue for a concurrency slot (policy queue_timeout), by outcome: admitted, timeout, refused (by another limit meanwhile), gone (the client left).", queueWaitBuckets, "outcome"),
		queuePings:     r.Counter("claude_relay_queue_pings_total", "Ping events sent to streamed requests waiting in a key's queue (policy queue_keepalive).").With(),
		unpriced:       r.Counter("claude_relay_unpriced_requests_total", "Requests charged at pricing_fallback because no price matched their model, by model.", "model"),
		windowUtil:     r.Gauge("claude_relay_account_window_utilization", "Fraction of an upstream account's subscription window used, as its latest response seen by this sidecar reported it (anthropic-ratelimit-unified-*).", "account", "window"),
		rewarm:         r.Counter("claude_relay_cache_rewarm_tokens_total", "Cache-write tokens of the first request a conversation sent after it moved to another account, by why it moved (park, cap, failover).", "reason"),
		moves:          r.Counter("claude_relay_conversation_moves_total", "Requests of a conversation served by another account than the one it was bound to, by why (park, cap, failover).", "reason"),
		windowReset:    r.Gauge("claude_relay_account_window_reset_timestamp_seconds", "When an upstream account's subscription window resets (unix seconds), as its latest response seen by this sidecar reported it.", "account", "window"),
	}
	if l := opts.Limits; l != nil {
		r.CounterFunc("claude_relay_limit_redis_calls_total", "Limit calls (admissions, charges, releases) sent to Redis.", func() float64 {
			return float64(l.Stats().Calls)
		})
		r.GaugeFunc("claude_relay_queue_waiting", "Requests of this sidecar waiting in a key's queue for a concurrency slot.", func() float64 {
			return float64(l.Stats().Waiting)
		})
		r.CounterFunc("claude_relay_queue_timeouts_total", "Requests refused with 429 after waiting their policy's queue_timeout for a concurrency slot.", func() float64 {
			return float64(l.Stats().QueueTimeouts)
		})
		r.CounterFunc("claude_relay_limit_redis_pipelines_total", "Pipelines that carried the limit calls; calls per pipeline is the batching factor.", func() float64 {
			return float64(l.Stats().Pipelines)
		})
	}
	r.GaugeFunc("claude_relay_in_flight_requests", "Requests this sidecar is answering right now (streams included).", func() float64 {
		return float64(s.inFlight.Load())
	})
	r.GaugeFunc("claude_relay_uptime_seconds", "Seconds since the sidecar started.", func() float64 {
		return s.now().Sub(s.started).Seconds()
	})
	r.GaugeFunc("claude_relay_config_applied", "1 when a configuration is applied, else 0.", func() float64 {
		if s.rt.Load() != nil {
			return 1
		}
		return 0
	})
	mux := http.NewServeMux()
	s.checks = append(slices.Clone(opts.Health), health.Check{Name: "config", Check: s.configCheck})
	mux.Handle("GET /health", health.Handler(opts.Version, s.started, s.checks))
	mux.Handle("GET /metrics", opts.Metrics.Handler())
	mux.HandleFunc("GET "+KeyUsagePath, s.serveKeyUsage)
	mux.HandleFunc("GET /{$}", s.serveRoot) // GET and HEAD of "/" exactly
	mux.HandleFunc("/", s.serveRelay)
	s.mux = mux
	return s
}

// Apply compiles a snapshot and swaps it in. Requests in flight keep the runtime they
// started with. On error the previous runtime stays.
func (s *Server) Apply(snap *config.Snapshot) error {
	rt, err := config.Compile(snap)
	if err != nil {
		return fmt.Errorf("compile snapshot: %w", err)
	}
	s.rt.Store(rt)
	if s.opts.Retention != nil {
		s.opts.Retention.SetUsageRetention(rt.UsageRetention())
	}
	if l, ok := s.opts.Retention.(LedgerSetter); ok {
		var set *store.LedgerSettings
		if keep, max, on := rt.Snapshot.Usage.LedgerBounds(); on {
			set = &store.LedgerSettings{Retention: keep, MaxPerDay: max}
		}
		l.SetLedger(set)
	}
	return nil
}

// ServeHTTP implements http.Handler. A path that could resolve outside the route it
// matches (dot segments, encoded slashes: see config.CheckRequestPath) is refused here,
// before routing, so that neither the relay nor the mux's own path cleaning acts on it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := config.CheckRequestPath(r.URL.EscapedPath(), r.URL.Path); err != nil {
		s.m.requests.With("unmatched", "400").Inc()
		id := newRequestID()
		w.Header()[relayRequestIDHeader] = []string{id}
		w.Header().Set("Request-Id", id)
		writeError(w, http.StatusBadRequest, errInvalidRequest, err.Error(), 0)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// MaxResponseHeaderBytes bounds an upstream's response headers (HTTP/1 and HTTP/2): an
// answer with more fails like a broken connection (502, or the next account).
const MaxResponseHeaderBytes = 64 << 10

// NewTransport returns the HTTP transport used towards upstreams: no compression (bodies
// pass through as sent), response headers capped at MaxResponseHeaderBytes, generous idle
// pools, bounded dial and TLS handshakes.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,

		MaxResponseHeaderBytes: MaxResponseHeaderBytes,
	}
}

// rootText is what GET / answers: clients (Claude Code probes its base URL with HEAD /)
// and people see a relay that is up, with where to go next.
const rootText = "claude-relay: an Anthropic Messages API relay. Send requests to /v1/messages with a relay key (x-api-key or Authorization: Bearer); GET /health shows its state.\n"

// serveRoot answers GET and HEAD of "/" with 200, as a reachability probe expects, and
// counts them in no metric: they are not relayed requests. A configured route that claims
// "/" takes it instead.
func (s *Server) serveRoot(w http.ResponseWriter, r *http.Request) {
	if rt := s.rt.Load(); rt != nil {
		if _, ok := rt.MatchPath("/"); ok {
			s.serveRelay(w, r)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, rootText)
}

// Health is the sidecar's report for operators: every component of GET /health, the
// "config" one included, with errors and details. The config client sends it to the
// control plane with each poll.
func (s *Server) Health(ctx context.Context) configapi.Health {
	return health.Report(ctx, s.opts.Version, s.started, s.checks)
}

// configCheck reports whether a configuration is applied.
func (s *Server) configCheck(context.Context) error {
	if s.rt.Load() == nil {
		return &health.Problem{Public: "no configuration applied", Err: errors.New("no configuration applied: the control plane is unreachable and there is no saved copy")}
	}
	return nil
}

// tokenCounters are claude_relay_tokens_total's series, one per kind of token.
type tokenCounters struct {
	input, output, cacheWrite5m, cacheWrite1h, cacheRead *metrics.Counter
}

func newTokenCounters(v *metrics.CounterVec) tokenCounters {
	return tokenCounters{
		input: v.With("input"), output: v.With("output"),
		cacheWrite5m: v.With("cache_write_5m"), cacheWrite1h: v.With("cache_write_1h"), cacheRead: v.With("cache_read"),
	}
}

func (t tokenCounters) add(c Counts) {
	t.input.Add(float64(c.Input))
	t.output.Add(float64(c.Output))
	t.cacheWrite5m.Add(float64(c.CacheWrite5m))
	t.cacheWrite1h.Add(float64(c.CacheWrite1h))
	t.cacheRead.Add(float64(c.CacheRead))
}
