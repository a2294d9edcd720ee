package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
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

// defaultAdminUsername is the admin's name when ADMIN_USERNAME is unset.
const defaultAdminUsername = "admin"

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
	epoch     string
}

// sessionClaims are a session token's claims: the registered ones plus the password
// generation it was issued in (a password change starts a new one) and the store's admin
// epoch (an emptied Redis starts a new one).
type sessionClaims struct {
	jwt.RegisteredClaims
	Generation int64  `json:"gen"`
	Epoch      string `json:"epc"`
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) (session, bool) {
	s, ok := ctx.Value(sessionKey{}).(session)
	return s, ok
}

// canonicalUsername is the one spelling of an admin name: names are case-insensitive, so
// "Admin" and "ADMIN" are the user "admin".
func canonicalUsername(name string) string { return strings.ToLower(name) }

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

// ensureAdmin creates the admin user named username (in lower case) when it does not exist
// yet: with password when one is given, else with a generated password, which it returns
// so the caller can show it once. An existing admin is never changed, whatever password is
// given; ensureAdmin then returns "". An admin stored by an older version under a
// mixed-case username is carried over to the lower-case name with its password.
func ensureAdmin(ctx context.Context, st *store.Store, username, password string, cost int) (string, error) {
	if !validUsername(username) {
		return "", fmt.Errorf("ensure admin: username %q must be 1 to %d of A-Z a-z 0-9 . _ @ -", username, maxUsernameLen)
	}
	if len(password) > maxPasswordLen {
		return "", fmt.Errorf("ensure admin: password is longer than %d bytes", maxPasswordLen)
	}
	name := canonicalUsername(username)
	_, err := st.AdminPasswordHash(ctx, name)
	if err == nil {
		return "", nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("ensure admin: read password hash: %w", err)
	}
	if name != username {
		switch legacy, err := st.AdminPasswordHash(ctx, username); {
		case err == nil:
			if _, err := st.CreateAdminIfAbsent(ctx, name, legacy); err != nil {
				return "", fmt.Errorf("ensure admin: carry %q over to %q: %w", username, name, err)
			}
			return "", nil
		case !errors.Is(err, store.ErrNotFound):
			return "", fmt.Errorf("ensure admin: read password hash: %w", err)
		}
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
	created, err := st.CreateAdminIfAbsent(ctx, name, hash)
	if err != nil {
		return "", fmt.Errorf("ensure admin: store password hash: %w", err)
	}
	if !created {
		return "", nil // another control plane created the admin first; its password stands
	}
	return generated, nil
}

// Bootstrap readies the store for admin sessions: it creates the admin user when the store
// has none (a generated password goes to Options.Admin.Announce) and then the admin epoch
// that session tokens carry. Call it before serving; Run calls it again whenever Redis turns
// out to have been emptied.
func (s *Server) Bootstrap(ctx context.Context) error {
	s.recoverMu.Lock()
	defer s.recoverMu.Unlock()
	return s.bootstrapLocked(ctx)
}

// bootstrapLocked is Bootstrap under recoverMu. The admin comes first: a crash between the
// two writes leaves no epoch, so the next check creates the admin (a no-op) and the epoch.
func (s *Server) bootstrapLocked(ctx context.Context) error {
	generated, err := ensureAdmin(ctx, s.st, s.admin.Username, s.admin.Password, s.cost)
	if err != nil {
		return err
	}
	if generated != "" {
		s.log.Info("created the admin user with a generated password (shown once on standard output)", "username", canonicalUsername(s.admin.Username))
		if s.admin.Announce != nil {
			s.admin.Announce(canonicalUsername(s.admin.Username), generated)
		}
	}
	if _, _, err := s.st.CreateAdminEpoch(ctx); err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	return nil
}

// checkStore notices an emptied Redis — the admin epoch is gone — and bootstraps the store
// again: the admin is re-created from Options.Admin, a new epoch refuses every session token
// issued before, and the relay-key pepper this process holds is stored again. It reports
// whether it had to.
func (s *Server) checkStore(ctx context.Context) (bool, error) {
	s.recoverMu.Lock()
	defer s.recoverMu.Unlock()
	epoch, err := s.st.AdminEpoch(ctx)
	if err != nil || epoch != "" {
		return false, err
	}
	s.log.Warn("Redis has lost the admin state (emptied, or restarted without persistence): re-creating the admin user; every admin session issued before is refused")
	if err := s.bootstrapLocked(ctx); err != nil {
		return false, fmt.Errorf("recover emptied store: %w", err)
	}
	// Relay keys created from now on must hash the same way in processes started later.
	if err := s.st.RestorePepper(ctx); err != nil {
		s.log.Error("relay keys created from now on may not be found by sidecars started since Redis was emptied", "error", err)
	}
	return true, nil
}

// watchStore runs checkStore every checkEvery until ctx ends, logging a failing check once
// until it passes again.
func (s *Server) watchStore(ctx context.Context) {
	t := time.NewTicker(s.checkEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := s.checkStore(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			s.log.Warn("cannot check Redis for lost admin state; retrying", "error", err)
			failing = true
		case err == nil && failing:
			s.log.Info("admin state check works again")
			failing = false
		}
	}
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

// runtime returns the running configuration compiled, as the snapshot cache holds it (nil
// without one: nothing trusted).
func (s *Server) runtime() *config.Runtime {
	if s.config == nil {
		return nil
	}
	return s.config.Cache.Runtime()
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

	user, remote := canonicalUsername(req.Username), s.clientIP(r)
	addr := guardKey(remote)
	if !s.guardBegin(w, addr, remote, "logins") {
		return
	}
	known := true
	hash, err := s.passwordHash(r.Context(), user)
	switch {
	case errors.Is(err, store.ErrNotFound):
		known = false
		s.dummy.compare([]byte(req.Password))
	case err != nil:
		s.guard.abandoned(addr)
		s.writeStoreError(w, r, err, "admin user")
		return
	default:
		err = bcrypt.CompareHashAndPassword(hash, []byte(req.Password))
	}
	if !known || err != nil {
		wait := s.guard.failed(s.now(), addr)
		if known {
			s.audit.Warn("admin login failed", "username", user, "remote", remote)
		} else {
			// The username may be a mistyped password: do not log it.
			s.audit.Warn("admin login failed", "unknown_user", true, "remote", remote)
		}
		writeGuessFailure(w, http.StatusUnauthorized, wait, "wrong username or password", nil)
		return
	}
	s.guard.succeeded(addr)

	token, exp, err := s.issueToken(r.Context(), user)
	if err != nil && clientGone(r) {
		s.log.Debug("login ended before its token was issued: the client went away")
		return
	}
	if err != nil {
		s.log.Error("issue session token", "error", err)
		writeError(w, http.StatusInternalServerError, errAPI, "internal error; see the control plane log", nil)
		return
	}
	s.audit.Info("admin login", "who", user, "remote", remote, "expires_at", exp)
	writeJSON(w, http.StatusOK, adminapi.LoginResponse{Token: token, ExpiresAt: exp})
}

// passwordHash returns user's password hash. When the user is unknown it first checks
// whether Redis was emptied (and if so re-creates the admin), so the admin can log in at
// once after such a loss.
func (s *Server) passwordHash(ctx context.Context, user string) ([]byte, error) {
	hash, err := s.st.AdminPasswordHash(ctx, user)
	if !errors.Is(err, store.ErrNotFound) {
		return hash, err
	}
	if recovered, cerr := s.checkStore(ctx); cerr != nil || !recovered {
		if cerr != nil {
			s.log.Warn("cannot check Redis for lost admin state", "error", cerr)
		}
		return nil, err
	}
	return s.st.AdminPasswordHash(ctx, user)
}

// guardBegin starts a password check from the client address addr (remote as seen); when
// the guard refuses it, it answers 429 with Retry-After and returns false.
func (s *Server) guardBegin(w http.ResponseWriter, addr, remote, what string) bool {
	why, wait := s.guard.begin(s.now(), addr)
	var msg string
	switch why {
	case guardAllowed:
		return true
	case guardLocked:
		msg = "too many failed " + what + " from this address"
	case guardPaced:
		msg = "too many wrong admin passwords recently, from any address: guesses are slowed down and this address's next turn comes later"
	case guardConcurrent:
		msg = "a password check from this address is still under way: wait for its answer"
		wait = time.Second
	}
	s.audit.Warn("admin password check throttled", "what", what, "remote", remote, "retry_after", wait.Round(time.Second))
	writeRetryAfter(w, wait, msg)
	return false
}

// writeGuessFailure answers a wrong password with status; when the guard makes the address
// wait before its next guess, the answer says so, with Retry-After.
func writeGuessFailure(w http.ResponseWriter, status int, wait time.Duration, msg string, fields fieldErrors) {
	if wait > 0 {
		secs := int64((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		msg = fmt.Sprintf("%s; the next attempt from this address is accepted in %ds", msg, secs)
	}
	writeError(w, status, errInvalidOrAuth(status), msg, fields)
}

// errInvalidOrAuth is the error type of a wrong password answered with status.
func errInvalidOrAuth(status int) string {
	if status == http.StatusUnauthorized {
		return errAuthentication
	}
	return errInvalidRequest
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

// issueToken signs (EdDSA, with the control plane's key) a session token for username in
// the user's current password generation and the store's admin epoch.
func (s *Server) issueToken(ctx context.Context, username string) (string, time.Time, error) {
	gen, epoch, err := s.st.SessionBasis(ctx, username)
	if err != nil {
		return "", time.Time{}, err
	}
	if epoch == "" { // Redis was emptied since the password check
		if _, err := s.checkStore(ctx); err != nil {
			return "", time.Time{}, err
		}
		if gen, epoch, err = s.st.SessionBasis(ctx, username); err == nil && epoch == "" {
			err = errors.New("issue session token: Redis has no admin epoch")
		}
		if err != nil {
			return "", time.Time{}, err
		}
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
	}, Generation: gen, Epoch: epoch}
	token, err := s.signer.sign(claims)
	if err != nil {
		return "", time.Time{}, err
	}
	return token, exp.UTC(), nil
}

// parseToken verifies a session token's signature (EdDSA under this control plane's key
// only), issuer, audience, expiry and issue time (both required; the lifetime between them
// at most the configured TTL), and that it names a user, a token id and an epoch. It does
// not check the store.
func (s *Server) parseToken(raw string) (session, error) {
	var claims sessionClaims
	_, err := jwt.ParseWithClaims(raw, &claims, s.signer.key,
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithAudience(adminapi.Audience),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.now),
	)
	if err != nil {
		return session{}, fmt.Errorf("parse token: %w", err)
	}
	if claims.IssuedAt == nil {
		return session{}, errors.New("parse token: iat is required")
	}
	// Both dates are whole seconds: the configured TTL is rounded up to one.
	if life, most := claims.ExpiresAt.Sub(claims.IssuedAt.Time), (s.ttl + time.Second - 1).Truncate(time.Second); life > most {
		return session{}, fmt.Errorf("parse token: lifetime %s exceeds the configured %s", life, s.ttl)
	}
	if claims.Subject == "" || claims.ID == "" || claims.Epoch == "" {
		return session{}, errors.New("parse token: sub, jti and epc are required")
	}
	return session{username: claims.Subject, jti: claims.ID, expiresAt: claims.ExpiresAt.UTC(), gen: claims.Generation, epoch: claims.Epoch}, nil
}

// authed wraps h so it runs only for a request with a valid session token whose user
// exists and that was not logged out, nor outlived by a password change or an emptied Redis.
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
			writeError(w, http.StatusUnauthorized, errAuthentication, s.refusalMessage(err), nil)
			return
		}
		st, err := s.st.SessionState(r.Context(), sess.jti, sess.username)
		if err != nil {
			s.writeStoreError(w, r, err, "session")
			return
		}
		if st.Epoch == "" {
			if _, err := s.checkStore(r.Context()); err != nil {
				s.log.Warn("cannot recover the admin state of an emptied Redis", "error", err)
			}
		}
		var refusal string
		switch {
		case st.Epoch != sess.epoch:
			refusal = "Redis was emptied (or restarted without persistence) since this session began: log in again"
		case !st.UserExists:
			refusal = "the session's admin user does not exist: log in again"
		case st.Revoked:
			refusal = "session was logged out: log in again"
		case st.Generation != sess.gen:
			refusal = "the password changed since this session began: log in again"
		}
		if refusal != "" {
			writeError(w, http.StatusUnauthorized, errAuthentication, refusal, nil)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
	}
}

// refusalMessage tells the client why its token was refused, as far as that helps it.
func (s *Server) refusalMessage(err error) string {
	var fk foreignKeyError
	if errors.As(err, &fk) && validKeyID(fk.kid) {
		return fmt.Sprintf("session token was signed by another control plane (key id %s; this one signs with %s): log in again here; control planes behind one address must share the key file %s",
			fk.kid, s.signer.kid, SigningKeyFile)
	}
	return "session token is invalid or expired: log in again"
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
