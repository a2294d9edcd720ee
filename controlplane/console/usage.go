package console

import (
	"context"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// The dashboard's usage comes from the usage report (GET /admin/usage) in two calls, whatever
// the number of keys: the range by model (the charts and totals) and the top keys by cost.

// dashboardChartWidth is the width of the dashboard's charts (three side by side).
const dashboardChartWidth = 420

// topKeys is how many keys the dashboard lists.
const topKeys = 10

// span is a range the dashboard charts: the last 24 hours by hour, or the last 30 days by day.
type span struct {
	Name        string // "24h" or "30d"
	Label       string
	Granularity string
	From, To    time.Time // To excluded
}

// dashboardSpan is the span named name ("30d"; anything else is the last 24 hours), ending
// with the current hour or day.
func dashboardSpan(name string, now time.Time) span {
	now = now.UTC()
	if name == "30d" {
		to := now.Truncate(24*time.Hour).AddDate(0, 0, 1)
		return span{Name: "30d", Label: "last 30 days (UTC), by day", Granularity: "day", From: to.AddDate(0, 0, -30), To: to}
	}
	to := now.Truncate(time.Hour).Add(time.Hour)
	return span{Name: "24h", Label: "last 24 hours, by hour", Granularity: "hour", From: to.Add(-24 * time.Hour), To: to}
}

// query asks for sp grouped by groups.
func (sp span) query(groups ...string) adminclient.UsageQuery {
	return adminclient.UsageQuery{From: sp.From.Format(time.RFC3339), To: sp.To.Add(-time.Second).Format(time.RFC3339),
		Granularity: sp.Granularity, GroupBy: groups}
}

// usageSummary is the dashboard's usage: totals, a chart per metric by model, the top keys.
type usageSummary struct {
	Span   span
	Totals adminapi.UsageCounters
	Charts []chart
	// AccountCharts are the same metrics by upstream account; their series are account ids
	// until nameAccounts gives them the accounts' names.
	AccountCharts []chart
	// Rates are the range's refusal and error rates, Outcomes its requests by outcome.
	Rates    rates
	Outcomes chart
	TopKeys  []keyUsage
}

// keyUsage is one key's usage over a range; Key is nil when the key is gone.
type keyUsage struct {
	ID  string
	Key *adminapi.Key
	adminapi.UsageCounters
}

// dashboardUsage reads sp's usage by model and its top keys: two report calls, at once.
func dashboardUsage(ctx context.Context, api *adminclient.Client, sp span) (usageSummary, error) {
	sum := usageSummary{Span: sp}
	var byModel, byAccount, byKey adminapi.UsageReport
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		byModel, err = api.Usage(gctx, sp.query("model"))
		return err
	})
	g.Go(func() (err error) {
		byAccount, err = api.Usage(gctx, sp.query("account"))
		return err
	})
	g.Go(func() (err error) {
		q := sp.query("key")
		q.Granularity, q.Top = "month", topKeys // at most two buckets a key, added up below
		byKey, err = api.Usage(gctx, q)
		return err
	})
	if err := g.Wait(); err != nil {
		return sum, err
	}
	sum.Totals = byModel.Totals
	buckets := bucketsOf(sp.From, sp.To, sp.Granularity)
	for _, name := range []string{chartMetricRequests, chartMetricTokens, chartMetricCost} {
		sum.Charts = append(sum.Charts, buildChart("chart-"+name, dashboardChartWidth, metrics[name], byModel.Rows, buckets, "model", bucketLabel))
		sum.AccountCharts = append(sum.AccountCharts, buildChart("account-chart-"+name, dashboardChartWidth, metrics[name], byAccount.Rows, buckets, "account", bucketLabel))
	}
	sum.Rates = ratesOf(byModel.Totals)
	sum.Outcomes = outcomeChart("chart-outcomes", dashboardChartWidth, byModel.Rows, buckets)
	sum.TopKeys = topOf(byKey.Rows, "key", topKeys)
	resolveKeys(ctx, api, sum.TopKeys)
	return sum, nil
}

// keyCharts draws one key's requests, tokens and cost over sp by model, from the usage report
// of that key alone (GET /admin/usage?key=): one report call, whatever the number of keys.
func keyCharts(ctx context.Context, api *adminclient.Client, id string, sp span) ([]chart, adminapi.UsageCounters, error) {
	q := sp.query("model")
	q.Key = id
	rep, err := api.Usage(ctx, q)
	if err != nil {
		return nil, adminapi.UsageCounters{}, err
	}
	buckets := bucketsOf(sp.From, sp.To, sp.Granularity)
	var charts []chart
	for _, name := range []string{chartMetricRequests, chartMetricTokens, chartMetricCost} {
		charts = append(charts, buildChart("key-chart-"+name, dashboardChartWidth, metrics[name], rep.Rows, buckets, "model", bucketLabel))
	}
	return charts, rep.Totals, nil
}

// topOf adds up rows by the value of group and keeps the n costing most. Rows of no key
// (requests refused before their key was known) are not a key's: they are left out.
func topOf(rows []adminapi.UsageRow, group string, n int) []keyUsage {
	at := map[string]int{}
	var out []keyUsage
	for _, r := range rows {
		id := r.Group[group]
		if id == "" {
			continue
		}
		i, ok := at[id]
		if !ok {
			i = len(out)
			at[id] = i
			out = append(out, keyUsage{ID: id})
		}
		addCounters(&out[i].UsageCounters, r.UsageCounters)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].CostUSD != out[j].CostUSD {
			return out[i].CostUSD > out[j].CostUSD
		}
		return out[i].Requests > out[j].Requests
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// resolveKeys reads each key's record for its name, all at once; a key that cannot be read
// keeps its id.
func resolveKeys(ctx context.Context, api *adminclient.Client, keys []keyUsage) {
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if k, err := api.GetKey(ctx, keys[i].ID); err == nil {
				keys[i].Key = &k
			}
		}()
	}
	wg.Wait()
}

func addCounters(to *adminapi.UsageCounters, c adminapi.UsageCounters) {
	to.Requests += c.Requests
	to.InputTokens += c.InputTokens
	to.OutputTokens += c.OutputTokens
	to.CacheWrite5m += c.CacheWrite5m
	to.CacheWrite1h += c.CacheWrite1h
	to.CacheRead += c.CacheRead
	to.CostUSD += c.CostUSD
	to.UnpricedRequests += c.UnpricedRequests
	to.RefusedRequests += c.RefusedRequests
	to.FailedRequests += c.FailedRequests
}

// nameAccounts shows the accounts' names instead of their ids in the legends of charts by
// account (an id without a name, of an account since deleted, stays as it is).
func nameAccounts(charts []chart, names map[string]string) {
	for _, c := range charts {
		for i, l := range c.Legend {
			if n, ok := names[l.Name]; ok && n != "" {
				c.Legend[i].Name = n
			}
		}
	}
}
