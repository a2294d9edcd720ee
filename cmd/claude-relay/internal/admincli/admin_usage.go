package admincli

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// usageFlags are the flags of "admin usage".
type usageFlags struct {
	from, to, granularity, groupBy string
	top                            int
	csv, jsonl                     bool
}

func usageCommand() adminCommand {
	return adminCommand{
		name: "usage", summary: "usage by hour, day or month, grouped by key, owner, tag, model, account or policy (--csv, --jsonl export)",
		flags: func(fs *flag.FlagSet, af *adminFlags) {
			f := &af.u
			fs.StringVar(&f.from, "from", "", "first UTC `day` (YYYY-MM-DD) or RFC 3339 time (default 6 days ago)")
			fs.StringVar(&f.to, "to", "", "last UTC `day`, included, or RFC 3339 time (default today)")
			fs.StringVar(&f.granularity, "granularity", "day", "`bucket` size: hour, day or month")
			fs.StringVar(&f.groupBy, "group-by", "", "comma-separated `groupings`: key, owner, tag, model, account, policy")
			fs.IntVar(&f.top, "top", 0, "keep the `N` groups with the highest cost (0: all)")
			fs.BoolVar(&f.csv, "csv", false, "print the rows as CSV (bucket, groupings, counters)")
			fs.BoolVar(&f.jsonl, "jsonl", false, "print the rows as JSON lines")
			sessionFlags(fs, af)
		},
		run: func(ctx context.Context, c *adminCLI, af *adminFlags, _ []string) error {
			return adminUsageReport(ctx, c, af, &af.u)
		},
	}
}

func adminUsageReport(ctx context.Context, c *adminCLI, af *adminFlags, f *usageFlags) error {
	q := adminclient.UsageQuery{From: f.from, To: f.to, Granularity: f.granularity, Top: f.top}
	for _, g := range strings.Split(f.groupBy, ",") {
		if g = strings.TrimSpace(g); g != "" {
			q.GroupBy = append(q.GroupBy, g)
		}
	}
	switch {
	case f.csv && (f.jsonl || af.json):
		return usageError{"--csv, --jsonl and --json exclude each other"}
	case f.csv:
		return c.client.ExportUsage(ctx, q, "csv", c.stdout)
	case f.jsonl:
		return c.client.ExportUsage(ctx, q, "jsonl", c.stdout)
	}
	rep, err := c.client.Usage(ctx, q)
	if err != nil {
		return err
	}
	if af.json {
		return c.printJSON(rep)
	}
	header := []string{"BUCKET"}
	for _, g := range q.GroupBy {
		header = append(header, strings.ToUpper(g))
	}
	header = append(header, "REQUESTS", "INPUT", "OUTPUT", "CACHE WRITE 5M", "CACHE WRITE 1H", "CACHE READ", "COST USD", "UNPRICED")
	row := func(first []string, u adminapi.UsageCounters) []string {
		return append(first, fmt.Sprint(u.Requests), fmt.Sprint(u.InputTokens), fmt.Sprint(u.OutputTokens), fmt.Sprint(u.CacheWrite5m),
			fmt.Sprint(u.CacheWrite1h), fmt.Sprint(u.CacheRead), fmt.Sprintf("%.6f", u.CostUSD), fmt.Sprint(u.UnpricedRequests))
	}
	rows := make([][]string, 0, len(rep.Rows)+1)
	for _, r := range rep.Rows {
		first := []string{r.Bucket}
		for _, g := range q.GroupBy {
			first = append(first, orDash(r.Group[g]))
		}
		rows = append(rows, row(first, r.UsageCounters))
	}
	total := make([]string, len(q.GroupBy)+1)
	total[0] = "total"
	for i := 1; i < len(total); i++ {
		total[i] = ""
	}
	rows = append(rows, row(total, rep.Totals))
	return c.table(header, rows)
}
