package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
