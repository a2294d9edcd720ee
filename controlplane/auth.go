package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// tokenIssuer is the iss claim of admin session tokens.
const tokenIssuer = "claude-relay"

// maxUsernameLen bounds admin usernames (they become part of a Redis key).
const maxUsernameLen = 64

// maxPasswordLen is bcrypt's limit: it ignores everything after 72 bytes, so longer is refused.
const maxPasswordLen = 72

// generatedPasswordBytes is the entropy of a generated admin password (24 base64url characters).
const generatedPasswordBytes = 18

// session is an authenticated admin request's identity, taken from its verified token.
type session struct {
	username  string
	jti       string
	expiresAt time.Time
	gen       int64
}

// sessionClaims are a session token's claims: the registered ones plus the password
// generation it was issued in (a password change starts a new one).
type sessionClaims struct {
	jwt.RegisteredClaims
	Generation int64 `json:"gen"`
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) (session, bool) {
	s, ok := ctx.Value(sessionKey{}).(session)
	return s, ok
}

// validUsername reports whether name is 1..64 of [A-Za-z0-9._@-].
func validUsername(name string) bool {
	if name == "" || len(name) > maxUsernameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// EnsureAdmin creates the admin user username when it does not exist yet: with password when
// one is given, else with a generated password, which it returns so the caller can print it
// once. An existing admin is never changed, whatever password is given; EnsureAdmin then
// returns "".
func EnsureAdmin(ctx context.Context, st *store.Store, username, password string) (generated string, err error) {
	return ensureAdmin(ctx, st, username, password, passwordCost)
}

func ensureAdmin(ctx context.Context, st *store.Store, username, password string, cost int) (string, error) {
	if !validUsername(username) {
		return "", fmt.Errorf("ensure admin: username %q must be 1 to %d of A-Z a-z 0-9 . _ @ -", username, maxUsernameLen)
	}
	if len(password) > maxPasswordLen {
		return "", fmt.Errorf("ensure admin: password is longer than %d bytes", maxPasswordLen)
	}
	_, err := st.AdminPasswordHash(ctx, username)
	if err == nil {
		return "", nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("ensure admin: read password hash: %w", err)
	}
	generated := ""
	if password == "" {
		b := make([]byte, generatedPasswordBytes)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("ensure admin: generate password: %w", err)
		}
		generated = base64.RawURLEncoding.EncodeToString(b)
		password = generated
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("ensure admin: hash password: %w", err)
	}
	created, err := st.CreateAdminIfAbsent(ctx, username, hash)
	if err != nil {
		return "", fmt.Errorf("ensure admin: store password hash: %w", err)
	}
	if !created {
		return "", nil // another control plane created the admin first; its password stands
	}
	return generated, nil
}

// dummyHash is compared against when the username is unknown, so a failed login takes as long
// whether or not the user exists.
type dummyHash struct {
	once sync.Once
	cost int
	hash []byte
}

func (d *dummyHash) compare(password []byte) {
	d.once.Do(func() {
		d.hash, _ = bcrypt.GenerateFromPassword([]byte("claude-relay: no such admin user"), d.cost)
	})
	_ = bcrypt.CompareHashAndPassword(d.hash, password)
}

// clientIP is the admin client's address as the sidecar reckons a client's: the socket
// peer, or X-Forwarded-For when the peer is one of the running configuration's trusted
// proxies (nginx in front of the control plane would otherwise make every admin one IP
// for the login throttle and the audit log).
func (s *Server) clientIP(r *http.Request) string {
	ip := s.runtime().ClientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
	if !ip.IsValid() {
		return r.RemoteAddr
	}
	return ip.String()
}

// compiledConfig is the running configuration compiled, for the snapshot it came from.
type compiledConfig struct {
	epoch   string
	version int64
	rt      *config.Runtime
}

// runtime returns the running configuration compiled (nil without one: nothing trusted).
func (s *Server) runtime() *config.Runtime {
	if s.config == nil {
		return nil
	}
	env := s.config.Current()
	if env == nil {
		return nil
	}
	if c := s.compiled.Load(); c != nil && c.epoch == env.Epoch && c.version == env.Version {
		return c.rt
	}
	snap, err := env.Snapshot()
	if err != nil {
		return nil
	}
	rt, err := config.Compile(snap)
	if err != nil {
		return nil
	}
	s.compiled.Store(&compiledConfig{epoch: env.Epoch, version: env.Version, rt: rt})
	return rt
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req adminapi.LoginRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	fields := fieldErrors{}
	switch {
	case req.Username == "":
		fields.add("username", "required")
	case !validUsername(req.Username):
		fields.add("username", fmt.Sprintf("must be 1 to %d of A-Z a-z 0-9 . _ @ -", maxUsernameLen))
	}
	if req.Password == "" {
		fields.add("password", "required")
	}
	if len(fields) > 0 {
		writeInvalid(w, fields)
		return
	}

	// Count the attempt before checking the password, so concurrent guesses cannot slip past
	// the limit; a success clears the count again.
	ipKey, userKey := "ip:"+s.clientIP(r), "user:"+strings.ToLower(req.Username)
	if wait := s.throttle.attempt(s.now(), ipKey, userKey); wait > 0 {
		s.audit.Warn("admin login throttled", "remote", s.clientIP(r), "retry_after", wait.Round(time.Second))
		writeRetryAfter(w, wait, "too many failed logins from this address or for this user")
		return
	}

	known := true
	hash, err := s.st.AdminPasswordHash(r.Context(), req.Username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		known = false
		s.dummy.compare([]byte(req.Password))
	case err != nil:
		s.writeStoreError(w, r, err, "admin user")
		return
	default:
		err = bcrypt.CompareHashAndPassword(hash, []byte(req.Password))
	}
	if !known || err != nil {
		if known {
			s.audit.Warn("admin login failed", "username", req.Username, "remote", s.clientIP(r))
		} else {
			// The username may be a mistyped password: do not log it.
			s.audit.Warn("admin login failed", "unknown_user", true, "remote", s.clientIP(r))
		}
		writeError(w, http.StatusUnauthorized, errAuthentication, "wrong username or password", nil)
		return
	}
	s.throttle.reset(ipKey, userKey)

	token, exp, err := s.issueToken(r.Context(), req.Username)
	if err != nil {
		s.log.Error("issue session token", "error", err)
		writeError(w, http.StatusInternalServerError, errAPI, "internal error; see the control plane log", nil)
		return
	}
	s.audit.Info("admin login", "who", req.Username, "remote", s.clientIP(r), "expires_at", exp)
	writeJSON(w, http.StatusOK, adminapi.LoginResponse{Token: token, ExpiresAt: exp})
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	sess, _ := sessionFrom(r.Context())
	if err := s.st.RevokeToken(r.Context(), sess.jti, sess.expiresAt); err != nil {
		s.writeStoreError(w, r, err, "session")
		return
	}
	s.auditLog(r, "logout", sess.jti)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleWhoAmI(w http.ResponseWriter, r *http.Request) {
	sess, _ := sessionFrom(r.Context())
	writeJSON(w, http.StatusOK, adminapi.WhoAmI{Username: sess.username, ExpiresAt: sess.expiresAt})
}

// issueToken signs a session token for username in the user's current password generation.
func (s *Server) issueToken(ctx context.Context, username string) (string, time.Time, error) {
	gen, err := s.st.AdminTokenGeneration(ctx, username)
	if err != nil {
		return "", time.Time{}, err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, fmt.Errorf("generate token id: %w", err)
	}
	now := s.now()
	exp := jwt.NewNumericDate(now.Add(s.ttl))
	claims := sessionClaims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    tokenIssuer,
		Subject:   username,
		Audience:  jwt.ClaimStrings{adminapi.Audience},
		ExpiresAt: exp,
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        hex.EncodeToString(b),
	}, Generation: gen}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return token, exp.UTC(), nil
}

// parseToken verifies a session token's signature (HS256 only), issuer, audience, expiry and
// issue time. It does not check revocation.
func (s *Server) parseToken(raw string) (session, error) {
	var claims sessionClaims
	_, err := jwt.ParseWithClaims(raw, &claims,
		func(*jwt.Token) (any, error) { return s.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithAudience(adminapi.Audience),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.now),
	)
	if err != nil {
		return session{}, fmt.Errorf("parse token: %w", err)
	}
	if claims.Subject == "" || claims.ID == "" {
		return session{}, errors.New("parse token: sub and jti are required")
	}
	return session{username: claims.Subject, jti: claims.ID, expiresAt: claims.ExpiresAt.UTC(), gen: claims.Generation}, nil
}

// authed wraps h so it runs only for a request with a valid, unrevoked session token.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearerToken(r)
		if !ok {
			writeError(w, http.StatusUnauthorized, errAuthentication, "missing session token: log in with POST /admin/login and send it as Authorization: Bearer <token>", nil)
			return
		}
		sess, err := s.parseToken(raw)
		if err != nil {
			s.log.Debug("session token refused", "remote", s.clientIP(r), "error", err)
			writeError(w, http.StatusUnauthorized, errAuthentication, "session token is invalid or expired: log in again", nil)
			return
		}
		revoked, gen, err := s.st.SessionState(r.Context(), sess.jti, sess.username)
		if err != nil {
			s.writeStoreError(w, r, err, "session")
			return
		}
		if revoked {
			writeError(w, http.StatusUnauthorized, errAuthentication, "session was logged out: log in again", nil)
			return
		}
		if sess.gen != gen {
			writeError(w, http.StatusUnauthorized, errAuthentication, "the password changed since this session began: log in again", nil)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
	}
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
