package alerts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
)

// budgetBatch bounds the GETs of one pipeline BudgetSource sends.
const budgetBatch = 1000

// BudgetSource checks, every period, each live relay key with a cost limit (cost_per_day_usd,
// cost_per_week_usd, cost_per_month_usd, cost_total_usd: its own, else its policy's)
// against the counter the sidecars enforce it with: at threshold (a share,
// DefaultBudgetThreshold) of any of them it raises budget_threshold, at a limit
// budget_reached (one condition per key, the summary naming the limit nearest its end); a
// new window or a higher limit clears them. Its Redis cost per period is the key list and
// one pipelined batch of GETs, one per cost limit of each limited key.
func BudgetSource(st *store.Store, snapshot func() *config.Snapshot, threshold float64, every time.Duration, now func() time.Time) Source {
	if now == nil {
		now = time.Now
	}
	return Source{Name: config.EventBudgetThreshold, Every: every, Observe: func(ctx context.Context, o *Outbox) error {
		keys, err := st.ListKeys(ctx)
		if err != nil {
			return err
		}
		t := now()
		spends, err := readSpends(ctx, st, costLimits(keys, snapshot(), t), t)
		if err != nil {
			return err
		}
		soft, hard := map[string]Event{}, map[string]Event{}
		for _, k := range keys {
			top, ok := spends[k.ID]
			if !ok {
				continue
			}
			summary := top.summary(k)
			if top.share() >= 1 {
				hard[k.ID] = Event{Severity: config.SeverityCritical, Summary: summary}
			}
			if top.share() >= threshold {
				soft[k.ID] = Event{Severity: config.SeverityWarning, Summary: summary}
			}
		}
		if err := reconcile(ctx, o, config.EventBudgetThreshold, soft, allClear("below the threshold again (a new window, or a higher limit)")); err != nil {
			return err
		}
		return reconcile(ctx, o, config.EventBudgetReached, hard, allClear("below the limit again (a new window, or a higher limit)"))
	}}
}

// spend is where one cost limit of a key stands.
type spend struct {
	keyID string
	limit limits.Limit
	used  int64 // micro-USD
	reset time.Time
}

func (s spend) share() float64 { return float64(s.used) / float64(s.limit.Max) }

var windowWords = map[limits.Window]string{limits.Day: "today", limits.Week: "this week", limits.Month: "this month", limits.Total: "in total"}

func (s spend) summary(k store.Key) string {
	var b strings.Builder
	fmt.Fprintf(&b, "key %q (owner %q) spent $%.2f of its $%.2f %s limit %s (%.0f%%)", k.Name, k.Owner,
		float64(s.used)/1e6, float64(s.limit.Max)/1e6, s.limit.Name, windowWords[s.limit.Window], 100*s.share())
	if !s.reset.IsZero() {
		fmt.Fprintf(&b, "; resets %s", s.reset.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// costLimits lists the cost limits of every live key: its own limits over its policy's.
func costLimits(keys []store.Key, snap *config.Snapshot, now time.Time) []spend {
	var out []spend
	for _, k := range keys {
		if !k.Enabled || k.RevokedAt != nil || k.DeletedAt != nil || k.ExpiresAt != nil && !k.ExpiresAt.After(now) {
			continue
		}
		var base *config.Policy
		if snap != nil && k.Policy != "" {
			if p, ok := snap.Policies[k.Policy]; ok {
				base = &p
			}
		}
		for _, lim := range limits.FromPolicy(base.WithKeyLimits(k.Rules.Limits)).Counted {
			if lim.Kind == limits.Cost && !lim.PerConversation && lim.Window != limits.Minute {
				out = append(out, spend{keyID: k.ID, limit: lim})
			}
		}
	}
	return out
}

// readSpends reads the counters of the limits in pipelines of budgetBatch GETs and returns,
// per key, the limit with the highest share used.
func readSpends(ctx context.Context, st *store.Store, all []spend, now time.Time) (map[string]spend, error) {
	keys := st.Schema()
	top := map[string]spend{}
	for len(all) > 0 {
		batch := all[:min(len(all), budgetBatch)]
		all = all[len(batch):]
		cmds := make([]*redis.StringCmd, len(batch))
		_, err := st.Client().Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, s := range batch {
				start, _ := s.limit.Window.Bounds(now)
				cmds[i] = p.Get(ctx, keys.KeyLimitCounter(s.keyID, s.limit.Name, start))
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("alerts: read cost counters: %w", err)
		}
		for i, s := range batch {
			n, err := cmds[i].Int64()
			if err != nil && !errors.Is(err, redis.Nil) {
				return nil, fmt.Errorf("alerts: read %s of key %s: %w", s.limit.Name, s.keyID, err)
			}
			s.used = n
			_, s.reset = s.limit.Window.Bounds(now)
			if cur, ok := top[s.keyID]; !ok || s.share() > cur.share() {
				top[s.keyID] = s
			}
		}
	}
	return top, nil
}
