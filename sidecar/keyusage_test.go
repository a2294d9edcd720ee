package sidecar_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/keyview"
	"github.com/claude-relay/claude-relay/store"
)

// getView reads GET /v1/relay/usage with the key sent as x-api-key (or as a bearer token).
func (h *harness) getView(key string, bearer bool) (int, keyview.View, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.http.URL+"/v1/relay/usage", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	if bearer {
		req.Header.Set("Authorization", "Bearer "+key)
	} else if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	body := readAll(h.t, resp.Body)
	var v keyview.View
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			h.t.Fatalf("view %s: %v", body, err)
		}
	}
	return resp.StatusCode, v, body
}

func limitNamed(t *testing.T, v keyview.View, name string) keyview.Limit {
	t.Helper()
	for _, l := range v.Limits {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("view has no limit %q: %+v", name, v.Limits)
	return keyview.Limit{}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestKeyUsageViewMovesExactlyWithRequestsAndLimitsResetAtTheirWindow(t *testing.T) {
	// Near real time: Redis expires usage hashes by its own clock.
	start := time.Now().UTC().Truncate(24 * time.Hour).Add(23*time.Hour + 58*time.Minute + 10*time.Second)
	clk := testutil.NewClock(start)
	h := newHarness(t, harnessOptions{now: clk.Now, hcl: policyHCL(`
  requests_per_minute = 10
  tokens_per_day      = 1000
  cost_per_day_usd    = 1
  concurrency         = 2
`)})
	status, v, body := h.getView(h.key, false)
	if status != http.StatusOK {
		t.Fatalf("got %d %s, want 200", status, body)
	}
	if v.Key.ID != h.keyID || v.Key.Name != "tester" || v.Key.Status != "active" || v.Key.ExpiresAt != nil {
		t.Errorf("key: got %+v, want tester, active, no expiry", v.Key)
	}
	if len(v.Limits) != 3 || v.Concurrency.Limit != 2 || v.Concurrency.InUse != 0 {
		t.Errorf("got limits %+v concurrency %+v, want 3 counted limits and a concurrency of 2", v.Limits, v.Concurrency)
	}
	for i := 0; i < 2; i++ {
		resp := h.post("/v1/messages", h.key, jsonBody, nil)
		if b := readAll(t, resp.Body); resp.StatusCode != 200 {
			t.Fatalf("request %d: got %d %s", i, resp.StatusCode, b)
		}
	}
	h.waitWritten(2)
	// jsonBody: 27 input and 5 output tokens, $0.000156 each.
	_, v, _ = h.getView(h.key, true)
	rpm, tpd, cpd := limitNamed(t, v, "requests_per_minute"), limitNamed(t, v, "tokens_per_day"), limitNamed(t, v, "cost_per_day_usd")
	if rpm.Used != 2 || rpm.Remaining != 8 || rpm.Unit != "requests" || !rpm.ResetsAt.Equal(start.Truncate(time.Minute).Add(time.Minute)) {
		t.Errorf("requests_per_minute: got %+v, want 2 used of 10 resetting at the next minute", rpm)
	}
	if tpd.Used != 64 || tpd.Remaining != 936 || !tpd.ResetsAt.Equal(start.Truncate(24*time.Hour).Add(24*time.Hour)) {
		t.Errorf("tokens_per_day: got %+v, want 64 used, 936 left, resetting at midnight", tpd)
	}
	if !near(cpd.Used, 0.000312) || cpd.Unit != "usd" || !near(cpd.Remaining, 1-0.000312) {
		t.Errorf("cost_per_day_usd: got %+v, want $0.000312 used of $1", cpd)
	}
	today := v.Spend.Today
	if today.Requests != 2 || today.InputTokens != 54 || today.OutputTokens != 10 || !near(today.CostUSD, 0.000312) || len(today.ByModel) != 1 {
		t.Errorf("spend today: got %+v, want 2 requests, 54 in, 10 out, $0.000312, one model", today)
	}
	if v.Spend.Total.Requests != 2 || v.Spend.ThisMonth.Requests != 2 || v.Spend.ThisWeek.Requests != 2 {
		t.Errorf("spend: got %+v, want 2 requests this week, month and in total", v.Spend)
	}

	clk.Advance(time.Minute) // 23:59:10: the minute window turned, the day did not
	_, v, _ = h.getView(h.key, false)
	if l := limitNamed(t, v, "requests_per_minute"); l.Used != 0 || l.Remaining != 10 {
		t.Errorf("after a minute: requests_per_minute %+v, want 0 used", l)
	}
	if l := limitNamed(t, v, "tokens_per_day"); l.Used != 64 {
		t.Errorf("after a minute: tokens_per_day %+v, want still 64", l)
	}

	clk.Advance(time.Minute) // 00:00:10 the next day
	next := clk.Now()
	_, v, _ = h.getView(h.key, false)
	if l := limitNamed(t, v, "tokens_per_day"); l.Used != 0 || !l.ResetsAt.Equal(next.Truncate(24*time.Hour).Add(24*time.Hour)) {
		t.Errorf("the next day: tokens_per_day %+v, want 0 used, resetting the following midnight", l)
	}
	if l := limitNamed(t, v, "cost_per_day_usd"); l.Used != 0 {
		t.Errorf("the next day: cost_per_day_usd %+v, want 0 used", l)
	}
	if v.Spend.Today.Requests != 0 || v.Spend.Total.Requests != 2 {
		t.Errorf("the next day: spend %+v, want none today, 2 in total", v.Spend)
	}
	wantMonth := int64(2)
	if next.Month() != start.Month() {
		wantMonth = 0
	}
	if v.Spend.ThisMonth.Requests != wantMonth {
		t.Errorf("the next day: this month %d requests, want %d", v.Spend.ThisMonth.Requests, wantMonth)
	}
}

func TestKeyUsageViewRevealsNothingOfOtherKeysOrAccounts(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp := h.post("/v1/messages", h.key, jsonBody, nil)
	readAll(t, resp.Body)
	h.waitWritten(1)
	other, secret, err := h.st.CreateKey(context.Background(), store.KeySpec{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	status, v, body := h.getView(secret, false)
	if status != http.StatusOK {
		t.Fatalf("got %d %s", status, body)
	}
	if v.Key.ID != other.ID || v.Spend.Total.Requests != 0 || v.Spend.Today.Requests != 0 {
		t.Errorf("another key's view: got %+v, want its own, empty", v)
	}
	if !strings.Contains(body, `"limits":[]`) {
		t.Errorf("a key without limits: got %s, want \"limits\":[]", body)
	}
	accounts, err := h.st.ListAccounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, _, mine := h.getView(h.key, false)
	for _, leak := range []string{h.keyID, accounts[0].ID, accounts[0].Name, "acct"} {
		if strings.Contains(body, leak) {
			t.Errorf("another key's view names %q: %s", leak, body)
		}
	}
	if strings.Contains(mine, accounts[0].ID) || strings.Contains(mine, "acct") {
		t.Errorf("the view names an upstream account: %s", mine)
	}
	for _, tc := range []struct{ key, want string }{
		{"", "missing relay key"},
		{"cr_" + strings.Repeat("0", 64), "invalid"},
	} {
		status, _, body := h.getView(tc.key, false)
		if _, msg := anthropicError(t, body); status != http.StatusUnauthorized || !strings.Contains(strings.ToLower(msg), tc.want) {
			t.Errorf("key %q: got %d %s, want 401 saying %q", tc.key, status, body, tc.want)
		}
	}
	if err := h.st.RevokeKey(context.Background(), other.ID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { s, _, _ := h.getView(secret, false); return s == http.StatusUnauthorized })
}
