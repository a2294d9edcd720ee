package console

import (
	"context"
	"fmt"
	"sort"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// UsageSource reports today's usage for the dashboard. This is where the usage report
// endpoint (GET /admin/usage: requests, tokens and cost over time by model, key and account)
// plugs in: an implementation calling it through api replaces keyUsageSum, which adds up the
// per-key usage endpoint.
type UsageSource interface {
	Today(ctx context.Context, api *adminclient.Client, now time.Time) (UsageSummary, error)
}

// UsageSummary is today's usage (UTC) for the dashboard.
type UsageSummary struct {
	adminapi.Usage
	// TopKeys are the keys that cost most today, most first.
	TopKeys []KeyDay
	// KeysCounted is how many keys were added up; Partial says more were used today.
	KeysCounted int
	Partial     bool
}

// KeyDay is one key's usage today.
type KeyDay struct {
	Key   adminapi.Key
	Usage adminapi.Usage
}

// maxKeysSummed bounds how many keys' usage keyUsageSum reads for one dashboard.
const maxKeysSummed = 200

// topKeys is how many keys the dashboard lists.
const topKeys = 10

// keyUsageSum is the UsageSource used until the usage report endpoint exists: it reads today's
// usage of the keys used today (last_used_at), the most recently used first, up to
// maxKeysSummed of them.
type keyUsageSum struct{}

// Today adds up today's usage of the keys used today.
func (keyUsageSum) Today(ctx context.Context, api *adminclient.Client, now time.Time) (UsageSummary, error) {
	keys, err := api.ListAllKeys(ctx, adminclient.KeyQuery{})
	if err != nil {
		return UsageSummary{}, err
	}
	day := now.UTC().Truncate(24 * time.Hour)
	var used []adminapi.Key
	for _, k := range keys {
		if k.LastUsedAt != nil && !k.LastUsedAt.Before(day) {
			used = append(used, k)
		}
	}
	sort.Slice(used, func(i, j int) bool { return used[i].LastUsedAt.After(*used[j].LastUsedAt) })
	var sum UsageSummary
	if len(used) > maxKeysSummed {
		used, sum.Partial = used[:maxKeysSummed], true
	}
	days, err := dayTotals(ctx, api, used, day.Format(time.DateOnly))
	if err != nil {
		return UsageSummary{}, err
	}
	for i, k := range used {
		addUsage(&sum.Usage, days[i])
		sum.TopKeys = append(sum.TopKeys, KeyDay{Key: k, Usage: days[i]})
	}
	sum.KeysCounted = len(used)
	sort.SliceStable(sum.TopKeys, func(i, j int) bool { return sum.TopKeys[i].Usage.CostUSD > sum.TopKeys[j].Usage.CostUSD })
	if len(sum.TopKeys) > topKeys {
		sum.TopKeys = sum.TopKeys[:topKeys]
	}
	return sum, nil
}

func addUsage(to *adminapi.Usage, u adminapi.Usage) {
	to.Requests += u.Requests
	to.InputTokens += u.InputTokens
	to.OutputTokens += u.OutputTokens
	to.CacheWrite5m += u.CacheWrite5m
	to.CacheWrite1h += u.CacheWrite1h
	to.CacheRead += u.CacheRead
	to.CostUSD += u.CostUSD
}

// usageReaders is how many per-key usage calls keyUsageSum makes at once.
const usageReaders = 16

// dayTotals reads each key's usage on day, usageReaders at a time.
func dayTotals(ctx context.Context, api *adminclient.Client, keys []adminapi.Key, day string) ([]adminapi.Usage, error) {
	out := make([]adminapi.Usage, len(keys))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(usageReaders)
	for i, k := range keys {
		g.Go(func() error {
			u, err := api.KeyUsage(ctx, k.ID, day)
			if err != nil {
				return fmt.Errorf("usage of key %s: %w", k.ID, err)
			}
			out[i] = u.DayTotal
			return nil
		})
	}
	return out, g.Wait()
}
