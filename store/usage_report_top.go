package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// An hourly report grouped by key (or a key attribute) with Top reads, in the general path,
// every hourly bucket whole: over 30 days of thousands of keys that is hundreds of thousands
// of fields for ten keys' rows. hourlyTopReport reads instead:
//
//  1. the daily bucket of every whole day in the range (the hourly ones of the partial days
//     at its ends), and ranks the groups on them, as a day report does;
//  2. from each whole day's hourly buckets, only the fields the top groups count in that day
//     (HMGET);
//  3. the report's totals from the hourly rollups (Schema.UsageHourSum), as an ungrouped
//     hourly report does.
//
// A day's bucket is written in the same script call as its hours' (one hash-tag group) and
// lives longer, so a field's daily value is the sum of its hourly ones until the hours
// expire (or usage was imported by the day). The top groups' fields are checked: when any
// day's hourly values do not add up to its daily one, the report is read the general way.
// Groups outside the top can only have less in their hours than in their days, so they
// cannot outrank the groups kept; the rows and their order are the general path's.

// hourlyTopReport answers q from fewer hashes when it can; ok is false when q must be read
// the general way.
func (s *Store) hourlyTopReport(ctx context.Context, q ReportQuery) (rep *Report, ok bool, err error) {
	if hourly, daily := s.UsageRetention(); q.Granularity != GranularityHour || q.Top <= 0 || q.Key != "" ||
		rollupFor(q.GroupBy) == rollupAccount || daily < hourly {
		return nil, false, nil
	}
	dq := q
	dq.Granularity = GranularityDay
	plan, err := s.reportPlan(dq)
	if err != nil {
		return nil, false, err
	}
	keys, days := make([]string, len(plan)), 0
	for i, b := range plan {
		keys[i] = b.key
		if b.rollups[rollupKey] != "" { // a whole day's bucket
			days++
		}
	}
	if days == 0 {
		return nil, false, nil
	}
	hashes, err := s.readHashes(ctx, keys)
	if err != nil {
		return nil, false, fmt.Errorf("usage report: %w", err)
	}
	rank := newReportAgg(dq)
	kinds := make([]rollup, len(plan))
	rank.reserve(hashes, kinds)
	for i, b := range plan {
		rank.addHash(b.key, b.label, hashes[i], rollupNone)
	}
	attrs, err := s.reportKeyAttrs(ctx, rank)
	if err != nil {
		return nil, false, err
	}
	g := rank.groups(attrs)
	var dayTotals usageValues
	keep, err := rank.topGroups(g, &dayTotals)
	if err != nil || keep == nil { // nil: every group is in the top; nothing to save
		return nil, false, err
	}
	hours, ok, err := s.topGroupHours(ctx, q, plan, hashes, rank, g, keep)
	if err != nil || !ok {
		return nil, false, err
	}
	return s.reportFromHours(ctx, q, hours)
}

// topHour is one hourly bucket of the report: its key, its hour, and the fields read.
type topHour struct {
	key  string
	hour time.Time
	h    map[string]string
}

// topGroupHours reads, for each whole day of plan, the fields of its hourly buckets that the
// kept groups count in, and checks that they add up to the day's; the partial days' hourly
// buckets were read whole in hashes. ok is false when a day does not add up.
func (s *Store) topGroupHours(ctx context.Context, q ReportQuery, plan []reportBucket, hashes []map[string]string,
	rank *reportAgg, g *reportGroups, keep []bool) ([]topHour, bool, error) {
	wanted := make([][]string, len(plan)) // per whole day: the kept fields it holds
	for ci := range rank.cells {
		c := &rank.cells[ci]
		if plan[c.hash].rollups[rollupKey] == "" {
			continue
		}
		for _, gid := range g.of(c.field) {
			if keep[gid] {
				wanted[c.hash] = append(wanted[c.hash], rank.fields[c.field].name)
				break
			}
		}
	}
	var hours []topHour
	cmds := map[int][]*redis.SliceCmd{}
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		t := q.From.UTC() // the plan's buckets in order: a partial day's hours, whole days
		for i, b := range plan {
			if b.rollups[rollupKey] == "" {
				hours = append(hours, topHour{key: b.key, hour: t, h: hashes[i]})
				t = t.Add(time.Hour)
				continue
			}
			for range 24 {
				hours = append(hours, topHour{key: s.keys.UsageHour(t), hour: t})
				if len(wanted[i]) > 0 {
					cmds[i] = append(cmds[i], p.HMGet(ctx, s.keys.UsageHour(t), wanted[i]...))
				}
				t = t.Add(time.Hour)
			}
		}
		return nil
	}); err != nil {
		return nil, false, fmt.Errorf("usage report: %w", err)
	}
	at := 0
	for i, b := range plan {
		if b.rollups[rollupKey] == "" {
			at++
			continue
		}
		day := hours[at : at+24]
		at += 24
		ok, err := fillDay(day, wanted[i], cmds[i], hashes[i])
		if err != nil || !ok {
			return nil, false, err
		}
	}
	return hours, true, nil
}

// fillDay sets each hour's fields from its HMGET reply and reports whether every field's
// hourly values add up to its value in the day's bucket.
func fillDay(day []topHour, fields []string, cmds []*redis.SliceCmd, daily map[string]string) (bool, error) {
	sums := make([]usageValues, len(fields))
	for h, cmd := range cmds {
		vals, err := cmd.Result()
		if err != nil {
			return false, fmt.Errorf("usage report: %w", err)
		}
		day[h].h = make(map[string]string, len(fields))
		for j, v := range vals {
			packed, ok := v.(string)
			if !ok {
				continue
			}
			day[h].h[fields[j]] = packed
			if err := addPackedValues(&sums[j], packed); err != nil {
				return false, fmt.Errorf("usage report: %s: field %q: %w", day[h].key, fields[j], err)
			}
		}
	}
	for j, f := range fields {
		var want usageValues
		if err := addPackedValues(&want, daily[f]); err != nil {
			return false, fmt.Errorf("usage report: daily field %q: %w", f, err)
		}
		if want != sums[j] {
			return false, nil
		}
	}
	return true, nil
}

// reportFromHours builds q's report from the hourly fields read, with the totals of every
// hour's rollups.
func (s *Store) reportFromHours(ctx context.Context, q ReportQuery, hours []topHour) (*Report, bool, error) {
	agg := newReportAgg(q)
	hashes := make([]map[string]string, len(hours))
	for i, h := range hours {
		hashes[i] = h.h
	}
	agg.reserve(hashes, make([]rollup, len(hours)))
	for _, h := range hours {
		agg.addHash(h.key, h.hour, h.h, rollupNone)
	}
	attrs, err := s.reportKeyAttrs(ctx, agg)
	if err != nil {
		return nil, false, err
	}
	rep, err := agg.report(attrs)
	if err != nil {
		return nil, false, err
	}
	tq := q
	tq.GroupBy, tq.Top = nil, 0
	totals, err := s.usageReport(ctx, tq, rollupAccount)
	if err != nil {
		return nil, false, err
	}
	rep.Totals = totals.Totals
	return rep, true, nil
}
