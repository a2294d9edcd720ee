package sidecar_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/store"
)

// noPoll is a version poll too slow to matter: changes must arrive another way.
const noPoll = time.Hour

// within sends requests until ok holds for one, for at most d, and returns how long it took.
func within(t *testing.T, d time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("%s after %s", what, took.Round(100*time.Microsecond))
	return took
}

func TestFirstAccountIsUsedByTheVeryNextRequest(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	h.replaceAccounts(0, "") // none
	base := h.wired(wiredOptions{accountsPoll: noPoll})
	if status, body := send(t, base, h.key, uniqueBody("claude-sonnet-4-5-20250929"), nil); status == http.StatusOK {
		t.Fatalf("without an account: got %d %s, want a refusal", status, body)
	}
	if _, err := h.st.AddAccount(ctx, store.AccountSpec{Name: "first", Type: store.AccountTypeAnthropicAPIKey, BaseURL: h.up.URL(), Credential: upstreamKey}); err != nil {
		t.Fatal(err)
	}
	// No wait at all: the request right after the admin call returns.
	if status, body := send(t, base, h.key, uniqueBody("claude-sonnet-4-5-20250929"), nil); status != http.StatusOK {
		t.Fatalf("the request right after the first account was added: got %d %s, want 200", status, body)
	}
}

func TestAnnouncedAccountChangesReachTheSidecarWithoutItsPoll(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	base := h.wired(wiredOptions{accountsPoll: noPoll})
	sentWith := func(key string) func() bool {
		return func() bool {
			h.up.Reset()
			if status, body := send(t, base, h.key, uniqueBody("claude-sonnet-4-5-20250929"), nil); status != http.StatusOK {
				t.Fatalf("got %d %s, want 200", status, body)
			}
			reqs := h.up.Requests()
			return len(reqs) == 1 && reqs[0].Header.Get("X-Api-Key") == key
		}
	}
	within(t, 5*time.Second, "the harness's account serves", sentWith(upstreamKey))

	// A new account that runs first (lower priority number).
	second := upstreamKey + "-2"
	acc, err := h.st.AddAccount(ctx, store.AccountSpec{Name: "second", Type: store.AccountTypeAnthropicAPIKey, BaseURL: h.up.URL(), Credential: second, Priority: 1})
	if err != nil {
		t.Fatal(err)
	}
	within(t, time.Second, "a new account serves", sentWith(second))

	// Taken out of rotation: the harness's account serves again.
	if err := h.st.SetAccountSchedulable(ctx, acc.ID, false); err != nil {
		t.Fatal(err)
	}
	within(t, time.Second, "an unschedulable account is left out", sentWith(upstreamKey))
}

func TestKeyEnabledAgainWorksWithoutWaitingForTheCachedRefusal(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	status := func() int {
		resp := h.post("/v1/messages/count_tokens", h.key, jsonBody, nil)
		readAll(t, resp.Body)
		return resp.StatusCode
	}
	if err := h.st.SetKeyEnabled(ctx, h.keyID, false); err != nil {
		t.Fatal(err)
	}
	within(t, time.Second, "the disabled key is refused", func() bool { return status() == http.StatusUnauthorized })
	if got := status(); got != http.StatusUnauthorized {
		t.Fatalf("got %d, want 401 (and the refusal cached for the harness's 1 s)", got)
	}
	if err := h.st.SetKeyEnabled(ctx, h.keyID, true); err != nil {
		t.Fatal(err)
	}
	// The refusal is cached for 1 s: the re-enabled key must work well before.
	within(t, 300*time.Millisecond, "the re-enabled key works", func() bool { return status() == http.StatusOK })
}
