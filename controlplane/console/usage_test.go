package console_test

import (
	"context"
	"fmt"
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
	return s.newKey(t, adminapi.CreateKeyRequest{Name: name}).Key.ID
}

var rectPattern = regexp.MustCompile(`<rect class="s\d"`)

func TestDashboardChartsTheUsageReportByModelWithTheTopKeys(t *testing.T) {
	s := newSite(t, 0)
	b := s.loggedIn()
	now := s.clock.Now()
	big, small := s.createKey(t, "big-spender"), s.createKey(t, "small-spender")
	s.recordUsage(t, big, "claude-opus", now.Add(-2*time.Hour), 3, 2_500_000)
	s.recordUsage(t, small, "claude-haiku", now, 1200, 1_000)
	s.recordUsage(t, small, "claude-haiku", now.Add(-72*time.Hour), 7, 1_000) // only in the 30 days

	day := b.get("/ui/")
	day.shows(t, "the 24-hour dashboard", `id="total-requests">1,203<`, `id="total-cost">$2.50<`, "claude-opus", "claude-haiku",
		`id="chart-requests"`, `id="chart-tokens"`, `id="chart-cost"`, "last 24 hours, by hour",
		`id="account-chart-requests"`, `id="account-chart-tokens"`, `id="account-chart-cost"`, "By account")
	if got := len(rectPattern.FindAllString(day.body, -1)); got != 14 { // 2 hours with usage x 7 charts (3 by model, 3 by account, 1 by outcome)
		t.Errorf("got %d bars, want 14", got)
	}
	if i, j := strings.Index(day.body, ">big-spender<"), strings.Index(day.body, ">small-spender<"); i < 0 || j < i {
		t.Errorf("the top keys are not by cost, most first (big-spender at %d, small-spender at %d)", i, j)
	}
	month := b.get("/ui/?range=30d")
	month.shows(t, "the 30-day dashboard", `id="total-requests">1,210<`, "last 30 days (UTC), by day")
	if strings.Contains(day.body, "<script>") || strings.Contains(day.body, " style=") {
		t.Error("the charts carry inline script or style, which the CSP refuses")
	}
}

func TestDashboardWithoutUsageSaysSo(t *testing.T) {
	s := newSite(t, 0)
	b := s.browser()
	p := b.login()
	p.shows(t, "the empty dashboard", `id="total-requests">0<`, "Nothing in this range.", "No key was used in this range.")
}

func TestUsagePageReportsARangeGroupedWithChartTableAndCSV(t *testing.T) {
	s := newSite(t, 0)
	b := s.loggedIn()
	now := s.clock.Now()
	id := s.createKey(t, "reporting")
	s.recordUsage(t, id, "claude-opus", now.Add(-48*time.Hour), 1234, 3_000_000)
	s.recordUsage(t, id, "claude-haiku", now, 5, 1_000)
	day := func(d int) string { return now.AddDate(0, 0, d).Format(time.DateOnly) }

	p := b.get("/ui/usage?from=" + day(-3) + "&to=" + day(0) + "&granularity=day&group_by=model&metric=requests")
	p.shows(t, "the usage page", `id="usage-requests">1,239<`, `id="usage-cost">$3.00<`, `id="usage-chart"`,
		"<td data-label=\"model\">claude-opus</td>", ">1,234<", `<option value="model" selected>`)
	if got := len(rectPattern.FindAllString(p.body, -1)); got != 2 {
		t.Errorf("got %d bars, want 2 (two days with usage)", got)
	}

	csv := b.get("/ui/usage.csv?from=" + day(-3) + "&to=" + day(0) + "&granularity=day&group_by=model")
	if csv.status != 200 || !strings.HasPrefix(csv.header.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV export: got %d %q, want 200 text/csv\n%s", csv.status, csv.header.Get("Content-Type"), csv.body)
	}
	csv.shows(t, "the CSV", "bucket,model,requests,", day(-2)+",claude-opus,1234,", day(0)+",claude-haiku,5,")

	bad := b.get("/ui/usage?from=" + day(0) + "&to=" + day(-3))
	if bad.status != 400 || !strings.Contains(bad.body, `id="page-error"`) || !strings.Contains(bad.body, `id="usage-form"`) {
		t.Errorf("a backwards range: got %d, want 400 with the API's reason above the form\n%s", bad.status, bad.body)
	}
	if anon := s.browser().get("/ui/usage.csv"); anon.status == 200 && strings.Contains(anon.body, "bucket,") {
		t.Error("the CSV export answers without a session")
	}
}

func TestUsagePageListsAtMost250RowsUnder200KBAndPointsToTheCSV(t *testing.T) {
	s := newSite(t, 0)
	b := s.loggedIn()
	now := s.clock.Now()
	recs := make([]store.UsageRecord, 0, 300)
	for i := range 300 {
		recs = append(recs, store.UsageRecord{KeyID: fmt.Sprintf("k%015d", i), AccountID: "acct", Model: "claude-sonnet-4-5-20250929", At: now,
			Usage: store.Usage{Requests: int64(i + 1), InputTokens: 123456, OutputTokens: 65432, CacheRead: 1000000, CostMicroUSD: 1_234_567}})
	}
	if err := s.st.RecordUsage(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	p := b.get("/ui/usage?granularity=hour&group_by=key&top=0&from=" + now.Format(time.DateOnly) + "&to=" + now.Format(time.DateOnly))
	if got := strings.Count(p.body, `<td data-label="Bucket">`); got != 250 {
		t.Errorf("got %d rows, want 250", got)
	}
	if !strings.Contains(p.body, "50 more rows in the CSV export") {
		t.Error("the page does not say the rest is in the CSV export")
	}
	if len(p.body) > 200_000 {
		t.Errorf("the usage page is %d bytes, want under 200 KB", len(p.body))
	}
}

func TestDashboardShowsRefusalAndErrorRatesAndRequestsByOutcome(t *testing.T) {
	s := newSite(t, 0)
	b := s.loggedIn()
	now := s.clock.Now()
	key := s.createKey(t, "busy")
	record := func(keyID string, at time.Time, u store.Usage) {
		t.Helper()
		rec := store.UsageRecord{KeyID: keyID, AccountID: "acct", Model: "claude-haiku", At: at, Usage: u}
		if keyID == "" { // refused before its key was known: on no account, as the relay records it
			rec.AccountID = ""
		}
		if err := s.st.RecordUsage(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	// 500 requests over two hours: 12 refused (10 of them with an unknown key), 2 of the 488
	// relayed failed.
	record(key, now.Add(-time.Hour), store.Usage{Requests: 300, InputTokens: 3000, FailedRequests: 2, CostMicroUSD: 1000})
	record(key, now, store.Usage{Requests: 190, InputTokens: 1900, RefusedRequests: 2, CostMicroUSD: 1000})
	record("", now, store.Usage{Requests: 10, RefusedRequests: 10})
	record(key, now.Add(-72*time.Hour), store.Usage{Requests: 100, RefusedRequests: 100}) // only in the 30 days

	day := b.get("/ui/")
	day.shows(t, "the 24-hour dashboard", `id="total-requests">500<`, `id="refusal-rate">2.4 %<`, "refused (12 of 500)",
		`id="error-rate">0.4 %<`, "failed (2 of 488 relayed)", `id="chart-outcomes"`,
		"Requests by outcome: 500 in all over 24 buckets, at most 300 in one (486 answered, 2 failed, 12 refused)",
		"· answered: 298<", "· failed: 2<", "· answered: 188<", "· refused: 12<")
	// answered and failed in the first hour, answered and refused in the second: each
	// outcome in its own colour, whatever its size.
	chart := day.body[strings.Index(day.body, `id="chart-outcomes"`):]
	chart = chart[:strings.Index(chart, "</figure>")]
	if got := strings.Join(regexp.MustCompile(`<rect class="(s\d)"`).FindAllString(chart, -1), " "); got !=
		`<rect class="s0" <rect class="s1" <rect class="s0" <rect class="s2"` {
		t.Errorf("the outcome chart's bars: %s", got)
	}
	if strings.Contains(day.body, "(gone)") {
		t.Error("the top keys list the requests refused before their key was known as a gone key")
	}
	month := b.get("/ui/?range=30d")
	month.shows(t, "the 30-day dashboard", `id="refusal-rate">18.7 %<`, "refused (112 of 600)", `id="error-rate">0.4 %<`, "failed (2 of 488 relayed)")
	if strings.Contains(day.body, "<script>") || strings.Contains(day.body, " style=") {
		t.Error("the rates carry inline script or style, which the CSP refuses")
	}
}

func TestDashboardRatesWithoutRequestsSayNothingToDivide(t *testing.T) {
	s := newSite(t, 0)
	b := s.browser()
	p := b.login()
	p.shows(t, "the empty dashboard", `id="refusal-rate">–<`, "refused (0 of 0)", `id="error-rate">–<`, "failed (0 of 0 relayed)")
}
