package adminclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// UsageQuery asks GET /admin/usage for a report; empty fields keep the server's defaults
// (the last 7 UTC days, by day, one row per bucket).
type UsageQuery struct {
	From, To    string // UTC days (2026-01-31, both included) or RFC 3339 times
	Granularity string // hour, day or month
	GroupBy     []string
	Top         int
	// Key, when set, reports only this key's usage.
	Key string
}

func (q UsageQuery) path(format string) string {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("from", q.From)
	set("to", q.To)
	set("granularity", q.Granularity)
	set("group_by", strings.Join(q.GroupBy, ","))
	set("key", q.Key)
	if q.Top > 0 {
		v.Set("top", strconv.Itoa(q.Top))
	}
	set("format", format)
	if len(v) == 0 {
		return "/admin/usage"
	}
	return "/admin/usage?" + v.Encode()
}

// Usage returns a usage report.
func (c *Client) Usage(ctx context.Context, q UsageQuery) (adminapi.UsageReport, error) {
	var out adminapi.UsageReport
	err := c.do(ctx, http.MethodGet, q.path(""), nil, &out)
	return out, err
}

// ExportUsage streams a report's rows as format ("csv" or "jsonl") to w, unbounded in size.
func (c *Client) ExportUsage(ctx context.Context, q UsageQuery, format string, w io.Writer) error {
	path := q.path(format)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		return decodeError(resp, data)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}
