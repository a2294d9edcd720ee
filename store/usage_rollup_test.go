package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestReportRollupsAnswerAsTheBucketsDo: a report grouped by model, account or nothing reads
// the rollups and answers exactly what reading every key's fields answers, for each
// granularity, refused and failed requests (some without a key) included.
func TestReportRollupsAnswerAsTheBucketsDo(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	_, day0 := reportFixture(t, st)
	recs := []UsageRecord{
		{Model: "", At: day0.Add(3 * time.Hour), Usage: Usage{Requests: 1, RefusedRequests: 1}},
		{KeyID: "kx", Model: "claude-opus-4", At: day0.Add(30 * time.Hour), Usage: Usage{Requests: 1, RefusedRequests: 1}},
		{KeyID: "kx", AccountID: "acc1", Model: "claude-opus-4", At: day0.Add(50 * time.Hour), Usage: Usage{Requests: 1, FailedRequests: 1}},
	}
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "refusals", Seq: 1}, recs...); err != nil {
		t.Fatal(err)
	}
	for _, gran := range []string{GranularityHour, GranularityDay, GranularityMonth} {
		for _, g := range [][]string{nil, {"model"}, {"account"}, {"account", "model"}, {"model", "account"},
			{"key"}, {"owner"}, {"tag"}, {"policy"}, {"tag", "owner", "key"}} {
			t.Run(fmt.Sprintf("%s/%v", gran, g), func(t *testing.T) {
				q := ReportQuery{From: day0.Add(2 * time.Hour), To: day0.AddDate(0, 0, 5), Granularity: gran, GroupBy: g}
				if rollupFor(g) == rollupNone {
					t.Fatalf("grouping %v reads no rollup", g)
				}
				fast, err := st.UsageReport(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				full, err := st.usageReport(ctx, q, rollupNone)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(full, fast); diff != "" {
					t.Errorf("rollups (-buckets +rollups):\n%s", diff)
				}
				if u := usageOf(fast.Totals); u.RefusedRequests != 2 || u.FailedRequests != 1 {
					t.Errorf("totals %+v: want 2 refused and 1 failed", u)
				}
			})
		}
	}
}

// TestReportReadsTheBucketWhenItsRollupIsPartial: buckets written before rollups existed
// (simulated by deleting the rollups) get a rollup marked partial at the next write, and a
// report reads those buckets, not the rollups; a restored bucket's rollup is marked too.
func TestReportReadsTheBucketWhenItsRollupIsPartial(t *testing.T) {
	st, _, rdb, _ := newStore(t)
	ctx := context.Background()
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	day := hour.Truncate(24 * time.Hour)
	rec := func(key string, in int64) UsageRecord {
		return UsageRecord{KeyID: key, AccountID: "a", Model: "m", At: hour.Add(time.Minute), Usage: Usage{Requests: 1, InputTokens: in}}
	}
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, rec("k1", 5)); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, st.keys.UsageHourSum(hour), st.keys.UsageDaySum(day), st.keys.UsageDayKeys(day)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 2}, rec("k2", 7)); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{st.keys.UsageHourSum(hour), st.keys.UsageDaySum(day), st.keys.UsageDayKeys(day)} {
		if v, _ := rdb.HGet(ctx, key, rollupPartial).Result(); v != "1" {
			t.Errorf("%s: %s = %q, want 1 (created after its bucket)", key, rollupPartial, v)
		}
	}
	for _, gran := range []string{GranularityHour, GranularityDay} {
		for _, g := range []string{"model", "key"} {
			rep, err := st.UsageReport(ctx, ReportQuery{From: day, To: day.Add(24 * time.Hour), Granularity: gran, GroupBy: []string{g}})
			if err != nil {
				t.Fatal(err)
			}
			if u := usageOf(rep.Totals); u.Requests != 2 || u.InputTokens != 12 {
				t.Errorf("%s report by %s: %+v, want 2 requests and 12 input tokens (both writes)", gran, g, u)
			}
		}
	}

	dump, err := st.DumpUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st2, _, rdb2, _ := newStore(t)
	if err := st2.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, rec("k3", 100)); err != nil {
		t.Fatal(err)
	}
	if err := st2.RestoreUsageReports(ctx, dump.Reports); err != nil {
		t.Fatal(err)
	}
	if v, _ := rdb2.HGet(ctx, st2.keys.UsageHourSum(hour), rollupPartial).Result(); v != "1" {
		t.Errorf("restored hour's rollup: %s = %q, want 1", rollupPartial, v)
	}
	for _, g := range [][]string{nil, {"key"}} {
		rep, err := st2.UsageReport(ctx, ReportQuery{From: day, To: day.Add(24 * time.Hour), Granularity: GranularityDay, GroupBy: g})
		if err != nil {
			t.Fatal(err)
		}
		if u := usageOf(rep.Totals); u.Requests != 3 || u.InputTokens != 112 {
			t.Errorf("after a restore, grouped by %v: %+v, want 3 requests and 112 input tokens", g, u)
		}
	}
}

// TestRefusalsWithoutAKeyCountInReportsAndTheLedgerOnly: a request refused before its key
// was known lands in the report buckets under key "" and in the ledger, in no key's or
// account's counters; a flood of them adds no report field (they sum into one).
func TestRefusalsWithoutAKeyCountInReportsAndTheLedgerOnly(t *testing.T) {
	st, _, rdb, _ := newStore(t)
	ctx := context.Background()
	st.SetLedger(&LedgerSettings{MaxPerDay: 100})
	at := time.Now().UTC().Add(-time.Minute)
	var recs []UsageRecord
	for i := range 500 {
		recs = append(recs, UsageRecord{At: at, Usage: Usage{Requests: 1, RefusedRequests: 1},
			Ledger: &LedgerEntry{Route: "messages", Status: 401, ErrorKind: fmt.Sprint("key_invalid_", i%2)}})
	}
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, recs...); err != nil {
		t.Fatal(err)
	}
	hour := at.Truncate(time.Hour)
	if n, err := rdb.HLen(ctx, st.keys.UsageHour(hour)).Result(); err != nil || n != 1 {
		t.Errorf("hour bucket: %d fields (%v), want 1", n, err)
	}
	if n, err := rdb.XLen(ctx, st.keys.LedgerDay(hour)).Result(); err != nil || n != 100 {
		t.Errorf("ledger: %d records (%v), want 100 (its MAXLEN)", n, err)
	}
	rep, err := st.UsageReport(ctx, ReportQuery{From: hour, To: hour.Add(time.Hour), Granularity: GranularityHour, GroupBy: []string{"key"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 1 || rep.Rows[0].Group[0] != "" || usageOf(rep.Rows[0].Counters).RefusedRequests != 500 {
		t.Errorf("rows %+v: want one row of key \"\" with 500 refused", rep.Rows)
	}
	page, err := st.Ledger(ctx, LedgerQuery{From: hour, To: hour.Add(time.Hour), Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r := page.Records[0]; r.KeyID != "" || r.Usage.RefusedRequests != 1 || r.Status != 401 || r.Usage.Requests != 1 {
		t.Errorf("ledger record %+v: want no key, 1 refused request, status 401", r)
	}
}
