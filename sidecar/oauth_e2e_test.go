package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/store"
)

func TestOAuthAccountSendsBearerAndMergesTheOAuthBeta(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	// An OAuth account ahead of the harness's API-key account (lower priority runs first).
	if _, err := h.st.AddAccount(context.Background(), store.AccountSpec{Name: "sub", Type: store.AccountTypeClaudeOAuth,
		BaseURL: h.up.URL(), Credential: upstreamKey, Priority: 1}); err != nil {
		t.Fatal(err)
	}
	// The sidecar picks the new account up at once (announced) or within its 50 ms account
	// poll. Each attempt is a new conversation: one that started on the other account while
	// the list was reloading stays there (sticky session), as it should.
	var reqs []fakeupstream.Request
	var sent string
	for attempt, deadline := 0, time.Now().Add(5*time.Second); time.Now().Before(deadline); attempt++ {
		h.up.Reset()
		sent = strings.Replace(jsonBody, "Hello, relay", fmt.Sprintf("Hello, relay (attempt %d)", attempt), 1)
		resp := h.post("/v1/messages", h.key, sent, map[string]string{"anthropic-beta": "prompt-caching-2024-07-31, context-1m-2025-08-07"})
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("got status %d (%s), want 200", resp.StatusCode, body)
		}
		reqs = h.up.Requests()
		if len(reqs) == 1 && reqs[0].Header.Get("Authorization") != "" {
			break
		}
	}
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(reqs))
	}
	hdr := reqs[0].Header
	if got := hdr.Get("Authorization"); got != "Bearer "+upstreamKey {
		t.Errorf("got Authorization %q, want the OAuth token as a bearer token", got)
	}
	if got := hdr.Get("X-Api-Key"); got != "" {
		t.Errorf("got x-api-key %q, want none for an OAuth account", got)
	}
	if got := hdr.Values("Anthropic-Beta"); len(got) != 1 || got[0] != "prompt-caching-2024-07-31,context-1m-2025-08-07,oauth-2025-04-20" {
		t.Errorf("got anthropic-beta %q, want the client's values with oauth-2025-04-20 added", got)
	}
	if string(reqs[0].Body) != sent {
		t.Errorf("upstream body differs from the client's: the relay must not rewrite it\ngot  %s\nwant %s", reqs[0].Body, sent)
	}
	if ua := hdr.Get("User-Agent"); strings.Contains(ua, "claude-cli") {
		t.Errorf("got User-Agent %q: the relay must not forge a client identity", ua)
	}
}

func TestRegeneratedAndDeletedKeysAreRefusedWithinASecond(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(h *harness) error
	}{
		{"regenerate", func(h *harness) error { _, _, err := h.st.RegenerateKey(context.Background(), h.keyID); return err }},
		{"soft delete", func(h *harness) error { return h.st.DeleteKey(context.Background(), h.keyID) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			resp := h.post("/v1/messages/count_tokens", h.key, jsonBody, nil)
			readAll(t, resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("before: got %d, want 200 (and a cached auth result)", resp.StatusCode)
			}
			if err := tc.change(h); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, time.Second, "the condition", func() bool {
				resp := h.post("/v1/messages/count_tokens", h.key, jsonBody, nil)
				readAll(t, resp.Body)
				return resp.StatusCode == http.StatusUnauthorized
			})
		})
	}
}
