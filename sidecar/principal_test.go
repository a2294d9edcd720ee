package sidecar

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/plugins/contract/keyrules"
	"github.com/claude-relay/claude-relay/store"
)

func TestSetCredentialByAccountKind(t *testing.T) {
	tests := []struct {
		name       string
		kind       string
		clientBeta []string
		wantKey    string
		wantAuth   string
		wantBeta   []string
	}{
		{"api key", store.AccountTypeAnthropicAPIKey, []string{"a"}, "k", "", []string{"a"}},
		{"compatible", store.AccountTypeAnthropicCompatible, nil, "k", "", nil},
		{"oauth without client betas", store.AccountTypeClaudeOAuth, nil, "", "Bearer k", []string{"oauth-2025-04-20"}},
		{"oauth merges client betas", store.AccountTypeClaudeOAuth, []string{"a, b", "c"}, "", "Bearer k", []string{"a,b,c,oauth-2025-04-20"}},
		{"oauth beta already sent", store.AccountTypeClaudeOAuth, []string{"oauth-2025-04-20,x"}, "", "Bearer k", []string{"oauth-2025-04-20,x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.clientBeta {
				h.Add("Anthropic-Beta", v)
			}
			setCredential(h, &Upstream{Kind: tt.kind, Credential: "k"})
			if got := h.Get("X-Api-Key"); got != tt.wantKey {
				t.Errorf("got x-api-key %q, want %q", got, tt.wantKey)
			}
			if got := h.Get("Authorization"); got != tt.wantAuth {
				t.Errorf("got authorization %q, want %q", got, tt.wantAuth)
			}
			if diff := cmp.Diff(tt.wantBeta, h.Values("Anthropic-Beta")); diff != "" {
				t.Errorf("anthropic-beta (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrincipalCarriesTheKeysRules(t *testing.T) {
	rpm := int64(5)
	rules := store.KeyRules{Limits: store.KeyLimits{RequestsPerMinute: &rpm}, AllowedModels: []string{"claude-haiku-*"},
		DeniedModels: []string{"claude-opus-*"}, AllowedClients: []string{"claude_code"},
		AllowedCIDRs: []string{"10.0.0.0/8", "2001:db8::/32"}, Binding: store.KeyBinding{Group: "eu"}}
	o, b, a := keyrules.Encode(rules)
	got, err := principalFrom(contract.Principal{KeyID: "k1", Name: "n", Policy: "team", Overrides: o, Bindings: b, Attributes: a})
	if err != nil {
		t.Fatal(err)
	}
	want := Principal{KeyID: "k1", Name: "n", Policy: "team", Limits: rules.Limits, AllowedModels: rules.AllowedModels,
		DeniedModels: rules.DeniedModels, AllowedClients: rules.AllowedClients,
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
		Binding:      rules.Binding}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("principal (-want +got):\n%s", diff)
	}
	if _, err := principalFrom(contract.Principal{KeyID: "k", Attributes: map[string]string{keyrules.AttrAllowedCIDRs: `["nope"]`}}); err == nil {
		t.Error("a principal with an unreadable CIDR: got nil error, want it refused")
	}
}
