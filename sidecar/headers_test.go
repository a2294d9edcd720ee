package sidecar_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/claude-relay/claude-relay/fakeupstream"
)

// gatewayHeaders are what an upstream, or a gateway in front of it, may add to an answer.
var gatewayHeaders = map[string]string{
	"Set-Cookie":                             "__cf_bm=secret-session; path=/; HttpOnly",
	"X-Debug-Backend":                        "internal-llm-gw.corp:8443",
	"Via":                                    "1.1 internal-llm-gw.corp",
	"Anthropic-Ratelimit-Unified-Status":     "allowed",
	"Anthropic-Ratelimit-Tokens-Remaining":   "123456",
	"Anthropic-Ratelimit-Unified-Reset":      "1767225600",
	"Anthropic-Ratelimit-Unified-Fallback-X": "y",
}

func TestUpstreamResponseHeadersPassOnlyByAllowlist(t *testing.T) {
	for _, tt := range []struct {
		name, hcl string
		extra     []string // headers the configuration adds
	}{
		{"default allowlist", "", nil},
		{"extended in HCL", `
server { response_headers = ["x-debug-*", "set-*"] }
pool "p" {}
route "messages" {
  paths = ["/v1/messages"]
  pool  = "p"
}
`, []string{"X-Debug-Backend"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{hcl: tt.hcl})
			for _, body := range []string{jsonBody, streamBody} {
				h.up.Enqueue(fakeupstream.Script{Header: gatewayHeaders})
				resp := h.post("/v1/messages", h.key, body, nil)
				readAll(t, resp.Body)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("got %d, want 200", resp.StatusCode)
				}
				for _, name := range []string{"Content-Type", "Request-Id", "Anthropic-Ratelimit-Unified-Status", "Anthropic-Ratelimit-Tokens-Remaining", "Anthropic-Ratelimit-Unified-Reset", "Anthropic-Ratelimit-Unified-Fallback-X"} {
					if resp.Header.Get(name) == "" {
						t.Errorf("%s was not relayed", name)
					}
				}
				withheld := []string{"Set-Cookie", "Anthropic-Organization-Id", "Via"}
				if tt.extra == nil {
					withheld = append(withheld, "X-Debug-Backend")
				}
				for _, name := range withheld {
					if v := resp.Header.Get(name); v != "" {
						t.Errorf("%s reached the client: %q", name, v)
					}
				}
				for _, name := range tt.extra {
					if resp.Header.Get(name) != gatewayHeaders[name] {
						t.Errorf("%s: got %q, want it relayed as configured", name, resp.Header.Get(name))
					}
				}
			}
		})
	}
}

func TestUpstreamWithOversizedResponseHeadersIsA502(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.up.Enqueue(fakeupstream.Script{Header: map[string]string{"X-Huge": strings.Repeat("a", 2<<20)}})
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	body := readAll(t, resp.Body)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("got %d (%d header bytes), want 502", resp.StatusCode, len(resp.Header.Get("X-Huge")))
	}
	if typ, msg := anthropicError(t, body); typ != "api_error" || !strings.Contains(msg, "response headers exceeded the relay's 64 KiB limit") {
		t.Errorf("got %s %q, want an api_error about the upstream's headers", typ, msg)
	}
	if resp.Header.Get("X-Huge") != "" {
		t.Error("the oversized header reached the client")
	}
}
