package controlplane

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// defaultReportDays is the range of a report that names no from: the last 7 UTC days,
// today included.
const defaultReportDays = 7

// handleUsage answers GET /admin/usage: usage by hour, day or month, grouped, as JSON, CSV or
// JSON lines.
func (s *Server) handleUsage(w http.ResponseWriter, r *http.Request) {
	q, format, bad := s.parseUsageQuery(r)
	if len(bad) > 0 {
		writeInvalid(w, bad)
		return
	}
	rep, err := s.st.UsageReport(r.Context(), q)
	if errors.Is(err, store.ErrReportRange) {
		writeInvalid(w, fieldErrors{"range": strings.TrimPrefix(err.Error(), store.ErrReportRange.Error()+": ")})
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err, "usage report")
		return
	}
	out := toAPIReport(rep, q)
	switch format {
	case "csv":
		writeUsageCSV(w, q.GroupBy, out)
	case "jsonl":
		writeUsageJSONL(w, out)
	default:
		writeJSON(w, http.StatusOK, out)
	}
}

// parseUsageQuery reads from, to, granularity, group_by, top, key and format (or the Accept
// header). from and to are UTC days (both included) or RFC 3339 times, widened to whole
// hours.
func (s *Server) parseUsageQuery(r *http.Request) (store.ReportQuery, string, fieldErrors) {
	v := r.URL.Query()
	bad := fieldErrors{}
	today := s.now().UTC().Truncate(24 * time.Hour)
	q := store.ReportQuery{Granularity: store.GranularityDay, From: today.AddDate(0, 0, 1-defaultReportDays), To: today.AddDate(0, 0, 1)}
	if f := v.Get("from"); f != "" {
		t, err := adminapi.ParseReportTime(f, false)
		if err != nil {
			bad.add("from", err.Error())
		}
		q.From = t
	}
	if f := v.Get("to"); f != "" {
		t, err := adminapi.ParseReportTime(f, true)
		if err != nil {
			bad.add("to", err.Error())
		}
		q.To = t
	}
	if g := v.Get("granularity"); g != "" {
		if !slices.Contains([]string{store.GranularityHour, store.GranularityDay, store.GranularityMonth}, g) {
			bad.add("granularity", "must be hour, day or month")
		}
		q.Granularity = g
	}
	for _, list := range v["group_by"] {
		for _, g := range strings.Split(list, ",") {
			if g = strings.TrimSpace(g); g == "" {
				continue
			}
			switch {
			case !slices.Contains(adminapi.UsageGroups, g):
				bad.add("group_by", fmt.Sprintf("cannot group by %q: use %s", g, strings.Join(adminapi.UsageGroups, ", ")))
			case slices.Contains(q.GroupBy, g):
				bad.add("group_by", fmt.Sprintf("%q is listed twice", g))
			}
			q.GroupBy = append(q.GroupBy, g)
		}
	}
	if t := v.Get("top"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			bad.add("top", "must be a whole number (0: every group)")
		}
		q.Top = n
	}
	if _, ok := v["key"]; ok {
		if q.Key = strings.TrimSpace(v.Get("key")); q.Key == "" || strings.Contains(q.Key, "|") {
			bad.add("key", "must be a key id (as in GET /admin/keys)")
		}
	}
	format, err := usageFormat(v.Get("format"), r.Header.Get("Accept"))
	if err != nil {
		bad.add("format", err.Error())
	}
	if len(bad) == 0 && q.Granularity == store.GranularityHour {
		if keep := s.hourlyRetention(); q.From.Before(s.now().Add(-keep).Truncate(time.Hour)) {
			bad.add("from", fmt.Sprintf("hourly usage is kept %s (the usage block's hourly_retention); from %s is older: ask for granularity=day, or a later from", retentionText(keep), q.From.Format(time.RFC3339)))
		}
	}
	return q, format, bad
}

// usageFormat picks json, csv or jsonl from the format parameter, else the Accept header.
func usageFormat(param, accept string) (string, error) {
	switch param {
	case "json", "csv", "jsonl":
		return param, nil
	case "":
	default:
		return "", errors.New("must be json, csv or jsonl")
	}
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "text/csv":
			return "csv", nil
		case "application/jsonl", "application/x-ndjson":
			return "jsonl", nil
		}
	}
	return "json", nil
}

// hourlyRetention is how long hourly buckets are kept under the configuration served (the
// default when this control plane serves none).
func (s *Server) hourlyRetention() time.Duration {
	if rt := s.runtime(); rt != nil {
		h, _ := rt.UsageRetention()
		return h
	}
	return config.DefaultHourlyRetention
}

func retentionText(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	}
	return d.String()
}

// toAPIReport names the store's counters and formats buckets for the wire.
func toAPIReport(rep *store.Report, q store.ReportQuery) adminapi.UsageReport {
	out := adminapi.UsageReport{Rows: make([]adminapi.UsageRow, 0, len(rep.Rows)), Totals: apiCounters(rep.Totals)}
	for _, r := range rep.Rows {
		row := adminapi.UsageRow{Bucket: bucketText(r.Bucket, q.Granularity), UsageCounters: apiCounters(r.Counters)}
		if len(q.GroupBy) > 0 {
			row.Group = make(map[string]string, len(q.GroupBy))
			for i, g := range q.GroupBy {
				row.Group[g] = r.Group[i]
			}
		}
		out.Rows = append(out.Rows, row)
	}
	return out
}

// apiCounters maps the store's counters by name; a counter the store does not keep (yet)
// reads 0.
func apiCounters(c []int64) adminapi.UsageCounters {
	get := func(name string) int64 {
		if i := slices.Index(store.UsageCounters(), name); i >= 0 && i < len(c) {
			return c[i]
		}
		return 0
	}
	return adminapi.UsageCounters{
		Requests: get("requests"), InputTokens: get("input_tokens"), OutputTokens: get("output_tokens"),
		CacheWrite5m: get("cache_write_5m"), CacheWrite1h: get("cache_write_1h"), CacheRead: get("cache_read"),
		CostUSD: float64(get("cost_micro_usd")) / 1e6, UnpricedRequests: get("unpriced_requests"),
		RefusedRequests: get("refused_requests"), FailedRequests: get("failed_requests"),
	}
}

func bucketText(t time.Time, granularity string) string {
	switch granularity {
	case store.GranularityHour:
		return t.Format(time.RFC3339)
	case store.GranularityMonth:
		return t.Format("2006-01")
	default:
		return t.Format(time.DateOnly)
	}
}

// writeUsageCSV streams the rows as CSV: bucket, the groupings asked for, the counters.
func writeUsageCSV(w http.ResponseWriter, groupBy []string, rep adminapi.UsageReport) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="usage.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write(append(append([]string{"bucket"}, groupBy...), adminapi.UsageCounterColumns...))
	for _, r := range rep.Rows {
		rec := []string{r.Bucket}
		for _, g := range groupBy {
			rec = append(rec, r.Group[g])
		}
		_ = cw.Write(append(rec, r.Columns()...))
	}
	cw.Flush()
}

// writeUsageJSONL streams the rows as JSON lines, one row per line.
func writeUsageJSONL(w http.ResponseWriter, rep adminapi.UsageReport) {
	w.Header().Set("Content-Type", "application/jsonl")
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, r := range rep.Rows {
		_ = enc.Encode(r)
	}
	_ = bw.Flush()
}
