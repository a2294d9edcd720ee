package controlplane

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/bcrypt"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/controlplane/alerts"
	"github.com/claude-relay/claude-relay/store"
)

// DefaultTokenTTL is how long an admin session token lives when Options.TokenTTL is zero.
const DefaultTokenTTL = 12 * time.Hour

// passwordCost is the bcrypt cost of admin password hashes in production.
const passwordCost = 12

// Password guessing bounds (see loginGuard): this many failures within the window from one
// client address refuse further attempts from it until the oldest failure leaves the window;
// failures from all addresses beyond the burst are paced at one per interval.
const (
	defaultLoginLimit    = 5
	defaultLoginWindow   = 15 * time.Minute
	defaultGuessBurst    = 20
	defaultGuessInterval = 6 * time.Second
)

// DefaultStoreCheck is how often Run checks that Redis still holds the admin epoch.
const DefaultStoreCheck = 10 * time.Second

// maxBodyBytes caps admin API request bodies.
const maxBodyBytes = 64 << 10

// Options configures the admin API server.
type Options struct {
	// Store holds keys, accounts, usage, admin users and revoked tokens. Required.
	Store *store.Store
	// SigningKey signs admin session tokens (EdDSA). Only control planes hold it (see
	// LoadOrCreateSigningKey); control planes serving one admin API share it. Required.
	SigningKey ed25519.PrivateKey
	// Admin is the admin user created when the store has none: at Bootstrap, and again
	// whenever Run finds that Redis was emptied.
	Admin AdminBootstrap
	// StoreCheck is how often Run checks that Redis was not emptied; zero means
	// DefaultStoreCheck.
	StoreCheck time.Duration
	// Logger receives audit lines and errors; nil means no logging.
	Logger hclog.Logger
	// TokenTTL is the lifetime of a session token; zero means DefaultTokenTTL.
	TokenTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Config is the configuration distribution: its Source serves GET /admin/config/status,
	// its Registry GET /admin/sidecars, its Cache the running configuration (policies, trusted
	// proxies); nil leaves those routes out and trusts no proxy.
	Config *Distribution
	// Alerts serves GET /admin/alerts and POST /admin/alerts/{name}/test; nil leaves them
	// out.
	Alerts *alerts.Service
	// OAuth names the Claude OAuth endpoints and client; empty fields take the defaults.
	OAuth OAuthConfig
	// RefreshAhead is how long before expiry OAuth tokens are refreshed; zero means
	// DefaultRefreshAhead. RefreshInterval is how often Run looks; zero means
	// DefaultRefreshInterval.
	RefreshAhead, RefreshInterval time.Duration
	// TestModel is the model account tests ask for; "" means DefaultTestModel.
	TestModel string
	// Health reports this process's health with details for GET /admin/health (the public
	// /health shows component statuses only); nil answers 404 there.
	Health func(context.Context) configapi.Health

	// bcryptCost overrides passwordCost (tests only).
	bcryptCost int
	// loginLimit, loginWindow, guessBurst and guessInterval override the guessing bounds
	// (tests only).
	loginLimit    int
	loginWindow   time.Duration
	guessBurst    int
	guessInterval time.Duration
}

// AdminBootstrap names the admin user a control plane creates in a store that has none.
type AdminBootstrap struct {
	// Username is the admin's name (ADMIN_USERNAME); "" means "admin". Names are
	// case-insensitive: it is stored in lower case.
	Username string
	// Password is the admin's password (ADMIN_PASSWORD); "" means one is generated and
	// handed to Announce.
	Password string
	// Announce receives a generated password, to be shown once (the log never sees it);
	// nil drops it, leaving the admin unusable until ADMIN_PASSWORD is set.
	Announce func(username, password string)
}

// Server is the admin API. It is safe for concurrent use.
type Server struct {
	st         *store.Store
	signer     *signer
	log        hclog.Logger
	audit      hclog.Logger
	ttl        time.Duration
	now        func() time.Time
	cost       int
	guard      *loginGuard
	dummy      dummyHash
	admin      AdminBootstrap
	checkEvery time.Duration
	// recoverMu makes one recovery of an emptied store at a time.
	recoverMu sync.Mutex
	mux       *http.ServeMux
	config    *Distribution
	alerts    *alerts.Service

	oauth        OAuthConfig
	refreshAhead time.Duration
	refreshEvery time.Duration
	testModel    string
	health       func(context.Context) configapi.Health
}

// New validates opts and builds the admin API server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("control plane: a store is required")
	}
	sign, err := newSigner(opts.SigningKey)
	if err != nil {
		return nil, err
	}
	if opts.TokenTTL < 0 {
		return nil, errors.New("control plane: token TTL must not be negative")
	}
	admin := opts.Admin
	admin.Username = cmp.Or(admin.Username, defaultAdminUsername) // ensureAdmin lowers it
	if !validUsername(admin.Username) {
		return nil, fmt.Errorf("control plane: admin username %q must be 1 to %d of A-Z a-z 0-9 . _ @ -", admin.Username, maxUsernameLen)
	}
	if len(admin.Password) > maxPasswordLen {
		return nil, fmt.Errorf("control plane: admin password is longer than %d bytes", maxPasswordLen)
	}
	s := &Server{
		st:         opts.Store,
		signer:     sign,
		log:        opts.Logger,
		ttl:        opts.TokenTTL,
		now:        opts.Now,
		cost:       opts.bcryptCost,
		config:     opts.Config,
		alerts:     opts.Alerts,
		admin:      admin,
		checkEvery: cmp.Or(opts.StoreCheck, DefaultStoreCheck),

		oauth:        opts.OAuth.withDefaults(),
		refreshAhead: cmp.Or(opts.RefreshAhead, DefaultRefreshAhead),
		refreshEvery: cmp.Or(opts.RefreshInterval, DefaultRefreshInterval),
		testModel:    cmp.Or(opts.TestModel, DefaultTestModel),
		health:       opts.Health,
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
	s.guard = newLoginGuard(
		cmp.Or(opts.loginLimit, defaultLoginLimit), cmp.Or(opts.loginWindow, defaultLoginWindow),
		cmp.Or(opts.guessBurst, defaultGuessBurst), cmp.Or(opts.guessInterval, defaultGuessInterval))
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
