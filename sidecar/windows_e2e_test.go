package sidecar_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/sched"
)

const windowsHCL = `
pool "pool" {
  strategy            = "priority"
  stop_at_utilization = 0.9
}
route "messages" {
  paths = ["/v1/messages"]
  pool  = "pool"
}
`

// servedBy sends one request (scripted when sc is not nil) and returns the credential the
// fake upstream saw.
func (h *harness) servedBy(sc *fakeupstream.Script) string {
	h.t.Helper()
	before := len(h.up.Requests())
	var hdr map[string]string
	if sc != nil {
		hdr = map[string]string{fakeupstream.ScriptHeader: sc.HeaderValue()}
	}
	resp := h.post("/v1/messages", h.key, jsonBody, hdr)
	if b := readAll(h.t, resp.Body); resp.StatusCode != http.StatusOK {
		h.t.Fatalf("got %d %s, want 200", resp.StatusCode, b)
	}
	reqs, _ := h.upstream(before + 1)
	return reqs[len(reqs)-1].Header.Get("X-Api-Key")
}

func TestSubscriptionWindowsAreRecordedAndParkTheAccountNearItsLimitUntilTheReset(t *testing.T) {
	clock := testutil.NewClock(time.Now())
	h := newHarness(t, harnessOptions{hcl: windowsHCL, accounts: 2, now: clock.Now})
	ctx := context.Background()
	accts, err := h.st.ListAccounts(ctx)
	if err != nil || len(accts) != 2 {
		t.Fatalf("accounts: %v %v", accts, err)
	}
	first := accts[0].ID
	if accts[1].Priority < accts[0].Priority {
		first = accts[1].ID
	}

	// Below the stop: recorded, still in the rotation.
	reset5h := clock.Now().Add(time.Hour).Truncate(time.Second)
	reset7d := clock.Now().Add(72 * time.Hour).Truncate(time.Second)
	below := &fakeupstream.Script{Unified: &fakeupstream.Unified{
		FiveHour: &fakeupstream.UnifiedWindow{Utilization: 0.5, Reset: reset5h},
		SevenDay: &fakeupstream.UnifiedWindow{Utilization: 0.25, Reset: reset7d},
	}}
	if got := h.servedBy(below); got != upstreamKey {
		t.Fatalf("first request: served by %q, want the priority account", got)
	}
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
		w, err := h.st.AccountWindows(ctx)
		return err == nil && w[first].FiveHour != nil && w[first].FiveHour.Utilization == 0.5
	})
	w, _ := h.st.AccountWindows(ctx)
	got := w[first]
	if got.SevenDay == nil || got.SevenDay.Utilization != 0.25 || !got.SevenDay.Reset.Equal(reset7d) || !got.FiveHour.Reset.Equal(reset5h) ||
		got.Status != "allowed" || got.Claim != "five_hour" || got.FiveHour.Status != "allowed" {
		t.Fatalf("recorded reading: got %+v, want 5h 0.5 until %s, 7d 0.25 until %s, allowed, five_hour", got, reset5h, reset7d)
	}
	if got := h.servedBy(nil); got != upstreamKey {
		t.Fatalf("below the stop: served by %q, want the priority account still", got)
	}

	// At 95 % of the 5-hour window: parked near_limit until the 5-hour reset.
	above := &fakeupstream.Script{Unified: &fakeupstream.Unified{Status: "allowed_warning",
		FiveHour: &fakeupstream.UnifiedWindow{Utilization: 0.95, Reset: reset5h},
		SevenDay: &fakeupstream.UnifiedWindow{Utilization: 0.3, Reset: reset7d},
	}}
	h.servedBy(above)
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
		parks, err := h.st.ParkedAccounts(ctx)
		return err == nil && len(parks) == 1
	})
	parks, _ := h.st.ParkedAccounts(ctx)
	if p := parks[0]; p.Account != first || p.State != string(sched.NearLimit) || !p.Until.Equal(reset5h) || !strings.Contains(p.Reason, "5-hour window 95% used") {
		t.Fatalf("park: got %+v, want %s near_limit until %s saying why", p, first, reset5h)
	}
	for range 3 {
		if got := h.servedBy(nil); got == upstreamKey {
			t.Fatal("a near_limit account got a request")
		}
	}

	// The window resets: the account comes back by itself.
	clock.Advance(time.Hour + time.Second)
	if got := h.servedBy(nil); got != upstreamKey {
		t.Fatalf("after the reset: served by %q, want the priority account back", got)
	}
	text := metricsText(t, h)
	for _, want := range []string{
		`claude_relay_account_window_utilization{account="` + first + `",window="5h"} 0.95`,
		`claude_relay_account_window_utilization{account="` + first + `",window="7d"} 0.3`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics: missing %s", want)
		}
	}
}

func TestEveryAccountNearItsLimitIsA429SayingWhenTheFirstWindowResets(t *testing.T) {
	h := newHarness(t, harnessOptions{hcl: windowsHCL})
	reset7d := time.Now().Add(50 * time.Hour).Truncate(time.Second)
	h.servedBy(&fakeupstream.Script{Unified: &fakeupstream.Unified{Claim: "seven_day",
		FiveHour: &fakeupstream.UnifiedWindow{Utilization: 0.91, Reset: time.Now().Add(time.Hour)},
		SevenDay: &fakeupstream.UnifiedWindow{Utilization: 0.97, Reset: reset7d},
	}})
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { return len(h.sched.View()) == 1 })
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	typ, msg := anthropicError(t, readAll(t, resp.Body))
	if resp.StatusCode != 429 || typ != "rate_limit_error" || !strings.Contains(msg, "near the limit of its subscription window") || !strings.Contains(msg, reset7d.UTC().Format(time.RFC3339)) {
		t.Fatalf("got %d %s %q, want 429 saying the account is near its limit until the later (7-day) reset %s", resp.StatusCode, typ, msg, reset7d.UTC().Format(time.RFC3339))
	}
}

// metricsText returns the sidecar's /metrics page.
func metricsText(t *testing.T, h *harness) string {
	t.Helper()
	resp, err := http.Get(h.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return readAll(t, resp.Body)
}
