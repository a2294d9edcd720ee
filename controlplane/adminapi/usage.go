package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// ParseReportTime reads the from or to of a usage report (GET /admin/usage): a UTC day or
// an RFC 3339 time. A day as an end means the end of that day; a time is widened to the hour
// (down for a start, up for an end). The console's usage page reads its range so too.
func ParseReportTime(s string, end bool) (time.Time, error) {
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		if end {
			d = d.AddDate(0, 0, 1)
		}
		return d, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("must be a UTC day such as 2026-01-31 or an RFC 3339 time such as 2026-01-31T13:00:00Z")
	}
	t = t.UTC()
	if h := t.Truncate(time.Hour); end && !h.Equal(t) {
		return h.Add(time.Hour), nil
	}
	return t.Truncate(time.Hour), nil
}

// UsageGroups are the names GET /admin/usage groups rows by, in the order a row carries them.
var UsageGroups = []string{"key", "owner", "tag", "model", "account", "policy"}

// UsageCounters are the counters of a report row and of its totals; every one is always
// present.
type UsageCounters struct {
	Requests     int64   `json:"requests"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	CacheWrite5m int64   `json:"cache_write_5m_tokens"`
	CacheWrite1h int64   `json:"cache_write_1h_tokens"`
	CacheRead    int64   `json:"cache_read_tokens"`
	CostUSD      float64 `json:"cost_usd"`
	// UnpricedRequests counts requests whose model had no price (their cost counts 0).
	UnpricedRequests int64 `json:"unpriced_requests"`
	// RefusedRequests counts requests the relay refused itself (an invalid key, a rule, a
	// limit, no account); FailedRequests relayed requests that ended in an error. Both are
	// part of Requests.
	RefusedRequests int64 `json:"refused_requests"`
	FailedRequests  int64 `json:"failed_requests"`
}

// UsageCounterColumns names the counters in CSV column order.
var UsageCounterColumns = []string{"requests", "input_tokens", "output_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_read_tokens", "cost_usd", "unpriced_requests", "refused_requests", "failed_requests"}

// Columns returns the counters as CSV cells, in UsageCounterColumns order.
func (c UsageCounters) Columns() []string {
	i := strconv.FormatInt
	return []string{i(c.Requests, 10), i(c.InputTokens, 10), i(c.OutputTokens, 10), i(c.CacheWrite5m, 10),
		i(c.CacheWrite1h, 10), i(c.CacheRead, 10), strconv.FormatFloat(c.CostUSD, 'f', -1, 64), i(c.UnpricedRequests, 10),
		i(c.RefusedRequests, 10), i(c.FailedRequests, 10)}
}

// UsageRow is one row of GET /admin/usage: a bucket ("2026-01-31T13:00:00Z" for an hour,
// "2026-01-31" for a day, "2026-01" for a month), the value of each grouping asked for
// under its own name ("model": "claude-…"), and the counters.
type UsageRow struct {
	Bucket string
	// Group maps each grouping asked for to its value ("" when the key has no owner, tag
	// or policy).
	Group map[string]string
	UsageCounters
}

// MarshalJSON writes bucket, the group fields in UsageGroups order, then the counters.
func (r UsageRow) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"bucket":`)
	bucket, _ := json.Marshal(r.Bucket)
	b.Write(bucket)
	for _, g := range UsageGroups {
		v, ok := r.Group[g]
		if !ok {
			continue
		}
		val, _ := json.Marshal(v)
		fmt.Fprintf(&b, `,%q:%s`, g, val)
	}
	counters, err := json.Marshal(r.UsageCounters)
	if err != nil {
		return nil, err
	}
	b.WriteByte(',')
	b.Write(counters[1:])
	return b.Bytes(), nil
}

// UnmarshalJSON reads a row written by MarshalJSON.
func (r *UsageRow) UnmarshalJSON(data []byte) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	if err := json.Unmarshal(data, &r.UsageCounters); err != nil {
		return err
	}
	if v, ok := all["bucket"]; ok {
		if err := json.Unmarshal(v, &r.Bucket); err != nil {
			return fmt.Errorf("bucket: %w", err)
		}
	}
	r.Group = nil
	for name, v := range all {
		if !slices.Contains(UsageGroups, name) {
			continue
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if r.Group == nil {
			r.Group = map[string]string{}
		}
		r.Group[name] = s
	}
	return nil
}

// UsageReport is the body of GET /admin/usage (format=json): rows sorted by bucket, then
// cost and requests (highest first), then group values; totals over the whole range (a key
// with several tags counts under each tag's rows, once in the totals).
type UsageReport struct {
	Rows   []UsageRow    `json:"rows"`
	Totals UsageCounters `json:"totals"`
}
