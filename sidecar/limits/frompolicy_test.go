package limits_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/sidecar/limits"
)

// policyWithEveryLimit returns a policy that sets every limit of config's table to 2 (USD
// limits to $2), through the policy's JSON names; the modes are applied after.
func policyWithEveryLimit(t *testing.T, mode string, modes map[string]string) *config.Policy {
	t.Helper()
	vals := map[string]any{}
	for d := range config.Limits() {
		vals[d.Name] = 2
	}
	b, err := json.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	var p config.Policy
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	p.LimitMode, p.LimitModes = mode, modes
	return &p
}

func TestFromPolicyCountsEveryLimitLongestWindowFirst(t *testing.T) {
	p := policyWithEveryLimit(t, config.LimitModeReserve, map[string]string{"tokens_per_minute": config.LimitModeCharge})
	want := limits.Set{Concurrency: 2, Counted: []limits.Limit{
		{Name: "cost_total_usd", Kind: limits.Cost, Window: limits.Total, Max: 2e6, Reserve: true},
		{Name: "cost_per_month_usd", Kind: limits.Cost, Window: limits.Month, Max: 2e6, Reserve: true},
		{Name: "cost_per_week_usd", Kind: limits.Cost, Window: limits.Week, Max: 2e6, Reserve: true},
		{Name: "cost_per_day_usd", Kind: limits.Cost, Window: limits.Day, Max: 2e6, Reserve: true},
		{Name: "tokens_per_day", Kind: limits.Tokens, Window: limits.Day, Max: 2, Reserve: true},
		{Name: "requests_per_day", Kind: limits.Requests, Window: limits.Day, Max: 2},
		{Name: "tokens_per_minute", Kind: limits.Tokens, Window: limits.Minute, Max: 2},
		{Name: "requests_per_minute", Kind: limits.Requests, Window: limits.Minute, Max: 2},
		// Breakers: per conversation, always charged whatever the mode.
		{Name: "conversation_cost_per_minute_usd", Kind: limits.Cost, Window: limits.Minute, Max: 2e6, PerConversation: true},
		{Name: "conversation_tokens_per_minute", Kind: limits.Tokens, Window: limits.Minute, Max: 2, PerConversation: true},
		{Name: "conversation_requests_per_minute", Kind: limits.Requests, Window: limits.Minute, Max: 2, PerConversation: true},
	}}
	if diff := cmp.Diff(want, limits.FromPolicy(p)); diff != "" {
		t.Errorf("FromPolicy (-want +got):\n%s", diff)
	}
	if got := limits.FromPolicy(&config.Policy{}); !got.Empty() {
		t.Errorf("a policy with no limit: got %+v, want an empty set", got)
	}
	if got := limits.FromPolicy(nil); !got.Empty() {
		t.Errorf("no policy: got %+v, want an empty set", got)
	}
}

func TestKeyOverridesReachTheLimiter(t *testing.T) {
	five, half := int64(5), 0.5
	k := config.KeyLimits{RequestsPerMinute: &five, Concurrency: &five, CostTotalUSD: &half}
	got := limits.FromPolicy((&config.Policy{RequestsPerMinute: 60, TokensPerDay: 100}).WithKeyLimits(k))
	want := limits.Set{Concurrency: 5, Counted: []limits.Limit{
		{Name: "cost_total_usd", Kind: limits.Cost, Window: limits.Total, Max: 500_000},
		{Name: "tokens_per_day", Kind: limits.Tokens, Window: limits.Day, Max: 100},
		{Name: "requests_per_minute", Kind: limits.Requests, Window: limits.Minute, Max: 5},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FromPolicy of the overridden policy (-want +got):\n%s", diff)
	}
}
