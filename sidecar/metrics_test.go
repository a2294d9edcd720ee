package sidecar_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

func TestMetricsCountRequestsTokensAndErrors(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.up.Enqueue(fakeupstream.Script{Deltas: 3, Usage: &fakeupstream.Usage{InputTokens: 40, OutputTokens: 9}})
	resp := h.post("/v1/messages", h.key, streamBody, nil)
	readAll(t, resp.Body)
	resp = h.post("/v1/messages", "", jsonBody, nil)
	readAll(t, resp.Body)
	h.waitUsage("claude-sonnet-4-5-20250929", 1)

	// The recorder counts a batch once Redis has acknowledged it, just after it lands.
	var body string
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
		var err error
		if resp, err = http.Get(h.http.URL + "/metrics"); err != nil {
			t.Fatal(err)
		}
		body = readAll(t, resp.Body)
		return strings.Contains(body, "claude_relay_usage_records_written_total 1")
	})
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content-type: got %q", ct)
	}
	for _, want := range []string{
		`claude_relay_requests_total{route="messages",status="200"} 1`,
		`claude_relay_requests_total{route="messages",status="401"} 1`,
		`claude_relay_tokens_total{kind="input"} 40`,
		`claude_relay_tokens_total{kind="output"} 9`,
		`claude_relay_upstream_response_seconds_count{route="messages"} 1`,
		`claude_relay_active_streams 0`,
		`claude_relay_usage_records_written_total 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestKeyLastUseIsRecorded(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	before := time.Now().Add(-time.Second)
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	readAll(t, resp.Body)
	testutil.Eventually(t, 10*time.Second, "the condition", func() bool {
		k, err := h.st.GetKey(context.Background(), h.keyID)
		return err == nil && k.LastUsedAt != nil && k.LastUsedAt.After(before)
	})
}
