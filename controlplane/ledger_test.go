package controlplane

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// TestRequestsLedgerPagesSumToUsageTotals: a mix over three days, two keys and two models
// in the ledger, refused (one without a key) and failed requests included; GET
// /admin/requests paged through (a page spans days) returns each record once, newest first,
// summing to GET /admin/usage's totals for the same days (and its CSV to the same rows);
// records carry their error kind and a moved conversation's reason; filters work.
func TestRequestsLedgerPagesSumToUsageTotals(t *testing.T) {
	h, token := loggedIn(t)
	h.st.SetLedger(&store.LedgerSettings{})
	k0 := h.createKey(token, adminapi.CreateKeyRequest{Name: "k0", Owner: "alice"}).Key.ID
	k1 := h.createKey(token, adminapi.CreateKeyRequest{Name: "k1"}).Key.ID
	day0 := h.clock.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	var recs []store.UsageRecord
	for i := range 30 {
		recs = append(recs, store.UsageRecord{
			KeyID: []string{k0, k1}[i%2], AccountID: "acc", Model: []string{"claude-sonnet-4-5", "claude-haiku-4-5"}[i/2%2],
			At:     day0.Add(time.Duration(i) * 97 * time.Minute),
			Usage:  store.Usage{Requests: 1, InputTokens: int64(50 + i), OutputTokens: int64(3 * i), CacheRead: int64(i), CostMicroUSD: int64(1234 * i)},
			Ledger: &store.LedgerEntry{Route: "messages", Status: []int{200, 200, 529}[i%3], Client: "claude_code"},
		})
		if i%3 == 2 {
			recs[i].Usage.FailedRequests, recs[i].Ledger.ErrorKind = 1, "upstream_529"
		}
	}
	recs[4].Ledger.Moved = "failover"
	for i, key := range []string{"", k0, k1} { // refusals: no tokens, one without a key
		recs = append(recs, store.UsageRecord{KeyID: key, Model: "claude-haiku-4-5", At: day0.Add(23*time.Hour + time.Duration(i)*10*time.Minute),
			Usage:  store.Usage{Requests: 1, RefusedRequests: 1},
			Ledger: &store.LedgerEntry{Route: "messages", Status: []int{401, 429, 403}[i], ErrorKind: []string{"key_invalid", "limit_requests_per_day", "model_not_allowed"}[i]}})
	}
	if err := h.st.RecordUsageBatch(context.Background(), store.BatchID{Writer: "test", Seq: 1}, recs...); err != nil {
		t.Fatal(err)
	}
	span := fmt.Sprintf("from=%s&to=%s", day0.Format(time.DateOnly), day0.AddDate(0, 0, 2).Format(time.DateOnly))
	var rep adminapi.UsageReport
	h.do("GET", "/admin/usage?"+span+"&group_by=key,model", token, nil).decode(t, &rep)
	if diff := cmp.Diff(rowsAsCSV([]string{"key", "model"}, rep.Rows), h.csvRows(t, token, "/admin/usage?"+span+"&group_by=key,model&format=csv")); diff != "" {
		t.Errorf("CSV (-json +csv):\n%s", diff)
	}
	if rep.Totals.RefusedRequests != 3 || rep.Totals.FailedRequests != 10 {
		t.Errorf("totals: %d refused, %d failed; want 3 and 10", rep.Totals.RefusedRequests, rep.Totals.FailedRequests)
	}
	kinds := map[string]int{}
	moved := 0

	var sum adminapi.UsageCounters
	seen := map[string]bool{}
	last := ""
	for cursor, pages := "", 0; pages == 0 || cursor != ""; pages++ {
		var page adminapi.LedgerPage
		r := h.do("GET", "/admin/requests?limit=7&"+span+"&cursor="+cursor, token, nil)
		wantStatus(t, r, http.StatusOK)
		r.decode(t, &page)
		for _, rec := range page.Requests {
			if seen[rec.Time] || (last != "" && rec.Time > last) {
				t.Fatalf("record at %s twice or out of order (after %s)", rec.Time, last)
			}
			seen[rec.Time], last = true, rec.Time
			if rec.Key == k0 && rec.Owner != "alice" {
				t.Errorf("owner %q, want alice", rec.Owner)
			}
			sum = addCounters(sum, rec.UsageCounters)
			kinds[rec.Error]++
			if rec.Moved == "failover" {
				moved++
			}
			if (rec.Error == "upstream_529") != (rec.FailedRequests == 1) || (rec.Error == "key_invalid") != (rec.Key == "" && rec.RefusedRequests == 1) {
				t.Errorf("record %+v: error kind and refused/failed disagree", rec)
			}
		}
		cursor = page.Next
	}
	sum.CostUSD = math.Round(sum.CostUSD*1e6) / 1e6
	if len(seen) != 33 || sum != rep.Totals {
		t.Errorf("ledger: %d records summing to %+v; usage totals %+v", len(seen), sum, rep.Totals)
	}
	if want := map[string]int{"": 20, "upstream_529": 10, "key_invalid": 1, "limit_requests_per_day": 1, "model_not_allowed": 1}; !cmp.Equal(kinds, want) || moved != 1 {
		t.Errorf("error kinds %v (want %v), %d moved (want 1)", kinds, want, moved)
	}

	var page adminapi.LedgerPage
	h.do("GET", "/admin/requests?limit=100&status=5xx&model=claude-haiku-4-5&key="+k1+"&"+span, token, nil).decode(t, &page)
	for _, rec := range page.Requests {
		if rec.Status != 529 || rec.Model != "claude-haiku-4-5" || rec.Key != k1 || rec.Client != "claude_code" {
			t.Errorf("filter let through %+v", rec)
		}
	}
	if len(page.Requests) != 2 || page.Next != "" { // i odd, i/2 odd, i%3 == 2: 11 and 23
		t.Errorf("filtered page: %d records, next %q", len(page.Requests), page.Next)
	}
	wantFields(t, h.do("GET", "/admin/requests?status=9xx", token, nil), "status")
	wantFields(t, h.do("GET", "/admin/requests?limit=0", token, nil), "limit")
	wantFields(t, h.do("GET", "/admin/requests?from=yesterday", token, nil), "from")
	wantFields(t, h.do("GET", "/admin/requests?cursor=bogus", token, nil), "query")
}

// TestRequestsLedgerSaysWhetherTheServedConfigurationTurnsItOn: GET /admin/requests says
// "on" and "off" as the configuration served changes, and "unknown" on a control plane that
// distributes none.
func TestRequestsLedgerSaysWhetherTheServedConfigurationTurnsItOn(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/messages")+"usage {\n  ledger = true\n}\n")
	var cfg *Distribution
	h := newHarness(t, func(o *Options) {
		cfg = newTestConfig(t, o.Store, dir)
		o.Config = cfg
	})
	token := h.login()
	state := func() string {
		var page adminapi.LedgerPage
		r := h.do("GET", "/admin/requests", token, nil)
		wantStatus(t, r, http.StatusOK)
		r.decode(t, &page)
		return page.Ledger
	}
	if got := state(); got != adminapi.LedgerOn {
		t.Errorf("ledger = true: got %q, want on", got)
	}
	writeHCL(t, dir, routeHCL("/v1/messages"))
	if _, err := cfg.Source.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != adminapi.LedgerOff {
		t.Errorf("no ledger setting: got %q, want off", got)
	}
	bare := newHarness(t)
	var page adminapi.LedgerPage
	bare.do("GET", "/admin/requests", bare.login(), nil).decode(t, &page)
	if page.Ledger != adminapi.LedgerUnknown {
		t.Errorf("no configuration distributed: got %q, want unknown", page.Ledger)
	}
}
