package sidecar_test

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/store"
)

// requestIDPattern is the shape of the relay's request ids.
var requestIDPattern = regexp.MustCompile(`relay_[0-9a-f]{16}`)

// metrics returns the sidecar's /metrics text.
func (h *harness) metrics() string {
	h.t.Helper()
	resp, err := http.Get(h.http.URL + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	return readAll(h.t, resp.Body)
}

// checkFindableInLog checks that an answer carries the relay's request id (header and
// message) and that the log has it beside the detail the client was not told.
func (h *harness) checkFindableInLog(resp *http.Response, msg, detail string) {
	h.t.Helper()
	id := resp.Header.Get("X-Relay-Request-Id")
	if !requestIDPattern.MatchString(id) {
		h.t.Errorf("x-relay-request-id: got %q, want a relay request id", id)
		return
	}
	if resp.Header.Get("Request-Id") != id || !strings.Contains(msg, id) {
		h.t.Errorf("request-id header %q and message %q: want both to carry %s", resp.Header.Get("Request-Id"), msg, id)
	}
	testutil.Eventually(h.t, 2*time.Second, "the condition", func() bool {
		for line := range strings.SplitSeq(h.logs.String(), "\n") {
			if strings.Contains(line, id) && strings.Contains(line, detail) {
				return true
			}
		}
		return false
	})
}

// sdkAttempts makes one Messages call with the Go SDK, retrying up to 3 times as it does
// by default, and returns its error and how many requests reached the relay's route.
func (h *harness) sdkAttempts(t *testing.T, route string) (*anthropic.Error, int) {
	t.Helper()
	count := func() int {
		n := 0
		for line := range strings.SplitSeq(h.metrics(), "\n") {
			if rest, ok := strings.CutPrefix(line, `claude_relay_requests_total{route="`+route+`"`); ok {
				v, _ := strconv.Atoi(rest[strings.LastIndexByte(rest, ' ')+1:])
				n += v
			}
		}
		return n
	}
	start := count()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := h.sdk(option.WithMaxRetries(3))
	_, err := client.Messages.New(ctx, sdkParams())
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("got %v, want an API error", err)
	}
	return apiErr, count() - start
}

func TestNoAccountIsAFinalAnswerTheSDKsDoNotRetry(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.replaceAccounts(0, "") // none
	var resp *http.Response
	var body string
	testutil.Eventually(t, 2*time.Second, "the condition", func() bool {
		resp = h.post("/v1/messages", h.key, jsonBody, nil)
		body = readAll(t, resp.Body)
		return strings.Contains(body, "no upstream account")
	})
	typ, msg := anthropicError(t, body)
	if resp.StatusCode != http.StatusInternalServerError || typ != "api_error" {
		t.Errorf("got %d %s, want 500 api_error", resp.StatusCode, typ)
	}
	if got := resp.Header.Get("X-Should-Retry"); got != "false" {
		t.Errorf("x-should-retry: got %q, want false", got)
	}
	if got := resp.Header.Get("Retry-After"); got != "" {
		t.Errorf("retry-after: got %q, want none", got)
	}
	if !strings.Contains(msg, "an operator must add one") {
		t.Errorf("message: got %q, want it to say what fixes it", msg)
	}
	h.checkFindableInLog(resp, msg, "no upstream account")
	apiErr, n := h.sdkAttempts(t, "messages")
	if apiErr.StatusCode != http.StatusInternalServerError || n != 1 {
		t.Errorf("the Go SDK with 3 retries: got status %d after %d requests, want 500 after 1", apiErr.StatusCode, n)
	}
}

func TestEveryAccountBlockedIsFinalAndNamesNoAccount(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	id := mustOneAccount(t, h)
	h.up.Enqueue(fakeupstream.Script{Status: 403, ErrorMessage: "This organization has been disabled."})
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	if body := readAll(t, resp.Body); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("the account's own answer: got %d %s, want its 403 relayed", resp.StatusCode, body)
	}
	resp = h.post("/v1/messages", h.key, jsonBody, nil)
	body := readAll(t, resp.Body)
	typ, msg := anthropicError(t, body)
	if resp.StatusCode != http.StatusInternalServerError || typ != "api_error" || resp.Header.Get("X-Should-Retry") != "false" {
		t.Fatalf("got %d %s (x-should-retry %q) %q, want a final 500 api_error", resp.StatusCode, typ, resp.Header.Get("X-Should-Retry"), msg)
	}
	for _, secret := range []string{id, "organization", "disabled"} {
		if strings.Contains(msg, secret) {
			t.Errorf("the message reveals %q: %s", secret, msg)
		}
	}
	h.checkFindableInLog(resp, msg, id)
	if _, n := h.sdkAttempts(t, "messages"); n != 1 {
		t.Errorf("the Go SDK with 3 retries sent %d requests, want 1", n)
	}
}

func TestTemporaryUnavailabilityKeepsRetryAfterAndNamesNoAccount(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	id := mustOneAccount(t, h)
	h.up.Enqueue(fakeupstream.Script{Status: 429, RetryAfter: 90 * time.Second})
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	readAll(t, resp.Body)
	resp = h.post("/v1/messages", h.key, jsonBody, nil)
	body := readAll(t, resp.Body)
	typ, msg := anthropicError(t, body)
	if resp.StatusCode != http.StatusTooManyRequests || typ != "rate_limit_error" || resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Should-Retry") != "" {
		t.Fatalf("got %d %s retry-after %q x-should-retry %q, want a 429 with retry-after and no x-should-retry", resp.StatusCode, typ, resp.Header.Get("Retry-After"), resp.Header.Get("X-Should-Retry"))
	}
	if strings.Contains(msg, id) || strings.Contains(msg, "rate limit exceeded") {
		t.Errorf("the message names the account or the upstream's reason: %s", msg)
	}
	h.checkFindableInLog(resp, msg, id)
}

func TestTotalBudgetSpentIsAFinal429(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: policyHCL(`cost_total_usd = 0.000001`)})
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	if body := readAll(t, resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: got %d %s, want 200", resp.StatusCode, body)
	}
	resp = h.post("/v1/messages", h.key, jsonBody, nil)
	body := readAll(t, resp.Body)
	if typ, msg := anthropicError(t, body); resp.StatusCode != http.StatusTooManyRequests || typ != "rate_limit_error" || !strings.Contains(msg, "never resets") {
		t.Fatalf("got %d %s %q, want the cost_total_usd refusal", resp.StatusCode, typ, msg)
	}
	if resp.Header.Get("X-Should-Retry") != "false" || resp.Header.Get("Retry-After") != "" {
		t.Errorf("x-should-retry %q, retry-after %q: want false and none", resp.Header.Get("X-Should-Retry"), resp.Header.Get("Retry-After"))
	}
}

func TestUnreachableUpstreamIsA502WithoutAddresses(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	addr := strings.TrimPrefix(h.up.URL(), "http://")
	h.up.Close()
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	body := readAll(t, resp.Body)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("got %d, want 502: %s", resp.StatusCode, body)
	}
	_, msg := anthropicError(t, body)
	if !strings.Contains(msg, "could be reached") || !strings.Contains(msg, "refused the connection") {
		t.Errorf("message: got %q, want the cause in general terms", msg)
	}
	for _, internal := range []string{addr, "127.0.0.1", "dial tcp", "connect:"} {
		if strings.Contains(msg, internal) {
			t.Errorf("the message reveals %q: %s", internal, msg)
		}
	}
	h.checkFindableInLog(resp, msg, addr)
}

func TestUnresolvableUpstreamIsA502WithoutItsName(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	h.replaceAccounts(0, "") // none
	if _, err := h.st.AddAccount(ctx, store.AccountSpec{Name: "gw", Type: store.AccountTypeAnthropicCompatible, BaseURL: "http://internal-llm-gw.invalid", Credential: "k", Priority: 1}); err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	var body string
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
		resp = h.post("/v1/messages", h.key, jsonBody, nil)
		body = readAll(t, resp.Body)
		return resp.StatusCode == http.StatusBadGateway
	})
	_, msg := anthropicError(t, body)
	if strings.Contains(msg, "internal-llm-gw") || !strings.Contains(msg, "host name could not be resolved") {
		t.Errorf("message: got %q, want the cause without the host name", msg)
	}
	h.checkFindableInLog(resp, msg, "internal-llm-gw.invalid")
}

func TestMidStreamErrorEventCarriesNoTransportDetails(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.up.Enqueue(fakeupstream.Script{Deltas: 10, ResetAfterEvents: 4})
	resp := h.post("/v1/messages", h.key, streamBody, nil)
	body := readAll(t, resp.Body)
	i := strings.LastIndex(body, "event: error\ndata: ")
	if i < 0 {
		t.Fatalf("got %q, want the stream ended by an SSE error event", body)
	}
	_, msg := anthropicError(t, strings.TrimSpace(strings.TrimPrefix(body[i:], "event: error\ndata: ")))
	for _, internal := range []string{"127.0.0.1", "tcp", "EOF", "reset by peer"} {
		if strings.Contains(msg, internal) {
			t.Errorf("the error event reveals %q: %s", internal, msg)
		}
	}
	id := resp.Header.Get("X-Relay-Request-Id")
	if !requestIDPattern.MatchString(id) || !strings.Contains(msg, id) {
		t.Errorf("request id: header %q, message %q; want the message to carry the header's id", id, msg)
	}
	if !strings.Contains(h.logs.String(), id) {
		t.Errorf("no log line carries request id %s", id)
	}
}

func TestJSONAnswerStallingAfterItsHeadersIsA504(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: timeoutRoute("300ms")})
	h.up.Enqueue(fakeupstream.Script{BodyDelay: 3 * time.Second})
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	body := readAll(t, resp.Body)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("got %d %s, want 504", resp.StatusCode, body)
	}
	typ, msg := anthropicError(t, body)
	if typ != "api_error" || !strings.Contains(msg, "no body within 300ms") {
		t.Errorf("got %s %q, want an api_error naming the timeout", typ, msg)
	}
	if resp.Header.Get("Anthropic-Organization-Id") != "" || resp.Header.Get("Request-Id") != resp.Header.Get("X-Relay-Request-Id") {
		t.Errorf("headers: got %v, want the relay's own, none of the stalled answer's", resp.Header)
	}
	if !strings.Contains(h.metrics(), `claude_relay_requests_total{route="messages",status="504"} 1`) {
		t.Error("the 504 was not counted")
	}
}

func TestRelayedAnswersCarryTheRequestID(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	readAll(t, resp.Body)
	id := resp.Header.Get("X-Relay-Request-Id")
	if resp.StatusCode != http.StatusOK || !requestIDPattern.MatchString(id) {
		t.Fatalf("got %d with x-relay-request-id %q, want 200 with a relay request id", resp.StatusCode, id)
	}
	if up := resp.Header.Get("Request-Id"); up == "" || up == id {
		t.Errorf("request-id: got %q, want the upstream's own", up)
	}
	if !regexp.MustCompile(`relayed: request_id=` + id).MatchString(h.logs.String()) {
		t.Errorf("no access log line with request_id=%s:\n%s", id, h.logs.String())
	}
}
