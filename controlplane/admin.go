// Package controlplane serves the admin API and owns everything operators change.
package controlplane

import (
	"cmp"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/bcrypt"

	"github.com/claude-relay/claude-relay/store"
)

// MinJWTSecretLen is the shortest accepted JWT signing secret, in bytes.
const MinJWTSecretLen = 32

// DefaultTokenTTL is how long an admin session token lives when Options.TokenTTL is zero.
const DefaultTokenTTL = 12 * time.Hour

// passwordCost is the bcrypt cost of admin password hashes in production.
const passwordCost = 12

// Login throttle defaults: this many failures within the window, per client IP and per
// username, refuse further attempts until the oldest failure leaves the window.
const (
	defaultLoginLimit  = 5
	defaultLoginWindow = 15 * time.Minute
)

// maxBodyBytes caps admin API request bodies.
const maxBodyBytes = 64 << 10

// Options configures the admin API server.
type Options struct {
	// Store holds keys, accounts, usage, admin users and revoked tokens. Required.
	Store *store.Store
	// JWTSecret signs admin session tokens (HS256); at least MinJWTSecretLen bytes. Required.
	JWTSecret []byte
	// Logger receives audit lines and errors; nil means no logging.
	Logger hclog.Logger
	// TokenTTL is the lifetime of a session token; zero means DefaultTokenTTL.
	TokenTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Config serves GET /admin/config/status and GET /admin/sidecars; nil leaves them out.
	Config *Config
	// OAuth names the Claude OAuth endpoints and client; empty fields take the defaults.
	OAuth OAuthConfig
	// RefreshAhead is how long before expiry OAuth tokens are refreshed; zero means
	// DefaultRefreshAhead. RefreshInterval is how often Run looks; zero means
	// DefaultRefreshInterval.
	RefreshAhead, RefreshInterval time.Duration
	// TestModel is the model account tests ask for; "" means DefaultTestModel.
	TestModel string

	// bcryptCost overrides passwordCost (tests only).
	bcryptCost int
	// loginLimit and loginWindow override the login throttle (tests only).
	loginLimit  int
	loginWindow time.Duration
}

// Server is the admin API. It is safe for concurrent use.
type Server struct {
	st       *store.Store
	secret   []byte
	log      hclog.Logger
	audit    hclog.Logger
	ttl      time.Duration
	now      func() time.Time
	cost     int
	throttle *throttle
	dummy    dummyHash
	mux      *http.ServeMux
	config   *Config
	compiled atomic.Pointer[compiledConfig] // the running configuration, compiled once per version

	oauth        OAuthConfig
	refreshAhead time.Duration
	refreshEvery time.Duration
	testModel    string
}

// New validates opts and builds the admin API server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("control plane: a store is required")
	}
	if len(opts.JWTSecret) < MinJWTSecretLen {
		return nil, errors.New("control plane: the JWT secret (CRS_SECURITY__JWT_SECRET) must be at least 32 characters")
	}
	if opts.TokenTTL < 0 {
		return nil, errors.New("control plane: token TTL must not be negative")
	}
	s := &Server{
		st:     opts.Store,
		secret: append([]byte(nil), opts.JWTSecret...),
		log:    opts.Logger,
		ttl:    opts.TokenTTL,
		now:    opts.Now,
		cost:   opts.bcryptCost,
		config: opts.Config,

		oauth:        opts.OAuth.withDefaults(),
		refreshAhead: cmp.Or(opts.RefreshAhead, DefaultRefreshAhead),
		refreshEvery: cmp.Or(opts.RefreshInterval, DefaultRefreshInterval),
		testModel:    cmp.Or(opts.TestModel, DefaultTestModel),
	}
	if err := s.oauth.validate(); err != nil {
		return nil, err
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	s.log = s.log.Named("admin")
	s.audit = s.log.Named("audit")
	if s.ttl == 0 {
		s.ttl = DefaultTokenTTL
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cost == 0 {
		s.cost = passwordCost
	}
	if s.cost < bcrypt.MinCost || s.cost > bcrypt.MaxCost {
		return nil, errors.New("control plane: bcrypt cost out of range")
	}
	limit, window := opts.loginLimit, opts.loginWindow
	if limit <= 0 {
		limit = defaultLoginLimit
	}
	if window <= 0 {
		window = defaultLoginWindow
	}
	s.throttle = newThrottle(limit, window)
	s.dummy.cost = s.cost
	s.mux = s.routes()
	return s, nil
}

// Handler serves the admin API under /admin/.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	s.register(mux) // the route table in openapi_routes.go

	mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, errNotFound, "no admin endpoint "+r.Method+" "+r.URL.Path, nil)
	})
	return mux
}

// auditLog records one mutating admin action: who did what to which object, from where.
// Callers must never pass a secret.
func (s *Server) auditLog(r *http.Request, action, id string, kv ...any) {
	who := ""
	if sess, ok := sessionFrom(r.Context()); ok {
		who = sess.username
	}
	args := append([]any{"who", who, "action", action, "id", id, "remote", s.clientIP(r)}, kv...)
	s.audit.Info("admin action", args...)
	s.recordAudit(r, who, action, id, kv)
}
