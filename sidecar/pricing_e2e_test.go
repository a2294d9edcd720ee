package sidecar_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

// adminClient starts a control plane on h's store and returns an admin API client logged
// in to it.
func (h *harness) adminClient(t *testing.T) *adminclient.Client {
	t.Helper()
	ctx := context.Background()
	hash, err := bcrypt.GenerateFromPassword([]byte("pricing-admin-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.st.SetAdminPassword(ctx, "admin", hash); err != nil {
		t.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.New(controlplane.Options{Store: h.st, SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(cp.Handler())
	t.Cleanup(srv.Close)
	anon, err := adminclient.New(srv.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := anon.Login(ctx, "admin", "pricing-admin-password")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	c, err := adminclient.New(srv.URL, res.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitAdminUsage polls the admin API's keys usage for today until model has a request.
func waitAdminUsage(t *testing.T, c *adminclient.Client, keyID, model string) adminapi.KeyUsage {
	t.Helper()
	var u adminapi.KeyUsage
	testutil.Eventually(t, 10*time.Second, "the condition", func() bool {
		var err error
		u, err = c.KeyUsage(context.Background(), keyID, time.Now().UTC().Format(time.DateOnly))
		return err == nil && u.Models[model].Requests >= 1
	})
	return u
}

func TestClaudeCodesDefaultModelIsChargedWhatClaudeCodeSays(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	admin := h.adminClient(t)
	const model = "claude-opus-4-8"
	h.up.Enqueue(fakeupstream.Script{Deltas: 3, Usage: &fakeupstream.Usage{
		InputTokens: 25, OutputTokens: 20, CacheCreationInputTokens: 10, Ephemeral5mInputTokens: 10, CacheReadInputTokens: 5,
	}})
	params := sdkParams()
	params.Model = model
	if _, err := streamMessage(h.sdk(), params); err != nil {
		t.Fatal(err)
	}

	u := waitAdminUsage(t, admin, h.keyID, model)
	// 25*$5 + 20*$25 + 10*$6.25 + 5*$0.50 per million tokens = $0.00069, Claude Code's own figure.
	want := adminapi.Usage{Requests: 1, InputTokens: 25, OutputTokens: 20, CacheWrite5m: 10, CacheRead: 5, CostUSD: 0.00069}
	if got := u.Models[model]; got != want {
		t.Errorf("keys usage for %s: got %+v, want %+v", model, got, want)
	}
	if u.Totals.CostUSD != 0.00069 {
		t.Errorf("all-time cost: got $%v, want $0.00069", u.Totals.CostUSD)
	}
}

func TestUnpricedModelIsChargedTheFallbackAndShownAsUnpriced(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	admin := h.adminClient(t)
	const model = "claude-unreleased-9"
	h.up.Enqueue(fakeupstream.Script{Usage: &fakeupstream.Usage{InputTokens: 100, OutputTokens: 10}})
	resp := h.post("/v1/messages", h.key, `{"model":"`+model+`","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`, nil)
	if body := readAll(t, resp.Body); resp.StatusCode != 200 {
		t.Fatalf("got %d %s, want 200", resp.StatusCode, body)
	}
	u := waitAdminUsage(t, admin, h.keyID, model)
	// The built-in fallback: 100*$15 + 10*$75 per million tokens.
	want := adminapi.Usage{Requests: 1, InputTokens: 100, OutputTokens: 10, CostUSD: 0.00225, UnpricedRequests: 1}
	if got := u.Models[model]; got != want {
		t.Errorf("keys usage: got %+v, want %+v", got, want)
	}
	if u.Totals.UnpricedRequests != 1 {
		t.Errorf("all-time unpriced requests: got %d, want 1", u.Totals.UnpricedRequests)
	}
	mresp, err := http.Get(h.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsBody := readAll(t, mresp.Body)
	if want := `claude_relay_unpriced_requests_total{model="` + model + `"} 1`; !strings.Contains(metricsBody, want) {
		t.Errorf("metrics: want a line %q in\n%s", want, metricsBody)
	}
	if !strings.Contains(h.logs.String(), "no price for model, charging the fallback") {
		t.Error("no WARN line names the unpriced model")
	}
}

func TestDisconnectAfterContentBlockStopIsChargedAtLeastTheRelayedText(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	admin := h.adminClient(t)
	const model = "claude-opus-4-8"
	text := strings.Repeat("The relay counts every token it relays, even when the client leaves early. ", 8)
	const deltas = 40
	h.up.Enqueue(fakeupstream.Script{Deltas: deltas, Pace: 20 * time.Millisecond, Blocks: []string{"text", "tool_use"}, Text: text})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := strings.Replace(streamBody, "claude-sonnet-4-5-20250929", model, 1)
	resp, err := http.DefaultClient.Do(relayRequest(ctx, h.http.URL+"/v1/messages", h.key, body, nil))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for { // the text block's end, as Claude Code's Esc would cut it
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before content_block_stop: %v", err)
		}
		if strings.HasPrefix(line, "event: content_block_stop") {
			break
		}
	}
	cancel()
	resp.Body.Close()
	reqs, err := h.upstream(1)
	if err != nil {
		t.Fatal(err)
	}
	if reqs[0].Completed {
		t.Fatal("the upstream finished before the client left; the test needs a cut stream")
	}

	u := waitAdminUsage(t, admin, h.keyID, model)
	got := u.Models[model]
	t.Logf("relayed %d bytes of text in %d deltas; recorded %+v", len(text), deltas, got)
	// The fake upstream counts a token per delta: the text block alone is 40 tokens. A
	// tokenizer takes about 4 bytes of English a token: len(text)/4 = 152.
	if got.OutputTokens < deltas || got.OutputTokens < int64(len(text)/4) {
		t.Errorf("output tokens: got %d, want at least the relayed text's %d deltas and %d tokens at 4 bytes a token", got.OutputTokens, deltas, len(text)/4)
	}
	if got.EstimatedRequests != 1 {
		t.Errorf("estimated requests: got %d, want 1", got.EstimatedRequests)
	}
	wantCost := (float64(got.InputTokens)*5 + float64(got.OutputTokens)*25) / 1e6
	if d := got.CostUSD - wantCost; d > 1e-6 || d < -1e-6 {
		t.Errorf("cost: got $%v, want $%v for the estimated output", got.CostUSD, wantCost)
	}
}
