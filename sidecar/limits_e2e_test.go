package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/plugins/auth-apikey/apikey"
	"github.com/claude-relay/claude-relay/sidecar"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/sidecar/sched"
	"github.com/claude-relay/claude-relay/store"
)

func policyHCL(policy string) string {
	return `
policy "p" {
` + policy + `
}
pool "pool" {
  failover = { max_attempts = 3, on = [429, 529, 500, 502, 503, 504] }
}
route "messages" {
  paths  = ["/v1/messages"]
  pool   = "pool"
  policy = "p"
}
`
}

func TestEachPolicyLimitRefusesWithItsNameValueAndResetThenAdmitsAfterTheReset(t *testing.T) {
	// Tokens are what the fake reports: input 27 for jsonBody, output 5.
	tests := []struct {
		name    string
		policy  string
		admit   int
		advance time.Duration
		want    string
	}{
		{"requests_per_minute", "requests_per_minute = 2", 2, time.Minute, "2 requests used of 2"},
		{"requests_per_day", "requests_per_day = 3", 3, 24 * time.Hour, "3 requests used of 3"},
		{"tokens_per_minute", "tokens_per_minute = 50", 2, time.Minute, "tokens used of 50"},
		{"tokens_per_day", "tokens_per_day = 40", 2, 24 * time.Hour, "tokens used of 40"},
		// One request costs 27 × $3 + 5 × $15 per million tokens = $0.000156.
		{"cost_per_day_usd", "cost_per_day_usd = 0.0003", 2, 24 * time.Hour, "$0.000312 used of $0.0003"},
		{"cost_per_week_usd", "cost_per_week_usd = 0.0003", 2, 7 * 24 * time.Hour, "$0.000312 used of $0.0003"},
		{"cost_per_month_usd", "cost_per_month_usd = 0.0003", 2, 31 * 24 * time.Hour, "$0.000312 used of $0.0003"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testutil.NewClock(time.Date(2025, 6, 18, 10, 20, 0, 0, time.UTC))
			h := newHarness(t, harnessOptions{hcl: policyHCL(tt.policy), now: clk.Now})
			for i := range tt.admit {
				resp := h.post("/v1/messages", h.key, jsonBody, nil)
				if body := readAll(t, resp.Body); resp.StatusCode != 200 {
					t.Fatalf("request %d: got %d %s, want 200", i+1, resp.StatusCode, body)
				}
			}
			resp := h.post("/v1/messages", h.key, jsonBody, nil)
			body := readAll(t, resp.Body)
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("request %d: got %d %s, want 429", tt.admit+1, resp.StatusCode, body)
			}
			typ, msg := anthropicError(t, body)
			if typ != "rate_limit_error" || !strings.Contains(msg, tt.name) || !strings.Contains(msg, tt.want) || !strings.Contains(msg, "resets at") {
				t.Errorf("refusal: got %s %q, want rate_limit_error naming %s, %q and the reset", typ, msg, tt.name, tt.want)
			}
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("retry-after: got %q, want a positive number of seconds", resp.Header.Get("Retry-After"))
			}
			clk.Advance(tt.advance)
			resp = h.post("/v1/messages", h.key, jsonBody, nil)
			if body := readAll(t, resp.Body); resp.StatusCode != 200 {
				t.Fatalf("after the reset: got %d %s, want 200", resp.StatusCode, body)
			}
		})
	}
	t.Run("cost_total_usd", func(t *testing.T) {
		h := newHarness(t, harnessOptions{hcl: policyHCL("cost_total_usd = 0.0001")})
		resp := h.post("/v1/messages", h.key, jsonBody, nil)
		readAll(t, resp.Body)
		resp = h.post("/v1/messages", h.key, jsonBody, nil)
		body := readAll(t, resp.Body)
		if _, msg := anthropicError(t, body); resp.StatusCode != 429 || !strings.Contains(msg, "cost_total_usd") || !strings.Contains(msg, "never resets") {
			t.Fatalf("got %d %q, want 429 naming cost_total_usd that never resets", resp.StatusCode, msg)
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			t.Errorf("retry-after: got %q, want none (waiting does not help)", ra)
		}
	})
	t.Run("concurrency", func(t *testing.T) {
		h := newHarness(t, harnessOptions{hcl: policyHCL("concurrency = 1")})
		h.up.Enqueue(fakeupstream.Script{FirstByteDelay: 500 * time.Millisecond})
		done := make(chan int)
		go func() {
			resp := h.post("/v1/messages", h.key, jsonBody, nil)
			readAll(t, resp.Body)
			done <- resp.StatusCode
		}()
		lim := limits.New(h.rdb, h.st.Schema(), limits.Options{})
		testutil.Eventually(t, 5*time.Second, "the condition", func() bool { n, _ := lim.InFlight(context.Background(), h.keyID); return n == 1 })
		resp := h.post("/v1/messages", h.key, jsonBody, nil)
		body := readAll(t, resp.Body)
		if _, msg := anthropicError(t, body); resp.StatusCode != 429 || !strings.Contains(msg, "concurrency limit reached: 1 of 1") {
			t.Fatalf("while one is in flight: got %d %q, want 429 naming the concurrency limit", resp.StatusCode, msg)
		}
		if got := <-done; got != 200 {
			t.Fatalf("first request: got %d, want 200", got)
		}
		resp = h.post("/v1/messages", h.key, jsonBody, nil)
		if body := readAll(t, resp.Body); resp.StatusCode != 200 {
			t.Fatalf("after the first finished: got %d %s, want 200", resp.StatusCode, body)
		}
	})
}

func TestModelClientAndUnknownPolicyRulesRefuseWith403(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: policyHCL(`
  models        = ["claude-sonnet-*"]
  denied_models = ["claude-sonnet-3*"]
  clients       = ["claude_code"]
`)})
	cc := map[string]string{"User-Agent": "claude-cli/9.9.9 (external, cli)"}
	tests := []struct {
		name, body string
		hdr        map[string]string
		status     int
		want       string
	}{
		{"allowed model and client", jsonBody, cc, 200, ""},
		{"a future Claude Code version", jsonBody, map[string]string{"User-Agent": "claude-cli/42.0.0 (external, sdk-ts)"}, 200, ""},
		{"model outside the allowed globs", strings.Replace(jsonBody, "claude-sonnet-4-5-20250929", "claude-opus-4-1", 1), cc, 403, `model "claude-opus-4-1" is not allowed`},
		{"denied model", strings.Replace(jsonBody, "claude-sonnet-4-5-20250929", "claude-sonnet-3-7", 1), cc, 403, "except claude-sonnet-3*"},
		{"other client", jsonBody, map[string]string{"User-Agent": "curl/8.0"}, 403, `client "curl/8.0" is not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := h.postStatus(t, tt.body, tt.hdr, tt.status)
			if tt.status == 403 {
				if typ, msg := anthropicError(t, body); typ != "permission_error" || !strings.Contains(msg, tt.want) {
					t.Errorf("got %s %q, want permission_error containing %q", typ, msg, tt.want)
				}
			}
		})
	}
}

// countingProxy sits between the relay and the fake upstream and records the most
// requests it saw in flight at once.
type countingProxy struct {
	cur, peak, total atomic.Int64
	srv              *httptest.Server
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ErrorLog = nil
	return countingServer(t, rp)
}

// countingServer serves next and records the requests in flight, their peak and total.
func countingServer(t *testing.T, next http.Handler) *countingProxy {
	c := &countingProxy{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := c.cur.Add(1)
		c.total.Add(1)
		for {
			p := c.peak.Load()
			if n <= p || c.peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer c.cur.Add(-1)
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// sidecars starts n more sidecars beside h's, sharing its Redis, store and accounts.
func (h *harness) sidecars(n int, hcl string, now func() time.Time) []string {
	t := h.t
	urls := []string{h.http.URL}
	snap, _, diags := config.LoadFiles(map[string][]byte{"test.hcl": []byte(hcl)})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for range n {
		auth := sidecar.NewCachedAuth(apikey.FromStore(h.st, "test", time.Minute, time.Second), h.st, hclog.NewNullLogger(), time.Minute, time.Second)
		accts := sidecar.NewStoreAccounts(h.st, hclog.NewNullLogger(), 50*time.Millisecond)
		go auth.Run(ctx)
		go accts.Run(ctx)
		sc := sched.New(h.rdb, h.st.Schema(), sched.Options{Now: now})
		go sc.Run(ctx)
		srv := sidecar.New(sidecar.Options{
			Auth: auth, Accounts: accts, RequestTimeout: time.Minute, Now: now,
			Limits:    limits.New(h.rdb, h.st.Schema(), limits.Options{Now: now}),
			Scheduler: sc,
		})
		if err := srv.Apply(snap); err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv)
		t.Cleanup(hs.Close)
		urls = append(urls, hs.URL)
	}
	return urls
}

// replaceAccounts removes the harness's accounts and adds n with equal priority at baseURL.
func (h *harness) replaceAccounts(n int, baseURL string) []string {
	t := h.t
	ctx := context.Background()
	old, _ := h.st.ListAccounts(ctx)
	for _, a := range old {
		h.st.DeleteAccount(ctx, a.ID)
	}
	var ids []string
	for i := range n {
		cred := upstreamKey
		if i > 0 {
			cred += "-" + strconv.Itoa(i+1)
		}
		a, err := h.st.AddAccount(ctx, store.AccountSpec{Name: fmt.Sprintf("eq%d", i+1), Type: "anthropic_api_key", BaseURL: baseURL, Credential: cred, Priority: 10})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	return ids
}

func TestThreeSidecarsSharingRedisNeverExceedTheKeyLimit(t *testing.T) {
	const n = 5
	tests := []struct {
		name, policy string
		script       fakeupstream.Script
	}{
		{"concurrency", fmt.Sprintf("concurrency = %d", n), fakeupstream.Script{FirstByteDelay: 300 * time.Millisecond}},
		{"requests_per_minute", fmt.Sprintf("requests_per_minute = %d", n), fakeupstream.Script{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testutil.NewClock(time.Date(2025, 6, 18, 10, 20, 0, 0, time.UTC)) // no minute boundary mid-test
			hcl := policyHCL(tt.policy)
			h := newHarness(t, harnessOptions{hcl: hcl, now: clk.Now})
			cp := newCountingProxy(t, h.up.URL())
			h.replaceAccounts(1, cp.srv.URL)
			urls := h.sidecars(2, hcl, clk.Now)
			// Every sidecar must see the new account (behind the counting proxy) first.
			for _, u := range urls {
				testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
					before := cp.total.Load()
					_, _, err := sendMessage(u, h.key, jsonBody, "")
					return err == nil && cp.total.Load() > before
				})
			}
			clk.Advance(time.Minute) // a fresh window for the storm
			cp.peak.Store(0)
			hdr := tt.script.HeaderValue()
			var ok, refused atomic.Int64
			burst(t, urls, h.key, hdr, 200, func(resp *http.Response, _ string) {
				switch resp.StatusCode {
				case 200:
					ok.Add(1)
				case 429:
					refused.Add(1)
				default:
					t.Errorf("got status %d", resp.StatusCode)
				}
			})
			if peak := cp.peak.Load(); peak > n {
				t.Errorf("upstream in flight: peak %d, want at most %d", peak, n)
			}
			if tt.name == "requests_per_minute" && ok.Load() != n {
				t.Errorf("admitted in one window: got %d, want %d", ok.Load(), n)
			}
			if ok.Load() < 1 || ok.Load()+refused.Load() != 200 {
				t.Errorf("got %d admitted and %d refused, want at least 1 and 200 in all", ok.Load(), refused.Load())
			}
		})
	}
}

func TestConcurrencySlotsReturnToZeroAfterDisconnectsResetsAndTimeouts(t *testing.T) {
	hcl := `
policy "p" { concurrency = 100 }
pool "pool" { failover = { max_attempts = 1, on = [529] } }
route "messages" {
  paths   = ["/v1/messages"]
  pool    = "pool"
  policy  = "p"
  timeout = "300ms"
}
`
	h := newHarness(t, harnessOptions{hcl: hcl})
	lim := limits.New(h.rdb, h.st.Schema(), limits.Options{})
	kinds := []struct {
		name   string
		script fakeupstream.Script
		cancel bool
	}{
		{"client disconnect", fakeupstream.Script{Deltas: 20, Pace: 50 * time.Millisecond}, true},
		{"upstream reset", fakeupstream.Script{Deltas: 10, ResetAfterEvents: 3}, false},
		{"upstream reset before a byte", fakeupstream.Script{ResetAfterEvents: 1}, false},
		{"idle timeout", fakeupstream.Script{Deltas: 3, Pace: 2 * time.Second}, false},
		{"first byte timeout", fakeupstream.Script{FirstByteDelay: 2 * time.Second}, false},
		{"upstream error", fakeupstream.Script{Status: 500}, false},
		{"success", fakeupstream.Script{}, false},
	}
	var wg sync.WaitGroup
	for i := range 42 {
		k := kinds[i%len(kinds)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			body := streamBody
			if k.name == "upstream reset before a byte" {
				body = jsonBody
			}
			req := relayRequest(ctx, h.http.URL+"/v1/messages", h.key, body, map[string]string{fakeupstream.ScriptHeader: k.script.HeaderValue()})
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			if k.cancel {
				buf := make([]byte, 64)
				resp.Body.Read(buf)
				cancel()
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
		n, _ := lim.InFlight(context.Background(), h.keyID)
		return n > 0
	})
	wg.Wait()
	testutil.Eventually(t, 10*time.Second, "the condition", func() bool {
		n, err := lim.InFlight(context.Background(), h.keyID)
		return err == nil && n == 0
	})
}

func TestFailoverMatrix(t *testing.T) {
	tests := []struct {
		name   string
		script fakeupstream.Script
		header map[string]string // extra headers the fake cannot script
		state  sched.State
		reason string
	}{
		{"429 parks until the reset header", fakeupstream.Script{Status: 429, RetryAfter: 30 * time.Second}, nil, sched.RateLimited, "rate limit"},
		{"529 parks briefly", fakeupstream.Script{Status: 529}, nil, sched.Overloaded, "Overloaded"},
		{"500 fails over without parking once", fakeupstream.Script{Status: 500}, nil, "", ""},
		{"503 fails over", fakeupstream.Script{Status: 503}, nil, "", ""},
		{"401 marks unauthorized", fakeupstream.Script{Status: 401}, nil, sched.Unauthorized, ""},
		{"403 marks blocked", fakeupstream.Script{Status: 403, ErrorMessage: "This organization has been disabled."}, nil, sched.Blocked, "organization has been disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{accounts: 2})
			accts, _ := h.st.ListAccounts(context.Background())
			first := accts[0].ID
			if accts[1].Priority < accts[0].Priority {
				first = accts[1].ID
			}
			h.up.Enqueue(tt.script, fakeupstream.Script{})
			start := time.Now()
			resp := h.post("/v1/messages", h.key, streamBody, nil)
			body := readAll(t, resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(body, "message_stop") {
				t.Fatalf("got %d %q, want a complete 200 stream from the other account", resp.StatusCode, body)
			}
			parked, err := h.st.ParkedAccounts(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tt.state == "" {
				if len(parked) != 0 {
					t.Fatalf("parked: got %+v, want none", parked)
				}
				return
			}
			if len(parked) != 1 || parked[0].Account != first || parked[0].State != string(tt.state) || !strings.Contains(parked[0].Reason, tt.reason) {
				t.Fatalf("parked: got %+v, want account %s %s with a reason containing %q", parked, first, tt.state, tt.reason)
			}
			switch tt.state {
			case sched.RateLimited:
				if d := parked[0].Until.Sub(start); d < 28*time.Second || d > 32*time.Second {
					t.Errorf("parked for %s, want the 30s the reset header says", d)
				}
			case sched.Overloaded:
				if d := parked[0].Until.Sub(start); d <= 0 || d > 16*time.Second {
					t.Errorf("parked for %s, want the pool's brief park_529_for", d)
				}
			default:
				if !parked[0].Until.IsZero() {
					t.Errorf("until: got %s, want until an operator clears it", parked[0].Until)
				}
			}
		})
	}
	t.Run("connect error fails over", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		if _, err := h.st.AddAccount(context.Background(), store.AccountSpec{Name: "dead", Type: "anthropic_api_key", BaseURL: dead.URL, Credential: "sk-ant-dead", Priority: 1}); err != nil {
			t.Fatal(err)
		}
		// Each attempt is a new conversation: one that started on the other account while the
		// list was reloading stays there (sticky session), as it should.
		attempt := 0
		testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
			attempt++
			req := strings.Replace(streamBody, "Hello, relay", fmt.Sprintf("Hello, relay (attempt %d)", attempt), 1)
			resp := h.post("/v1/messages", h.key, req, nil)
			body := readAll(t, resp.Body)
			return resp.StatusCode == 200 && strings.Contains(body, "message_stop") && strings.Contains(h.logs.String(), "upstream request failed")
		})
	})
	t.Run("after the first byte an SSE error event", func(t *testing.T) {
		h := newHarness(t, harnessOptions{accounts: 2})
		h.up.Enqueue(fakeupstream.Script{Deltas: 10, ResetAfterEvents: 3})
		resp := h.post("/v1/messages", h.key, streamBody, nil)
		body := readAll(t, resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(body, "event: error\ndata: ") || strings.Contains(body, "message_stop") {
			t.Fatalf("got %d %q, want the stream ended by an SSE error event", resp.StatusCode, body)
		}
		if n := len(h.up.Requests()); n != 1 {
			t.Errorf("upstream attempts: got %d, want 1 (no failover after the first byte)", n)
		}
	})
	t.Run("repeated 5xx within the window parks", func(t *testing.T) {
		h := newHarness(t, harnessOptions{accounts: 2})
		for i := range 3 {
			h.up.Enqueue(fakeupstream.Script{Status: 500}, fakeupstream.Script{})
			// Distinct conversations: a sticky one would start on the account that answered.
			resp := h.post("/v1/messages", h.key, sessionBody(strconv.Itoa(i)), nil)
			if body := readAll(t, resp.Body); resp.StatusCode != 200 {
				t.Fatalf("got %d %s, want 200 from the other account", resp.StatusCode, body)
			}
		}
		parked, _ := h.st.ParkedAccounts(context.Background())
		if len(parked) != 1 || parked[0].State != string(sched.Failing) || !strings.Contains(parked[0].Reason, "3 upstream errors") {
			t.Fatalf("parked: got %+v, want one account failing after 3 errors", parked)
		}
	})
}

func TestEveryAccountRateLimitedIsA429SayingWhenTheEarliestFreesUp(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.up.Enqueue(fakeupstream.Script{Status: 529})
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	readAll(t, resp.Body)
	if resp.StatusCode != 529 {
		t.Fatalf("the only account's own answer: got %d, want 529 relayed", resp.StatusCode)
	}
	resp = h.post("/v1/messages", h.key, jsonBody, nil)
	body := readAll(t, resp.Body)
	if typ, msg := anthropicError(t, body); resp.StatusCode != 503 || typ != "overloaded_error" || !strings.Contains(msg, "overloaded") || !strings.Contains(msg, "earliest frees up at") {
		t.Fatalf("overloaded: got %d %s %q, want 503 overloaded_error saying when", resp.StatusCode, typ, msg)
	}
	h.up.Enqueue(fakeupstream.Script{Status: 429, RetryAfter: 90 * time.Second})
	sc := sched.New(h.rdb, h.st.Schema(), sched.Options{})
	if err := sc.Unpark(context.Background(), mustOneAccount(t, h)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { return len(h.sched.View()) == 0 }) // another sidecar's unpark: seen within the refresh interval
	resp = h.post("/v1/messages", h.key, jsonBody, nil)
	readAll(t, resp.Body)
	resp = h.post("/v1/messages", h.key, jsonBody, nil)
	body = readAll(t, resp.Body)
	typ, msg := anthropicError(t, body)
	if resp.StatusCode != 429 || typ != "rate_limit_error" || !strings.Contains(msg, "every upstream account is rate-limited") {
		t.Fatalf("got %d %s %q, want 429 rate_limit_error", resp.StatusCode, typ, msg)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 85 || ra > 91 {
		t.Errorf("retry-after: got %q, want about 90", resp.Header.Get("Retry-After"))
	}
}

func mustOneAccount(t *testing.T, h *harness) string {
	accts, err := h.st.ListAccounts(context.Background())
	if err != nil || len(accts) != 1 {
		t.Fatalf("accounts: %v %v", accts, err)
	}
	return accts[0].ID
}

func sessionBody(session string) string {
	return `{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"metadata":{"user_id":"user_abc_account__session_` + session + `"},"messages":[{"role":"user","content":"hi"}]}`
}

func TestStickySessions(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ids := h.replaceAccounts(3, h.up.URL())
	keyToID := map[string]string{upstreamKey: ids[0], upstreamKey + "-2": ids[1], upstreamKey + "-3": ids[2]}
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
		accts, _ := h.st.ListAccounts(context.Background())
		return len(accts) == 3
	})
	time.Sleep(200 * time.Millisecond) // StoreAccounts polls every 50 ms
	// served sends one request and returns the account that served it.
	served := func(body string) string {
		t.Helper()
		before := len(h.up.Requests())
		resp := h.post("/v1/messages", h.key, body, nil)
		if b := readAll(t, resp.Body); resp.StatusCode != 200 {
			t.Fatalf("got %d %s", resp.StatusCode, b)
		}
		reqs, _ := h.upstream(before + 1)
		return keyToID[reqs[len(reqs)-1].Header.Get("X-Api-Key")]
	}

	t.Run("same conversation stays on one account", func(t *testing.T) {
		first := served(sessionBody("conv-a"))
		for i := range 5 {
			served(sessionBody("other-" + strconv.Itoa(i))) // load moves elsewhere meanwhile
			if got := served(sessionBody("conv-a")); got != first {
				t.Fatalf("turn %d: got account %s, want %s", i+2, got, first)
			}
		}
	})
	t.Run("moves when its account is parked and stays on the new one", func(t *testing.T) {
		first := served(sessionBody("conv-b"))
		sc := sched.New(h.rdb, h.st.Schema(), sched.Options{})
		if err := sc.ParkAccount(context.Background(), sched.Park{Account: first, State: sched.RateLimited, Status: 429, Until: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, "the condition", func() bool { return len(h.sched.View()) == 1 }) // another sidecar's park: seen within the refresh interval
		moved := served(sessionBody("conv-b"))
		if moved == first {
			t.Fatalf("got parked account %s, want another", first)
		}
		if err := sc.Unpark(context.Background(), first); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, "the condition", func() bool { return len(h.sched.View()) == 0 })
		for range 3 {
			if got := served(sessionBody("conv-b")); got != moved {
				t.Fatalf("after the move: got %s, want %s (re-bound)", got, moved)
			}
		}
	})
	t.Run("conversation without metadata sticks by its first message", func(t *testing.T) {
		turn1 := `{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"start of conversation C"}]}`
		turn2 := `{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"start of conversation C"},{"role":"assistant","content":"ok"},{"role":"user","content":"more"}]}`
		first := served(turn1)
		served(sessionBody("filler-1"))
		if got := served(turn2); got != first {
			t.Fatalf("second turn: got %s, want %s", got, first)
		}
	})
	t.Run("distinct conversations spread evenly", func(t *testing.T) {
		count := map[string]int{}
		for i := range 60 {
			count[served(sessionBody(fmt.Sprintf("spread-%d", i)))]++
		}
		for _, id := range ids {
			if count[id] < 15 || count[id] > 25 {
				t.Errorf("account %s served %d of 60 conversations, want about 20: %v", id, count[id], count)
			}
		}
	})
}
