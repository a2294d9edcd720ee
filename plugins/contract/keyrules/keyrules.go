// Package keyrules is the plugin contract's wire codec for a relay key's rules: how an auth
// provider puts them in the principal it returns (contract.Principal's Overrides, Bindings and
// Attributes) and how the sidecar reads them back. The default provider (plugins/auth-apikey)
// encodes a stored key's rules with Encode; another provider sends the same names.
package keyrules

import (
	"encoding/json"
	"fmt"

	"github.com/claude-relay/claude-relay/store"
)

// Attribute names under which Encode puts a key's rules into an auth provider's
// principal (plugins/contract.Principal.Attributes).
const (
	AttrAllowedModels  = "allowed_models"
	AttrDeniedModels   = "denied_models"
	AttrAllowedClients = "allowed_clients"
	AttrAllowedCIDRs   = "allowed_cidrs"
	AttrBindingGroup   = "binding_group"
)

// Encode flattens a key's rules into the string maps an auth provider's principal
// carries over the plugin channel: limit overrides by their policy field name (e.g.
// "requests_per_minute" → "60"), the bound account id in bindings, and model, client and
// CIDR lists as JSON arrays in attributes. Decode reverses it.
func Encode(r store.KeyRules) (overrides map[string]string, bindings []string, attrs map[string]string) {
	if !r.Limits.IsZero() {
		b, _ := json.Marshal(r.Limits) // cannot fail: numbers only
		var raw map[string]json.RawMessage
		_ = json.Unmarshal(b, &raw)
		overrides = make(map[string]string, len(raw))
		for k, v := range raw {
			overrides[k] = string(v)
		}
	}
	if r.Binding.AccountID != "" {
		bindings = []string{r.Binding.AccountID}
	}
	put := func(name string, list []string) {
		if len(list) == 0 {
			return
		}
		if attrs == nil {
			attrs = make(map[string]string)
		}
		b, _ := json.Marshal(list) // cannot fail: strings only
		attrs[name] = string(b)
	}
	put(AttrAllowedModels, r.AllowedModels)
	put(AttrDeniedModels, r.DeniedModels)
	put(AttrAllowedClients, r.AllowedClients)
	put(AttrAllowedCIDRs, r.AllowedCIDRs)
	if r.Binding.Group != "" {
		if attrs == nil {
			attrs = make(map[string]string)
		}
		attrs[AttrBindingGroup] = r.Binding.Group
	}
	return overrides, bindings, attrs
}

// Decode rebuilds a key's rules from what Encode produced. Unknown override
// and attribute names are ignored (another provider may send its own).
func Decode(overrides map[string]string, bindings []string, attrs map[string]string) (store.KeyRules, error) {
	var r store.KeyRules
	if len(overrides) > 0 {
		raw := make(map[string]json.RawMessage, len(overrides))
		for k, v := range overrides {
			if !json.Valid([]byte(v)) {
				return store.KeyRules{}, fmt.Errorf("override %s: %q is not a number", k, v)
			}
			raw[k] = json.RawMessage(v)
		}
		b, _ := json.Marshal(raw) // cannot fail: valid raw messages
		if err := json.Unmarshal(b, &r.Limits); err != nil {
			return store.KeyRules{}, fmt.Errorf("overrides: %w", err)
		}
	}
	if len(bindings) > 0 {
		r.Binding.AccountID = bindings[0]
	}
	r.Binding.Group = attrs[AttrBindingGroup]
	for name, dst := range map[string]*[]string{
		AttrAllowedModels: &r.AllowedModels, AttrDeniedModels: &r.DeniedModels,
		AttrAllowedClients: &r.AllowedClients, AttrAllowedCIDRs: &r.AllowedCIDRs,
	} {
		v, ok := attrs[name]
		if !ok {
			continue
		}
		if err := json.Unmarshal([]byte(v), dst); err != nil {
			return store.KeyRules{}, fmt.Errorf("attribute %s: %w", name, err)
		}
	}
	return r, nil
}
