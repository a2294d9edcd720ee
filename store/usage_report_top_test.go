package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

// TestHourlyTopReportsReadTheTopGroupsHoursAndFallBackWhenDaysDoNotAddUp: hourly reports
// grouped by key or a key attribute with Top answer from the daily buckets' ranking and the
// top groups' hourly fields, equal to a plain sum of the hourly buckets; when an hour is gone
// before its day (expired), the days no longer add up and they are read the general way,
// still equal.
func TestHourlyTopReportsReadTheTopGroupsHoursAndFallBackWhenDaysDoNotAddUp(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	_, day0 := reportFixture(t, st)
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "extra", Seq: 1},
		UsageRecord{Model: "claude-opus-4", At: day0.Add(27 * time.Hour), Usage: Usage{Requests: 1, RefusedRequests: 1}}); err != nil {
		t.Fatal(err)
	}
	from, to := day0.Add(2*time.Hour), day0.AddDate(0, 0, 5)
	var queries []ReportQuery
	for _, g := range [][]string{{GroupKey}, {GroupKey, GroupModel}, {GroupOwner}, {GroupTag, GroupModel}, {GroupAccount, GroupPolicy}} {
		for _, top := range []int{1, 2} {
			queries = append(queries, ReportQuery{From: from, To: to, Granularity: GranularityHour, GroupBy: g, Top: top})
		}
	}
	check := func(stage string) (fast int) {
		t.Helper()
		data := readPlainUsage(t, st, from, to)
		for _, q := range queries {
			if _, ok, err := st.hourlyTopReport(ctx, q); err != nil {
				t.Fatal(err)
			} else if ok {
				fast++
			}
			got, err := st.UsageReport(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(data.report(t, q), got); diff != "" {
				t.Fatalf("%s: hourly report by %v, top %d (-sum +report):\n%s", stage, q.GroupBy, q.Top, diff)
			}
		}
		return fast
	}
	if n := check("every hour kept"); n != len(queries) {
		t.Fatalf("%d of %d reports read only the top groups' hours, want all", n, len(queries))
	}
	// Every hour of the second day expires before the day does.
	for h := range 24 {
		if err := st.rdb.Del(ctx, st.keys.UsageHour(day0.AddDate(0, 0, 1).Add(time.Duration(h)*time.Hour))).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n := check("a day's hours expired"); n != 0 {
		t.Fatalf("%d reports read only the top groups' hours of days that do not add up, want none", n)
	}
}

// TestUsageReportsFailWhileRedisIsGoneAndAnswerWhenItIsBack: with Redis stopped, an hourly
// top report (the short path) and a day report each fail with an error naming the report, at
// once and without a partial answer; with Redis back (empty, the batch written again), both
// answer as before.
func TestUsageReportsFailWhileRedisIsGoneAndAnswerWhenItIsBack(t *testing.T) {
	ctx := context.Background()
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	st, err := Open(ctx, rdb, Options{Sealer: sealer(t, testEncKey)})
	if err != nil {
		t.Fatal(err)
	}
	day0 := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)
	var recs []UsageRecord
	for i := range 40 {
		recs = append(recs, UsageRecord{KeyID: []string{"k1", "k2", "k3"}[i%3], AccountID: "a", Model: "m",
			At: day0.Add(time.Duration(i) * 100 * time.Minute), Usage: Usage{Requests: 1, CostMicroUSD: int64(100 * (1 + i%3))}})
	}
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, recs...); err != nil {
		t.Fatal(err)
	}
	queries := []ReportQuery{
		{From: day0, To: day0.AddDate(0, 0, 3), Granularity: GranularityHour, GroupBy: []string{GroupKey}, Top: 1},
		{From: day0, To: day0.AddDate(0, 0, 3), Granularity: GranularityDay, GroupBy: []string{GroupKey}},
	}
	if _, ok, err := st.hourlyTopReport(ctx, queries[0]); err != nil || !ok {
		t.Fatalf("the hourly top report did not take its short path: %v %v", ok, err)
	}
	var before []*Report
	for _, q := range queries {
		rep, err := st.UsageReport(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, rep)
	}
	srv.Stop()
	for _, q := range queries {
		start := time.Now()
		rep, err := st.UsageReport(ctx, q)
		if err == nil || rep != nil {
			t.Fatalf("%s report with Redis gone: %v, %v; want an error and no report", q.Granularity, rep, err)
		}
		if !strings.Contains(err.Error(), "usage report") || time.Since(start) > 5*time.Second {
			t.Fatalf("%s report with Redis gone: %q after %s; want it to name the report, at once", q.Granularity, err, time.Since(start))
		}
	}
	srv.Start() // an empty dataset: the recorder's batch is written again
	testutil.Eventually(t, 10*time.Second, "the batch to be written again", func() bool {
		return st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, recs...) == nil
	})
	for i, q := range queries {
		rep, err := st.UsageReport(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before[i], rep); diff != "" {
			t.Fatalf("%s report after Redis came back (-before +after):\n%s", q.Granularity, diff)
		}
	}
}
