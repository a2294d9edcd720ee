package console

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// Charts are inline SVG drawn here and written by the "chart" template: no script, no
// style attribute (the CSP allows neither), colours from console.css by class (s0…s6).

// chart is one stacked bar chart: a bar per bucket, a segment per series.
type chart struct {
	ID, Title string
	// Width is the viewBox's width: about the width it is shown at, so its text stays
	// readable (the height is chartH).
	Width int
	// Summary is the chart in words, for screen readers (aria-label).
	Summary string
	Bars    []segment
	YTicks  []tick
	XTicks  []tick
	Legend  []legendItem
	Empty   bool
}

// segment is one series' part of one bucket's bar, in viewBox units.
type segment struct {
	X, Y, W, H string
	Class      string
	Title      string
}

type tick struct {
	X, Y  string
	Label string
}

type legendItem struct {
	Class, Name string
}

// chart geometry (viewBox units).
const (
	chartH                 = 190
	plotLeft, plotBottom   = 64, 22
	plotTop                = 8
	maxSeries              = 6 // more series than this: the rest are "other"
	otherSeries            = "other"
	xTickSpacing           = 110 // viewBox units between bucket labels, at least
	chartMetricRequests    = "requests"
	chartMetricTokens      = "tokens"
	chartMetricCost        = "cost"
	chartSeriesFallbackKey = "(none)"
)

// metric reads one number of a row for a chart, and formats it.
type metric struct {
	Name   string
	Title  string
	Value  func(adminapi.UsageCounters) float64
	Format func(float64) string
}

var metrics = map[string]metric{
	chartMetricRequests: {Name: chartMetricRequests, Title: "Requests",
		Value:  func(c adminapi.UsageCounters) float64 { return float64(c.Requests) },
		Format: func(v float64) string { return formatInt(int64(v)) }},
	chartMetricTokens: {Name: chartMetricTokens, Title: "Tokens (input + output)",
		Value:  func(c adminapi.UsageCounters) float64 { return float64(c.InputTokens + c.OutputTokens) },
		Format: func(v float64) string { return formatInt(int64(v)) }},
	chartMetricCost: {Name: chartMetricCost, Title: "Cost",
		Value:  func(c adminapi.UsageCounters) float64 { return c.CostUSD },
		Format: formatUSD},
}

// series orders the values of group in rows by total cost (then requests, then name), the
// first maxSeries kept and the rest folded into "other". It returns the series names in
// order and each value's series.
func series(rows []adminapi.UsageRow, group string) ([]string, map[string]string) {
	type total struct {
		name string
		cost float64
		reqs int64
	}
	byName := map[string]*total{}
	for _, r := range rows {
		name := seriesName(r, group)
		t := byName[name]
		if t == nil {
			t = &total{name: name}
			byName[name] = t
		}
		t.cost += r.CostUSD
		t.reqs += r.Requests
	}
	all := make([]*total, 0, len(byName))
	for _, t := range byName {
		all = append(all, t)
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.cost != b.cost {
			return a.cost > b.cost
		}
		if a.reqs != b.reqs {
			return a.reqs > b.reqs
		}
		return a.name < b.name
	})
	of := make(map[string]string, len(all))
	var names []string
	for i, t := range all {
		if i < maxSeries || len(all) == maxSeries+1 {
			names = append(names, t.name)
			of[t.name] = t.name
			continue
		}
		if i == maxSeries {
			names = append(names, otherSeries)
		}
		of[t.name] = otherSeries
	}
	return names, of
}

func seriesName(r adminapi.UsageRow, group string) string {
	if group == "" {
		return "all"
	}
	if v := r.Group[group]; v != "" {
		return v
	}
	return chartSeriesFallbackKey
}

// buildChart draws m over buckets (every bucket of the range, oldest first, as the report
// names them), stacked by the series of group, width units wide.
func buildChart(id string, width int, m metric, rows []adminapi.UsageRow, buckets []string, group string, label func(string) string) chart {
	names, of := series(rows, group)
	return buildChartOf(id, width, m, rows, buckets, group, label, names, of)
}

// buildChartOf is buildChart with its series given: names in stacking order, of naming each
// value's series.
func buildChartOf(id string, width int, m metric, rows []adminapi.UsageRow, buckets []string, group string,
	label func(string) string, names []string, of map[string]string) chart {
	c := chart{ID: id, Title: m.Title, Width: width}
	index := make(map[string]int, len(buckets))
	for i, b := range buckets {
		index[b] = i
	}
	values := make([][]float64, len(buckets)) // bucket → series → value
	for i := range values {
		values[i] = make([]float64, len(names))
	}
	seriesIndex := make(map[string]int, len(names))
	for i, n := range names {
		seriesIndex[n] = i
	}
	for _, r := range rows {
		b, ok := index[r.Bucket]
		if !ok {
			continue
		}
		s, ok := seriesIndex[of[seriesName(r, group)]]
		if !ok {
			continue
		}
		values[b][s] += m.Value(r.UsageCounters)
	}
	var top, sum float64
	for _, vs := range values {
		var t float64
		for _, v := range vs {
			t += v
		}
		top = max(top, t)
		sum += t
	}
	c.Summary = fmt.Sprintf("%s: %s in all over %d buckets, at most %s in one", m.Title, m.Format(sum), len(buckets), m.Format(top))
	c.Empty = top == 0
	for i, n := range names {
		c.Legend = append(c.Legend, legendItem{Class: seriesClass(i), Name: n})
	}
	c.drawBars(values, buckets, names, top, m, label)
	c.drawTicks(buckets, top, m, label)
	return c
}

func seriesClass(i int) string { return "s" + strconv.Itoa(min(i, maxSeries)) }

func (c *chart) drawBars(values [][]float64, buckets, names []string, top float64, m metric, label func(string) string) {
	if top == 0 || len(buckets) == 0 {
		return
	}
	plotW, plotH := float64(c.Width-plotLeft), float64(chartH-plotBottom-plotTop)
	slot := plotW / float64(len(buckets))
	w := max(slot*0.8, 1)
	for b, vs := range values {
		y := float64(chartH - plotBottom)
		for s, v := range vs {
			if v <= 0 {
				continue
			}
			h := v / top * plotH
			y -= h
			c.Bars = append(c.Bars, segment{X: f1(plotLeft + float64(b)*slot + (slot-w)/2), Y: f1(y), W: f1(w), H: f1(max(h, 0.5)),
				Class: seriesClass(s), Title: label(buckets[b]) + " · " + names[s] + ": " + m.Format(v)})
		}
	}
}

func (c *chart) drawTicks(buckets []string, top float64, m metric, label func(string) string) {
	plotH := float64(chartH - plotBottom - plotTop)
	for _, frac := range []float64{0, 0.5, 1} {
		y := float64(chartH-plotBottom) - frac*plotH
		l := m.Format(top * frac)
		if n := len(c.YTicks); n > 0 && c.YTicks[n-1].Label == l {
			continue // a small integer range: 0, 0, 1 reads as 0, 1
		}
		c.YTicks = append(c.YTicks, tick{X: f1(plotLeft - 6), Y: f1(y), Label: l})
	}
	if len(buckets) == 0 {
		return
	}
	maxTicks := max((c.Width-plotLeft)/xTickSpacing, 1)
	step := (len(buckets) + maxTicks - 1) / maxTicks
	slot := float64(c.Width-plotLeft) / float64(len(buckets))
	for i := 0; i < len(buckets); i += step {
		c.XTicks = append(c.XTicks, tick{X: f1(plotLeft + (float64(i)+0.5)*slot), Y: f1(chartH - 6), Label: label(buckets[i])})
	}
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// bucketsOf lists every bucket from from (included) to to (excluded) at granularity, named
// as GET /admin/usage names them.
func bucketsOf(from, to time.Time, granularity string) []string {
	var out []string
	for t := from; t.Before(to) && len(out) < maxBuckets; {
		switch granularity {
		case "hour":
			out = append(out, t.Format(time.RFC3339))
			t = t.Add(time.Hour)
		case "month":
			out = append(out, t.Format("2006-01"))
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		default:
			out = append(out, t.Format(time.DateOnly))
			t = t.AddDate(0, 0, 1)
		}
	}
	return out
}

// maxBuckets bounds a chart's bars (a year by day; 15 days by hour).
const maxBuckets = 366

// bucketLabel is a bucket as a chart's axis shows it: the hour for hours, the day for days.
func bucketLabel(b string) string {
	if t, err := time.Parse(time.RFC3339, b); err == nil {
		return t.Format("Jan 2 15:00")
	}
	if t, err := time.Parse(time.DateOnly, b); err == nil {
		return t.Format("Jan 2")
	}
	if t, err := time.Parse("2006-01", b); err == nil {
		return t.Format("Jan 2006")
	}
	return b
}
