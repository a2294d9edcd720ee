package controlplane

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

func TestLoginIssuesTokenThatOpensWhoAmI(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/admin/login", "", adminapi.LoginRequest{Username: testUser, Password: testPassword})
	login := wantDecoded[adminapi.LoginResponse](t, r, http.StatusOK)
	if want := h.clock.Now().Add(DefaultTokenTTL); !login.ExpiresAt.Equal(want) {
		t.Errorf("got expires_at %v, want %v", login.ExpiresAt, want)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("got Cache-Control %q, want no-store", got)
	}

	r = h.do("GET", "/admin/whoami", login.Token, nil)
	who := wantDecoded[adminapi.WhoAmI](t, r, http.StatusOK)
	if who.Username != testUser || !who.ExpiresAt.Equal(login.ExpiresAt) {
		t.Errorf("got whoami %+v, want username %q expiring %v", who, testUser, login.ExpiresAt)
	}
}

func TestLoginRefusesBadRequestsAndWrongCredentials(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name       string
		body       any
		wantStatus int
		wantFields []string
	}{
		{"missing both", adminapi.LoginRequest{}, 400, []string{"username", "password"}},
		{"missing password", adminapi.LoginRequest{Username: testUser}, 400, []string{"password"}},
		{"username with a space", adminapi.LoginRequest{Username: "ad min", Password: "x"}, 400, []string{"username"}},
		{"username of wrong JSON type", `{"username": 1, "password": "x"}`, 400, []string{"username"}},
		{"unknown field", `{"username": "admin", "password": "x", "otp": "1"}`, 400, nil},
		{"not JSON", `username=admin`, 400, nil},
		{"empty body", ``, 400, nil},
		{"wrong password", adminapi.LoginRequest{Username: testUser, Password: "wrong"}, 401, nil},
		{"unknown user", adminapi.LoginRequest{Username: "nobody", Password: testPassword}, 401, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do("POST", "/admin/login", "", tt.body)
			if tt.wantFields != nil {
				wantFields(t, r, tt.wantFields...)
				return
			}
			wantStatus(t, r, tt.wantStatus)
			e := r.errorBody(t)
			if e.Message == "" {
				t.Errorf("got empty error message, want one")
			}
			if tt.wantStatus == 401 && e.Type != adminapi.ErrAuthentication {
				t.Errorf("got error type %q, want %q", e.Type, adminapi.ErrAuthentication)
			}
		})
	}
}

// signed returns a token over claims signed with method and key.
func signed(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return tok
}

// signedKID is signed with a "kid" header naming the signing key (none when kid is "").
func signedKID(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// goodClaims are the claims of a session token the harness's control plane would issue now.
func (h *harness) goodClaims() sessionClaims {
	h.t.Helper()
	epoch, err := h.st.AdminEpoch(context.Background())
	if err != nil || epoch == "" {
		h.t.Fatalf("admin epoch: got (%q, %v), want one", epoch, err)
	}
	now := h.clock.Now()
	return sessionClaims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    tokenIssuer,
		Subject:   testUser,
		Audience:  jwt.ClaimStrings{adminapi.Audience},
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        "forged-jti",
	}, Epoch: epoch}
}

// kid is the key id of the harness's signing key.
func (h *harness) kid() string { return KeyID(h.key.Public().(ed25519.PublicKey)) }

func TestProtectedEndpointsRefuseMissingOrForgedTokens(t *testing.T) {
	h := newHarness(t)
	now := h.clock.Now()
	with := func(edit func(*sessionClaims)) sessionClaims {
		c := h.goodClaims()
		edit(&c)
		return c
	}
	ours := func(c sessionClaims) string { return signedKID(t, jwt.SigningMethodEdDSA, h.key, h.kid(), c) }
	// The control: a hand-made token with the right key and claims is accepted, so each
	// refusal below is caused by the one thing the case changes.
	if r := h.do("GET", "/admin/keys", ours(h.goodClaims()), nil); r.status != http.StatusOK {
		t.Fatalf("control token: got status %d (%s), want 200", r.status, r.body)
	}

	otherKey := newTestKey(t)
	pub := h.key.Public().(ed25519.PublicKey)
	noneToken := signed(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, h.goodClaims())
	tests := []struct {
		name   string
		header string
	}{
		{"no header", ""},
		{"basic scheme", "Basic " + "YWRtaW46cGFzcw=="},
		{"empty bearer", "Bearer "},
		{"garbage", "Bearer not.a.jwt"},
		{"HS256 under the JWT secret sidecars hold", "Bearer " + signedKID(t, jwt.SigningMethodHS256, testJWTSecret, h.kid(), h.goodClaims())},
		{"HS256 under the public key", "Bearer " + signedKID(t, jwt.SigningMethodHS256, []byte(pub), h.kid(), h.goodClaims())},
		{"alg none", "Bearer " + noneToken},
		{"another Ed25519 key naming ours", "Bearer " + signedKID(t, jwt.SigningMethodEdDSA, otherKey, h.kid(), h.goodClaims())},
		{"another Ed25519 key naming itself", "Bearer " + signedKID(t, jwt.SigningMethodEdDSA, otherKey, KeyID(otherKey.Public().(ed25519.PublicKey)), h.goodClaims())},
		{"our key without kid", "Bearer " + signedKID(t, jwt.SigningMethodEdDSA, h.key, "", h.goodClaims())},
		{"other audience", "Bearer " + ours(with(func(c *sessionClaims) { c.Audience = jwt.ClaimStrings{"claude-relay-sidecar"} }))},
		{"no audience", "Bearer " + ours(with(func(c *sessionClaims) { c.Audience = nil }))},
		{"other issuer", "Bearer " + ours(with(func(c *sessionClaims) { c.Issuer = "someone-else" }))},
		{"no expiry", "Bearer " + ours(with(func(c *sessionClaims) { c.ExpiresAt = nil }))},
		{"expired", "Bearer " + ours(with(func(c *sessionClaims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Second)) }))},
		{"issued in the future", "Bearer " + ours(with(func(c *sessionClaims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) }))},
		{"no issue time", "Bearer " + ours(with(func(c *sessionClaims) { c.IssuedAt = nil }))},
		{"living longer than the TTL", "Bearer " + ours(with(func(c *sessionClaims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(DefaultTokenTTL + time.Second)) }))},
		{"living ten years", "Bearer " + ours(with(func(c *sessionClaims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(-time.Hour))
			c.ExpiresAt = jwt.NewNumericDate(now.AddDate(10, 0, 0))
		}))},
		{"no subject", "Bearer " + ours(with(func(c *sessionClaims) { c.Subject = "" }))},
		{"a user that does not exist", "Bearer " + ours(with(func(c *sessionClaims) { c.Subject = "nobody" }))},
		{"no jti", "Bearer " + ours(with(func(c *sessionClaims) { c.ID = "" }))},
		{"no epoch", "Bearer " + ours(with(func(c *sessionClaims) { c.Epoch = "" }))},
		{"another epoch", "Bearer " + ours(with(func(c *sessionClaims) { c.Epoch = "0123456789abcdef0123456789abcdef" }))},
		{"an older password generation", "Bearer " + ours(with(func(c *sessionClaims) { c.Generation = -1 }))},
	}
	endpoints := []struct{ method, path string }{
		{"GET", "/admin/whoami"},
		{"POST", "/admin/logout"},
		{"GET", "/admin/keys"},
		{"POST", "/admin/keys"},
		{"GET", "/admin/keys/abc"},
		{"POST", "/admin/keys/abc/revoke"},
		{"GET", "/admin/keys/abc/usage"},
		{"GET", "/admin/accounts"},
		{"POST", "/admin/accounts"},
		{"GET", "/admin/accounts/abc"},
		{"DELETE", "/admin/accounts/abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, ep := range endpoints {
				req, err := http.NewRequest(ep.method, h.http.URL+ep.path, strings.NewReader(`{"name":"x"}`))
				if err != nil {
					t.Fatal(err)
				}
				if tt.header != "" {
					req.Header.Set("Authorization", tt.header)
				}
				resp, err := h.http.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s %s: got status %d, want 401", ep.method, ep.path, resp.StatusCode)
				}
			}
		})
	}
}

func TestSessionExpiresAfterTokenTTL(t *testing.T) {
	h, token := loggedIn(t)
	h.clock.Advance(DefaultTokenTTL - time.Second)
	wantStatus(t, h.do("GET", "/admin/whoami", token, nil), http.StatusOK)
	h.clock.Advance(time.Second)
	r := h.do("GET", "/admin/whoami", token, nil)
	wantStatus(t, r, http.StatusUnauthorized)
	if e := r.errorBody(t); e.Type != adminapi.ErrAuthentication {
		t.Errorf("got error type %q, want %q", e.Type, adminapi.ErrAuthentication)
	}
}

func TestLogoutRefusesReuseOfThatTokenOnly(t *testing.T) {
	h := newHarness(t)
	first, second := h.login(), h.login()
	if first == second {
		t.Fatalf("two logins got the same token, want distinct ones (random jti)")
	}
	wantStatus(t, h.do("POST", "/admin/logout", first, nil), http.StatusNoContent)
	wantStatus(t, h.do("GET", "/admin/keys", first, nil), http.StatusUnauthorized)
	wantStatus(t, h.do("POST", "/admin/logout", first, nil), http.StatusUnauthorized)
	wantStatus(t, h.do("GET", "/admin/keys", second, nil), http.StatusOK)
	if !strings.Contains(h.logs.String(), "action=logout") {
		t.Errorf("got logs %q, want an audit line for the logout", h.logs.String())
	}
}

func TestLoginThrottledAfterRepeatedFailures(t *testing.T) {
	h := newHarness(t)
	bad := adminapi.LoginRequest{Username: testUser, Password: "wrong"}
	for i := range defaultLoginLimit {
		if r := h.do("POST", "/admin/login", "", bad); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: got status %d, want 401", i+1, r.status)
		}
	}
	// Even the right password is refused while throttled: otherwise guessing could go on.
	r := h.do("POST", "/admin/login", "", adminapi.LoginRequest{Username: testUser, Password: testPassword})
	wantStatus(t, r, http.StatusTooManyRequests)
	if e := r.errorBody(t); e.Type != adminapi.ErrRateLimit {
		t.Errorf("got error type %q, want %q", e.Type, adminapi.ErrRateLimit)
	}
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs != int(defaultLoginWindow/time.Second) {
		t.Errorf("got Retry-After %q, want %d", r.header.Get("Retry-After"), int(defaultLoginWindow/time.Second))
	}

	h.clock.Advance(defaultLoginWindow - time.Minute)
	r = h.do("POST", "/admin/login", "", adminapi.LoginRequest{Username: testUser, Password: testPassword})
	wantStatus(t, r, http.StatusTooManyRequests)
	if got := r.header.Get("Retry-After"); got != "60" {
		t.Errorf("got Retry-After %q, want 60", got)
	}

	h.clock.Advance(time.Minute)
	wantStatus(t, h.do("POST", "/admin/login", "", adminapi.LoginRequest{Username: testUser, Password: testPassword}), http.StatusOK)
}

func TestEnsureAdmin(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	check := func(t *testing.T, user, password string, want bool) {
		t.Helper()
		hash, err := h.st.AdminPasswordHash(ctx, user)
		if err != nil {
			t.Fatalf("AdminPasswordHash(%q): %v", user, err)
		}
		if got := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil; got != want {
			t.Errorf("password %q matches: got %v, want %v", password, got, want)
		}
	}

	t.Run("creates with the given password and returns nothing", func(t *testing.T) {
		gen, err := ensureAdmin(ctx, h.st, "ops", "given-password", bcrypt.MinCost)
		if err != nil || gen != "" {
			t.Fatalf("got (%q, %v), want (\"\", nil)", gen, err)
		}
		check(t, "ops", "given-password", true)
	})
	t.Run("generates and returns a password when none is given", func(t *testing.T) {
		gen, err := ensureAdmin(ctx, h.st, "root", "", bcrypt.MinCost)
		if err != nil || len(gen) < 20 {
			t.Fatalf("got (%q, %v), want a generated password of at least 20 characters", gen, err)
		}
		check(t, "root", gen, true)
	})
	t.Run("never changes an existing admin", func(t *testing.T) {
		gen, err := ensureAdmin(ctx, h.st, testUser, "a-different-password", bcrypt.MinCost)
		if err != nil || gen != "" {
			t.Fatalf("got (%q, %v), want (\"\", nil)", gen, err)
		}
		gen, err = ensureAdmin(ctx, h.st, testUser, "", bcrypt.MinCost)
		if err != nil || gen != "" {
			t.Fatalf("got (%q, %v), want (\"\", nil)", gen, err)
		}
		check(t, testUser, testPassword, true)
		check(t, testUser, "a-different-password", false)
	})
	t.Run("stores a mixed-case name in lower case", func(t *testing.T) {
		if _, err := ensureAdmin(ctx, h.st, "Ops2", "given-password", bcrypt.MinCost); err != nil {
			t.Fatal(err)
		}
		check(t, "ops2", "given-password", true)
	})
	t.Run("carries an older version's mixed-case admin over with its password", func(t *testing.T) {
		hash, err := bcrypt.GenerateFromPassword([]byte("legacy-password"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.st.SetAdminPassword(ctx, "Legacy", hash); err != nil {
			t.Fatal(err)
		}
		gen, err := ensureAdmin(ctx, h.st, "Legacy", "", bcrypt.MinCost)
		if err != nil || gen != "" {
			t.Fatalf("got (%q, %v), want (\"\", nil): nothing generated", gen, err)
		}
		check(t, "legacy", "legacy-password", true)
	})
	t.Run("refuses a bad username", func(t *testing.T) {
		if _, err := ensureAdmin(ctx, h.st, "a:b", "pw", bcrypt.MinCost); err == nil {
			t.Errorf("got nil error, want one")
		}
		if _, err := h.st.AdminPasswordHash(ctx, "a:b"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("got %v, want ErrNotFound", err)
		}
	})
}

func TestNewRefusesMissingSigningKeyStoreOrBadAdmin(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name string
		opts Options
	}{
		{"no store", Options{SigningKey: h.key}},
		{"no signing key", Options{Store: h.st}},
		{"a truncated signing key", Options{Store: h.st, SigningKey: h.key[:32]}},
		{"negative TTL", Options{Store: h.st, SigningKey: h.key, TokenTTL: -time.Second}},
		{"a bad admin username", Options{Store: h.st, SigningKey: h.key, Admin: AdminBootstrap{Username: "a:b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.opts); err == nil {
				t.Errorf("got nil error, want one")
			}
		})
	}
}

func TestUnknownAdminPathIsJSON404(t *testing.T) {
	h := newHarness(t)
	r := h.do("GET", "/admin/nope", "", nil)
	wantStatus(t, r, http.StatusNotFound)
	if e := r.errorBody(t); e.Type != adminapi.ErrNotFound {
		t.Errorf("got error type %q, want %q", e.Type, adminapi.ErrNotFound)
	}
}
