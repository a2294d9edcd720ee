package sidecar_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/limits"
)

// jsonBody's worst case on claude-sonnet-4-5 ($3 input, $3.75/$6 cache writes, $0.30 cache
// read, $15 output per million tokens): every body byte a 1-hour cache write, plus
// max_tokens (256) of output, in micro-USD ($0.004494).
var worstMicro = int64(len(jsonBody))*6 + 256*15

// worstScript makes the fake upstream report nearly the worst case: one input token, the
// rest of the body as 1-hour cache writes, 256 output tokens ($0.000003 under it).
func worstScript() string {
	return fakeupstream.Script{FirstByteDelay: 30 * time.Millisecond, Usage: &fakeupstream.Usage{
		InputTokens: 1, OutputTokens: 256, Ephemeral1hInputTokens: int64(len(jsonBody)) - 1,
	}}.HeaderValue()
}

// budgetStorm sends 50 concurrent requests spread over the sidecars at urls; a request
// refused with retry-after 1 (a concurrency slot or reservations in flight: a moment fixes
// it) is sent again, as the SDKs do, until it is answered 200 or refused for good.
func budgetStorm(t *testing.T, urls []string, key string) (ok, refused int64, last string) {
	var okN, refusedN atomic.Int64
	var lastMsg atomic.Value
	script := worstScript()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				resp, body, err := sendMessage(urls[i%len(urls)], key, jsonBody, script)
				if err != nil {
					t.Error(err)
					return
				}
				switch {
				case resp.StatusCode == 200:
					okN.Add(1)
					return
				case resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "1":
					time.Sleep(5 * time.Millisecond)
					continue
				case resp.StatusCode == 429:
					refusedN.Add(1)
					lastMsg.Store(fmt.Sprintf("%s | remaining %s requested %s", body, resp.Header.Get("X-Relay-Limit-Remaining"), resp.Header.Get("X-Relay-Limit-Requested")))
					return
				default:
					t.Errorf("got %d %s", resp.StatusCode, body)
					return
				}
			}
			t.Error("still refused with retry-after 1 after 2000 tries")
		}()
	}
	wg.Wait()
	last, _ = lastMsg.Load().(string)
	return okN.Load(), refusedN.Load(), last
}

func TestBudgetOfTenWorstCaseRequestsAcrossTwoSidecars(t *testing.T) {
	budget := 10 * worstMicro
	usd := strconv.FormatFloat(float64(budget)/1e6, 'f', -1, 64)
	tests := []struct {
		mode, policy string
		// bound is the most that may be charged
		bound int64
	}{
		{"reserve", "cost_per_day_usd = " + usd + "\n  limit_mode = \"reserve\"", budget},
		// Admitted while below the budget; the requests in flight at the last admission
		// (at most concurrency) land after it.
		{"charge", "cost_per_day_usd = " + usd + "\n  concurrency = 5", budget + 5*worstMicro},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			clk := testutil.NewClock(time.Date(2025, 6, 18, 10, 20, 0, 0, time.UTC))
			hcl := policyHCL(tt.policy)
			h := newHarness(t, harnessOptions{hcl: hcl, now: clk.Now})
			urls := h.sidecars(1, hcl, clk.Now)
			ok, refused, last := budgetStorm(t, urls, h.key)
			lim := limits.New(h.rdb, h.st.Schema(), limits.Options{Now: clk.Now})
			charged, err := lim.Current(context.Background(), h.keyID, limits.Limit{Name: "cost_per_day_usd", Kind: limits.Cost, Window: limits.Day})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d answered, %d refused; charged $%g of $%s (bound $%g); last refusal: %s", tt.mode, ok, refused, float64(charged)/1e6, usd, float64(tt.bound)/1e6, last)
			if charged > tt.bound {
				t.Errorf("charged %d µ$, want at most %d", charged, tt.bound)
			}
			if ok+refused != 50 || charged != ok*(worstMicro-3) {
				t.Errorf("got %d answered and %d refused, charged %d µ$; want 50 in all, each charged %d", ok, refused, charged, worstMicro-3)
			}
			if tt.mode == "reserve" {
				need := strconv.FormatFloat(float64(worstMicro)/1e6, 'f', -1, 64)
				if ok != 10 || !strings.Contains(last, "cost_per_day_usd limit: this request could use up to $"+need) || !strings.Contains(last, "resets at") ||
					!strings.Contains(last, "remaining 0.00003 requested "+need) {
					t.Errorf("got %d answered, last refusal %q; want 10 and a refusal saying what is left ($0.00003) and what it needed", ok, last)
				}
			}
		})
	}
}

func TestAConversationBudgetTripsForThatConversationOnly(t *testing.T) {
	clk := testutil.NewClock(time.Date(2025, 6, 18, 10, 20, 0, 0, time.UTC))
	// The fake reports 44 input and 5 output tokens for a body below: two requests pass 50.
	h := newHarness(t, harnessOptions{hcl: policyHCL("conversation_tokens_per_minute = 50\n  conversation_requests_per_minute = 10"), now: clk.Now})
	session := func(id string) string {
		return strings.Replace(jsonBody, `"messages"`, `"metadata":{"user_id":"user_abc_account_def_session_`+id+`"},"messages"`, 1)
	}
	runaway, other := session("11111111-aaaa"), session("22222222-bbbb")
	for i := range 2 {
		if resp := h.post("/v1/messages", h.key, runaway, nil); resp.StatusCode != 200 {
			t.Fatalf("runaway conversation, request %d: got %d %s, want 200", i+1, resp.StatusCode, readAll(t, resp.Body))
		} else {
			readAll(t, resp.Body)
		}
	}
	resp := h.post("/v1/messages", h.key, runaway, nil)
	body := readAll(t, resp.Body)
	typ, msg := anthropicError(t, body)
	if resp.StatusCode != 429 || typ != "rate_limit_error" || !strings.Contains(msg, "conversation_tokens_per_minute limit reached: 98 tokens used of 50 tokens by this conversation") ||
		resp.Header.Get("X-Relay-Limit") != "conversation_tokens_per_minute" || resp.Header.Get("Retry-After") != "60" {
		t.Fatalf("runaway conversation, request 3: got %d %q (limit %q, retry-after %q), want 429 naming the conversation's token limit",
			resp.StatusCode, msg, resp.Header.Get("X-Relay-Limit"), resp.Header.Get("Retry-After"))
	}
	// The key's other conversations, and requests naming none, go on.
	for _, b := range []string{other, other, jsonBody} {
		if resp := h.post("/v1/messages", h.key, b, nil); resp.StatusCode != 200 {
			t.Fatalf("another conversation: got %d %s, want 200", resp.StatusCode, readAll(t, resp.Body))
		} else {
			readAll(t, resp.Body)
		}
	}
	clk.Advance(time.Minute)
	if resp := h.post("/v1/messages", h.key, runaway, nil); resp.StatusCode != 200 {
		t.Fatalf("the runaway conversation a minute later: got %d %s, want 200", resp.StatusCode, readAll(t, resp.Body))
	} else {
		readAll(t, resp.Body)
	}
}

func TestTheKeyViewShowsWhatRequestsInFlightReserve(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: policyHCL("cost_per_day_usd = 1\n  tokens_per_day = 100000\n  limit_modes = { cost_per_day_usd = \"reserve\" }\n  conversation_requests_per_minute = 5")})
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp := h.post("/v1/messages", h.key, jsonBody, map[string]string{fakeupstream.ScriptHeader: fakeupstream.Script{FirstByteDelay: 700 * time.Millisecond}.HeaderValue()})
		readAll(t, resp.Body)
	}()
	lim := limits.New(h.rdb, h.st.Schema(), limits.Options{})
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { r, _ := lim.Reserved(context.Background(), h.keyID); return r.CostMicroUSD > 0 })
	_, v, body := h.getView(h.key, false)
	cost, tokens := limitNamed(t, v, "cost_per_day_usd"), limitNamed(t, v, "tokens_per_day")
	if cost.Mode != "reserve" || !near(cost.Reserved, float64(worstMicro)/1e6) || !near(cost.Remaining, 1-float64(worstMicro)/1e6) {
		t.Errorf("cost_per_day_usd while a request is in flight: got %+v, want reserve mode with its worst case ($%g) reserved and taken from remaining", cost, float64(worstMicro)/1e6)
	}
	if tokens.Mode != "charge" || tokens.Reserved != 0 {
		t.Errorf("tokens_per_day: got %+v, want charge mode, nothing reserved", tokens)
	}
	if len(v.Limits) != 2 {
		t.Errorf("limits: got %s, want the key's two (a conversation's limits are not the key's)", body)
	}
	<-done
	_, v, _ = h.getView(h.key, false)
	if c := limitNamed(t, v, "cost_per_day_usd"); c.Reserved != 0 || c.Used == 0 {
		t.Errorf("after the request: got %+v, want it charged and nothing reserved", c)
	}
}
