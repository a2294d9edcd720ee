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

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/store"
)

// TestReportsLedgerAndKeyCountersAgreeOverAMixOfRequests is issue 14's invariant, through
// real sidecar requests: over three simulated days, keys of two owners (tags, a policy),
// two models and two accounts, answered, refused (no key, an unknown and a revoked key, a
// model rule, a daily limit) and failed (an upstream error status) requests; the report's
// totals equal the sum of the ledger and of the keys' counters (plus the keyless refusals'
// row) for every grouping and granularity, rows grouped by key, model or account equal the
// ledger grouped the same way, and refused and failed counts match what was sent.
func TestReportsLedgerAndKeyCountersAgreeOverAMixOfRequests(t *testing.T) {
	start := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	var clock atomic.Int64
	clock.Store(start.Add(9 * time.Hour).UnixNano())
	h := newHarness(t, harnessOptions{accounts: 2, now: func() time.Time { return time.Unix(0, clock.Load()).UTC() }})
	ctx := context.Background()
	snap, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	snap.Usage = &config.Usage{Ledger: true, LedgerRetention: "7d"}
	if err := h.srv.Apply(snap); err != nil {
		t.Fatal(err)
	}
	three := int64(3)
	alice, aliceKey, err := h.st.CreateKey(ctx, store.KeySpec{Name: "alice", Owner: "alice", Tags: []string{"ml", "prod"}})
	if err != nil {
		t.Fatal(err)
	}
	bob, bobKey, err := h.st.CreateKey(ctx, store.KeySpec{Name: "bob", Owner: "bob", Tags: []string{"ml"},
		Rules: store.KeyRules{AllowedModels: []string{"claude-haiku-*"}, Limits: store.KeyLimits{RequestsPerDay: &three}}})
	if err != nil {
		t.Fatal(err)
	}
	gone, goneKey, err := h.st.CreateKey(ctx, store.KeySpec{Name: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.st.RevokeKey(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	sonnet, haiku := "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"
	sent, wantRefused, wantFailed := 0, 0, 0
	send := func(key, model string, stream bool, sc *fakeupstream.Script, want int) {
		t.Helper()
		if sc != nil {
			h.up.Enqueue(*sc)
		}
		body := strings.Replace(jsonBody, "claude-sonnet-4-5-20250929", model, 1)
		if stream {
			body = strings.Replace(streamBody, "claude-sonnet-4-5-20250929", model, 1)
		}
		resp := h.post("/v1/messages", key, body, nil)
		if b := readAll(t, resp.Body); resp.StatusCode != want {
			t.Fatalf("%s with key %.8s: status %d, want %d: %s", model, key, resp.StatusCode, want, b)
		}
		sent++
	}
	usage := func(i int) *fakeupstream.Script {
		return &fakeupstream.Script{Usage: &fakeupstream.Usage{InputTokens: int64(100 + i), OutputTokens: int64(10 + i),
			CacheReadInputTokens: int64(7 * i), Ephemeral5mInputTokens: int64(i % 3)}}
	}
	for day := range 3 {
		for i := range 2 {
			clock.Store(start.AddDate(0, 0, day).Add(time.Duration(8+5*i) * time.Hour).UnixNano())
			n := day*10 + i
			send(aliceKey, sonnet, true, usage(n), 200)
			send(h.key, haiku, false, usage(n+1), 200)
			send(bobKey, haiku, i == 0, usage(n+2), 200)
			send(bobKey, sonnet, false, nil, http.StatusForbidden) // model rule
			send("", sonnet, false, nil, http.StatusUnauthorized)
			send("cr_"+strings.Repeat("0", 64), sonnet, false, nil, http.StatusUnauthorized)
			send(goneKey, haiku, false, nil, http.StatusUnauthorized)
			send(aliceKey, haiku, false, &fakeupstream.Script{Status: 400}, 400) // relayed: failed
			wantRefused += 4
			wantFailed++
		}
		send(bobKey, haiku, false, usage(day), 200)
		send(bobKey, haiku, false, nil, http.StatusTooManyRequests) // the fourth of the day
		wantRefused++
	}
	h.waitWritten(sent)

	from, to := start, start.AddDate(0, 0, 3)
	records := ledgerRecords(t, h.st, from, to)
	if len(records) != sent {
		t.Fatalf("ledger: %d records, want one per request (%d)", len(records), sent)
	}
	var ledger store.Usage
	byKey, byModel, byAccount := map[string]store.Usage{}, map[string]store.Usage{}, map[string]store.Usage{}
	kinds := map[string]int{}
	for _, r := range records {
		ledger = ledger.Add(r.Usage)
		byKey[r.KeyID] = byKey[r.KeyID].Add(r.Usage)
		byModel[r.Model] = byModel[r.Model].Add(r.Usage)
		byAccount[r.Account] = byAccount[r.Account].Add(r.Usage)
		kinds[r.ErrorKind]++
		if strings.Contains(r.ErrorKind, "key_") && r.KeyID != "" {
			t.Errorf("record %+v: a key refusal names a key", r)
		}
	}
	if ledger.RefusedRequests != int64(wantRefused) || ledger.FailedRequests != int64(wantFailed) {
		t.Errorf("ledger: %d refused and %d failed, want %d and %d", ledger.RefusedRequests, ledger.FailedRequests, wantRefused, wantFailed)
	}
	wantKinds := map[string]int{"": 21, "model_not_allowed": 6, "key_missing": 6, "key_invalid": 6, "key_revoked": 6,
		"upstream_400": 6, "limit_requests_per_day": 3}
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Errorf("error kinds (-want +got):\n%s", diff)
	}
	var keys store.Usage
	for _, id := range []string{h.keyID, alice.ID, bob.ID, gone.ID} {
		for d := range 3 {
			m, err := h.st.KeyUsage(ctx, id, start.AddDate(0, 0, d))
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range m {
				keys = keys.Add(u)
			}
		}
	}
	if diff := cmp.Diff(ledger, keys.Add(byKey[""])); diff != "" {
		t.Errorf("ledger vs keys' counters plus keyless refusals (-ledger +keys):\n%s", diff)
	}
	groupings := [][]string{nil, {"key"}, {"owner"}, {"tag"}, {"model"}, {"account"}, {"policy"}, {"key", "model"},
		{"owner", "account"}, {"model", "account"}, {"tag", "model"}, {"key", "owner", "tag", "model", "account", "policy"}}
	for _, gran := range []string{store.GranularityHour, store.GranularityDay, store.GranularityMonth} {
		for _, g := range groupings {
			rep, err := h.st.UsageReport(ctx, store.ReportQuery{From: from, To: to, Granularity: gran, GroupBy: g})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ledger, usageFrom(t, rep.Totals)); diff != "" {
				t.Errorf("%s %v: totals (-ledger +report):\n%s", gran, g, diff)
			}
			rows := map[string]store.Usage{}
			var sum store.Usage
			for _, r := range rep.Rows {
				u := usageFrom(t, r.Counters)
				sum = sum.Add(u)
				if len(g) == 1 {
					rows[r.Group[0]] = rows[r.Group[0]].Add(u)
				}
			}
			if !slices.Contains(g, "tag") {
				if diff := cmp.Diff(ledger, sum); diff != "" {
					t.Errorf("%s %v: sum of rows (-ledger +rows):\n%s", gran, g, diff)
				}
			}
			want := map[string]map[string]store.Usage{"key": byKey, "model": byModel, "account": byAccount}[strings.Join(g, ",")]
			if want != nil {
				if diff := cmp.Diff(want, rows); diff != "" {
					t.Errorf("%s %v: rows by group (-ledger +report):\n%s", gran, g, diff)
				}
			}
		}
	}
}

// ledgerRecords reads every ledger record between from and to, page by page.
func ledgerRecords(t *testing.T, st *store.Store, from, to time.Time) []store.LedgerRecord {
	t.Helper()
	var out []store.LedgerRecord
	q := store.LedgerQuery{From: from, To: to, Limit: 7}
	for {
		page, err := st.Ledger(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Records...)
		if page.Next == "" {
			return out
		}
		q.Cursor = page.Next
	}
}

// usageFrom reads a report's counters, by name.
func usageFrom(t *testing.T, c []int64) store.Usage {
	t.Helper()
	var u store.Usage
	for i, name := range store.UsageCounters() {
		if !setCounter(&u, name, c[i]) {
			t.Fatalf("unknown counter %s", name)
		}
	}
	if got := fmt.Sprint(len(c)); got != fmt.Sprint(len(store.UsageCounters())) {
		t.Fatalf("%s counters, want %d", got, len(store.UsageCounters()))
	}
	return u
}
