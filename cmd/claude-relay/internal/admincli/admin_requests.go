package admincli

import (
	"context"
	"flag"
	"fmt"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// requestsFlags are the flags of "admin requests".
type requestsFlags struct {
	q   adminclient.RequestsQuery
	all bool
}

func requestsCommand() adminCommand {
	return adminCommand{
		name: "requests", summary: "the request ledger (usage block's ledger = true): one line per relayed request, newest first",
		flags: func(fs *flag.FlagSet, af *adminFlags) {
			q := &af.r.q
			fs.StringVar(&q.From, "from", "", "first UTC `day` (YYYY-MM-DD) or RFC 3339 time (default 24 hours ago)")
			fs.StringVar(&q.To, "to", "", "last UTC `day`, included, or RFC 3339 time (default now)")
			fs.StringVar(&q.Key, "key", "", "only this relay key `id`")
			fs.StringVar(&q.Account, "account", "", "only this upstream account `id`")
			fs.StringVar(&q.Model, "model", "", "only this `model`")
			fs.StringVar(&q.Status, "status", "", "only this status `class`: 2xx, 4xx, 5xx …")
			fs.IntVar(&q.Limit, "limit", 100, "records per `page` (1 to 1000)")
			fs.StringVar(&q.Cursor, "cursor", "", "start at this `cursor` (a page's next)")
			fs.BoolVar(&af.r.all, "all", false, "follow the cursor to the end instead of printing one page")
			sessionFlags(fs, af)
		},
		run: func(ctx context.Context, c *adminCLI, af *adminFlags, _ []string) error {
			return adminRequests(ctx, c, af, &af.r)
		},
	}
}

func adminRequests(ctx context.Context, c *adminCLI, af *adminFlags, f *requestsFlags) error {
	q := f.q
	var rows [][]string
	all := []adminapi.LedgerRecord{}
	for {
		page, err := c.client.Requests(ctx, q)
		if err != nil {
			return err
		}
		if af.json && !f.all {
			return c.printJSON(page)
		}
		all = append(all, page.Requests...)
		for _, r := range page.Requests {
			rows = append(rows, []string{r.Time, orDash(r.Key), orDash(r.Owner), orDash(r.Account), orDash(r.Model), orDash(r.Route),
				fmt.Sprint(r.Status), fmt.Sprint(r.InputTokens), fmt.Sprint(r.OutputTokens), fmt.Sprint(r.CacheRead),
				fmt.Sprintf("%.6f", r.CostUSD), fmt.Sprint(r.TTFBMillis), fmt.Sprint(r.DurationMillis), orDash(r.Client), orDash(r.Error)})
		}
		if !f.all || page.Next == "" {
			if !af.json && page.Next != "" {
				defer fmt.Fprintf(c.stdout, "more: --cursor %s\n", page.Next)
			}
			break
		}
		q.Cursor = page.Next
	}
	if af.json { // --all: every page's records as one page with no next
		return c.printJSON(adminapi.LedgerPage{Requests: all})
	}
	return c.table([]string{"TIME", "KEY", "OWNER", "ACCOUNT", "MODEL", "ROUTE", "STATUS", "INPUT", "OUTPUT", "CACHE READ", "COST USD", "TTFB MS", "MS", "CLIENT", "ERROR"}, rows)
}
