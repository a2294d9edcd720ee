package sidecar_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar"
	"github.com/claude-relay/claude-relay/store"
)

func (h *harness) sdk(opts ...option.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]option.RequestOption{
		option.WithBaseURL(h.http.URL),
		option.WithAuthToken(h.key), // the Go SDK sends Authorization: Bearer
		option.WithMaxRetries(0),
	}, opts...)...)
}

func sdkParams() anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5-20250929",
		MaxTokens: 512,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello through the relay"))},
	}
}

// streamMessage streams params through client and returns the message the SDK accumulated.
func streamMessage(client anthropic.Client, params anthropic.MessageNewParams) (anthropic.Message, error) {
	stream := client.Messages.NewStreaming(context.Background(), params)
	defer stream.Close()
	var msg anthropic.Message
	for stream.Next() {
		if err := msg.Accumulate(stream.Current()); err != nil {
			return msg, fmt.Errorf("accumulate: %w", err)
		}
	}
	if err := stream.Err(); err != nil {
		return msg, fmt.Errorf("stream: %w", err)
	}
	return msg, nil
}

// timeoutRoute is a configuration whose messages route has the given idle timeout.
func timeoutRoute(timeout string) string {
	return `
pool "p" {}
route "messages" {
  paths   = ["/v1/messages"]
  pool    = "p"
  timeout = "` + timeout + `"
}
`
}

func wantStore(u fakeupstream.Usage) store.Usage {
	w5, w1 := u.Ephemeral5mInputTokens, u.Ephemeral1hInputTokens
	if w5 == 0 && w1 == 0 {
		w5 = u.CacheCreationInputTokens
	}
	return store.Usage{Requests: 1, InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, CacheWrite5m: w5, CacheWrite1h: w1, CacheRead: u.CacheReadInputTokens}
}

func TestSDKStreamingThroughRelayRecordsExactUsage(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.up.Enqueue(fakeupstream.Script{Deltas: 6, Blocks: []string{"thinking", "text", "tool_use"},
		Usage: &fakeupstream.Usage{InputTokens: 1234, OutputTokens: 77, CacheCreationInputTokens: 300, CacheReadInputTokens: 4000, Ephemeral5mInputTokens: 100, Ephemeral1hInputTokens: 200}})
	msg, err := streamMessage(h.sdk(), sdkParams())
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := h.upstream(1)
	if err != nil {
		t.Fatal(err)
	}
	up := reqs[0]
	if got, want := len(msg.Content), 3; got != want {
		t.Fatalf("content blocks: got %d, want %d", got, want)
	}
	if msg.Usage.InputTokens != up.Usage.InputTokens || msg.Usage.OutputTokens != up.Usage.OutputTokens {
		t.Errorf("SDK usage: got in=%d out=%d, want in=%d out=%d", msg.Usage.InputTokens, msg.Usage.OutputTokens, up.Usage.InputTokens, up.Usage.OutputTokens)
	}
	got := h.waitUsage("claude-sonnet-4-5-20250929", 1)
	want := wantStore(up.Usage)
	got.CostMicroUSD = 0
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored usage (-want +got):\n%s", diff)
	}
	tot, err := h.st.KeyTotals(context.Background(), h.keyID)
	if err != nil {
		t.Fatal(err)
	}
	// Sonnet 4.5: $3 in, $15 out, $3.75 5m write, $6 1h write, $0.30 read per MTok.
	// Tokens × USD per million tokens = micro-USD.
	var micro float64 = 1234*3 + 77*15 + 100*3.75 + 200*6 + 4000*0.30
	wantCost := int64(math.Round(micro))
	if tot.CostMicroUSD != wantCost {
		t.Errorf("cost: got %d µUSD, want %d", tot.CostMicroUSD, wantCost)
	}
}

func TestStreamBytesArriveUnchangedAndInOrder(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.up.Enqueue(fakeupstream.Script{Deltas: 8, Pace: 30 * time.Millisecond, Blocks: []string{"text", "tool_use"}})
	resp := h.post("/v1/messages", h.key, streamBody, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200: %s", resp.StatusCode, readAll(t, resp.Body))
	}
	// Read event by event, timing each: unbuffered relaying means the first event is
	// in hand long before the last one is written upstream.
	br := bufio.NewReader(resp.Body)
	var got strings.Builder
	var firstAt, lastAt time.Time
	for {
		line, err := br.ReadString('\n')
		got.WriteString(line)
		if line == "\n" {
			if firstAt.IsZero() {
				firstAt = time.Now()
			}
			lastAt = time.Now()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	resp.Body.Close()
	reqs, _ := h.upstream(1)
	want := strings.Join(reqs[0].Events, "")
	if got.String() != want {
		t.Fatalf("relayed bytes differ from upstream bytes:\n%s", cmp.Diff(want, got.String()))
	}
	// 8+ events paced 30 ms apart: at least ~250 ms between first and last arrival.
	if spread := lastAt.Sub(firstAt); spread < 150*time.Millisecond {
		t.Errorf("events arrived within %s of each other: the stream was buffered", spread)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("content-type: got %q, want text/event-stream", ct)
	}
}

func TestSDKNonStreamingCountTokensAndModels(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	client := h.sdk()
	ctx := context.Background()
	msg, err := client.Messages.New(ctx, sdkParams())
	if err != nil {
		t.Fatalf("messages.new: %v", err)
	}
	if len(msg.Content) == 0 || msg.Content[0].Text == "" {
		t.Fatalf("got empty message %+v", msg)
	}
	reqs, _ := h.up.WaitRequests(ctx, 1)
	got := h.waitUsage("claude-sonnet-4-5-20250929", 1)
	got.CostMicroUSD = 0
	if diff := cmp.Diff(wantStore(reqs[0].Usage), got); diff != "" {
		t.Errorf("stored usage (-want +got):\n%s", diff)
	}

	ct, err := client.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{
		Model:    "claude-sonnet-4-5-20250929",
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("count me"))},
	})
	if err != nil {
		t.Fatalf("count_tokens: %v", err)
	}
	if ct.InputTokens <= 0 {
		t.Errorf("count_tokens: got %d, want > 0", ct.InputTokens)
	}
	page, err := client.Models.List(ctx, anthropic.ModelListParams{})
	if err != nil {
		t.Fatalf("models.list: %v", err)
	}
	if len(page.Data) == 0 {
		t.Fatal("models.list: got no models")
	}
	m, err := client.Models.Get(ctx, page.Data[0].ID, anthropic.ModelGetParams{})
	if err != nil || m.ID != page.Data[0].ID {
		t.Fatalf("models.get: got %v %v, want %s", m, err, page.Data[0].ID)
	}
	// count_tokens and models are not billed as messages.
	time.Sleep(100 * time.Millisecond)
	if again := h.waitUsage("claude-sonnet-4-5-20250929", 1); again.Requests != 1 {
		t.Errorf("requests recorded: got %d, want 1", again.Requests)
	}
}

func TestHeadersSentUpstream(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp := h.post("/api/v1/messages?beta=true", h.key, jsonBody, map[string]string{
		"Anthropic-Version": "2025-05-14",
		"Anthropic-Beta":    "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
		"Accept-Encoding":   "gzip, br",
		"Cookie":            "session=abc",
		"X-Forwarded-For":   "203.0.113.9",
		"Connection":        "keep-alive, X-Secret-Hop",
		"X-Secret-Hop":      "drop me",
		"User-Agent":        "claude-cli/2.0.14 (external, cli)",
		"X-App":             "cli",
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d: %s", resp.StatusCode, readAll(t, resp.Body))
	}
	readAll(t, resp.Body)
	reqs, _ := h.upstream(1)
	r := reqs[0]
	checks := []struct{ name, got, want string }{
		{"path", r.Path, "/v1/messages"},
		{"query", r.RawQuery, "beta=true"},
		{"x-api-key", r.Header.Get("X-Api-Key"), upstreamKey},
		{"authorization", r.Header.Get("Authorization"), ""},
		{"anthropic-version", r.Header.Get("Anthropic-Version"), "2025-05-14"},
		{"anthropic-beta", r.Header.Get("Anthropic-Beta"), "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"},
		{"accept-encoding", r.Header.Get("Accept-Encoding"), "identity"},
		{"cookie", r.Header.Get("Cookie"), ""},
		{"x-forwarded-for", r.Header.Get("X-Forwarded-For"), ""},
		{"connection-listed header", r.Header.Get("X-Secret-Hop"), ""},
		{"user-agent", r.Header.Get("User-Agent"), "claude-cli/2.0.14 (external, cli)"},
		{"x-app", r.Header.Get("X-App"), "cli"},
		{"body", string(r.Body), jsonBody},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if strings.Contains(fmt.Sprint(r.Header), h.key) {
		t.Error("the relay key reached the upstream")
	}
}

// anthropicError decodes Anthropic's error shape.
func anthropicError(t *testing.T, body string) (typ, msg string) {
	t.Helper()
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Type != "error" {
		t.Fatalf("not an Anthropic error body: %q (%v)", body, err)
	}
	return e.Error.Type, e.Error.Message
}

func TestRefusals(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	revoked, revokedSecret, err := h.st.CreateKey(context.Background(), store.KeySpec{Name: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.st.RevokeKey(context.Background(), revoked.ID); err != nil {
		t.Fatal(err)
	}
	big := `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"` + strings.Repeat("a", 10<<20) + `"}]}`
	tests := []struct {
		name, path, key, body string
		status                int
		typ, contains         string
	}{
		{"missing key", "/v1/messages", "", jsonBody, 401, "authentication_error", "missing relay key"},
		{"malformed key", "/v1/messages", "sk-ant-not-a-relay-key", jsonBody, 401, "authentication_error", "cr_"},
		{"unknown key", "/v1/messages", "cr_" + strings.Repeat("ab", 32), jsonBody, 401, "authentication_error", "unknown relay key"},
		{"revoked key", "/v1/messages", revokedSecret, jsonBody, 401, "authentication_error", "revoked"},
		{"body over 10 MiB", "/v1/messages", h.key, big, 413, "request_too_large", "10485760"},
		{"no route", "/v1/complete", h.key, jsonBody, 404, "not_found_error", "no route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.post(tt.path, tt.key, tt.body, nil)
			body := readAll(t, resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			typ, msg := anthropicError(t, body)
			if typ != tt.typ || !strings.Contains(msg, tt.contains) {
				t.Errorf("error: got %s %q, want %s containing %q", typ, msg, tt.typ, tt.contains)
			}
		})
	}
	if n := len(h.up.Requests()); n != 0 {
		t.Errorf("upstream saw %d requests, want 0", n)
	}
}

func TestRevokedKeyRefusedWithinASecond(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	readAll(t, resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("before revocation: got %d, want 200", resp.StatusCode)
	}
	if err := h.st.RevokeKey(context.Background(), h.keyID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, time.Second, "the condition", func() bool {
		resp := h.post("/v1/messages/count_tokens", h.key, jsonBody, nil)
		readAll(t, resp.Body)
		return resp.StatusCode == http.StatusUnauthorized
	})
}

func TestUpstreamErrorsPassThrough(t *testing.T) {
	for _, status := range []int{400, 401, 403, 404, 413, 429, 500, 529} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			h.up.Enqueue(fakeupstream.Script{Status: status, RetryAfter: 30 * time.Second})
			resp := h.post("/v1/messages", h.key, jsonBody, nil)
			body := readAll(t, resp.Body)
			if resp.StatusCode != status {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, status)
			}
			anthropicError(t, body)
			if resp.Header.Get("Request-Id") == "" {
				t.Error("upstream request-id header was not relayed")
			}
			if status == 429 && resp.Header.Get("Retry-After") != "30" {
				t.Errorf("retry-after: got %q, want 30", resp.Header.Get("Retry-After"))
			}
		})
	}
}

func TestFailoverBeforeFirstByte(t *testing.T) {
	for _, status := range []int{429, 529, 500, 503} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			h := newHarness(t, harnessOptions{accounts: 2})
			h.up.Enqueue(fakeupstream.Script{Status: status}, fakeupstream.Script{})
			resp := h.post("/v1/messages", h.key, streamBody, nil)
			body := readAll(t, resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(body, "message_stop") {
				t.Fatalf("got %d %q, want a complete 200 stream from the second account", resp.StatusCode, body)
			}
			reqs, _ := h.upstream(2)
			if a, b := reqs[0].Header.Get("X-Api-Key"), reqs[1].Header.Get("X-Api-Key"); a == b {
				t.Errorf("both attempts used account key %q, want different accounts", a)
			}
			if string(reqs[0].Body) != string(reqs[1].Body) {
				t.Error("the failover attempt did not replay the same body")
			}
		})
	}
}

func TestUpstreamResetMidStreamEndsWithSSEError(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.up.Enqueue(fakeupstream.Script{Deltas: 10, ResetAfterEvents: 4})
	resp := h.post("/v1/messages", h.key, streamBody, nil)
	body := readAll(t, resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status: got %d, want 200", resp.StatusCode)
	}
	reqs, _ := h.upstream(1)
	upstream := strings.Join(reqs[0].Events, "")
	if !strings.HasPrefix(body, upstream) {
		t.Fatalf("the events before the reset were not relayed intact:\n%s", cmp.Diff(upstream, body))
	}
	rest := strings.TrimPrefix(body, upstream)
	if !strings.HasPrefix(rest, "event: error\ndata: ") || !strings.Contains(rest, `"api_error"`) {
		t.Fatalf("after the reset: got %q, want an SSE error event", rest)
	}
	// The input tokens of message_start are still accounted.
	got := h.waitUsage("claude-sonnet-4-5-20250929", 1)
	if got.InputTokens != reqs[0].Usage.InputTokens {
		t.Errorf("input tokens: got %d, want %d", got.InputTokens, reqs[0].Usage.InputTokens)
	}
}

func TestIdleUpstreamTimesOutWithSSEError(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: timeoutRoute("300ms")})
	h.up.Enqueue(fakeupstream.Script{Deltas: 3, Pace: 2 * time.Second})
	resp := h.post("/v1/messages", h.key, streamBody, nil)
	body := readAll(t, resp.Body)
	if !strings.Contains(body, "event: error") || !strings.Contains(body, "sent nothing for 300ms") {
		t.Fatalf("got %q, want an SSE error naming the timeout", body)
	}
}

func TestHealthyLongStreamIsNotCutByTimeout(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: timeoutRoute("250ms")})
	// 12 events 100 ms apart: 1.2 s in all, far beyond the 250 ms idle bound.
	h.up.Enqueue(fakeupstream.Script{Deltas: 6, Pace: 100 * time.Millisecond})
	resp := h.post("/v1/messages", h.key, streamBody, nil)
	body := readAll(t, resp.Body)
	if strings.Contains(body, "event: error") || !strings.Contains(body, "message_stop") {
		t.Fatalf("got %q, want a complete stream", body)
	}
}

func TestClientDisconnectCancelsUpstreamAndKeepsUsage(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.up.Enqueue(fakeupstream.Script{Deltas: 50, Pace: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := http.DefaultClient.Do(relayRequest(ctx, h.http.URL+"/v1/messages", h.key, streamBody, nil))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for events := 0; events < 4; {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\n" {
			events++
		}
	}
	cancel()
	resp.Body.Close()
	reqs, err := h.upstream(1)
	if err != nil {
		t.Fatal(err)
	}
	if !reqs[0].Canceled || reqs[0].Completed {
		t.Fatalf("upstream: canceled=%v completed=%v, want the upstream request canceled", reqs[0].Canceled, reqs[0].Completed)
	}
	got := h.waitUsage("claude-sonnet-4-5-20250929", 1)
	if got.InputTokens != reqs[0].Usage.InputTokens || got.OutputTokens < 1 {
		t.Errorf("usage after disconnect: got %+v, want input %d and the output seen so far", got, reqs[0].Usage.InputTokens)
	}
}

func TestAllowlistAndTrustedProxies(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: `
server { trusted_proxies = ["127.0.0.1/32", "::1/128"] }
allowlist "office" { cidrs = ["10.1.0.0/16", "2001:db8::/32"] }
pool "p" {}
route "messages" {
  paths     = ["/v1/messages"]
  pool      = "p"
  allowlist = "office"
}
`})
	tests := []struct {
		xff    string
		status int
	}{
		{"10.1.2.3", 200},
		{"2001:db8::7", 200},
		{"10.2.0.1", 403},
		{"", 403},                    // loopback itself is not in the allowlist
		{"10.1.2.3, 192.0.2.1", 403}, // the rightmost untrusted hop counts
		{"192.0.2.1, 10.1.2.3", 200}, // spoofed left entries are ignored
		{"not-an-ip", 403},
	}
	for _, tt := range tests {
		t.Run(tt.xff, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.xff != "" {
				hdr["X-Forwarded-For"] = tt.xff
			}
			resp := h.post("/v1/messages", h.key, jsonBody, hdr)
			body := readAll(t, resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("got %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.status == 403 {
				if typ, _ := anthropicError(t, body); typ != "permission_error" {
					t.Errorf("error type: got %s, want permission_error", typ)
				}
			}
		})
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp := h.post("/v1/messages", h.key, streamBody, nil)
	readAll(t, resp.Body)
	resp = h.post("/v1/messages", "cr_"+strings.Repeat("0", 64), jsonBody, nil)
	readAll(t, resp.Body)
	h.waitUsage("claude-sonnet-4-5-20250929", 1)
	logs := h.logs.String()
	for _, secret := range []string{h.key, upstreamKey, strings.Repeat("0", 64)} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret %q…", secret[:8])
		}
	}
	if !strings.Contains(logs, "relayed") {
		t.Error("no access log line was written")
	}
}

func TestContextErrorsAreNotMistakenForUpstreamFailures(t *testing.T) {
	// A cancelled client request never produces a 502 or an upstream error metric line.
	h := newHarness(t, harnessOptions{})
	h.up.Enqueue(fakeupstream.Script{FirstByteDelay: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := http.DefaultClient.Do(relayRequest(ctx, h.http.URL+"/v1/messages", h.key, jsonBody, nil))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the client's deadline", err)
	}
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(h.logs.String(), "upstream request failed") {
		t.Error("a client cancellation was logged as an upstream failure")
	}
}

func TestRedisDown(t *testing.T) {
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	h := newHarness(t, harnessOptions{rdb: rdb})
	other, otherSecret, err := h.st.CreateKey(context.Background(), store.KeySpec{Name: "not yet cached"})
	if err != nil {
		t.Fatal(err)
	}
	_ = other
	// Warm the caches: this key and the account list.
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	readAll(t, resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("before: got %d, want 200", resp.StatusCode)
	}
	h.waitUsage("claude-sonnet-4-5-20250929", 1)
	h.waitWritten(1) // see TestUsageSpooledAtShutdownIsReplayed

	srv.Stop()

	t.Run("health is degraded", func(t *testing.T) {
		resp, err := http.Get(h.http.URL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp.Body)
		var hb struct {
			Status     string            `json:"status"`
			Components map[string]string `json:"components"`
		}
		json.Unmarshal([]byte(body), &hb)
		if resp.StatusCode != 503 || hb.Status != "degraded" || hb.Components["redis"] != "error" {
			t.Fatalf("got %d %s, want 503 degraded with redis: error", resp.StatusCode, body)
		}
		if h := h.srv.Health(t.Context()); !strings.Contains(h.Components["redis"].Error, "connect") {
			t.Errorf("operators' report: got redis %+v, want the connection error", h.Components["redis"])
		}
	})
	t.Run("uncached key gets a clear 503", func(t *testing.T) {
		resp := h.post("/v1/messages", otherSecret, jsonBody, nil)
		body := readAll(t, resp.Body)
		if resp.StatusCode != 503 {
			t.Fatalf("got %d, want 503: %s", resp.StatusCode, body)
		}
		if typ, msg := anthropicError(t, body); typ != "api_error" || !strings.Contains(msg, "key store is unavailable") {
			t.Errorf("got %s %q", typ, msg)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Error("no retry-after on a 503")
		}
	})
	t.Run("cached key keeps working and its usage is written when Redis returns", func(t *testing.T) {
		resp := h.post("/v1/messages", h.key, jsonBody, nil)
		body := readAll(t, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("got %d, want 200 from the caches: %s", resp.StatusCode, body)
		}
		time.Sleep(300 * time.Millisecond) // the recorder fails and backs off meanwhile
		srv.Start()                        // an empty Redis: only the retried record lands
		got := h.waitUsage("claude-sonnet-4-5-20250929", 1)
		if got.Requests != 1 {
			t.Errorf("requests after restart: got %d, want 1", got.Requests)
		}
	})
}

func TestUsageSpooledAtShutdownIsReplayed(t *testing.T) {
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	spool := t.TempDir() + "/usage-spool.jsonl"
	h := newHarness(t, harnessOptions{rdb: rdb, spoolPath: spool})
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	readAll(t, resp.Body)
	h.waitUsage("claude-sonnet-4-5-20250929", 1)
	// Redis having the record is not enough: under load the recorder may not have its
	// reply yet (a timeout it will retry). Stop Redis only once the recorder knows, or the
	// record is spooled again and, this Redis restarting empty, counted twice.
	h.waitWritten(1)
	srv.Stop()
	resp = h.post("/v1/messages", h.key, streamBody, nil)
	if body := readAll(t, resp.Body); resp.StatusCode != 200 {
		t.Fatalf("with Redis down, a cached key: got %d %s, want 200", resp.StatusCode, body)
	}
	reqs, _ := h.upstream(2)
	// Shut the recorder down while Redis is away: the record goes to the spool.
	h.stopRec()
	h.recorder.Wait()
	if _, err := os.Stat(spool); err != nil {
		t.Fatalf("spool: %v", err)
	}
	srv.Start()
	rec := sidecar.NewRecorder(h.st, sidecar.RecorderOptions{SpoolPath: spool})
	ctx, cancel := context.WithCancel(context.Background())
	go rec.Run(ctx, time.Second)
	got := h.waitUsage("claude-sonnet-4-5-20250929", 1)
	cancel()
	rec.Wait()
	got.CostMicroUSD = 0
	if diff := cmp.Diff(wantStore(reqs[1].Usage), got); diff != "" {
		t.Errorf("replayed usage (-want +got):\n%s\nlogs:\n%s", diff, h.logs.String())
	}
	if _, err := os.Stat(spool); !os.IsNotExist(err) {
		t.Errorf("spool still present after replay: %v", err)
	}
}
