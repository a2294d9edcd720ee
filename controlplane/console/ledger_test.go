package console_test

import (
	"context"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/store"
)

func TestKeyPageChartsThatKeysUsageOnlyOverTheRangeAsked(t *testing.T) {
	s := newSite(t, 0)
	b := s.loggedIn()
	now := s.clock.Now()
	mine, other := s.createKey(t, "mine"), s.createKey(t, "other")
	s.recordUsage(t, mine, "claude-opus", now.Add(-2*time.Hour), 1234, 2_500_000)
	s.recordUsage(t, mine, "claude-haiku", now.Add(-72*time.Hour), 7, 1_000) // only in the 30 days
	s.recordUsage(t, other, "claude-sonnet", now, 99, 9_000_000)

	day := b.get("/ui/keys/" + mine)
	day.shows(t, "the key's 24-hour chart", `id="key-chart-requests"`, `id="key-chart-tokens"`, `id="key-chart-cost"`, "1,234 requests", "$2.50 in this range", "claude-opus")
	if strings.Contains(day.body, "claude-sonnet") || strings.Contains(day.body, "claude-haiku") {
		t.Error("the key's 24-hour chart shows another key's model, or usage older than 24 hours")
	}
	if got := len(rectPattern.FindAllString(day.body, -1)); got != 3 { // one hour with usage x 3 charts
		t.Errorf("got %d bars, want 3", got)
	}
	month := b.get("/ui/keys/" + mine + "?range=30d")
	month.shows(t, "the key's 30-day chart", "1,241 requests", "claude-haiku", "last 30 days (UTC), by day")
	if strings.Contains(month.body, "claude-sonnet") {
		t.Error("the key's 30-day chart shows another key's usage")
	}
	report := b.get("/ui/usage?group_by=model&key=" + mine)
	if !strings.Contains(report.body, `id="usage-requests">1,241<`) || strings.Contains(report.body, "claude-sonnet") {
		t.Errorf("the usage report of one key does not count that key alone\n%s", report.body)
	}
}

// ledgerSite is a console whose control plane serves the configuration hcl, with the store
// writing the ledger.
func ledgerSite(t *testing.T, hcl string) *site {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "relay.hcl"), []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSiteWithConfig(t, 0, dir)
	s.st.SetLedger(&store.LedgerSettings{})
	return s
}

var ledgerRow = regexp.MustCompile(`<td data-label="When"><time datetime="([^"]+)"`)

func TestRequestsTabPagesThroughTheLedgerWithFilters(t *testing.T) {
	s := ledgerSite(t, "usage {\n  ledger = true\n}\n")
	b := s.loggedIn()
	now := s.clock.Now()
	a, z := s.createKey(t, "a"), s.createKey(t, "z")
	var recs []store.UsageRecord
	for i := range 61 {
		recs = append(recs, store.UsageRecord{KeyID: []string{a, z}[i%2], AccountID: "acct", Model: "claude-sonnet-4-5",
			At: now.Add(-time.Duration(i) * time.Minute), Usage: store.Usage{Requests: 1, InputTokens: 12345, OutputTokens: 10, CostMicroUSD: 1500},
			Ledger: &store.LedgerEntry{Route: "messages", Status: []int{200, 200, 529}[i%3], Client: "claude_code", TTFBMillis: 850, DurationMillis: 12400}})
	}
	if err := s.st.RecordUsageBatch(context.Background(), store.BatchID{Writer: "test", Seq: 1}, recs...); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	path := "/ui/usage/requests"
	for pages := 0; path != ""; pages++ {
		if pages > 3 {
			t.Fatal("more pages than 61 records make")
		}
		p := b.get(path)
		if p.status != 200 {
			t.Fatalf("%s: %d\n%s", path, p.status, p.body)
		}
		if strings.Contains(p.body, `id="ledger-off"`) {
			t.Error("the ledger is on, and the page says it is not")
		}
		for _, m := range ledgerRow.FindAllStringSubmatch(p.body, -1) {
			if seen[m[1]] {
				t.Errorf("record %s on two pages", m[1])
			}
			seen[m[1]] = true
		}
		if pages == 0 && (!strings.Contains(p.body, "12,345 / 10") || !strings.Contains(p.body, "850 ms / 12.4 s") || !strings.Contains(p.body, "$0.00")) {
			t.Errorf("the first page lacks a record's numbers as people read them\n%s", p.body)
		}
		path = ""
		if m := regexp.MustCompile(`href="([^"]+)" rel="next" id="requests-next"`).FindStringSubmatch(p.body); m != nil {
			path = html.UnescapeString(m[1])
		}
	}
	if len(seen) != 61 {
		t.Errorf("the pages listed %d records, want 61", len(seen))
	}
	filtered := b.get(fmt.Sprintf("/ui/usage/requests?key=%s&status=5xx", z))
	if got := len(ledgerRow.FindAllString(filtered.body, -1)); got != 10 { // odd i, i%3 == 2: 5, 11, …, 59
		t.Errorf("key z's 5xx: got %d records, want 10", got)
	}
	if strings.Contains(filtered.body, `href="/ui/keys/`+a+`"`) {
		t.Error("the key filter let another key's record through")
	}
	bad := b.get("/ui/usage/requests?status=9xx")
	if bad.status != 400 || !strings.Contains(bad.body, `id="page-error"`) || !strings.Contains(bad.body, `id="requests-form"`) {
		t.Errorf("a bad status filter: got %d, want 400 with the API's reason above the form", bad.status)
	}
}

func TestRequestsTabSaysWhenTheLedgerIsOff(t *testing.T) {
	for _, tc := range []struct {
		name, hcl string
		config    bool
		want      string
	}{
		{"off", "# relay\n", true, "The request ledger is off"},
		{"unknown", "", false, "distributes no configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, 0)
			if tc.config {
				s = ledgerSite(t, tc.hcl)
			}
			b := s.loggedIn()
			p := b.get("/ui/usage/requests")
			if p.status != 200 || !strings.Contains(p.body, `id="ledger-off"`) || !strings.Contains(p.body, tc.want) {
				t.Errorf("got %d, want the note %q\n%s", p.status, tc.want, p.body)
			}
			if !strings.Contains(p.body, "No request recorded with these filters.") {
				t.Error("the empty ledger does not say so")
			}
		})
	}
}
