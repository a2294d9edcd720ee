package keyview

import (
	"context"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
)

type spend struct{ s store.KeySpend }

func (s spend) KeySpend(context.Context, string, time.Time) (store.KeySpend, error) { return s.s, nil }

func TestViewShowsEachKeyLimitInItsUnitAndLeavesPerConversationOnesOut(t *testing.T) {
	now := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	var asked limits.Set
	src := Sources{
		Spend: spend{store.KeySpend{Today: map[string]store.Usage{"m": {Requests: 2, CostMicroUSD: 1_500_000}}, Total: store.Usage{Requests: 9}}},
		Limits: func(_ context.Context, _ string, set limits.Set) (limits.KeyState, error) {
			asked = set
			st := limits.KeyState{InFlight: 1, Concurrency: set.Concurrency}
			for _, l := range set.Counted {
				_, end := l.Window.Bounds(now)
				st.Counted = append(st.Counted, limits.State{Limit: l, Used: l.Max / 4, ResetAt: end})
			}
			return st, nil
		},
	}
	pol := &config.Policy{CostPerDayUSD: 4, TokensPerMinute: 1000, CostTotalUSD: 100, Concurrency: 3}
	tokens := int64(2000)
	v, err := Build(context.Background(), src, Key{ID: "k", Name: "n", Status: "active", Limits: store.KeyLimits{TokensPerMinute: &tokens}}, pol, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range asked.Counted {
		if len(l.Name) > len(conversationPrefix) && l.Name[:len(conversationPrefix)] == conversationPrefix {
			t.Errorf("asked for per-conversation limit %s", l.Name)
		}
	}
	got := map[string]Limit{}
	for _, l := range v.Limits {
		got[l.Name] = l
	}
	if l := got["cost_per_day_usd"]; l.Unit != "usd" || l.Limit != 4 || l.Used != 1 || l.Remaining != 3 || !l.ResetsAt.Equal(time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("cost_per_day_usd: got %+v, want $1 of $4, resetting at midnight", l)
	}
	if l := got["tokens_per_minute"]; l.Unit != "tokens" || l.Limit != 2000 || l.Used != 500 {
		t.Errorf("tokens_per_minute: got %+v, want the key's override of 2000", l)
	}
	if l := got["cost_total_usd"]; l.ResetsAt != nil {
		t.Errorf("cost_total_usd: got resets_at %v, want null", l.ResetsAt)
	}
	if v.Concurrency != (Concurrency{InUse: 1, Limit: 3}) || v.Spend.Today.CostUSD != 1.5 || v.Spend.Total.Requests != 9 || v.Spend.ThisWeek.ByModel == nil {
		t.Errorf("got concurrency %+v spend %+v", v.Concurrency, v.Spend)
	}
	if got := keyLimits(limits.Set{Counted: []limits.Limit{{Name: "conversation_tokens_per_minute"}, {Name: "tokens_per_day"}}}); len(got.Counted) != 1 || got.Counted[0].Name != "tokens_per_day" {
		t.Errorf("keyLimits kept %+v, want tokens_per_day only", got.Counted)
	}
}
