package console_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// recordUsage records requests of a key and model at a time.
func (s *site) recordUsage(t *testing.T, keyID, model string, at time.Time, requests, costMicroUSD int64) {
	t.Helper()
	err := s.st.RecordUsage(context.Background(), store.UsageRecord{KeyID: keyID, AccountID: "acct", Model: model, At: at,
		Usage: store.Usage{Requests: requests, InputTokens: 1000 * requests, OutputTokens: 100 * requests, CostMicroUSD: costMicroUSD}})
	if err != nil {
		t.Fatal(err)
	}
}

// createKey creates a key through the admin API and returns its id.
func (s *site) createKey(t *testing.T, name string) string {
	t.Helper()
	k, err := s.admin.CreateKey(context.Background(), adminapi.CreateKeyRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return k.Key.ID
}

var rectPattern = regexp.MustCompile(`<rect class="s\d"`)

func TestDashboardChartsTheUsageReportByModelWithTheTopKeys(t *testing.T) {
	s := newSite(t, 0)
	b := s.browser()
	b.login()
	now := s.clock.Now()
	big, small := s.createKey(t, "big-spender"), s.createKey(t, "small-spender")
	s.recordUsage(t, big, "claude-opus", now.Add(-2*time.Hour), 3, 2_500_000)
	s.recordUsage(t, small, "claude-haiku", now, 1200, 1_000)
	s.recordUsage(t, small, "claude-haiku", now.Add(-72*time.Hour), 7, 1_000) // only in the 30 days

	day := b.get("/ui/")
	for _, want := range []string{`id="total-requests">1,203<`, `id="total-cost">$2.50<`, "claude-opus", "claude-haiku",
		`id="chart-requests"`, `id="chart-tokens"`, `id="chart-cost"`, "last 24 hours, by hour"} {
		if !strings.Contains(day.body, want) {
			t.Errorf("the 24-hour dashboard lacks %q", want)
		}
	}
	if got := len(rectPattern.FindAllString(day.body, -1)); got != 6 { // 2 hours with usage x 3 charts
		t.Errorf("got %d bars, want 6", got)
	}
	if i, j := strings.Index(day.body, ">big-spender<"), strings.Index(day.body, ">small-spender<"); i < 0 || j < i {
		t.Errorf("the top keys are not by cost, most first (big-spender at %d, small-spender at %d)", i, j)
	}
	month := b.get("/ui/?range=30d")
	for _, want := range []string{`id="total-requests">1,210<`, "last 30 days (UTC), by day"} {
		if !strings.Contains(month.body, want) {
			t.Errorf("the 30-day dashboard lacks %q", want)
		}
	}
	if strings.Contains(day.body, "<script>") || strings.Contains(day.body, " style=") {
		t.Error("the charts carry inline script or style, which the CSP refuses")
	}
}

func TestDashboardWithoutUsageSaysSo(t *testing.T) {
	s := newSite(t, 0)
	b := s.browser()
	p := b.login()
	for _, want := range []string{`id="total-requests">0<`, "Nothing in this range.", "No key was used in this range."} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the empty dashboard lacks %q\n%s", want, p.body)
		}
	}
}
