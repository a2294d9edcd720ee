package sidecar_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/store"
)

// TestLedgerRecordsEachRelayedRequestAndSumsToTheReport: a scripted mix (two keys, two
// models, streams and JSON answers) through the sidecar with the usage block's ledger on:
// one ledger record per request, paged newest first with each exactly once, summing to the
// usage report's totals for the same range; the record carries the request's metadata.
func TestLedgerRecordsEachRelayedRequestAndSumsToTheReport(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	snap, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	snap.Usage = &config.Usage{Ledger: true, LedgerRetention: "2d"}
	if err := h.srv.Apply(snap); err != nil {
		t.Fatal(err)
	}
	from := time.Now().UTC().Truncate(time.Hour)
	_, key2, err := h.st.CreateKey(ctx, store.KeySpec{Name: "second", Owner: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	const session = "0c0ffee0-aaaa-bbbb-cccc-000000000001"
	n := 0
	for i, key := range []string{h.key, key2, h.key, key2, h.key, key2} {
		model := []string{"claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"}[i/2%2]
		h.up.Enqueue(fakeupstream.Script{Usage: &fakeupstream.Usage{InputTokens: int64(100 + i), OutputTokens: int64(10 + i), CacheReadInputTokens: int64(i)}})
		body := strings.Replace(jsonBody, "claude-sonnet-4-5-20250929", model, 1)
		if i%2 == 0 {
			body = strings.Replace(streamBody, "claude-sonnet-4-5-20250929", model, 1)
		}
		body = strings.Replace(body, `"messages"`, `"metadata":{"user_id":"user_x_account__session_`+session+`"},"messages"`, 1)
		resp := h.post("/v1/messages", key, body, map[string]string{"User-Agent": "claude-cli/2.0.1 (external, cli)"})
		readAll(t, resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		n++
	}
	h.waitWritten(n)
	to := time.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	rep, err := h.st.UsageReport(ctx, store.ReportQuery{From: from, To: to, Granularity: store.GranularityHour})
	if err != nil {
		t.Fatal(err)
	}
	var sum store.Usage
	seen := map[string]bool{}
	q := store.LedgerQuery{From: from, To: to, Limit: 4}
	for {
		page, err := h.st.Ledger(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			if seen[r.ID] {
				t.Fatalf("record %s on two pages", r.ID)
			}
			seen[r.ID] = true
			sum = sum.Add(r.Usage)
			if r.Route != "messages" || r.Status != 200 || r.Client != "claude_code" || r.Sidecar != "sc-test:1" ||
				r.SessionHash != store.StickySessionHash(session) || r.ErrorKind != "" || r.TTFBMillis > r.DurationMillis || r.Account == "" {
				t.Errorf("record %+v: want route messages, 200, claude_code, sc-test:1, the session's hash, no error, ttfb ≤ duration", r)
			}
			if r.KeyID != h.keyID && r.Owner != "bob" {
				t.Errorf("record of the second key: owner %q, want bob", r.Owner)
			}
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	if len(seen) != n {
		t.Fatalf("ledger has %d records, want %d", len(seen), n)
	}
	want := store.Usage{}
	names := store.UsageCounters()
	for i, v := range rep.Totals {
		if !setCounter(&want, names[i], v) {
			t.Fatalf("unknown counter %s", names[i])
		}
	}
	if sum != want {
		t.Errorf("ledger sums to %+v, the report's totals are %+v", sum, want)
	}

	// A configuration without the ledger turns it off: the next request adds no record.
	snap.Usage = nil
	if err := h.srv.Apply(snap); err != nil {
		t.Fatal(err)
	}
	h.up.Enqueue(fakeupstream.Script{Usage: &fakeupstream.Usage{InputTokens: 5, OutputTokens: 5}})
	readAll(t, h.post("/v1/messages", h.key, jsonBody, nil).Body)
	h.waitWritten(n + 1)
	page, err := h.st.Ledger(ctx, store.LedgerQuery{From: from, To: to, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != n {
		t.Errorf("ledger off: %d records, want still %d", len(page.Records), n)
	}
}

func setCounter(u *store.Usage, name string, v int64) bool {
	for n, p := range map[string]*int64{"requests": &u.Requests, "input_tokens": &u.InputTokens, "output_tokens": &u.OutputTokens,
		"cache_write_5m": &u.CacheWrite5m, "cache_write_1h": &u.CacheWrite1h, "cache_read": &u.CacheRead,
		"cost_micro_usd": &u.CostMicroUSD, "unpriced_requests": &u.UnpricedRequests, "estimated_requests": &u.EstimatedRequests,
		"refused_requests": &u.RefusedRequests, "failed_requests": &u.FailedRequests} {
		if n == name {
			*p = v
			return true
		}
	}
	return false
}
