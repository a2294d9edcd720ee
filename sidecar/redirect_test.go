package sidecar_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/store"
)

// catcher is a server that answers 200 to anything and records what it was sent: method,
// path and the x-api-key header.
type catcher struct {
	*httptest.Server
	mu  sync.Mutex
	got []string
}

func newCatcher(t *testing.T) *catcher {
	c := &catcher{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.got = append(c.got, r.Method+" "+r.URL.Path+" x-api-key="+r.Header.Get("X-Api-Key"))
		c.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(c.Close)
	return c
}

// caught returns what the catcher was sent so far.
func (c *catcher) caught() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// TestUpstreamRedirectIsNotFollowedWithTheAccountsCredential: the relay's upstream transport
// sends a request once; an upstream answering 307 (which a client would re-post, credential
// and body included) makes the relay send nothing to the Location.
func TestUpstreamRedirectIsNotFollowedWithTheAccountsCredential(t *testing.T) {
	other := newCatcher(t)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)

	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	// The only schedulable account sits behind the redirector.
	accts, err := h.st.ListAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accts {
		if err := h.st.SetAccountSchedulable(ctx, a.ID, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.st.AddAccount(ctx, store.AccountSpec{Name: "moved", BaseURL: redirector.URL, Credential: upstreamKey}); err != nil {
		t.Fatal(err)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var resp *http.Response
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { // until the sidecar has loaded the new account list
		req := relayRequest(context.Background(), h.http.URL+"/v1/messages", h.key, jsonBody, map[string]string{"Content-Type": "application/json"})
		var err error
		if resp, err = noFollow.Do(req); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusTemporaryRedirect {
			return true
		}
		resp.Body.Close()
		return false
	})
	resp.Body.Close()
	if caught := other.caught(); len(caught) != 0 {
		t.Errorf("the redirect target received %v, want nothing from the relay", caught)
	}
}

// TestBaseURLChangedInRedisReceivesNoCredential: someone with write access to Redis points
// an account at their own host; the sidecar does not send the account's key there (the
// credential is sealed bound to its base URL), and logs why the account is not used.
func TestBaseURLChangedInRedisReceivesNoCredential(t *testing.T) {
	attacker := newCatcher(t)

	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	if body := readAll(t, resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("before: got %d %s, want 200", resp.StatusCode, body)
	}
	accts, err := h.st.ListAccounts(ctx)
	if err != nil || len(accts) != 1 {
		t.Fatalf("got (%v, %v), want one account", accts, err)
	}
	schema := h.st.Schema()
	if err := h.rdb.HSet(ctx, schema.Account(accts[0].ID), "base_url", attacker.URL).Err(); err != nil {
		t.Fatal(err)
	}
	if err := h.rdb.Incr(ctx, schema.AccountsVersion()).Err(); err != nil { // sidecars reload
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { // until the sidecar has reloaded the account
		resp := h.post("/v1/messages", h.key, jsonBody, nil)
		readAll(t, resp.Body)
		return resp.StatusCode != http.StatusOK || len(attacker.caught()) > 0
	})
	for range 3 {
		resp := h.post("/v1/messages", h.key, jsonBody, nil)
		if body := readAll(t, resp.Body); resp.StatusCode == http.StatusOK {
			t.Errorf("after the change: got 200 %s, want no account to serve", body)
		}
	}
	if caught := attacker.caught(); len(caught) != 0 {
		t.Errorf("the host named in Redis received %v, want nothing", caught)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "changed outside the admin API") || !strings.Contains(logs, accts[0].ID) {
		t.Errorf("logs lack the tampered account line:\n%s", logs)
	}
}
