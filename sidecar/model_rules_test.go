package sidecar_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"testing"
)

// TestModelRulesCannotBeBypassed sends, with a key limited to Haiku models, every way of
// naming another model that an upstream could read but a byte-wise key comparison would
// miss: each is refused before anything is sent, and only the honest Haiku request reaches
// the upstream.
func TestModelRulesCannotBeBypassed(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: policyHCL(`
  models        = ["claude-haiku-*"]
  denied_models = ["claude-haiku-3*"]
`)})
	const rest = `"max_tokens":16,"messages":[{"role":"user","content":"hi"}]`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"model":"claude-opus-4-1",` + rest + `}`))
	zw.Close()
	tests := []struct {
		name, body string
		hdr        map[string]string
		status     int
		typ, want  string
	}{
		{"escaped key", `{"mod\u0065l":"claude-opus-4-1",` + rest + `}`, nil, 403, "permission_error", `model "claude-opus-4-1" is not allowed`},
		{"capitalised key", `{"Model":"claude-opus-4-1",` + rest + `}`, nil, 403, "permission_error", `model "claude-opus-4-1" is not allowed`},
		{"escaped value", `{"model":"claude-\u006fpus-4-1",` + rest + `}`, nil, 403, "permission_error", `model "claude-opus-4-1" is not allowed`},
		{"denied model, escaped key", `{"MOD\u0045L":"claude-haiku-3-5",` + rest + `}`, nil, 403, "permission_error", "except claude-haiku-3*"},
		{"allowed then another spelling", `{"model":"claude-haiku-4-5","Model":"claude-opus-4-1",` + rest + `}`, nil, 400, "invalid_request_error", "more than once"},
		{"allowed twice over", `{"model":"claude-haiku-4-5",` + rest + `,"model":"claude-opus-4-1"}`, nil, 400, "invalid_request_error", "more than once"},
		{"no model", `{` + rest + `}`, nil, 400, "invalid_request_error", `no "model"`},
		{"model not a string", `{"model":["claude-opus-4-1"],` + rest + `}`, nil, 400, "invalid_request_error", "must be a string"},
		{"malformed body", `{"model":"claude-haiku-4-5",` + rest, nil, 400, "invalid_request_error", "not a well-formed JSON object"},
		{"gzip body", gz.String(), map[string]string{"Content-Encoding": "gzip"}, 415, "invalid_request_error", "Content-Encoding: gzip"},
		{"gzip listed after identity", `{"model":"claude-haiku-4-5",` + rest + `}`, map[string]string{"Content-Encoding": "identity, gzip"}, 415, "invalid_request_error", "uncompressed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := h.postStatus(t, tt.body, tt.hdr, tt.status)
			if typ, msg := anthropicError(t, body); typ != tt.typ || !strings.Contains(msg, tt.want) {
				t.Errorf("got %s %q, want %s containing %q", typ, msg, tt.typ, tt.want)
			}
		})
	}
	if reqs := h.up.Requests(); len(reqs) != 0 {
		t.Fatalf("the upstream received %d requests, want none; the first: %s", len(reqs), reqs[0].Body)
	}
	resp := h.post("/v1/messages", h.key, `{"model":"claude-haiku-4-5",`+rest+`}`, map[string]string{"Content-Encoding": "identity"})
	if body := readAll(t, resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("the allowed model: got %d %s, want 200", resp.StatusCode, body)
	}
}
