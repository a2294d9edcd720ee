package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// reportFixture records a scripted mix of requests over several keys, owners, tags, models,
// accounts and days, and returns the keys' ids (k0 has owner alice, tags a,b and policy
// team; k1 owner bob, tag a; k2 nothing).
func reportFixture(t *testing.T, st *Store) (ids []string, day0 time.Time) {
	t.Helper()
	ctx := context.Background()
	specs := []KeySpec{
		{Name: "k0", Owner: "alice", Tags: []string{"a", "b"}, Policy: "team"},
		{Name: "k1", Owner: "bob", Tags: []string{"a"}},
		{Name: "k2"},
	}
	for _, sp := range specs {
		k, _, err := st.CreateKey(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.ID)
	}
	// Redis expires buckets by its own clock: the days are recent ones.
	day0 = time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -5)
	var recs []UsageRecord
	for i := 0; i < 60; i++ {
		recs = append(recs, UsageRecord{
			KeyID:     ids[i%3],
			AccountID: []string{"acc1", "acc2"}[i%2],
			Model:     []string{"claude-sonnet-4", "claude-haiku-4", "claude-opus-4"}[i%5%3],
			At:        day0.Add(time.Duration(i) * 97 * time.Minute), // about 4 days, many hours
			Usage: Usage{Requests: 1, InputTokens: int64(100 + i), OutputTokens: int64(10 * i), CacheWrite5m: int64(i % 4),
				CacheWrite1h: int64(i % 3), CacheRead: int64(i * 7), CostMicroUSD: int64(1000 * (i + 1))},
		})
	}
	for i := 0; i < len(recs); i += 25 {
		if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: uint64(i + 1)}, recs[i:min(i+25, len(recs))]...); err != nil {
			t.Fatal(err)
		}
	}
	return ids, day0
}

func usageOf(c []int64) Usage {
	var u Usage
	for i, name := range usageCounters {
		u.set(name, c[i])
	}
	return u
}

func TestUsageReportTotalsEqualKeyAndAccountCountersForEveryGrouping(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	ids, day0 := reportFixture(t, st)
	var keySum, acctSum Usage
	for d := 0; d < 5; d++ {
		for _, id := range ids {
			m, err := st.KeyUsage(ctx, id, day0.AddDate(0, 0, d))
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range m {
				keySum = keySum.Add(u)
			}
		}
		for _, a := range []string{"acc1", "acc2"} {
			u, err := st.AccountUsage(ctx, a, day0.AddDate(0, 0, d))
			if err != nil {
				t.Fatal(err)
			}
			acctSum = acctSum.Add(u)
		}
	}
	if diff := cmp.Diff(keySum, acctSum); diff != "" {
		t.Fatalf("key and account counters disagree (-key +account):\n%s", diff)
	}
	groupings := [][]string{nil, {"key"}, {"owner"}, {"tag"}, {"model"}, {"account"}, {"policy"}, {"key", "owner", "tag", "model", "account", "policy"}}
	for _, gran := range []string{GranularityHour, GranularityDay, GranularityMonth} {
		for _, g := range groupings {
			t.Run(fmt.Sprintf("%s/%v", gran, g), func(t *testing.T) {
				rep, err := st.UsageReport(ctx, ReportQuery{From: day0, To: day0.AddDate(0, 0, 5), Granularity: gran, GroupBy: g})
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(keySum, usageOf(rep.Totals)); diff != "" {
					t.Errorf("totals (-keys usage +report):\n%s", diff)
				}
				var rows Usage
				for _, r := range rep.Rows {
					rows = rows.Add(usageOf(r.Counters))
				}
				if !containsTag(g) {
					if diff := cmp.Diff(keySum, rows); diff != "" {
						t.Errorf("sum of rows (-keys usage +rows):\n%s", diff)
					}
				}
			})
		}
	}
}

func containsTag(g []string) bool {
	for _, x := range g {
		if x == GroupTag {
			return true
		}
	}
	return false
}

func TestUsageReportResolvesKeyAttributesAndSorts(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	_, day0 := reportFixture(t, st)
	q := ReportQuery{From: day0, To: day0.AddDate(0, 0, 5), Granularity: GranularityDay, GroupBy: []string{"tag", "owner"}}
	rep, err := st.UsageReport(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	// k0 (alice, tags a and b), k1 (bob, tag a), k2 (no owner, no tag).
	costs := map[string]int64{}
	for i, r := range rep.Rows {
		costs[fmt.Sprint(r.Group)] += r.Counters[costIndex]
		if i > 0 && compareRows(rep.Rows[i-1], r) > 0 {
			t.Errorf("row %d %v is before row %d %v: not sorted by bucket, then cost", i-1, rep.Rows[i-1], i, r)
		}
	}
	wantGroups := []string{"[ ]", "[a alice]", "[a bob]", "[b alice]"}
	if diff := cmp.Diff(wantGroups, sortedKeys(costs)); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if costs["[a alice]"] != costs["[b alice]"] {
		t.Errorf("a key with two tags counts fully under each: got a %d, b %d", costs["[a alice]"], costs["[b alice]"])
	}
	best := ""
	for g, c := range costs {
		if best == "" || c > costs[best] {
			best = g
		}
	}
	q.Top = 1
	top, err := st.UsageReport(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range top.Rows {
		if fmt.Sprint(r.Group) != best {
			t.Errorf("top=1: got a row of %v, want only %s", r.Group, best)
		}
	}
	if !cmp.Equal(top.Totals, rep.Totals) {
		t.Errorf("top=1 totals: got %v, want all usage %v", top.Totals, rep.Totals)
	}
}

func sortedKeys(m map[string]int64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestUsageReportBucketsByHourDayAndMonth(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	h := time.Now().UTC().Truncate(24 * time.Hour).Add(-25 * time.Hour)
	recs := []UsageRecord{
		{KeyID: "k", AccountID: "a", Model: "m", At: h.Add(10 * time.Minute), Usage: Usage{Requests: 1, InputTokens: 5}},
		{KeyID: "k", AccountID: "a", Model: "m", At: h.Add(70 * time.Minute), Usage: Usage{Requests: 1, InputTokens: 7}},
	}
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, recs...); err != nil {
		t.Fatal(err)
	}
	// Retried: counted once in the report buckets too.
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, recs...); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		gran     string
		from, to time.Time
		want     []string
	}{
		{GranularityHour, h, h.Add(2 * time.Hour), []string{stamp(h) + "=5", stamp(h.Add(time.Hour)) + "=7"}},
		{GranularityDay, h.Add(-23 * time.Hour), h.Add(25 * time.Hour), []string{stamp(h.Add(-23*time.Hour)) + "=5", stamp(h.Add(time.Hour)) + "=7"}},
		{GranularityMonth, h.Add(-23 * time.Hour), h.Add(25 * time.Hour), months(h)},
		{GranularityDay, h, h.Add(time.Hour), []string{stamp(h.Add(-23*time.Hour)) + "=5"}}, // not whole days: read hourly
	}
	for _, tt := range tests {
		t.Run(tt.gran+tt.from.String(), func(t *testing.T) {
			rep, err := st.UsageReport(ctx, ReportQuery{From: tt.from, To: tt.to, Granularity: tt.gran})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rep.Rows {
				got = append(got, fmt.Sprintf("%s=%d", r.Bucket.Format(time.RFC3339), r.Counters[1]))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})
	}
}

func stamp(t time.Time) string { return t.Format(time.RFC3339) }

// months is the month rows of 5 tokens in h's hour and 7 in the next (the same month or two).
func months(h time.Time) []string {
	m0, m1 := bucketStart(h, GranularityMonth), bucketStart(h.Add(time.Hour), GranularityMonth)
	if m0 == m1 {
		return []string{stamp(m0) + "=12"}
	}
	return []string{stamp(m0) + "=5", stamp(m1) + "=7"}
}

func TestUsageReportBucketsExpireAfterTheirRetention(t *testing.T) {
	st, _, rdb, _ := newStore(t)
	ctx := context.Background()
	st.SetUsageRetention(48*time.Hour, 10*24*time.Hour)
	at := time.Now().UTC()
	if err := st.RecordUsage(ctx, UsageRecord{KeyID: "k", Model: "m", At: at, Usage: Usage{Requests: 1}}); err != nil {
		t.Fatal(err)
	}
	hour, day := at.Truncate(time.Hour), at.Truncate(24*time.Hour)
	for key, want := range map[string]time.Time{
		st.keys.UsageHour(hour): hour.Add(49 * time.Hour),
		st.keys.UsageDay(day):   day.Add(11 * 24 * time.Hour),
	} {
		got, err := rdb.ExpireTime(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got != time.Duration(want.Unix())*time.Second {
			t.Errorf("%s expires at %v, want %v", key, time.Unix(int64(got/time.Second), 0).UTC(), want)
		}
	}
}

func TestUsageReportRefusesBadQueries(t *testing.T) {
	st, _, _, _ := newStore(t)
	d := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, q := range []ReportQuery{
		{From: d, To: d, Granularity: GranularityDay},
		{From: d, To: d.Add(time.Minute), Granularity: GranularityDay},
		{From: d, To: d.AddDate(0, 0, 1), Granularity: "week"},
		{From: d, To: d.AddDate(0, 0, 1), Granularity: GranularityDay, GroupBy: []string{"colour"}},
		{From: d, To: d.AddDate(0, 0, 1), Granularity: GranularityDay, GroupBy: []string{"key", "key"}},
		{From: d, To: d.AddDate(0, 0, 91), Granularity: GranularityHour},
	} {
		if _, err := st.UsageReport(context.Background(), q); !errors.Is(err, ErrReportRange) {
			t.Errorf("%+v: got %v, want ErrReportRange", q, err)
		}
	}
}

// TestReportBucketsRideTheRecordersOneRoundTrip: a batch over many keys, accounts, models and
// hours still costs one pipelined round trip, report buckets included.
func TestReportBucketsRideTheRecordersOneRoundTrip(t *testing.T) {
	st, _, rdb, _ := newStore(t)
	ctx := context.Background()
	hook := &countHook{}
	rdb.AddHook(hook)
	at := time.Now().UTC()
	var recs []UsageRecord
	for i := range 200 {
		recs = append(recs, UsageRecord{KeyID: fmt.Sprintf("k%d", i%17), AccountID: fmt.Sprintf("a%d", i%3), Model: fmt.Sprintf("m%d", i%4),
			At: at.Add(-time.Duration(i%5) * time.Hour), Usage: Usage{Requests: 1, InputTokens: 3}})
	}
	hook.reset()
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, recs...); err != nil {
		t.Fatal(err)
	}
	if got := hook.roundTrips(); got != 1 {
		t.Errorf("got %d round trips for one batch, want 1", got)
	}
	rep, err := st.UsageReport(ctx, ReportQuery{From: at.Truncate(time.Hour).Add(-5 * time.Hour), To: at.Truncate(time.Hour).Add(time.Hour), Granularity: GranularityHour})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Totals[requestsIndex] != 200 || rep.Totals[1] != 600 {
		t.Errorf("report totals %v, want 200 requests and 600 input tokens", rep.Totals)
	}
}

// TestImportedUsageAppearsInReportsOnce: usage carried over by an import lands in the report
// buckets of its days, and importing again counts nothing twice.
func TestImportedUsageAppearsInReportsOnce(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)
	recs := []UsageRecord{
		{KeyID: "k", AccountID: "a", Model: "m", At: day, Usage: Usage{Requests: 4, InputTokens: 40, CostMicroUSD: 700}},
		{KeyID: "k", Model: "m", TotalOnly: true, Usage: Usage{Requests: 100}}, // before any day: totals only
	}
	for range 2 {
		if err := st.ImportUsage(ctx, "crs", recs...); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := st.UsageReport(ctx, ReportQuery{From: day, To: day.AddDate(0, 0, 1), Granularity: GranularityDay, GroupBy: []string{GroupAccount}})
	if err != nil {
		t.Fatal(err)
	}
	if got := usageOf(rep.Totals); got != (Usage{Requests: 4, InputTokens: 40, CostMicroUSD: 700}) {
		t.Errorf("report totals %+v, want the imported day once", got)
	}
	if len(rep.Rows) != 1 || rep.Rows[0].Group[0] != "a" {
		t.Errorf("rows %+v, want one for account a", rep.Rows)
	}
}

// TestDayReportsReadWholeDaysAndHoursOnlyAtTheEnds: a day report from 13:00 two days ago to
// 05:00 today reads 11 + 5 hours and one whole day, and counts every hour of the range.
func TestDayReportsReadWholeDaysAndHoursOnlyAtTheEnds(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	from, to := today.AddDate(0, 0, -2).Add(13*time.Hour), today.Add(5*time.Hour)
	var recs []UsageRecord
	for h := from.Add(-3 * time.Hour); h.Before(to.Add(3 * time.Hour)); h = h.Add(time.Hour) {
		recs = append(recs, UsageRecord{KeyID: "k", Model: "m", At: h.Add(time.Minute), Usage: Usage{Requests: 1}})
	}
	if err := st.RecordUsage(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	q := ReportQuery{From: from, To: to, Granularity: GranularityDay}
	plan, err := st.reportPlan(q)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 11+1+5 {
		t.Errorf("plan reads %d hashes, want 17 (11 hours, 1 day, 5 hours)", len(plan))
	}
	rep, err := st.UsageReport(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rep.Rows {
		got = append(got, fmt.Sprintf("%s=%d", r.Bucket.Format(time.DateOnly), r.Counters[requestsIndex]))
	}
	want := []string{from.Format(time.DateOnly) + "=11", today.AddDate(0, 0, -1).Format(time.DateOnly) + "=24", today.Format(time.DateOnly) + "=5"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

func TestUsageReportOfOneKeyEqualsThatKeysCountersAndNoOther(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	ids, day0 := reportFixture(t, st)
	for _, id := range ids {
		var want Usage
		for d := 0; d < 5; d++ {
			m, err := st.KeyUsage(ctx, id, day0.AddDate(0, 0, d))
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range m {
				want = want.Add(u)
			}
		}
		for _, gran := range []string{GranularityHour, GranularityDay} {
			rep, err := st.UsageReport(ctx, ReportQuery{From: day0, To: day0.AddDate(0, 0, 5), Granularity: gran, GroupBy: []string{GroupKey, GroupModel}, Key: id})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, usageOf(rep.Totals)); diff != "" {
				t.Errorf("key %s by %s: totals (-key's counters +report):\n%s", id, gran, diff)
			}
			var rows Usage
			for _, r := range rep.Rows {
				if r.Group[0] != id {
					t.Errorf("key %s by %s: a row of key %s", id, gran, r.Group[0])
				}
				rows = rows.Add(usageOf(r.Counters))
			}
			if diff := cmp.Diff(want, rows); diff != "" {
				t.Errorf("key %s by %s: rows (-key's counters +rows):\n%s", id, gran, diff)
			}
		}
	}
	rep, err := st.UsageReport(ctx, ReportQuery{From: day0, To: day0.AddDate(0, 0, 5), Granularity: GranularityDay, Key: "no-such-key"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 0 || usageOf(rep.Totals).Requests != 0 {
		t.Errorf("an unknown key's report: %d rows, %d requests; want none", len(rep.Rows), usageOf(rep.Totals).Requests)
	}
}

// TestUsageReportEqualsASumOfTheHourlyBucketsForEveryGrouping: for every set of groupings
// (in two orders), granularity, top and one key's report, the report equals a plain sum of
// the hourly buckets' fields grouped by their values as strings: the interned ids, rollups,
// whole days and the rows built per label change nothing. Usage of a key without a record
// and without a key counts under empty owner, tag and policy.
func TestUsageReportEqualsASumOfTheHourlyBucketsForEveryGrouping(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	ids, day0 := reportFixture(t, st)
	recs := []UsageRecord{
		{Model: "claude-opus-4", At: day0.Add(3 * time.Hour), Usage: Usage{Requests: 1, RefusedRequests: 1}},
		{KeyID: "ghost", AccountID: "acc2", Model: "claude-opus-4", At: day0.Add(50 * time.Hour), Usage: Usage{Requests: 2, CostMicroUSD: 5000}},
	}
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "extra", Seq: 1}, recs...); err != nil {
		t.Fatal(err)
	}
	from, to := day0.Add(2*time.Hour), day0.AddDate(0, 0, 5)
	data := readPlainUsage(t, st, from, to)
	for mask := range 1 << len(ReportGroups) {
		var g []string
		for i, name := range ReportGroups {
			if mask&(1<<i) != 0 {
				g = append(g, name)
			}
		}
		reversed := slices.Clone(g)
		slices.Reverse(reversed)
		for _, groupBy := range slices.CompactFunc([][]string{g, reversed}, slices.Equal) {
			for _, gran := range []string{GranularityHour, GranularityDay, GranularityMonth} {
				for _, q := range []ReportQuery{
					{From: from, To: to, Granularity: gran, GroupBy: groupBy},
					{From: from, To: to, Granularity: gran, GroupBy: groupBy, Top: 2},
					{From: from, To: to, Granularity: gran, GroupBy: groupBy, Key: ids[0]},
				} {
					got, err := st.UsageReport(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(data.report(t, q), got); diff != "" {
						t.Fatalf("%s report by %v, top %d, key %q (-sum +report):\n%s", gran, groupBy, q.Top, q.Key, diff)
					}
				}
			}
		}
	}
}

// plainUsage is every hourly bucket of a range, read whole, and the owner, tags and policy
// of every key they name.
type plainUsage struct {
	hours map[time.Time]map[string]string
	attrs map[string][]any
}

func readPlainUsage(t *testing.T, st *Store, from, to time.Time) *plainUsage {
	t.Helper()
	ctx := context.Background()
	d := &plainUsage{hours: map[time.Time]map[string]string{}, attrs: map[string][]any{}}
	for h := from; h.Before(to); h = h.Add(time.Hour) {
		fields, err := st.rdb.HGetAll(ctx, st.keys.UsageHour(h)).Result()
		if err != nil {
			t.Fatal(err)
		}
		d.hours[h] = fields
		for field := range fields {
			key, _, _ := strings.Cut(field, "|")
			if d.attrs[key], err = st.rdb.HMGet(ctx, st.keys.KeyRecord(key), "owner", "tags", "policy").Result(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

// report answers q the plain way: each field's counters added to the row of its bucket and
// group values, rows sorted by compareRows, and only the rows of the q.Top groups of highest
// cost (then requests, then values) kept.
func (d *plainUsage) report(t *testing.T, q ReportQuery) *Report {
	t.Helper()
	type rowKey struct {
		bucket time.Time
		group  string
	}
	rows, groups, groupSums := map[rowKey][]int64{}, map[string][]string{}, map[string][]int64{}
	totals := make([]int64, len(usageCounters))
	add := func(sums []int64, v []int64) []int64 {
		if sums == nil {
			sums = make([]int64, len(usageCounters))
		}
		for i, n := range v {
			sums[i] += n
		}
		return sums
	}
	for h, fields := range d.hours {
		for field, packed := range fields {
			parts := strings.SplitN(field, "|", 3)
			if len(parts) != 3 || (q.Key != "" && parts[0] != q.Key) {
				continue
			}
			v := make([]int64, len(usageCounters))
			for i, num := range strings.Split(packed, ",")[:min(len(v), strings.Count(packed, ",")+1)] {
				var err error
				if v[i], err = strconv.ParseInt(num, 10, 64); err != nil {
					t.Fatal(err)
				}
			}
			totals = add(totals, v)
			for _, vals := range plainGroups(parts, d.attrs[parts[0]], q.GroupBy) {
				name := strings.Join(vals, "\x00")
				groups[name] = vals
				k := rowKey{bucketStart(h, q.Granularity), name}
				rows[k], groupSums[name] = add(rows[k], v), add(groupSums[name], v)
			}
		}
	}
	names := slices.Collect(maps.Keys(groups))
	slices.SortFunc(names, func(a, b string) int {
		if c := compareRanked(groupSums[a], groupSums[b]); c != 0 {
			return c
		}
		return slices.Compare(groups[a], groups[b])
	})
	if q.Top > 0 && q.Top < len(names) {
		names = names[:q.Top]
	}
	rep := &Report{Totals: totals, Rows: []ReportRow{}}
	for k, c := range rows {
		if slices.Contains(names, k.group) {
			rep.Rows = append(rep.Rows, ReportRow{Bucket: k.bucket, Group: groups[k.group], Counters: c})
		}
	}
	slices.SortFunc(rep.Rows, compareRows)
	return rep
}

// plainGroups returns the group values a bucket field (key, account, model) counts under,
// one slice per row (a key with several tags counts under each).
func plainGroups(field []string, attrs []any, groupBy []string) [][]string {
	attr := func(i int) string { s, _ := attrs[i].(string); return s }
	out := [][]string{{}}
	for _, g := range groupBy {
		vals := map[string][]string{GroupKey: {field[0]}, GroupAccount: {field[1]}, GroupModel: {field[2]},
			GroupOwner: {attr(0)}, GroupTag: strings.Split(attr(1), ","), GroupPolicy: {attr(2)}}[g]
		var next [][]string
		for _, r := range out {
			for _, v := range vals {
				next = append(next, append(slices.Clone(r), v))
			}
		}
		out = next
	}
	return out
}

// TestPackedCountersReadAsStrconvReadsThem: the digit fast path of addPackedValues gives the
// counters and errors strconv.ParseInt gives, signs, long numbers and empty ones included.
func TestPackedCountersReadAsStrconvReadsThem(t *testing.T) {
	for _, packed := range []string{"0", "1,2,3", "7,", "1,0,0,0,0,0,45000,0,0,0,1,9,9", "-5,3", "+7", "123456789012345678,1",
		"1234567890123456789", "9223372036854775807", "9223372036854775808", "1,,2", ",1", "1,a", "12x", "",
		"0012,5", "1234567890123456789,5,-2", "1,2,3,4,5,6,7,8,9,10,11", "1,2,3,4,5,6,7,8,9,10,11,12", "1,2,3,4,5,6,7,8,9,10,11,x"} {
		var want usageValues
		var wantErr error
		for i, rest := 0, packed; rest != "" && i < len(want); i++ {
			num, next, _ := strings.Cut(rest, ",")
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil {
				wantErr = err
				break
			}
			want[i], rest = want[i]+n, next
		}
		var got usageValues
		err := addPackedValues(&got, packed)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) || (err == nil && got != want) {
			t.Errorf("%q: got %v, %v; want %v, %v", packed, got, err, want, wantErr)
		}
	}
}

// TestUsageReportGroupsAlikeWhenGroupNumbersWouldNotFit: groups found by the array of their
// value ids (when their mixed-radix numbers would not fit) make the same report.
func TestUsageReportGroupsAlikeWhenGroupNumbersWouldNotFit(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	_, day0 := reportFixture(t, st)
	for _, g := range [][]string{ReportGroups, {"tag", "owner"}, {"model", "key"}, {"account"}} {
		q := ReportQuery{From: day0, To: day0.AddDate(0, 0, 5), Granularity: GranularityDay, GroupBy: g}
		want, err := st.UsageReport(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		maxGroupNumber = 1
		got, err := st.UsageReport(ctx, q)
		maxGroupNumber = math.MaxInt64
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("by %v (-numbers +arrays):\n%s", g, diff)
		}
	}
}
