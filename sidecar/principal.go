package sidecar

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/plugins/contract/keyrules"
	"github.com/claude-relay/claude-relay/store"
)

// principalFrom maps an auth provider's principal to the sidecar's: identity, policy, and
// the key's own rules (limit overrides, model and client rules, IP allowlist, binding). A
// principal whose rules cannot be read is refused rather than served without them.
func principalFrom(p contract.Principal) (Principal, error) {
	rules, err := keyrules.Decode(p.Overrides, p.Bindings, p.Attributes)
	if err != nil {
		return Principal{}, fmt.Errorf("key %s rules: %w", p.KeyID, err)
	}
	out := Principal{
		KeyID: p.KeyID, Name: p.Name, Policy: p.Policy,
		Limits:         rules.Limits,
		AllowedModels:  rules.AllowedModels,
		DeniedModels:   rules.DeniedModels,
		AllowedClients: rules.AllowedClients,
		Binding:        rules.Binding,
	}
	for _, c := range rules.AllowedCIDRs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return Principal{}, fmt.Errorf("key %s allowed CIDR %q: %w", p.KeyID, c, err)
		}
		out.AllowedCIDRs = append(out.AllowedCIDRs, pfx.Masked())
	}
	return out, nil
}

// boundAccounts lists the accounts of ups a key's binding allows: the bound account, or
// every account of the bound group (none, not nil, when no account matches).
func boundAccounts(b store.KeyBinding, ups []*Upstream) []string {
	bound := []string{}
	for _, u := range ups {
		if u.ID == b.AccountID || (b.Group != "" && u.Group == b.Group) {
			bound = append(bound, u.ID)
		}
	}
	return bound
}

// bindingName names a key's binding in log lines.
func bindingName(b store.KeyBinding) string {
	if b.AccountID != "" {
		return "account " + b.AccountID
	}
	return "account group " + b.Group
}

// OAuthBeta is the anthropic-beta value an OAuth bearer token needs.
const OAuthBeta = "oauth-2025-04-20"

// setCredential puts the account's credential on an upstream request: an OAuth token as
// Authorization: Bearer plus the OAuth beta, merged into the client's anthropic-beta values
// (never replacing them); any other account's key as x-api-key. It adds nothing else.
func setCredential(h http.Header, up *Upstream) {
	if up.Kind != store.AccountTypeClaudeOAuth {
		h.Set("X-Api-Key", up.Credential)
		return
	}
	h.Set("Authorization", "Bearer "+up.Credential)
	var betas []string
	for _, v := range h.Values("Anthropic-Beta") {
		for _, b := range strings.Split(v, ",") {
			if b = strings.TrimSpace(b); b == OAuthBeta {
				return
			} else if b != "" {
				betas = append(betas, b)
			}
		}
	}
	h.Set("Anthropic-Beta", strings.Join(append(betas, OAuthBeta), ","))
}
