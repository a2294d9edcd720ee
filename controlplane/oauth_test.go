package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

const (
	fakeClientID    = "test-client"
	fakeRedirectURI = "https://console.example/oauth/code/callback"
)

// fakeOAuth is an authorize and token server that checks PKCE the way a real one does: the
// token request's code_verifier must hash (S256) to the challenge the authorize request sent.
type fakeOAuth struct {
	t   *testing.T
	srv *httptest.Server

	mu         sync.Mutex
	challenges map[string]string // code → challenge
	states     map[string]string // code → state
	refreshes  map[string]int    // valid refresh token → generation
	serial     int

	refreshCalls atomic.Int64
	// gate, when set, holds refresh answers until closed; entered is signalled per call.
	gate    chan struct{}
	entered chan struct{}
	// failRefresh makes refresh grants fail with invalid_grant.
	failRefresh atomic.Bool
}

func newFakeOAuth(t *testing.T) *fakeOAuth {
	f := &fakeOAuth{t: t, challenges: map[string]string{}, states: map[string]string{}, refreshes: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth/authorize", f.authorize)
	mux.HandleFunc("POST /v1/oauth/token", f.token)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOAuth) config() OAuthConfig {
	return OAuthConfig{AuthorizeURL: f.srv.URL + "/oauth/authorize", TokenURL: f.srv.URL + "/v1/oauth/token",
		ClientID: fakeClientID, RedirectURI: fakeRedirectURI, Scopes: "user:inference"}
}

// authorize plays the logged-in user approving: it redirects to the callback with a code.
func (f *fakeOAuth) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != fakeClientID || q.Get("redirect_uri") != fakeRedirectURI || q.Get("response_type") != "code" ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("scope") != "user:inference" {
		http.Error(w, "bad authorize request: "+r.URL.RawQuery, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.serial++
	code := fmt.Sprintf("code-%d", f.serial)
	f.challenges[code] = q.Get("code_challenge")
	f.states[code] = q.Get("state")
	f.mu.Unlock()
	http.Redirect(w, r, fakeRedirectURI+"?code="+code+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
}

func (f *fakeOAuth) token(w http.ResponseWriter, r *http.Request) {
	var req map[string]string
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	fail := func(code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":%q,"error_description":%q}`, code, desc)
	}
	if req["client_id"] != fakeClientID {
		fail("invalid_client", "unknown client")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch req["grant_type"] {
	case "authorization_code":
		challenge, ok := f.challenges[req["code"]]
		if !ok {
			fail("invalid_grant", "unknown or used code")
			return
		}
		sum := sha256.Sum256([]byte(req["code_verifier"]))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != challenge {
			fail("invalid_grant", "PKCE verification failed")
			return
		}
		if req["redirect_uri"] != fakeRedirectURI || req["state"] != f.states[req["code"]] {
			fail("invalid_grant", "redirect_uri or state mismatch")
			return
		}
		delete(f.challenges, req["code"])
		f.refreshes["refresh-0"] = 0
		writeTokens(w, "access-0", "refresh-0", 3600)
	case "refresh_token":
		n := f.refreshCalls.Add(1)
		gate, entered := f.gate, f.entered
		if entered != nil {
			entered <- struct{}{}
		}
		if gate != nil {
			f.mu.Unlock()
			<-gate
			f.mu.Lock()
		}
		gen, ok := f.refreshes[req["refresh_token"]]
		if !ok || f.failRefresh.Load() {
			fail("invalid_grant", "refresh token revoked")
			return
		}
		delete(f.refreshes, req["refresh_token"]) // refresh tokens rotate
		next := fmt.Sprintf("refresh-%d", gen+1)
		f.refreshes[next] = gen + 1
		writeTokens(w, fmt.Sprintf("access-%d-call-%d", gen+1, n), next, 3600)
	default:
		fail("unsupported_grant_type", req["grant_type"])
	}
}

func writeTokens(w http.ResponseWriter, access, refresh string, expiresIn int) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":%q,"refresh_token":%q,"expires_in":%d,"token_type":"Bearer","scope":"user:inference"}`, access, refresh, expiresIn)
}

// follow opens an authorize URL like a browser would and returns where it was sent back to.
func (f *fakeOAuth) follow(t *testing.T, authorizeURL string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: got status %d, want a redirect to the callback", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func (h *harness) oauthStart(token, name string) adminapi.OAuthStartResponse {
	h.t.Helper()
	r := h.do("POST", "/admin/accounts/oauth/start", token, adminapi.OAuthStartRequest{Name: name, Group: "me"})
	out := wantDecoded[adminapi.OAuthStartResponse](h.t, r, http.StatusOK)
	return out
}

func TestOAuthFlowEndToEndWithPKCE(t *testing.T) {
	fake := newFakeOAuth(t)
	h, token := loggedIn(t, func(o *Options) { o.OAuth = fake.config() })
	ctx := context.Background()

	start := h.oauthStart(token, "my claude")
	u, err := url.Parse(start.AuthorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Query().Get("state") != start.State || !start.ExpiresAt.Equal(h.clock.Now().Add(10*time.Minute)) {
		t.Errorf("start: got state %q expires %v, want the URL's state and ten minutes", start.State, start.ExpiresAt)
	}
	if strings.Contains(start.AuthorizeURL, "verifier") {
		t.Error("the authorize URL mentions the verifier; it must stay server-side")
	}
	callback := fake.follow(t, start.AuthorizeURL)

	r := h.do("POST", "/admin/accounts/oauth/finish", token, adminapi.OAuthFinishRequest{CallbackURL: callback})
	got := wantDecoded[adminapi.AccountResponse](t, r, http.StatusCreated)
	a := got.Account
	if a.Type != adminapi.AccountClaudeOAuth || a.Name != "my claude" || a.Group != "me" || a.OAuth == nil || !a.OAuth.HasRefreshToken ||
		a.OAuth.TokenExpiresAt == nil || !a.OAuth.TokenExpiresAt.Equal(h.clock.Now().Add(time.Hour)) || a.OAuth.Scopes != "user:inference" {
		t.Errorf("created account: got %+v oauth %+v", a, a.OAuth)
	}
	if strings.Contains(string(r.body), "access-0") || strings.Contains(string(r.body), "refresh-0") {
		t.Error("the finish response reveals a token")
	}
	sec, err := h.st.AccountSecrets(ctx, a.ID)
	if err != nil || sec.Credential != "access-0" || sec.RefreshToken != "refresh-0" {
		t.Errorf("stored tokens: got (%+v, %v), want access-0 and refresh-0 sealed", sec, err)
	}

	t.Run("a state is used once", func(t *testing.T) {
		wantFields(t, h.do("POST", "/admin/accounts/oauth/finish", token, adminapi.OAuthFinishRequest{CallbackURL: callback}), "state")
	})
	t.Run("code#state as the callback page shows it", func(t *testing.T) {
		s2 := h.oauthStart(token, "second")
		cb, _ := url.Parse(fake.follow(t, s2.AuthorizeURL))
		pasted := cb.Query().Get("code") + "#" + cb.Query().Get("state")
		r := h.do("POST", "/admin/accounts/oauth/finish", token, adminapi.OAuthFinishRequest{Code: pasted})
		wantStatus(t, r, http.StatusCreated)
	})
	t.Run("a verifier that does not match is refused by the token server", func(t *testing.T) {
		s3 := h.oauthStart(token, "third")
		cb, _ := url.Parse(fake.follow(t, s3.AuthorizeURL))
		// Swap the pending login's verifier for another: the fake must refuse the exchange.
		data, err := h.st.TakeOAuthPending(ctx, s3.State)
		if err != nil {
			t.Fatal(err)
		}
		var p oauthPending
		_ = json.Unmarshal(data, &p)
		p.Verifier = "not-the-verifier"
		data, _ = json.Marshal(p)
		if err := h.st.PutOAuthPending(ctx, s3.State, data); err != nil {
			t.Fatal(err)
		}
		r := h.do("POST", "/admin/accounts/oauth/finish", token, adminapi.OAuthFinishRequest{Code: cb.Query().Get("code"), State: s3.State})
		wantStatus(t, r, http.StatusBadGateway)
		if e := r.errorBody(t); !strings.Contains(e.Message, "PKCE verification failed") {
			t.Errorf("got message %q, want the token server's reason", e.Message)
		}
	})
	t.Run("the pending login expires after ten minutes", func(t *testing.T) {
		s4 := h.oauthStart(token, "late")
		ttl := h.st.Client().PTTL(ctx, h.st.Schema().OAuthPending(s4.State)).Val()
		if ttl <= 9*time.Minute || ttl > 10*time.Minute {
			t.Errorf("pending login TTL: got %v, want ten minutes", ttl)
		}
	})
	t.Run("validation", func(t *testing.T) {
		wantFields(t, h.do("POST", "/admin/accounts/oauth/start", token, adminapi.OAuthStartRequest{}), "name")
		wantFields(t, h.do("POST", "/admin/accounts/oauth/finish", token, adminapi.OAuthFinishRequest{}), "code")
		wantFields(t, h.do("POST", "/admin/accounts/oauth/finish", token, adminapi.OAuthFinishRequest{Code: "abc"}), "state")
		wantFields(t, h.do("POST", "/admin/accounts/oauth/finish", token, adminapi.OAuthFinishRequest{Code: "abc#s1", State: "s2"}), "state")
		wantFields(t, h.do("POST", "/admin/accounts/oauth/finish", token, adminapi.OAuthFinishRequest{Code: "abc#unknown"}), "state")
	})
}

func TestPKCEChallengeIsS256OfTheVerifier(t *testing.T) {
	// RFC 7636 appendix B.
	if got := pkceChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Errorf("got %q, want the RFC 7636 example challenge", got)
	}
}

// addOAuthAccount stores an OAuth account with the fake's first refresh token, expiring in.
func addOAuthAccount(t *testing.T, h *harness, fake *fakeOAuth, in time.Duration) string {
	t.Helper()
	fake.mu.Lock()
	fake.refreshes["refresh-0"] = 0
	fake.mu.Unlock()
	exp := h.clock.Now().Add(in)
	a, err := h.st.AddAccount(context.Background(), store.AccountSpec{Name: "sub", Type: store.AccountTypeClaudeOAuth,
		Credential: "access-0", RefreshToken: "refresh-0", TokenExpiresAt: &exp, Priority: 1})
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func TestRefreshUnderContentionCallsTheTokenEndpointOnce(t *testing.T) {
	fake := newFakeOAuth(t)
	h := newHarness(t, func(o *Options) { o.OAuth = fake.config() })
	id := addOAuthAccount(t, h, fake, 5*time.Minute) // inside the 10-minute refresh window
	// A second control plane on the same Redis.
	other, err := New(Options{Store: h.st, SigningKey: h.key, Now: h.clock.Now, OAuth: fake.config()})
	if err != nil {
		t.Fatal(err)
	}
	fake.gate, fake.entered = make(chan struct{}), make(chan struct{}, 2)
	ctx := context.Background()
	results := make(chan int, 2)
	for _, cp := range []*Server{h.srv, other} {
		go func() {
			n, err := cp.RefreshDue(ctx)
			if err != nil {
				t.Error(err)
			}
			results <- n
		}()
	}
	<-fake.entered // one control plane holds the lock and is inside the token call
	first := <-results
	if first != 0 {
		t.Fatalf("the control plane that returned while the other held the lock refreshed %d accounts, want 0", first)
	}
	close(fake.gate)
	if second := <-results; second != 1 {
		t.Errorf("the lock holder refreshed %d accounts, want 1", second)
	}
	if n := fake.refreshCalls.Load(); n != 1 {
		t.Errorf("token endpoint got %d refresh calls, want exactly 1", n)
	}
	// Afterwards neither finds the account due.
	fake.gate, fake.entered = nil, nil
	for _, cp := range []*Server{h.srv, other} {
		if n, _ := cp.RefreshDue(ctx); n != 0 {
			t.Errorf("a second pass refreshed %d accounts, want 0", n)
		}
	}
	if n := fake.refreshCalls.Load(); n != 1 {
		t.Errorf("token endpoint got %d refresh calls after the second pass, want still 1", n)
	}
	sec, _ := h.st.AccountSecrets(ctx, id)
	a, _ := h.st.GetAccount(ctx, id)
	if sec.Credential != "access-1-call-1" || sec.RefreshToken != "refresh-1" || !a.TokenExpiresAt.Equal(h.clock.Now().Add(time.Hour)) {
		t.Errorf("after refresh: got access %q refresh %q expires %v, want the new pair and an hour", sec.Credential, sec.RefreshToken, a.TokenExpiresAt)
	}
}

func TestRefreshFailureMarksTheAccountAndBacksOff(t *testing.T) {
	fake := newFakeOAuth(t)
	h, token := loggedIn(t, func(o *Options) { o.OAuth = fake.config() })
	id := addOAuthAccount(t, h, fake, time.Minute)
	fake.failRefresh.Store(true)
	ctx := context.Background()

	if n, _ := h.srv.RefreshDue(ctx); n != 0 {
		t.Fatalf("refreshed %d, want 0", n)
	}
	r := h.do("GET", "/admin/accounts/"+id, token, nil)
	var got adminapi.AccountResponse
	r.decode(t, &got)
	now := h.clock.Now()
	st := got.Account.Status
	if st.State != adminapi.AccountRefreshFailing || !strings.Contains(st.Reason, "invalid_grant") || st.Since == nil || !st.Since.Equal(now) {
		t.Errorf("status: got %+v, want refresh_failing since now with the reason", st)
	}
	if o := got.Account.OAuth; o.RefreshFailures != 1 || o.RefreshRetryAt == nil || !o.RefreshRetryAt.Equal(now.Add(30*time.Second)) {
		t.Errorf("oauth details: got %+v, want 1 failure and a retry in 30s", o)
	}
	// Before the retry time nothing is tried; after it, a second attempt backs off longer.
	h.srv.RefreshDue(ctx)
	if n := fake.refreshCalls.Load(); n != 1 {
		t.Errorf("calls before the retry time: got %d, want 1", n)
	}
	h.clock.Advance(31 * time.Second)
	h.srv.RefreshDue(ctx)
	a, _ := h.st.GetAccount(ctx, id)
	if fake.refreshCalls.Load() != 2 || a.RefreshFailures != 2 || !a.RefreshRetryAt.Equal(h.clock.Now().Add(time.Minute)) {
		t.Errorf("second failure: got calls %d failures %d retry %v, want 2, 2 and a minute", fake.refreshCalls.Load(), a.RefreshFailures, a.RefreshRetryAt)
	}
	// An operator fixes it and refreshes by hand: the failure clears.
	fake.failRefresh.Store(false)
	r = h.do("POST", "/admin/accounts/"+id+"/refresh", token, nil)
	wantStatus(t, r, http.StatusOK)
	got = adminapi.AccountResponse{}
	r.decode(t, &got)
	if got.Account.Status.State != adminapi.AccountActive || got.Account.OAuth.RefreshError != "" {
		t.Errorf("after a manual refresh: got %+v %+v, want active", got.Account.Status, got.Account.OAuth)
	}
	apiKey := h.addAccount(token, adminapi.AddAccountRequest{Name: "k", APIKey: testAPIKey})
	wantStatus(t, h.do("POST", "/admin/accounts/"+apiKey.ID+"/refresh", token, nil), http.StatusConflict)
	wantStatus(t, h.do("POST", "/admin/accounts/nope/refresh", token, nil), http.StatusNotFound)
}

func TestRefreshBackoffDoublesUpToThirtyMinutes(t *testing.T) {
	tests := []struct {
		failures int
		want     time.Duration
	}{{1, 30 * time.Second}, {2, time.Minute}, {3, 2 * time.Minute}, {7, 30 * time.Minute}, {50, 30 * time.Minute}}
	for _, tt := range tests {
		if got := refreshBackoff(tt.failures); got != tt.want {
			t.Errorf("refreshBackoff(%d): got %v, want %v", tt.failures, got, tt.want)
		}
	}
}

func TestSidecarRefreshRequestTriggersOneRefresh(t *testing.T) {
	fake := newFakeOAuth(t)
	h := newHarness(t, func(o *Options) { o.OAuth = fake.config(); o.RefreshInterval = time.Hour })
	id := addOAuthAccount(t, h, fake, 5*time.Hour) // not due by time
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { h.srv.RefreshTokens(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for fake.refreshCalls.Load() == 0 && time.Now().Before(deadline) {
		// The subscription may not be up yet: publish until the control plane hears it.
		if err := h.st.RequestAccountRefresh(ctx, id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fake.refreshCalls.Load() == 0 {
		t.Fatal("no refresh after the sidecar's request")
	}
	// The token call has started; stopping Run before the new tokens are stored would
	// cancel their write.
	for time.Now().Before(deadline) {
		if a, err := h.st.GetAccount(ctx, id); err == nil && a.TokenRefreshedAt != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	// Every control plane hears a request; ones arriving right after a refresh are absorbed.
	for range 3 {
		h.srv.refreshRequested(context.Background(), id)
	}
	if n := fake.refreshCalls.Load(); n != 1 {
		t.Errorf("token endpoint got %d refresh calls, want 1", n)
	}
	h.clock.Advance(refreshRequestDebounce)
	h.srv.refreshRequested(context.Background(), id)
	if n := fake.refreshCalls.Load(); n != 2 {
		t.Errorf("after the debounce: got %d refresh calls, want 2", n)
	}
}
