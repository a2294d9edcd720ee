package controlplane

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
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
	wantStatus(t, r, http.StatusOK)
	var login adminapi.LoginResponse
	r.decode(t, &login)
	if want := h.clock.Now().Add(DefaultTokenTTL); !login.ExpiresAt.Equal(want) {
		t.Errorf("got expires_at %v, want %v", login.ExpiresAt, want)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("got Cache-Control %q, want no-store", got)
	}

	r = h.do("GET", "/admin/whoami", login.Token, nil)
	wantStatus(t, r, http.StatusOK)
	var who adminapi.WhoAmI
	r.decode(t, &who)
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

func TestProtectedEndpointsRefuseMissingOrForgedTokens(t *testing.T) {
	h := newHarness(t)
	now := h.clock.Now()
	good := func() jwt.RegisteredClaims {
		return jwt.RegisteredClaims{
			Issuer:    tokenIssuer,
			Subject:   testUser,
			Audience:  jwt.ClaimStrings{adminapi.Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        "forged-jti",
		}
	}
	with := func(edit func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := good()
		edit(&c)
		return c
	}
	// The control: a hand-made token with the right secret and claims is accepted, so each
	// refusal below is caused by the one thing the case changes.
	if r := h.do("GET", "/admin/keys", signed(t, jwt.SigningMethodHS256, testJWTSecret, good()), nil); r.status != http.StatusOK {
		t.Fatalf("control token: got status %d (%s), want 200", r.status, r.body)
	}

	noneToken := signed(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good())
	tests := []struct {
		name   string
		header string
	}{
		{"no header", ""},
		{"basic scheme", "Basic " + "YWRtaW46cGFzcw=="},
		{"empty bearer", "Bearer "},
		{"garbage", "Bearer not.a.jwt"},
		{"wrong signature", "Bearer " + signed(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef-xyz"), good())},
		{"alg none", "Bearer " + noneToken},
		{"HS512 with the right secret", "Bearer " + signed(t, jwt.SigningMethodHS512, testJWTSecret, good())},
		{"other audience", "Bearer " + signed(t, jwt.SigningMethodHS256, testJWTSecret, with(func(c *jwt.RegisteredClaims) {
			c.Audience = jwt.ClaimStrings{"claude-relay-sidecar"}
		}))},
		{"no audience", "Bearer " + signed(t, jwt.SigningMethodHS256, testJWTSecret, with(func(c *jwt.RegisteredClaims) { c.Audience = nil }))},
		{"other issuer", "Bearer " + signed(t, jwt.SigningMethodHS256, testJWTSecret, with(func(c *jwt.RegisteredClaims) { c.Issuer = "someone-else" }))},
		{"no expiry", "Bearer " + signed(t, jwt.SigningMethodHS256, testJWTSecret, with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil }))},
		{"expired", "Bearer " + signed(t, jwt.SigningMethodHS256, testJWTSecret, with(func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Second))
		}))},
		{"issued in the future", "Bearer " + signed(t, jwt.SigningMethodHS256, testJWTSecret, with(func(c *jwt.RegisteredClaims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour))
		}))},
		{"no subject", "Bearer " + signed(t, jwt.SigningMethodHS256, testJWTSecret, with(func(c *jwt.RegisteredClaims) { c.Subject = "" }))},
		{"no jti", "Bearer " + signed(t, jwt.SigningMethodHS256, testJWTSecret, with(func(c *jwt.RegisteredClaims) { c.ID = "" }))},
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
	h := newHarness(t)
	token := h.login()
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

func TestLoginThrottleCountsPerIPAndPerUsername(t *testing.T) {
	h := newHarness(t)
	login := func(ip, user, password string) int {
		body := `{"username":"` + user + `","password":"` + password + `"}`
		req := httptest.NewRequest("POST", "/admin/login", strings.NewReader(body))
		req.RemoteAddr = ip + ":40000"
		rec := httptest.NewRecorder()
		h.srv.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	// One address guessing many usernames is stopped by the per-IP count.
	for i := range defaultLoginLimit {
		if got := login("192.0.2.1", "user"+strconv.Itoa(i), "guess"); got != 401 {
			t.Fatalf("spray %d: got %d, want 401", i, got)
		}
	}
	if got := login("192.0.2.1", "admin", testPassword); got != 429 {
		t.Errorf("sprayer's address with right password: got %d, want 429", got)
	}
	if got := login("192.0.2.2", "admin", testPassword); got != 200 {
		t.Errorf("other address: got %d, want 200", got)
	}
	// Many addresses guessing one username are stopped by the per-username count.
	for i := range defaultLoginLimit {
		if got := login("198.51.100."+strconv.Itoa(i+1), "Admin", "guess"); got != 401 {
			t.Fatalf("distributed guess %d: got %d, want 401", i, got)
		}
	}
	if got := login("203.0.113.9", "admin", testPassword); got != 429 {
		t.Errorf("guessed username from a fresh address: got %d, want 429", got)
	}
}

func TestThrottleSuccessClearsEarlierFailures(t *testing.T) {
	th := newThrottle(3, time.Minute)
	now := time.Unix(1_700_000_000, 0)
	th.attempt(now, "ip:a", "user:x")
	th.attempt(now, "ip:a", "user:x")
	th.reset("ip:a", "user:x")
	for i := range 3 {
		if wait := th.attempt(now, "ip:a", "user:x"); wait != 0 {
			t.Fatalf("attempt %d after reset: got wait %v, want 0", i+1, wait)
		}
	}
	if wait := th.attempt(now.Add(10*time.Second), "ip:a", "user:x"); wait != 50*time.Second {
		t.Errorf("fourth attempt: got wait %v, want 50s", wait)
	}
}

func TestThrottleForgetsStaleKeys(t *testing.T) {
	th := newThrottle(5, time.Minute)
	now := time.Unix(1_700_000_000, 0)
	for i := range 2 * minSweep {
		th.attempt(now, "ip:"+strconv.Itoa(i))
	}
	th.attempt(now.Add(2*time.Minute), "ip:fresh")
	if got := len(th.hits); got != 1 {
		t.Errorf("got %d tracked keys after the window passed, want 1", got)
	}
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
	t.Run("refuses a bad username", func(t *testing.T) {
		if _, err := ensureAdmin(ctx, h.st, "a:b", "pw", bcrypt.MinCost); err == nil {
			t.Errorf("got nil error, want one")
		}
		if _, err := h.st.AdminPasswordHash(ctx, "a:b"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("got %v, want ErrNotFound", err)
		}
	})
}

func TestNewRefusesShortJWTSecretAndMissingStore(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name string
		opts Options
	}{
		{"no store", Options{JWTSecret: testJWTSecret}},
		{"short secret", Options{Store: h.st, JWTSecret: []byte("0123456789abcdef0123456789abcde")}},
		{"negative TTL", Options{Store: h.st, JWTSecret: testJWTSecret, TokenTTL: -time.Second}},
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
