package controlplane

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// recordMix writes a scripted mix of requests over three keys (two owners, tags, a policy),
// three models and two accounts across the last three days, and returns the key ids and
// the first day.
func recordMix(t *testing.T, h *harness, token string) ([]string, time.Time) {
	t.Helper()
	var ids []string
	for _, req := range []adminapi.CreateKeyRequest{
		{Name: "k0", Owner: "alice", Tags: []string{"ml", "prod"}},
		{Name: "k1", Owner: "bob", Tags: []string{"ml"}},
		{Name: "k2"},
	} {
		ids = append(ids, h.createKey(token, req).Key.ID)
	}
	day0 := h.clock.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	var recs []store.UsageRecord
	for i := 0; i < 45; i++ {
		recs = append(recs, store.UsageRecord{
			KeyID: ids[i%3], AccountID: []string{"acc-a", "acc-b"}[i%2],
			Model: []string{"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"}[i%4%3],
			At:    day0.Add(time.Duration(i) * 61 * time.Minute),
			Usage: store.Usage{Requests: 1, InputTokens: int64(50 + i), OutputTokens: int64(3 * i), CacheRead: int64(i), CacheWrite5m: int64(i % 2), CostMicroUSD: int64(1234 * i)},
		})
	}
	if err := h.st.RecordUsageBatch(context.Background(), store.BatchID{Writer: "test", Seq: 1}, recs...); err != nil {
		t.Fatal(err)
	}
	return ids, day0
}

func TestUsageReportTotalsEqualKeysUsageInJSONCSVAndJSONL(t *testing.T) {
	h, token := loggedIn(t)
	ids, day0 := recordMix(t, h, token)
	var want adminapi.UsageCounters
	for d := 0; d < 3; d++ {
		for _, id := range ids {
			var ku adminapi.KeyUsage
			h.do("GET", fmt.Sprintf("/admin/keys/%s/usage?day=%s", id, day0.AddDate(0, 0, d).Format(time.DateOnly)), token, nil).decode(t, &ku)
			want = addCounters(want, adminapi.UsageCounters{Requests: ku.DayTotal.Requests, InputTokens: ku.DayTotal.InputTokens,
				OutputTokens: ku.DayTotal.OutputTokens, CacheWrite5m: ku.DayTotal.CacheWrite5m, CacheWrite1h: ku.DayTotal.CacheWrite1h,
				CacheRead: ku.DayTotal.CacheRead, CostUSD: ku.DayTotal.CostUSD})
		}
	}
	span := "from=" + day0.Format(time.DateOnly) + "&to=" + day0.AddDate(0, 0, 2).Format(time.DateOnly)
	for _, g := range []string{"", "key", "owner", "tag", "model", "account", "policy", "key,owner,tag,model,account,policy"} {
		for _, gran := range []string{"hour", "day", "month"} {
			t.Run(gran+"/"+g, func(t *testing.T) {
				path := "/admin/usage?" + span + "&granularity=" + gran + "&group_by=" + g
				var rep adminapi.UsageReport
				r := h.do("GET", path, token, nil)
				wantStatus(t, r, http.StatusOK)
				r.decode(t, &rep)
				if diff := cmp.Diff(roundCost(want), roundCost(rep.Totals)); diff != "" {
					t.Errorf("totals (-keys usage +report):\n%s", diff)
				}
				if !strings.Contains(g, "tag") {
					var sum adminapi.UsageCounters
					for _, row := range rep.Rows {
						sum = addCounters(sum, row.UsageCounters)
					}
					if diff := cmp.Diff(roundCost(want), roundCost(sum)); diff != "" {
						t.Errorf("sum of rows (-keys usage +rows):\n%s", diff)
					}
				}
				groups := strings.Split(g, ",")
				if g == "" {
					groups = nil
				}
				if diff := cmp.Diff(rowsAsCSV(groups, rep.Rows), h.csvRows(t, token, path+"&format=csv")); diff != "" {
					t.Errorf("CSV (-json +csv):\n%s", diff)
				}
				if diff := cmp.Diff(rep.Rows, h.jsonlRows(t, token, path+"&format=jsonl")); diff != "" {
					t.Errorf("JSON lines (-json +jsonl):\n%s", diff)
				}
			})
		}
	}
}

func addCounters(a, b adminapi.UsageCounters) adminapi.UsageCounters {
	return adminapi.UsageCounters{Requests: a.Requests + b.Requests, InputTokens: a.InputTokens + b.InputTokens,
		OutputTokens: a.OutputTokens + b.OutputTokens, CacheWrite5m: a.CacheWrite5m + b.CacheWrite5m, CacheWrite1h: a.CacheWrite1h + b.CacheWrite1h,
		CacheRead: a.CacheRead + b.CacheRead, CostUSD: a.CostUSD + b.CostUSD, UnpricedRequests: a.UnpricedRequests + b.UnpricedRequests,
		RefusedRequests: a.RefusedRequests + b.RefusedRequests, FailedRequests: a.FailedRequests + b.FailedRequests}
}

// roundCost drops the float noise of sums made in a different order.
func roundCost(c adminapi.UsageCounters) adminapi.UsageCounters {
	c.CostUSD = float64(int64(c.CostUSD*1e6+0.5)) / 1e6
	return c
}

func rowsAsCSV(groups []string, rows []adminapi.UsageRow) [][]string {
	out := [][]string{append(append([]string{"bucket"}, groups...), adminapi.UsageCounterColumns...)}
	for _, r := range rows {
		rec := []string{r.Bucket}
		for _, g := range groups {
			rec = append(rec, r.Group[g])
		}
		out = append(out, append(rec, r.Columns()...))
	}
	return out
}

func (h *harness) csvRows(t *testing.T, token, path string) [][]string {
	t.Helper()
	r := h.do("GET", path, token, nil)
	wantStatus(t, r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("Content-Type %q, want text/csv", ct)
	}
	recs, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func (h *harness) jsonlRows(t *testing.T, token, path string) []adminapi.UsageRow {
	t.Helper()
	r := h.do("GET", path, token, nil)
	wantStatus(t, r, http.StatusOK)
	rows := []adminapi.UsageRow{}
	for _, line := range bytes.Split(bytes.TrimSpace(r.body), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var row adminapi.UsageRow
		if err := json.Unmarshal(line, &row); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		rows = append(rows, row)
	}
	return rows
}

func TestUsageReportRowsCarryEveryFieldAndEmptyRangesAnswerEmptyRows(t *testing.T) {
	h, token := loggedIn(t)
	_, day0 := recordMix(t, h, token)
	r := h.do("GET", "/admin/usage?from="+day0.Format(time.DateOnly)+"&group_by=owner,model&top=2", token, nil)
	wantStatus(t, r, http.StatusOK)
	var raw struct {
		Rows   []map[string]any `json:"rows"`
		Totals map[string]any   `json:"totals"`
	}
	r.decode(t, &raw)
	fields := append([]string{"bucket", "owner", "model"}, adminapi.UsageCounterColumns...)
	for _, row := range raw.Rows {
		for _, f := range fields {
			if _, ok := row[f]; !ok {
				t.Errorf("row %v lacks %q", row, f)
			}
		}
		if len(row) != len(fields) {
			t.Errorf("row %v has fields beyond %v", row, fields)
		}
	}
	for _, f := range adminapi.UsageCounterColumns {
		if _, ok := raw.Totals[f]; !ok {
			t.Errorf("totals lack %q", f)
		}
	}
	owners := map[any]bool{}
	for _, row := range raw.Rows {
		owners[fmt.Sprint(row["owner"], "/", row["model"])] = true
	}
	if len(owners) != 2 {
		t.Errorf("top=2: got groups %v, want 2", owners)
	}
	empty := h.do("GET", "/admin/usage?from=2020-01-01&to=2020-01-02", token, nil)
	wantStatus(t, empty, http.StatusOK)
	if want := `{"rows":[],"totals":{"requests":0,"input_tokens":0,"output_tokens":0,"cache_write_5m_tokens":0,"cache_write_1h_tokens":0,"cache_read_tokens":0,"cost_usd":0,"unpriced_requests":0,"refused_requests":0,"failed_requests":0}}`; strings.TrimSpace(string(empty.body)) != want {
		t.Errorf("empty range: got %s, want %s", empty.body, want)
	}
	csvAnswer := h.doHeader("GET", "/admin/usage?from="+day0.Format(time.DateOnly), token, map[string]string{"Accept": "text/csv"}, nil)
	wantStatus(t, csvAnswer, http.StatusOK)
	if !bytes.HasPrefix(csvAnswer.body, []byte("bucket,requests,")) {
		t.Errorf("Accept: text/csv: got %q, want CSV", csvAnswer.body)
	}
}

func TestUsageReportRefusesBadParametersByName(t *testing.T) {
	h, token := loggedIn(t)
	old := h.clock.Now().AddDate(0, 0, -40).Format(time.DateOnly)
	for q, field := range map[string]string{
		"from=yesterday":                "from",
		"to=2026-13-01":                 "to",
		"granularity=week":              "granularity",
		"group_by=model,colour":         "group_by",
		"group_by=model,model":          "group_by",
		"top=-1":                        "top",
		"format=xml":                    "format",
		"from=2026-02-02&to=2026-02-01": "range",
		"from=2000-01-01&to=2026-01-01": "range",
		"granularity=hour&from=" + old:  "from",
		"key=":                          "key",
		"key=a%7Cb":                     "key",
	} {
		r := h.do("GET", "/admin/usage?"+q, token, nil)
		wantStatus(t, r, http.StatusBadRequest)
		if e := r.errorBody(t); e.Fields[field] == "" {
			t.Errorf("%s: got fields %v, want a problem with %q", q, e.Fields, field)
		}
	}
}

func TestUsageReportOfOneKeyEqualsThatKeysUsageByDay(t *testing.T) {
	h, token := loggedIn(t)
	ids, day0 := recordMix(t, h, token)
	for _, id := range ids {
		var want adminapi.UsageCounters
		byDay := map[string]int64{}
		for d := 0; d < 3; d++ {
			day := day0.AddDate(0, 0, d).Format(time.DateOnly)
			var ku adminapi.KeyUsage
			h.do("GET", fmt.Sprintf("/admin/keys/%s/usage?day=%s", id, day), token, nil).decode(t, &ku)
			want.Requests += ku.DayTotal.Requests
			want.InputTokens += ku.DayTotal.InputTokens
			byDay[day] = ku.DayTotal.Requests
		}
		var rep adminapi.UsageReport
		r := h.do("GET", "/admin/usage?from="+day0.Format(time.DateOnly)+"&key="+id+"&group_by=key", token, nil)
		wantStatus(t, r, http.StatusOK)
		r.decode(t, &rep)
		if rep.Totals.Requests != want.Requests || rep.Totals.InputTokens != want.InputTokens {
			t.Errorf("key %s: got totals %+v, want requests %d and input %d", id, rep.Totals, want.Requests, want.InputTokens)
		}
		got := map[string]int64{}
		for _, row := range rep.Rows {
			if row.Group["key"] != id {
				t.Errorf("key %s: a row of %q", id, row.Group["key"])
			}
			got[row.Bucket] += row.Requests
		}
		for day, n := range byDay {
			if got[day] != n {
				t.Errorf("key %s on %s: got %d requests, want %d", id, day, got[day], n)
			}
		}
	}
}
