package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// SetUsageRetention sets how long report buckets written from now on live after their hour
// (hourly) and day (daily); zero keeps the default (DefaultHourlyRetention, UsageRetention).
func (s *Store) SetUsageRetention(hourly, daily time.Duration) {
	s.hourlyRetention.Store(int64(hourly))
	s.dailyRetention.Store(int64(daily))
}

// UsageRetention returns how long hourly and daily report buckets live.
func (s *Store) UsageRetention() (hourly, daily time.Duration) {
	hourly, daily = time.Duration(s.hourlyRetention.Load()), time.Duration(s.dailyRetention.Load())
	if hourly <= 0 {
		hourly = DefaultHourlyRetention
	}
	if daily <= 0 {
		daily = UsageRetention
	}
	return hourly, daily
}

// reportField names one key, account and model in a report bucket (see Schema.UsageHour).
func reportField(keyID, accountID, model string) string {
	return keyID + "|" + accountID + "|" + model
}

// rollupField names one account and model in a report rollup (see Schema.UsageHourSum).
func rollupField(accountID, model string) string {
	return accountID + "|" + model
}

// rollupPartial is the field that marks a rollup as not covering its whole bucket.
const rollupPartial = "!partial"

// Report granularities.
const (
	GranularityHour  = "hour"
	GranularityDay   = "day"
	GranularityMonth = "month"
)

// Report groupings: what a report row can be grouped by. Owner, tag and policy are
// attributes of the key, resolved when the report is made (a key's current owner, tags and
// policy); a key with several tags counts under each of them.
const (
	GroupKey     = "key"
	GroupOwner   = "owner"
	GroupTag     = "tag"
	GroupModel   = "model"
	GroupAccount = "account"
	GroupPolicy  = "policy"
)

// ReportGroups lists every grouping in the order a row's group fields are compared.
var ReportGroups = []string{GroupKey, GroupOwner, GroupTag, GroupModel, GroupAccount, GroupPolicy}

// MaxReportBuckets bounds the buckets one report reads (90 days of hours, about 6 years of
// days), so a report's cost stays bounded whatever range is asked.
const MaxReportBuckets = 90 * 24

// ErrReportRange means the report's range or granularity cannot be answered as asked.
var ErrReportRange = errors.New("invalid report range")

// ReportQuery asks for usage between From and To (To excluded) by bucket and groups.
type ReportQuery struct {
	From, To    time.Time
	Granularity string   // GranularityHour, GranularityDay or GranularityMonth
	GroupBy     []string // some of ReportGroups; none: one row per bucket
	// Top keeps the rows of the Top groups with the highest cost over the whole range
	// (then requests, then names); 0 keeps every group. Totals always count everything.
	Top int
	// Key, when set, keeps only this key's usage (rows and totals): one key's report.
	Key string
}

// ReportRow is the usage of one group in one bucket.
type ReportRow struct {
	// Bucket is the start of the hour, day or month (UTC).
	Bucket time.Time
	// Group holds the value of each grouping asked for, in the order asked.
	Group []string
	// Counters are named by UsageCounters.
	Counters []int64
}

// Report is the answer to a ReportQuery: rows sorted by bucket, then cost (highest first),
// requests, then group values; totals over everything in the range.
type Report struct {
	Rows   []ReportRow
	Totals []int64
}

// UsageCounters names the counters of report rows, in order.
func UsageCounters() []string { return usageCounters[:] }

// UsageReport reads the report buckets of q's range in one pipelined round trip (plus one
// for the keys' owners, tags and policies when those are grouped on) and sums them. A
// report grouped by model or account alone (or not at all) reads the buckets' rollups by
// account and model (Schema.UsageHourSum), a few fields an hour; one grouped by key
// attributes alone reads whole days' rollups by key (Schema.UsageDayKeys); the buckets whose
// rollup is missing or partial are read in a second round trip. An hourly report grouped by
// key or a key attribute with Top reads only its top groups' hourly fields when their days
// add up (hourlyTopReport).
func (s *Store) UsageReport(ctx context.Context, q ReportQuery) (*Report, error) {
	if rep, ok, err := s.hourlyTopReport(ctx, q); err != nil || ok {
		return rep, err
	}
	r := rollupFor(q.GroupBy)
	if q.Key != "" { // the rollups do not keep one key's usage by model and account
		r = rollupNone
	}
	return s.usageReport(ctx, q, r)
}

// Rollups a report can read instead of its buckets.
type rollup int

const (
	rollupNone    rollup = iota // the buckets: "key|account|model"
	rollupAccount               // by account and model: "account|model"
	rollupKey                   // by key, whole days only: "key"
)

// rollupFor picks the rollup that answers a report grouped by groupBy.
func rollupFor(groupBy []string) rollup {
	byKey, byAccount := false, false
	for _, g := range groupBy {
		switch g {
		case GroupModel, GroupAccount:
			byAccount = true
		default:
			byKey = true
		}
	}
	switch {
	case byKey && byAccount:
		return rollupNone
	case byKey:
		return rollupKey
	}
	return rollupAccount
}

func (s *Store) usageReport(ctx context.Context, q ReportQuery, r rollup) (*Report, error) {
	plan, err := s.reportPlan(q)
	if err != nil {
		return nil, err
	}
	agg := newReportAgg(q)
	if err := s.readReportBuckets(ctx, plan, r, agg); err != nil {
		return nil, fmt.Errorf("usage report: %w", err)
	}
	attrs, err := s.reportKeyAttrs(ctx, agg)
	if err != nil {
		return nil, err
	}
	return agg.report(attrs)
}

// readReportBuckets reads the plan's hashes (their rollups r where they have one, and then
// the buckets whose rollup cannot answer) into agg.
func (s *Store) readReportBuckets(ctx context.Context, plan []reportBucket, r rollup, agg *reportAgg) error {
	keys := make([]string, len(plan))
	kinds := make([]rollup, len(plan))
	for i, b := range plan {
		keys[i] = b.key
		if alt := b.rollups[r]; alt != "" {
			keys[i], kinds[i] = alt, r
		}
	}
	hashes, err := s.readHashes(ctx, keys)
	if err != nil {
		return err
	}
	var again []int
	for i, h := range hashes {
		if _, partial := h[rollupPartial]; kinds[i] != rollupNone && (partial || len(h) == 0) {
			again = append(again, i)
		}
	}
	full := make([]string, len(again))
	for j, i := range again {
		full[j] = plan[i].key
	}
	more, err := s.readHashes(ctx, full)
	if err != nil {
		return err
	}
	for j, i := range again {
		hashes[i], keys[i], kinds[i] = more[j], full[j], rollupNone
	}
	agg.reserve(hashes, kinds)
	for i, b := range plan {
		agg.addHash(keys[i], b.label, hashes[i], kinds[i])
	}
	return nil
}

// readHashes reads hashes in one pipelined round trip.
func (s *Store) readHashes(ctx context.Context, keys []string) ([]map[string]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(keys))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.HGetAll(ctx, k)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]map[string]string, len(keys))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// reportBucket is one hash a report reads, its rollups (by kind; "" for none) and the
// bucket its usage lands in.
type reportBucket struct {
	key     string
	rollups [3]string
	label   time.Time
}

// reportPlan lists the hashes to read: for a day or month report, the daily hash of each
// whole day in the range and the hourly ones of the partial days at its ends; for an hour
// report, hourly ones.
func (s *Store) reportPlan(q ReportQuery) ([]reportBucket, error) {
	from, to := q.From.UTC(), q.To.UTC()
	if !slices.Contains([]string{GranularityHour, GranularityDay, GranularityMonth}, q.Granularity) {
		return nil, fmt.Errorf("%w: granularity %q is not hour, day or month", ErrReportRange, q.Granularity)
	}
	for i, g := range q.GroupBy {
		if !slices.Contains(ReportGroups, g) || slices.Contains(q.GroupBy[:i], g) {
			return nil, fmt.Errorf("%w: cannot group by %q (one each of %s)", ErrReportRange, g, strings.Join(ReportGroups, ", "))
		}
	}
	if !from.Before(to) {
		return nil, fmt.Errorf("%w: from %s is not before to %s", ErrReportRange, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if from.Truncate(time.Hour) != from || to.Truncate(time.Hour) != to {
		return nil, fmt.Errorf("%w: from and to must be whole hours", ErrReportRange)
	}
	var plan []reportBucket
	for t := from; t.Before(to); {
		b, step := reportBucket{key: s.keys.UsageHour(t)}, time.Hour
		b.rollups[rollupAccount] = s.keys.UsageHourSum(t)
		if q.Granularity != GranularityHour && t.Truncate(24*time.Hour).Equal(t) && !t.Add(24*time.Hour).After(to) {
			b, step = reportBucket{key: s.keys.UsageDay(t)}, 24*time.Hour
			b.rollups[rollupAccount], b.rollups[rollupKey] = s.keys.UsageDaySum(t), s.keys.UsageDayKeys(t)
		}
		if len(plan) == MaxReportBuckets {
			return nil, fmt.Errorf("%w: more than %d buckets asked (hours, or days for whole days of a day or month report); narrow the range or use a coarser granularity", ErrReportRange, MaxReportBuckets)
		}
		b.label = bucketStart(t, q.Granularity)
		plan = append(plan, b)
		t = t.Add(step)
	}
	return plan, nil
}

// bucketStart is the start of the report bucket holding t.
func bucketStart(t time.Time, granularity string) time.Time {
	switch granularity {
	case GranularityHour:
		return t.Truncate(time.Hour)
	case GranularityMonth:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	default:
		return t.Truncate(24 * time.Hour)
	}
}

// Report dimensions: the values a row can be grouped on, numbered in ReportGroups order.
const (
	dimKey = iota
	dimOwner
	dimTag
	dimModel
	dimAccount
	dimPolicy
	numDims
)

// interner numbers distinct strings in the order they are first seen.
type interner struct {
	ix   map[string]int32
	vals []string
}

// id returns the number of s, numbering it if it is new.
func (d *interner) id(s string) int32 {
	if i, ok := d.ix[s]; ok {
		return i
	}
	if d.ix == nil {
		d.ix = make(map[string]int32)
	}
	i := int32(len(d.vals))
	d.ix[s] = i
	d.vals = append(d.vals, s)
	return i
}

// ranks returns the position of each value in sorted order.
func (d *interner) ranks() []int32 {
	order := make([]int32, len(d.vals))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(x, y int32) int { return strings.Compare(d.vals[x], d.vals[y]) })
	rank := make([]int32, len(order))
	for r, id := range order {
		rank[id] = int32(r)
	}
	return rank
}

// fieldRef is a report bucket's field, parsed: its key, account and model as value ids.
type fieldRef struct {
	key, account, model int32
	name                string
}

// reportCell is one field of one hash read, its counters not parsed yet: indexes into
// reportAgg's hashes and fields.
type reportCell struct {
	hash, field int32
	packed      string
}

// reportAgg holds the fields of the hashes a report read, before groups are known. Field
// names are parsed once per distinct field and their values numbered (interned) per
// dimension; everything after reading is indexed by those numbers, so a 30-day report over
// thousands of keys hashes each field's name once per hash read, never compares strings
// per row, and parses each field's counters straight into the rows they count in.
type reportAgg struct {
	q       ReportQuery
	labels  []time.Time
	fieldIx [3]map[string]int32 // field ids by name, by the kind of hash they come from
	fields  []fieldRef
	dicts   [numDims]interner // the values of each dimension
	// Each hash read: its key (for errors) and the label its usage lands in.
	hashKeys  []string
	hashLabel []int32
	cells     []reportCell
}

func newReportAgg(q ReportQuery) *reportAgg {
	return &reportAgg{q: q}
}

// reserve sizes the cells and field indexes for hashes (of kinds).
func (a *reportAgg) reserve(hashes []map[string]string, kinds []rollup) {
	var n [3]int
	for i, h := range hashes {
		n[kinds[i]] += len(h)
	}
	for r := range a.fieldIx {
		a.fieldIx[r] = make(map[string]int32, min(n[r], 1<<16))
	}
	a.cells = make([]reportCell, 0, n[0]+n[1]+n[2])
}

// label returns the index of a bucket label, adding it after the last one if new (plans
// list buckets in time order).
func (a *reportAgg) label(t time.Time) int32 {
	if n := len(a.labels); n == 0 || !a.labels[n-1].Equal(t) {
		a.labels = append(a.labels, t)
	}
	return int32(len(a.labels) - 1)
}

// addHash adds the fields of report bucket key, or of its rollup of kind r, to the bucket
// labelled label.
func (a *reportAgg) addHash(key string, label time.Time, h map[string]string, r rollup) {
	hi := int32(len(a.hashKeys))
	a.hashKeys, a.hashLabel = append(a.hashKeys, key), append(a.hashLabel, a.label(label))
	ix := a.fieldIx[r]
	keyPrefix := "" // one key's report reads the buckets (rollupFor): their fields start with the key
	if a.q.Key != "" {
		keyPrefix = a.q.Key + "|"
	}
	for field, val := range h {
		if keyPrefix != "" && !strings.HasPrefix(field, keyPrefix) {
			continue
		}
		fi, ok := ix[field]
		if !ok {
			f, ok := a.parseField(field, r)
			if !ok {
				continue // not a report field (or the partial mark); ignored
			}
			fi = int32(len(a.fields))
			a.fields = append(a.fields, f)
			ix[field] = fi
		}
		a.cells = append(a.cells, reportCell{hash: hi, field: fi, packed: val})
	}
}

// values parses the counters of cell c.
func (a *reportAgg) values(c *reportCell) (usageValues, error) {
	var v usageValues
	if err := addPackedValues(&v, c.packed); err != nil {
		return v, fmt.Errorf("usage report: %s: field %q: %w", a.hashKeys[c.hash], a.fields[c.field].name, err)
	}
	return v, nil
}

// parseField reads a field of a report bucket ("key|account|model"), or of its rollup of
// kind r, and numbers its values.
func (a *reportAgg) parseField(field string, r rollup) (fieldRef, bool) {
	var key, acct, model string
	ok := true
	switch r {
	case rollupAccount:
		acct, model, ok = strings.Cut(field, "|")
	case rollupKey:
		key, ok = field, field != rollupPartial
	default:
		var rest string
		if key, rest, ok = strings.Cut(field, "|"); ok {
			acct, model, ok = strings.Cut(rest, "|")
		}
	}
	if !ok {
		return fieldRef{}, false
	}
	return fieldRef{key: a.dicts[dimKey].id(key), account: a.dicts[dimAccount].id(acct), model: a.dicts[dimModel].id(model), name: field}, true
}

// addPackedValues adds a packed value ("n0,n1,…") to v; counters beyond v are ignored (a
// newer writer's), missing ones count 0 (an older writer's). Numbers of 1 to 18 digits are
// read here; from the first other one on, strconv.ParseInt decides.
func addPackedValues(v *usageValues, packed string) error {
	i, start, n := 0, 0, int64(0)
	for j := 0; j < len(packed); j++ {
		switch c := packed[j]; {
		case c >= '0' && c <= '9' && j-start < 18:
			n = n*10 + int64(c-'0')
		case c == ',' && j > start:
			v[i] += n
			if i++; i == len(v) {
				return nil
			}
			start, n = j+1, 0
		default:
			return parsePackedValues(v[i:], packed[start:])
		}
	}
	if start < len(packed) {
		v[i] += n
	}
	return nil
}

// parsePackedValues is addPackedValues by strconv.ParseInt.
func parsePackedValues(v []int64, packed string) error {
	for i := 0; packed != "" && i < len(v); i++ {
		num, rest, _ := strings.Cut(packed, ",")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return err
		}
		v[i] += n
		packed = rest
	}
	return nil
}

// keyAttrs are the attributes of a key a report groups on.
type keyAttrs struct {
	owner, policy string
	tags          []string
}

// keyAttributes reads the owner, tags and policy of keys in one pipelined round trip, only
// when the report groups on one of them.
func (s *Store) keyAttributes(ctx context.Context, ids []string, groupBy []string) (map[string]keyAttrs, error) {
	if !slices.ContainsFunc(groupBy, func(g string) bool { return g == GroupOwner || g == GroupTag || g == GroupPolicy }) || len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.SliceCmd, len(ids))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, s.keys.KeyRecord(id), "owner", "tags", "policy")
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("usage report: key attributes: %w", err)
	}
	out := make(map[string]keyAttrs, len(ids))
	for i, id := range ids {
		v := cmds[i].Val()
		str := func(j int) string {
			if j < len(v) {
				if s, ok := v[j].(string); ok {
					return s
				}
			}
			return ""
		}
		a := keyAttrs{owner: str(0), policy: str(2)}
		if t := str(1); t != "" {
			a.tags = strings.Split(t, ",")
		}
		out[id] = a
	}
	return out, nil
}

// reportAttrs are the owner, tags and policy of each key of a report (by key value id), as
// value ids of their dimensions; a key without tags has the one tag "".
type reportAttrs struct {
	owner, policy []int32
	tags          [][]int32
}

// reportKeyAttrs reads the owner, tags and/or policy of the report's keys, those the report
// groups on only, in one pipelined round trip (none when it groups on none of them).
func (s *Store) reportKeyAttrs(ctx context.Context, a *reportAgg) (*reportAttrs, error) {
	recordField := [numDims]string{dimOwner: "owner", dimTag: "tags", dimPolicy: "policy"}
	var names []string
	var dims []int
	for _, d := range []int{dimOwner, dimTag, dimPolicy} {
		if slices.Contains(a.q.GroupBy, ReportGroups[d]) {
			names, dims = append(names, recordField[d]), append(dims, d)
		}
	}
	if len(dims) == 0 {
		return nil, nil
	}
	ids := a.dicts[dimKey].vals
	cmds := make([]*redis.SliceCmd, len(ids))
	if slices.ContainsFunc(ids, func(id string) bool { return id != "" }) {
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				if id != "" { // usage without a key (refused before it was known) has no record
					cmds[i] = p.HMGet(ctx, s.keys.KeyRecord(id), names...)
				}
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("usage report: key attributes: %w", err)
		}
	}
	attrs := &reportAttrs{owner: make([]int32, len(ids)), policy: make([]int32, len(ids)), tags: make([][]int32, len(ids))}
	for i, c := range cmds {
		var v []any
		if c != nil {
			v = c.Val()
		}
		for j, d := range dims {
			attrs.set(a, i, d, sliceString(v, j))
		}
	}
	return attrs, nil
}

// set gives key i the value val of attribute dimension d.
func (at *reportAttrs) set(a *reportAgg, i, d int, val string) {
	dict := &a.dicts[d]
	switch d {
	case dimOwner:
		at.owner[i] = dict.id(val)
	case dimPolicy:
		at.policy[i] = dict.id(val)
	case dimTag:
		for {
			tag, rest, more := strings.Cut(val, ",")
			at.tags[i] = append(at.tags[i], dict.id(tag))
			if !more {
				return
			}
			val = rest
		}
	}
}

// sliceString is v[j] if it is a string, else "" (a missing field or record).
func sliceString(v []any, j int) string {
	if j < len(v) {
		if s, ok := v[j].(string); ok {
			return s
		}
	}
	return ""
}

// reportGroups numbers the distinct groups of a report: a group is one value id per
// grouping asked, in the order asked.
type reportGroups struct {
	dims []int // the dimension of each grouping asked
	// A group is found by its value ids as one mixed-radix number (radix: each grouping's
	// place value) when the numbers fit in maxGroupNumber, else by the array of its ids.
	radix  []uint64
	num    map[uint64]int32
	ix     map[[numDims]int32]int32
	tuples [][numDims]int32 // each group's value ids (the first len(dims))
	// The groups field f counts under are ids[start[f]:start[f+1]] (a key with several tags
	// counts under each).
	start, ids []int32
	rank       []int32 // each group's position in the order of its values
}

// groups numbers the report's groups and the groups each field counts under.
func (a *reportAgg) groups(attrs *reportAttrs) *reportGroups {
	g := &reportGroups{start: make([]int32, 0, len(a.fields)+1)}
	for _, name := range a.q.GroupBy {
		g.dims = append(g.dims, slices.Index(ReportGroups, name))
	}
	none := []int32{a.dicts[dimTag].id("")} // the tags of a key without attributes
	if g.radix = radixes(a, g.dims, maxGroupNumber); g.radix != nil {
		g.num = make(map[uint64]int32, len(a.fields))
	} else {
		g.ix = make(map[[numDims]int32]int32, len(a.fields))
	}
	var t [numDims]int32
	for _, f := range a.fields {
		g.start = append(g.start, int32(len(g.ids)))
		tagAt, tags := -1, none
		for i, d := range g.dims {
			switch d {
			case dimKey:
				t[i] = f.key
			case dimModel:
				t[i] = f.model
			case dimAccount:
				t[i] = f.account
			case dimOwner:
				t[i] = attrs.owner[f.key]
			case dimPolicy:
				t[i] = attrs.policy[f.key]
			case dimTag:
				tagAt = i
				if attrs != nil && attrs.tags[f.key] != nil {
					tags = attrs.tags[f.key]
				}
			}
		}
		if tagAt < 0 {
			g.add(t)
			continue
		}
		for _, tag := range tags {
			t[tagAt] = tag
			g.add(t)
		}
	}
	g.start = append(g.start, int32(len(g.ids)))
	g.rank = g.ranks(a)
	return g
}

// maxGroupNumber bounds the mixed-radix numbers of groups (reportGroups.radix).
var maxGroupNumber uint64 = math.MaxInt64

// radixes returns the place value of each grouping's value id in a group's number, or nil
// when the product of the groupings' numbers of values is above limit.
func radixes(a *reportAgg, dims []int, limit uint64) []uint64 {
	radix := make([]uint64, len(dims))
	place := uint64(1)
	for i := len(dims) - 1; i >= 0; i-- {
		radix[i] = place
		n := uint64(max(1, len(a.dicts[dims[i]].vals)))
		if place > limit/n {
			return nil
		}
		place *= n
	}
	return radix
}

// add counts the field being numbered under the group of values t.
func (g *reportGroups) add(t [numDims]int32) {
	var id int32
	var ok bool
	if g.radix != nil {
		n := uint64(0)
		for i, r := range g.radix {
			n += uint64(t[i]) * r
		}
		if id, ok = g.num[n]; !ok {
			id = int32(len(g.tuples))
			g.num[n] = id
		}
	} else if id, ok = g.ix[t]; !ok {
		id = int32(len(g.tuples))
		g.ix[t] = id
	}
	if !ok {
		g.tuples = append(g.tuples, t)
	}
	g.ids = append(g.ids, id)
}

// of returns the groups field f counts under.
func (g *reportGroups) of(f int32) []int32 { return g.ids[g.start[f]:g.start[f+1]] }

// ranks numbers groups in the order of their values (compared as strings, grouping by
// grouping): a radix sort, stable by each grouping's value ranks from the last grouping to
// the first.
func (g *reportGroups) ranks(a *reportAgg) []int32 {
	order := make([]int32, len(g.tuples))
	for i := range order {
		order[i] = int32(i)
	}
	next := make([]int32, len(order))
	for i := len(g.dims) - 1; i >= 0; i-- {
		dimRank := a.dicts[g.dims[i]].ranks()
		start := make([]int32, len(dimRank)+1) // where each value's groups start in next
		for _, id := range order {
			start[dimRank[g.tuples[id][i]]+1]++
		}
		for r := 1; r < len(start); r++ {
			start[r] += start[r-1]
		}
		for _, id := range order {
			r := dimRank[g.tuples[id][i]]
			next[start[r]] = id
			start[r]++
		}
		order, next = next, order
	}
	rank := make([]int32, len(order))
	for r, id := range order {
		rank[id] = int32(r)
	}
	return rank
}

// values returns the values of group id, as strings, taking their slice from *slab.
func (g *reportGroups) values(a *reportAgg, id int32, slab *[]string) []string {
	n := len(g.dims)
	if len(*slab) < n || *slab == nil { // never nil: an ungrouped row has Group []string{}
		*slab = make([]string, n*256)
	}
	vals := (*slab)[:n:n]
	*slab = (*slab)[n:]
	for i, d := range g.dims {
		vals[i] = a.dicts[d].vals[g.tuples[id][i]]
	}
	return vals
}

// report groups the cells into rows, sorts them and applies Top.
func (a *reportAgg) report(attrs *reportAttrs) (*Report, error) {
	g := a.groups(attrs)
	var totals usageValues
	// Rows are built for the groups kept only: a top-10 report over thousands of keys
	// sums and sorts ten keys' rows, not every key's.
	keep, err := a.topGroups(g, &totals)
	if err != nil {
		return nil, err
	}
	sum := &totals
	if keep != nil {
		sum = nil // topGroups summed every cell
	}
	rows, err := a.rows(g, keep, sum)
	if err != nil {
		return nil, err
	}
	return &Report{Totals: totals[:], Rows: a.sorted(g, rows)}, nil
}

// sorted returns rows (come label by label, see rows) as report rows sorted by bucket, then
// cost, requests and the groups' values.
func (a *reportAgg) sorted(g *reportGroups, rows []reportRow) []ReportRow {
	out := make([]ReportRow, 0, len(rows))
	order := make([]rowOrder, len(rows))
	for i, r := range rows {
		order[i] = rowOrder{cost: r.counters[costIndex], requests: r.counters[requestsIndex], rank: g.rank[r.group], row: int32(i)}
	}
	groupVals := make([][]string, len(g.tuples))
	var slab []string
	for start, end := 0, 0; start < len(order); start = end {
		for end = start + 1; end < len(order) && rows[end].label == rows[start].label; end++ {
		}
		label := order[start:end]
		slices.SortFunc(label, compareRowOrder)
		for _, o := range label {
			r := &rows[o.row]
			if groupVals[r.group] == nil {
				groupVals[r.group] = g.values(a, r.group, &slab)
			}
			out = append(out, ReportRow{Bucket: a.labels[r.label], Group: groupVals[r.group], Counters: r.counters})
		}
	}
	return out
}

// rowOrder is what a bucket's rows are sorted by, and the row.
type rowOrder struct {
	cost, requests int64
	rank, row      int32
}

// compareRowOrder orders by cost, then requests (highest first), then the group's values.
func compareRowOrder(a, b rowOrder) int {
	if c := cmp.Compare(b.cost, a.cost); c != 0 {
		return c
	}
	if c := cmp.Compare(b.requests, a.requests); c != 0 {
		return c
	}
	return cmp.Compare(a.rank, b.rank)
}

// reportRow is the counters of a group in a bucket label.
type reportRow struct {
	counters     []int64
	label, group int32
}

// rows sums the cells into a row per bucket and group, for the groups in keep (all when
// keep is nil), and into totals unless it is nil. Cells come label by label, so a group's
// row in the current label is found by the group's id alone.
func (a *reportAgg) rows(g *reportGroups, keep []bool, totals *usageValues) ([]reportRow, error) {
	n := 0 // rows at most: a row per cell and group it counts under
	for ci := range a.cells {
		f := a.cells[ci].field
		n += int(g.start[f+1] - g.start[f])
	}
	if keep != nil {
		n = min(n, a.q.Top*len(a.labels))
	}
	rowOf := make([]int32, len(g.tuples)) // each group's latest row
	for i := range rowOf {
		rowOf[i] = -1
	}
	rows := make([]reportRow, 0, n)
	var backing []int64 // the rows' counters, allocated in blocks
	for ci := range a.cells {
		c := &a.cells[ci]
		groups := g.of(c.field)
		if keep != nil && !slices.ContainsFunc(groups, func(gid int32) bool { return keep[gid] }) {
			continue
		}
		v, err := a.values(c)
		if err != nil {
			return nil, err
		}
		if totals != nil {
			addValues(totals, &v)
		}
		label := a.hashLabel[c.hash]
		for _, gid := range groups {
			if keep != nil && !keep[gid] {
				continue
			}
			ri := rowOf[gid]
			if ri < 0 || rows[ri].label != label {
				ri = int32(len(rows))
				rowOf[gid] = ri
				if len(backing) < len(usageCounters) {
					backing = make([]int64, len(usageCounters)*max(256, n-len(rows)))
				}
				rows = append(rows, reportRow{counters: backing[:len(usageCounters):len(usageCounters)], label: label, group: gid})
				backing = backing[len(usageCounters):]
			}
			addSlice(rows[ri].counters, &v)
		}
	}
	return rows, nil
}

func addValues(dst, v *usageValues) {
	for i, n := range v {
		dst[i] += n
	}
}

func addSlice(dst []int64, v *usageValues) {
	for i, n := range v {
		dst[i] += n
	}
}

// counterIndex is the position of a counter in usageCounters (-1 if absent).
func counterIndex(name string) int { return slices.Index(usageCounters[:], name) }

var (
	costIndex     = counterIndex("cost_micro_usd")
	requestsIndex = counterIndex("requests")
)

// compareRanked orders by cost, then requests, highest first.
func compareRanked(a, b []int64) int {
	if c := cmp.Compare(b[costIndex], a[costIndex]); c != 0 {
		return c
	}
	return cmp.Compare(b[requestsIndex], a[requestsIndex])
}

func compareRows(a, b ReportRow) int {
	if c := a.Bucket.Compare(b.Bucket); c != 0 {
		return c
	}
	if c := compareRanked(a.Counters, b.Counters); c != 0 {
		return c
	}
	return slices.Compare(a.Group, b.Group)
}

// topGroups returns which groups are among the q.Top ranked first over the whole range
// (nil: keep all); when it does, it has summed every cell into totals.
func (a *reportAgg) topGroups(g *reportGroups, totals *usageValues) ([]bool, error) {
	n := a.q.Top
	if n <= 0 || n >= len(g.tuples) {
		return nil, nil
	}
	sums := make([]usageValues, len(g.tuples))
	for ci := range a.cells {
		c := &a.cells[ci]
		v, err := a.values(c)
		if err != nil {
			return nil, err
		}
		addValues(totals, &v)
		for _, gid := range g.of(c.field) {
			addValues(&sums[gid], &v)
		}
	}
	ids := make([]int32, len(g.tuples))
	for i := range ids {
		ids[i] = int32(i)
	}
	slices.SortFunc(ids, func(x, y int32) int {
		if c := compareRanked(sums[x][:], sums[y][:]); c != 0 {
			return c
		}
		return cmp.Compare(g.rank[x], g.rank[y])
	})
	keep := make([]bool, len(g.tuples))
	for _, id := range ids[:n] {
		keep[id] = true
	}
	return keep, nil
}
