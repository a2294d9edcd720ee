package keyrules_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/plugins/contract/keyrules"
	"github.com/claude-relay/claude-relay/store"
)

func TestKeyRulesSurviveThePluginPrincipalEncoding(t *testing.T) {
	rpm, cost := int64(60), 2.5
	tests := []store.KeyRules{
		{},
		{Limits: store.KeyLimits{RequestsPerMinute: &rpm, CostPerDayUSD: &cost}},
		{AllowedModels: []string{"claude-*"}, DeniedModels: []string{"claude-opus-*"}, AllowedClients: []string{"claude_code", "my-bot/*"},
			AllowedCIDRs: []string{"10.0.0.0/8", "2001:db8::/32"}, Binding: store.KeyBinding{AccountID: "a1"}},
		{Binding: store.KeyBinding{Group: "eu"}},
	}
	for i, r := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			o, b, a := keyrules.Encode(r)
			got, err := keyrules.Decode(o, b, a)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(r, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := keyrules.Decode(map[string]string{"requests_per_minute": "lots"}, nil, nil); err == nil {
		t.Error("a non-number override: got nil error, want one")
	}
}
