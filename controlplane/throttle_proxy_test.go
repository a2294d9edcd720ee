package controlplane

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// loginFrom attempts a login as if nginx on loopback forwarded it for client.
func (h *harness) loginFrom(client, user, password string) int {
	h.t.Helper()
	body, _ := json.Marshal(adminapi.LoginRequest{Username: user, Password: password})
	req, _ := http.NewRequest("POST", h.http.URL+"/admin/login", bytes.NewReader(body))
	req.Header.Set("X-Forwarded-For", client)
	resp, err := h.http.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestLoginThrottleSeesClientsBehindATrustedProxy(t *testing.T) {
	dir := t.TempDir()
	// No server block: loopback (nginx on the host) is the trusted proxy.
	writeHCL(t, dir, routeHCL("/v1/messages"))
	h := newHarness(t, func(o *Options) { o.Config = newTestConfig(t, o.Store, dir) })

	for i := 0; i < 5; i++ {
		if got := h.loginFrom("198.51.100.7", "guess"+string(rune('a'+i)), "wrong"); got != http.StatusUnauthorized {
			t.Fatalf("attempt %d: got %d, want 401", i+1, got)
		}
	}
	if got := h.loginFrom("198.51.100.7", "guess-z", "wrong"); got != http.StatusTooManyRequests {
		t.Errorf("the guessing client: got %d, want 429", got)
	}
	// Another admin behind the same proxy is not locked out by someone else's guesses.
	if got := h.loginFrom("198.51.100.8", testUser, testPassword); got != http.StatusOK {
		t.Errorf("another client: got %d, want 200", got)
	}
}

func TestForwardedForIsIgnoredWithoutATrustedProxy(t *testing.T) {
	h := newHarness(t) // no configuration: nothing is trusted, the socket peer counts
	for i := 0; i < 5; i++ {
		h.loginFrom("198.51.100.7", "guess"+string(rune('a'+i)), "wrong")
	}
	if got := h.loginFrom("203.0.113.9", "guess-z", "wrong"); got != http.StatusTooManyRequests {
		t.Errorf("a forged X-Forwarded-For escaped the throttle: got %d, want 429", got)
	}
}
