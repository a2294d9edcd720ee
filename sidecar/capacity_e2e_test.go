package sidecar_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/sched"
	"github.com/claude-relay/claude-relay/store"
)

const capacityHCL = `
pool "pool" {
  failover = { max_attempts = 3, on = [429, 529, 500, 502, 503] }
}
route "messages" {
  paths = ["/v1/messages"]
  pool  = "pool"
}
`

// setCaps gives account id caps and waits until every sidecar has reloaded it.
func (h *harness) setCaps(id string, caps store.AccountCaps) {
	h.t.Helper()
	if _, err := h.st.UpdateAccount(context.Background(), id, store.AccountUpdate{Caps: &caps}); err != nil {
		h.t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // StoreAccounts reload on the announcement (and poll every 50 ms)
}

func TestAccountMaxConcurrencyOfOneNeverHasTwoInFlightAcrossTwoSidecars(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: capacityHCL})
	cp := newCountingProxy(t, h.up.URL())
	ids := h.replaceAccounts(1, cp.srv.URL)
	h.setCaps(ids[0], store.AccountCaps{MaxConcurrency: 1})
	urls := h.sidecars(1, capacityHCL, nil)
	hdr := fakeupstream.Script{FirstByteDelay: 100 * time.Millisecond}.HeaderValue()
	var ok, refused atomic.Int64
	burst(t, urls, h.key, hdr, 20, func(resp *http.Response, body string) {
		switch {
		case resp.StatusCode == 200:
			ok.Add(1)
		case resp.StatusCode == 429 && strings.Contains(body, "max_concurrency: 1 account, a slot frees when one of their requests ends") && resp.Header.Get("Retry-After") != "":
			refused.Add(1)
		default:
			t.Errorf("got %d %s, want 200 or a 429 naming max_concurrency with retry-after", resp.StatusCode, body)
		}
	})
	if peak := cp.peak.Load(); peak != 1 {
		t.Errorf("upstream in flight on the account: peak %d, want 1", peak)
	}
	if ok.Load() < 1 || ok.Load()+refused.Load() != 20 {
		t.Errorf("got %d served and %d refused, want at least 1 served and 20 in all", ok.Load(), refused.Load())
	}
	// Every slot is back: nothing in flight across the sidecars.
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
		n, err := h.sched.InFlightShared(context.Background(), ids[0])
		return err == nil && n == 0
	})
}

func TestAccountTokenCapSkipsTheAccountAndTheAnswerSaysWhenItFrees(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 12, 3, 22, 0, 0, 0, time.UTC))
	h := newHarness(t, harnessOptions{hcl: capacityHCL, accounts: 2, now: clock.Now})
	accts, _ := h.st.ListAccounts(context.Background())
	capped, other := accts[0], accts[1]
	if other.Priority < capped.Priority {
		capped, other = other, capped
	}
	h.setCaps(capped.ID, store.AccountCaps{TokensPerDay: 10})
	h.setCaps(other.ID, store.AccountCaps{TokensPer5h: 10})
	// The first request of each account goes through (use is counted after it) and spends
	// its cap; then both are full.
	seen := map[string]bool{}
	for range 2 {
		seen[h.servedBy(nil)] = true
	}
	if len(seen) != 2 {
		t.Fatalf("served by %v, want both accounts once", seen)
	}
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	typ, msg := anthropicError(t, readAll(t, resp.Body))
	if resp.StatusCode != 429 || typ != "rate_limit_error" ||
		!strings.Contains(msg, "tokens_per_day: 1 account, frees at 2026-12-04T00:00:00Z") || !strings.Contains(msg, "tokens_per_5h: 1 account, frees at 2026-12-04T03:") {
		t.Fatalf("got %d %s %q, want 429 naming both caps and when they free", resp.StatusCode, typ, msg)
	}
	if !strings.Contains(h.logs.String(), "account "+capped.ID+" at its tokens_per_day cap") {
		t.Errorf("log: want the account named with its cap; got %s", h.logs.String())
	}
	clock.Advance(2 * time.Hour) // a new UTC day: the day cap frees, the 5-hour one does not
	if got := h.servedBy(nil); got != upstreamKey {
		t.Errorf("after midnight: served by %q, want the day-capped account back", got)
	}
}

func stickyHCL(wait string) string {
	return `
pool "pool" {
  strategy    = "sticky_least_loaded"
  sticky_wait = "` + wait + `"
  failover    = { max_attempts = 3, on = [429, 529, 500, 502, 503] }
}
route "messages" {
  paths = ["/v1/messages"]
  pool  = "pool"
}
`
}

// holdConversation starts a slow request of conversation conv on the harness's sidecar and
// returns once the request holds a slot on one of accts, with a wait for its end.
func (h *harness) holdConversation(conv string, hold time.Duration, accts []store.Account) func() {
	h.t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp := h.post("/v1/messages", h.key, sessionBody(conv), map[string]string{fakeupstream.ScriptHeader: fakeupstream.Script{BodyDelay: hold}.HeaderValue()})
		readAll(h.t, resp.Body)
	}()
	testutil.Eventually(h.t, 5*time.Second, "the condition", func() bool {
		for _, a := range accts {
			if h.sched.InFlight(a.ID) > 0 {
				return true
			}
		}
		return false
	})
	return func() { <-done }
}

// lastScripted returns the credential that served the last finished request whose script
// reported usage.
func (h *harness) lastScripted() string {
	reqs := h.up.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Script.Usage != nil {
			return reqs[i].Header.Get("X-Api-Key")
		}
	}
	h.t.Fatal("no scripted request finished")
	return ""
}

func TestStickyWaitKeepsAConversationOnItsBusyAccountAndAMoveCountsItsCacheRewarm(t *testing.T) {
	for _, tt := range []struct {
		name, wait string
		stays      bool
	}{{"waits for its account", "3s", true}, {"moves at once", "1ms", false}} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{hcl: stickyHCL(tt.wait), accounts: 2})
			accts, _ := h.st.ListAccounts(context.Background())
			for _, a := range accts {
				h.setCaps(a.ID, store.AccountCaps{MaxConcurrency: 1})
			}
			// The conversation's first turn binds it; its second is slow and holds the slot.
			bound := func() string {
				resp := h.post("/v1/messages", h.key, sessionBody("conv-w"), nil)
				readAll(t, resp.Body)
				reqs := h.up.Requests()
				return reqs[len(reqs)-1].Header.Get("X-Api-Key")
			}()
			wait := h.holdConversation("conv-w", 400*time.Millisecond, accts)
			// The next turn arrives while its account is busy.
			usage := fakeupstream.Script{Usage: &fakeupstream.Usage{Ephemeral5mInputTokens: 700, Ephemeral1hInputTokens: 300}}
			resp := h.post("/v1/messages", h.key, sessionBody("conv-w"), map[string]string{fakeupstream.ScriptHeader: usage.HeaderValue()})
			if b := readAll(t, resp.Body); resp.StatusCode != 200 {
				t.Fatalf("got %d %s", resp.StatusCode, b)
			}
			wait()
			got := h.lastScripted()
			text := metricsText(t, h)
			if tt.stays {
				if got != bound {
					t.Errorf("with sticky_wait: served by %q, want its own account %q after the slot freed", got, bound)
				}
				if strings.Contains(text, "claude_relay_conversation_moves_total{") {
					t.Errorf("metrics: a move was counted though the conversation stayed")
				}
				return
			}
			if got == bound {
				t.Fatalf("without a wait: served by its busy account %q, want the other", got)
			}
			for _, want := range []string{`claude_relay_conversation_moves_total{reason="cap"} 1`, `claude_relay_cache_rewarm_tokens_total{reason="cap"} 1000`} {
				if !strings.Contains(text, want) {
					t.Errorf("metrics: missing %s", want)
				}
			}
		})
	}
}

func TestConversationMovedByAParkOrAFailoverCountsItsCacheRewarmByReason(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: stickyHCL("1s") + "\nusage {\n  ledger = true\n}\n", accounts: 2})
	from := time.Now().UTC().Add(-time.Minute)
	accts, _ := h.st.ListAccounts(context.Background())
	byKey := map[string]string{upstreamKey: accts[0].ID, upstreamKey + "-2": accts[1].ID}
	if accts[0].Name != "acct1" {
		byKey = map[string]string{upstreamKey: accts[1].ID, upstreamKey + "-2": accts[0].ID}
	}
	turn := func(conv string, scripts ...fakeupstream.Script) string {
		t.Helper()
		for _, sc := range scripts {
			h.up.Enqueue(sc)
		}
		before := len(h.up.Requests())
		resp := h.post("/v1/messages", h.key, sessionBody(conv), nil)
		if b := readAll(t, resp.Body); resp.StatusCode != 200 {
			t.Fatalf("got %d %s", resp.StatusCode, b)
		}
		reqs, _ := h.upstream(before + len(scripts))
		return reqs[len(reqs)-1].Header.Get("X-Api-Key")
	}
	cacheWrite := fakeupstream.Script{Usage: &fakeupstream.Usage{Ephemeral5mInputTokens: 400}}

	// Park: the bound account is parked, the next turn moves.
	bound := turn("conv-p", fakeupstream.Script{})
	if err := h.sched.ParkAccount(context.Background(), sched.Park{Account: byKey[bound], State: sched.Overloaded, Status: 529, Until: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if got := turn("conv-p", cacheWrite); got == bound {
		t.Fatalf("after the park: served by the parked account %q", got)
	}
	if err := h.sched.Unpark(context.Background(), byKey[bound]); err != nil {
		t.Fatal(err)
	}

	// Failover: the bound account answers 529, the other serves.
	bound = turn("conv-f", fakeupstream.Script{})
	if got := turn("conv-f", fakeupstream.Script{Status: 529}, cacheWrite); got == bound {
		t.Fatalf("after the 529: served by %q, want the other account", got)
	}
	text := metricsText(t, h)
	for _, want := range []string{
		`claude_relay_cache_rewarm_tokens_total{reason="park"} 400`, `claude_relay_conversation_moves_total{reason="park"} 1`,
		`claude_relay_cache_rewarm_tokens_total{reason="failover"} 400`, `claude_relay_conversation_moves_total{reason="failover"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics: missing %s", want)
		}
	}
	// The ledger names the move on the moved conversation's first request, with its
	// re-warm cost in its cache-write tokens.
	h.waitWritten(4)
	page, err := h.st.Ledger(context.Background(), store.LedgerQuery{From: from, To: time.Now().Add(time.Minute), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var moved []string
	for _, r := range page.Records {
		if r.Moved != "" {
			moved = append(moved, fmt.Sprintf("%s:%d", r.Moved, r.Usage.CacheWrite5m))
		}
	}
	slices.Sort(moved)
	if want := []string{"failover:400", "park:400"}; !slices.Equal(moved, want) || len(page.Records) != 4 {
		t.Errorf("ledger: %d records, moved %v; want 4 records, moved %v", len(page.Records), moved, want)
	}
}

func TestOperatorClearsAConversationsBindingOrAllOfAnAccountsAndSidecarsForgetThem(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: stickyHCL("1s"), accounts: 2})
	ctx := context.Background()
	accts, _ := h.st.ListAccounts(ctx)
	first, second := accts[0], accts[1]
	if second.Priority < first.Priority {
		first, second = second, first
	}
	turn := func(conv string) string {
		t.Helper()
		before := len(h.up.Requests())
		resp := h.post("/v1/messages", h.key, sessionBody(conv), nil)
		if b := readAll(t, resp.Body); resp.StatusCode != 200 {
			t.Fatalf("got %d %s", resp.StatusCode, b)
		}
		reqs, _ := h.upstream(before + 1)
		return reqs[len(reqs)-1].Header.Get("X-Api-Key")
	}
	// Bind two conversations to the second account: park the first, then bring it back.
	if err := h.sched.ParkAccount(ctx, sched.Park{Account: first.ID, State: sched.Overloaded, Status: 529, Until: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"conv-a", "conv-b", "conv-c"} {
		if got := turn(c); got != upstreamKey+"-2" {
			t.Fatalf("%s: served by %q, want the second account", c, got)
		}
	}
	if err := h.sched.Unpark(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	if got := turn("conv-a"); got != upstreamKey+"-2" {
		t.Fatalf("sticky: served by %q, want the second account still", got)
	}

	n, err := h.st.ClearStickySession(ctx, "conv-a")
	if err != nil || n != 1 {
		t.Fatalf("clear session: got %d %v, want 1 binding", n, err)
	}
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { return h.sched.StickyCached() == 2 }) // the announcement reached the sidecar
	if got := turn("conv-a"); got != upstreamKey {
		t.Errorf("after clearing its binding: served by %q, want the first account (scheduled afresh)", got)
	}
	if got := turn("conv-b"); got != upstreamKey+"-2" {
		t.Errorf("another conversation: served by %q, want its own binding kept", got)
	}

	n, err = h.st.ClearAccountBindings(ctx, second.ID)
	if err != nil || n != 2 {
		t.Fatalf("unbind account: got %d %v, want 2 bindings (conv-b, conv-c)", n, err)
	}
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { return h.sched.StickyCached() == 1 }) // only conv-a's remains
	for _, c := range []string{"conv-b", "conv-c", "conv-a"} {
		if got := turn(c); got != upstreamKey {
			t.Errorf("%s after unbinding the second account: served by %q, want the first", c, got)
		}
	}
	if n, err := h.st.ClearStickySession(ctx, "no-such-conversation"); err != nil || n != 0 {
		t.Errorf("clear an unknown session: got %d %v, want 0", n, err)
	}
}
