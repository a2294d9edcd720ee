package sidecar_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/fakeupstream"
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
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, urls[i%2]+"/v1/messages", strings.NewReader(jsonBody))
			req.Header.Set("X-Api-Key", h.key)
			req.Header.Set("Anthropic-Version", "2023-06-01")
			req.Header.Set(fakeupstream.ScriptHeader, hdr)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200:
				ok.Add(1)
			case resp.StatusCode == 429 && strings.Contains(string(body), "max_concurrency: 1 account, a slot frees when one of their requests ends") && resp.Header.Get("Retry-After") != "":
				refused.Add(1)
			default:
				t.Errorf("got %d %s, want 200 or a 429 naming max_concurrency with retry-after", resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	if peak := cp.peak.Load(); peak != 1 {
		t.Errorf("upstream in flight on the account: peak %d, want 1", peak)
	}
	if ok.Load() < 1 || ok.Load()+refused.Load() != 20 {
		t.Errorf("got %d served and %d refused, want at least 1 served and 20 in all", ok.Load(), refused.Load())
	}
	// Every slot is back: nothing in flight across the sidecars.
	waitFor(t, 5*time.Second, func() bool {
		n, err := h.sched.InFlightShared(context.Background(), ids[0])
		return err == nil && n == 0
	})
}

func TestAccountTokenCapSkipsTheAccountAndTheAnswerSaysWhenItFrees(t *testing.T) {
	clock := newTestClock(time.Date(2026, 12, 3, 22, 0, 0, 0, time.UTC))
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
	clock.Add(2 * time.Hour) // a new UTC day: the day cap frees, the 5-hour one does not
	if got := h.servedBy(nil); got != upstreamKey {
		t.Errorf("after midnight: served by %q, want the day-capped account back", got)
	}
}
