package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

const (
	oauthClientID = "console-test-client"
	oauthCallback = "https://console.example/oauth/code/callback"
)

// fakeClaudeLogin is an OAuth authorize and token server that checks PKCE as Claude's does.
type fakeClaudeLogin struct {
	srv        *httptest.Server
	mu         sync.Mutex
	challenges map[string]string // code → S256 challenge
}

func newFakeClaudeLogin(t *testing.T) *fakeClaudeLogin {
	f := &fakeClaudeLogin{challenges: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f.mu.Lock()
		code := fmt.Sprintf("code-%d", len(f.challenges)+1)
		f.challenges[code] = q.Get("code_challenge")
		f.mu.Unlock()
		http.Redirect(w, r, oauthCallback+"?code="+code+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("POST /v1/oauth/token", func(w http.ResponseWriter, r *http.Request) {
		var req map[string]string
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		challenge, ok := f.challenges[req["code"]]
		delete(f.challenges, req["code"])
		f.mu.Unlock()
		sum := sha256.Sum256([]byte(req["code_verifier"]))
		w.Header().Set("Content-Type", "application/json")
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != challenge {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_grant","error_description":"unknown code or PKCE verification failed"}`)
			return
		}
		fmt.Fprint(w, `{"access_token":"sk-ant-oat01-console","refresh_token":"sk-ant-ort01-console","expires_in":3600,"scope":"user:inference","token_type":"Bearer"}`)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeClaudeLogin) config() controlplane.OAuthConfig {
	return controlplane.OAuthConfig{AuthorizeURL: f.srv.URL + "/oauth/authorize", TokenURL: f.srv.URL + "/v1/oauth/token",
		ClientID: oauthClientID, RedirectURI: oauthCallback, Scopes: "user:inference"}
}

var authorizeLink = regexp.MustCompile(`href="([^"]+)" target="_blank" rel="noopener noreferrer" id="authorize-link"`)

func TestConsoleAddsAClaudeAccountThroughThePKCELogin(t *testing.T) {
	login := newFakeClaudeLogin(t)
	s := newSiteWith(t, siteOptions{oauth: login.config()})
	b := s.loggedIn()
	csrf := b.get("/ui/accounts").csrf(t)
	start := b.post("/ui/accounts/oauth", url.Values{"csrf": {csrf}, "name": {"max plan"}, "priority": {"20"}})
	m := authorizeLink.FindStringSubmatch(start.body)
	if start.status != http.StatusOK || m == nil {
		t.Fatalf("start: got %d\n%s", start.status, start.body)
	}
	state := regexp.MustCompile(`name="state" value="([^"]+)"`).FindStringSubmatch(start.body)[1]

	// The operator opens the link and is sent to the callback page with the code.
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(strings.ReplaceAll(m[1], "&amp;", "&"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, oauthCallback) {
		t.Fatalf("authorize: sent to %q", callback)
	}

	form := url.Values{"csrf": {csrf}, "state": {state}, "name": {"max plan"}, "authorize_url": {m[1]}, "code": {callback}}
	done := b.post("/ui/accounts/oauth/finish", form)
	if done.status != http.StatusSeeOther || done.header.Get("Location") != "/ui/accounts?done=added" {
		t.Fatalf("finish with the callback address: got %d\n%s", done.status, done.body)
	}
	accts, err := s.admin.ListAccounts(context.Background())
	if err != nil || len(accts) != 1 || accts[0].Type != adminapi.AccountClaudeOAuth || accts[0].Name != "max plan" || accts[0].Priority != 20 {
		t.Fatalf("accounts after the login: %v %+v", err, accts)
	}
	// A login is finished once: the same code again is refused with the API's reason.
	again := b.post("/ui/accounts/oauth/finish", form)
	if again.status != http.StatusBadRequest || !strings.Contains(again.body, "The account was not added: state: no OAuth login was started") {
		t.Errorf("finishing twice: got %d\n%s", again.status, again.body)
	}
	if page := b.get("/ui/accounts"); strings.Contains(page.body, "sk-ant-oat01-console") || !strings.Contains(page.body, "claude_oauth") {
		t.Errorf("accounts page after the login:\n%s", page.body)
	}
}
