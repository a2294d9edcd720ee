package controlplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// catcher is a second host that records every request reaching it: where a redirect would
// send a credential.
type catcher struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string // method, headers and body of each request
}

func newCatcher(t *testing.T) *catcher {
	c := &catcher{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b strings.Builder
		b.WriteString(r.Method + " " + r.URL.String() + "\n")
		r.Header.Write(&b)
		b.Write(body)
		c.mu.Lock()
		c.seen = append(c.seen, b.String())
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"stolen","refresh_token":"stolen","expires_in":3600}`)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *catcher) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seen...)
}

// newRedirector answers every request with status and a Location on the catcher.
func newRedirector(t *testing.T, status int, to string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Location", to+r.URL.Path)
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAccountTestReportsARedirectAndSendsNoCredentialThere(t *testing.T) {
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			other := newCatcher(t)
			redirector := newRedirector(t, status, other.srv.URL)
			h, token := loggedIn(t)
			for _, req := range []adminapi.AddAccountRequest{
				{Name: "key", BaseURL: redirector.URL, APIKey: testAPIKey},
				{Name: "sub", Type: "claude_oauth", BaseURL: redirector.URL, AccessToken: "sk-ant-oat01-token-0123456789abcdef"},
			} {
				a := h.addAccount(token, req)
				r := h.do("POST", "/admin/accounts/"+a.ID+"/test", token, nil)
				res := wantDecoded[adminapi.TestAccountResult](t, r, http.StatusOK)
				want := fmt.Sprintf("upstream answered %d redirect to %s", status, other.srv.URL)
				if res.OK || res.HTTPStatus != status || !strings.HasPrefix(res.Error, want) {
					t.Errorf("%s: got %+v, want a failed test with status %d and an error naming %q", req.Name, res, status, want)
				}
			}
			if got := other.requests(); len(got) != 0 {
				t.Errorf("the redirect target received %d requests, want none:\n%s", len(got), strings.Join(got, "\n---\n"))
			}
		})
	}
}

func TestOAuthTokenRequestsDoNotFollowRedirects(t *testing.T) {
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			other := newCatcher(t)
			redirector := newRedirector(t, status, other.srv.URL)
			fake := newFakeOAuth(t)
			cfg := fake.config()
			cfg.TokenURL = redirector.URL + "/v1/oauth/token"
			h, token := loggedIn(t, func(o *Options) { o.OAuth = cfg })
			ctx := context.Background()

			t.Run("refresh", func(t *testing.T) {
				exp := h.clock.Now().Add(time.Minute)
				a, err := h.st.AddAccount(ctx, store.AccountSpec{Name: "sub", Type: store.AccountTypeClaudeOAuth,
					Credential: "access-0", RefreshToken: "refresh-secret-0", TokenExpiresAt: &exp, Priority: 1})
				if err != nil {
					t.Fatal(err)
				}
				r := h.do("POST", "/admin/accounts/"+a.ID+"/refresh", token, nil)
				wantStatus(t, r, http.StatusBadGateway)
				wantMsg := "redirect to " + other.srv.URL
				if e := r.errorBody(t); !strings.Contains(e.Message, wantMsg) {
					t.Errorf("got message %q, want it to name %q", e.Message, wantMsg)
				}
				got, err := h.st.GetAccount(ctx, a.ID)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(got.RefreshError, wantMsg) {
					t.Errorf("refresh error: got %q, want it to name %q", got.RefreshError, wantMsg)
				}
				if sec, _ := h.st.AccountSecrets(ctx, a.ID); sec.Credential != "access-0" {
					t.Errorf("credential: got %q, want access-0 kept (nothing from the redirect target)", sec.Credential)
				}
			})
			t.Run("code exchange", func(t *testing.T) {
				start := h.oauthStart(token, "new")
				callback := fake.follow(t, start.AuthorizeURL)
				r := h.do("POST", "/admin/accounts/oauth/finish", token, adminapi.OAuthFinishRequest{CallbackURL: callback})
				wantStatus(t, r, http.StatusBadGateway)
				if e := r.errorBody(t); !strings.Contains(e.Message, "redirect to "+other.srv.URL) {
					t.Errorf("got message %q, want it to name the redirect", e.Message)
				}
			})
			if got := other.requests(); len(got) != 0 {
				t.Errorf("the redirect target received %d requests, want none:\n%s", len(got), strings.Join(got, "\n---\n"))
			}
		})
	}
}
