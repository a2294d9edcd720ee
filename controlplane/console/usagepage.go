package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// The usage page: a report of GET /admin/usage over a range the operator picks, grouped by
// one dimension, drawn as a chart of one metric and listed as a table, with its CSV export
// through the console (the same session).

// usageChartWidth is the width of the usage page's chart (the page's width).
const usageChartWidth = 1000

// usageTableRows bounds the rows the page lists; the CSV export has them all.
const usageTableRows = 250

// usageForm is the usage page's form, as asked (and defaulted).
type usageForm struct {
	From, To, Granularity, Group, Metric string
	Top                                  int
	// Key, when set, reports one key's usage only.
	Key string
}

// usagePageData is the usage page's data.
type usagePageData struct {
	Form      usageForm
	Groups    []string
	Chart     *chart
	Totals    adminapi.UsageCounters
	Rows      []adminapi.UsageRow
	Truncated int
	CSV       string
}

// readUsageForm reads the page's query, defaulting to the last 7 UTC days by day by model.
func readUsageForm(q url.Values, now time.Time) usageForm {
	today := now.UTC().Truncate(24 * time.Hour)
	f := usageForm{From: q.Get("from"), To: q.Get("to"), Granularity: q.Get("granularity"), Group: q.Get("group_by"), Metric: q.Get("metric"), Top: 10,
		Key: strings.TrimSpace(q.Get("key"))}
	if f.From == "" {
		f.From = today.AddDate(0, 0, -6).Format(time.DateOnly)
	}
	if f.To == "" {
		f.To = today.Format(time.DateOnly)
	}
	if f.Granularity == "" {
		f.Granularity = "day"
	}
	if _, ok := q["group_by"]; !ok {
		f.Group = "model"
	}
	if _, ok := metrics[f.Metric]; !ok {
		f.Metric = chartMetricCost
	}
	if t, err := strconv.Atoi(q.Get("top")); err == nil && t >= 0 {
		f.Top = t
	}
	return f
}

// query is the report the form asks for.
func (f usageForm) query() adminclient.UsageQuery {
	q := adminclient.UsageQuery{From: f.From, To: f.To, Granularity: f.Granularity, Key: f.Key}
	if f.Group != "" {
		q.GroupBy, q.Top = []string{f.Group}, f.Top
	}
	return q
}

// values is the form as a query string (for the CSV link).
func (f usageForm) values() url.Values {
	v := url.Values{"from": {f.From}, "to": {f.To}, "granularity": {f.Granularity}, "group_by": {f.Group}, "metric": {f.Metric}, "top": {strconv.Itoa(f.Top)}}
	if f.Key != "" {
		v.Set("key", f.Key)
	}
	return v
}

// handleUsage shows a usage report: chart and table.
func (c *Console) handleUsage(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	v := s.view("Usage", "usage")
	f := readUsageForm(r.URL.Query(), c.now())
	d := usagePageData{Form: f, Groups: adminapi.UsageGroups, CSV: "/ui/usage.csv?" + f.values().Encode()}
	v.Data = &d
	rep, err := s.api.Usage(r.Context(), f.query())
	if err != nil {
		if statusOf(err) >= 500 {
			c.fail(w, r, v, err)
			return
		}
		v.Error = capitalize(apiMessage(err)) + "."
		c.render(w, r, statusOf(err), "usage", v)
		return
	}
	d.Totals, d.Rows = rep.Totals, rep.Rows
	if from, to, ok := f.bounds(); ok {
		ch := buildChart("usage-chart", usageChartWidth, metrics[f.Metric], rep.Rows, bucketsOf(from, to, f.Granularity), f.Group, bucketLabel)
		d.Chart = &ch
	}
	if len(d.Rows) > usageTableRows {
		d.Truncated, d.Rows = len(d.Rows)-usageTableRows, d.Rows[:usageTableRows]
	}
	c.render(w, r, http.StatusOK, "usage", v)
}

// bounds is the form's range as bucket starts: from (included) to to (excluded), a day as
// the whole day, as the admin API reads them.
func (f usageForm) bounds() (time.Time, time.Time, bool) {
	from, err1 := adminapi.ParseReportTime(f.From, false)
	to, err2 := adminapi.ParseReportTime(f.To, true)
	if err1 != nil || err2 != nil || !from.Before(to) {
		return time.Time{}, time.Time{}, false
	}
	switch f.Granularity {
	case "day":
		from = from.Truncate(24 * time.Hour)
	case "month":
		from = time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return from, to, true
}

// handleUsageCSV streams the report the usage page shows as CSV, through the session.
func (c *Console) handleUsageCSV(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	f := readUsageForm(r.URL.Query(), c.now())
	q := f.query()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="usage-`+safeFileName(f.From)+`-`+safeFileName(f.To)+`.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	err := s.api.ExportUsage(r.Context(), q, "csv", w)
	var refused *adminclient.APIError
	switch {
	case asAPIError(err, &refused): // nothing written yet: show why
		w.Header().Del("Content-Disposition")
		c.fail(w, r, s.view("Usage", "usage"), err)
	case err != nil: // cut off while streaming: the download ends short
		c.log.Error("usage export cut off", "error", err)
	}
}

// safeFileName keeps digits, letters, '-' and ':' of s.
func safeFileName(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(out) < 40; i++ {
		ch := s[i]
		if ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch == '-' {
			out = append(out, ch)
		}
	}
	return string(out)
}
