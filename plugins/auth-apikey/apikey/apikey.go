// Package apikey is the default auth provider: relay keys (cr_…) checked against Redis by
// their keyed hash, with enabled, expiry and revocation checks; keys imported from Claude
// Relay Service are found by their legacy hash until their first use re-indexes them.
package apikey

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/plugins/contract/keyrules"
	"github.com/claude-relay/claude-relay/store"
)

// ProviderName is the name the provider reports in Info.
const ProviderName = "auth-apikey"

// Settings the host passes to Configure. Secrets arrive only this way, never through the
// plugin's environment.
const (
	// SettingRedis is a JSON store.RedisConfig (address or URL, password, Sentinel, Cluster).
	SettingRedis = "redis"
	// SettingPrefix is the Redis key prefix ("" means store.DefaultPrefix).
	SettingPrefix = "prefix"
	// SettingPepper is the relay-key HMAC pepper, hex.
	SettingPepper = "pepper"
	// SettingCacheTTL is how long an accepted key may be cached (Go duration, default 60s).
	SettingCacheTTL = "cache_ttl"
	// SettingNegativeTTL is how long a refusal may be cached (Go duration, default 2s).
	SettingNegativeTTL = "negative_ttl"
	// SettingLegacySecret is the secret the legacy hashes of keys imported from Claude Relay
	// Service were made with (its ENCRYPTION_KEY), hex; absent when no such key waits for its
	// first use.
	SettingLegacySecret = "legacy_secret"
)

// Provider implements contract.Auth over the relay-key records in Redis.
type Provider struct {
	version string
	now     func() time.Time
	state   atomic.Pointer[state]
}

type state struct {
	rdb         redis.UniversalClient // owned: closed on reconfigure; nil when borrowed
	st          *store.Store
	ttl, negTTL time.Duration
}

// New returns an unconfigured provider reporting version.
func New(version string) *Provider { return &Provider{version: version, now: time.Now} }

// FromStore returns a provider configured over an open store, for running in-process (the
// relay without plugin binaries, tests, benchmarks). Configure must not be called on it.
func FromStore(st *store.Store, version string, ttl, negTTL time.Duration) *Provider {
	p := New(version)
	p.state.Store(&state{st: st, ttl: ttl, negTTL: negTTL})
	return p
}

// Configure connects to Redis with the given settings; a previous connection is closed
// once calls that may still use it are done.
func (p *Provider) Configure(ctx context.Context, settings map[string]string) error {
	var rc store.RedisConfig
	if err := json.Unmarshal([]byte(settings[SettingRedis]), &rc); err != nil {
		return fmt.Errorf("configure %s: setting %q is not a JSON Redis configuration: %w", ProviderName, SettingRedis, err)
	}
	pepper, err := hex.DecodeString(settings[SettingPepper])
	if err != nil {
		return fmt.Errorf("configure %s: setting %q is not hex", ProviderName, SettingPepper)
	}
	s := &state{ttl: 60 * time.Second, negTTL: 2 * time.Second}
	for name, dst := range map[string]*time.Duration{SettingCacheTTL: &s.ttl, SettingNegativeTTL: &s.negTTL} {
		if v := settings[name]; v != "" {
			if *dst, err = time.ParseDuration(v); err != nil || *dst < 0 {
				return fmt.Errorf("configure %s: setting %q = %q is not a duration >= 0", ProviderName, name, v)
			}
		}
	}
	legacy, err := hex.DecodeString(settings[SettingLegacySecret])
	if err != nil {
		return fmt.Errorf("configure %s: setting %q is not hex", ProviderName, SettingLegacySecret)
	}
	if s.rdb, err = store.Connect(ctx, rc); err != nil {
		return fmt.Errorf("configure %s: %w", ProviderName, err)
	}
	if s.st, err = store.OpenKeyLookup(s.rdb, settings[SettingPrefix], pepper, legacy, p.now); err != nil {
		s.rdb.Close()
		return fmt.Errorf("configure %s: %w", ProviderName, err)
	}
	if old := p.state.Swap(s); old != nil && old.rdb != nil {
		time.AfterFunc(30*time.Second, func() { old.rdb.Close() })
	}
	return nil
}

// Info names the provider.
func (p *Provider) Info(context.Context) (contract.Info, error) {
	return contract.Info{Name: ProviderName, Version: p.version}, nil
}

// Authenticate looks the relay key up in one Redis round trip (keyed hash, constant-time
// compare in the store) and answers its principal, or why it is refused.
func (p *Provider) Authenticate(ctx context.Context, req contract.AuthRequest) (contract.AuthResult, error) {
	s := p.state.Load()
	if s == nil {
		return contract.AuthResult{}, contract.ErrNotConfigured
	}
	refuse := func(why string) (contract.AuthResult, error) {
		return contract.AuthResult{Refusal: why, CacheTTL: s.negTTL}, nil
	}
	if !store.ParseSecret(req.Credential) {
		return refuse("relay keys look like cr_ followed by 64 hex characters")
	}
	k, err := s.st.LookupKey(ctx, req.Credential)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		return refuse("unknown relay key")
	case errors.Is(err, store.ErrKeyRevoked):
		return refuse("relay key " + k.Hint + " has been revoked")
	case errors.Is(err, store.ErrKeyDisabled):
		return refuse("relay key " + k.Hint + " is disabled")
	case errors.Is(err, store.ErrKeyExpired):
		return refuse("relay key " + k.Hint + " has expired")
	default:
		return contract.AuthResult{}, fmt.Errorf("look up relay key: %w", err)
	}
	ttl := s.ttl
	if k.ExpiresAt != nil {
		ttl = min(ttl, k.ExpiresAt.Sub(p.now()))
	}
	overrides, bindings, attrs := keyrules.Encode(k.Rules)
	return contract.AuthResult{
		Principal: contract.Principal{KeyID: k.ID, Name: k.Name, Policy: k.Policy, Overrides: overrides, Bindings: bindings, Attributes: attrs},
		CacheTTL:  ttl,
	}, nil
}

// Close releases the Redis connection.
func (p *Provider) Close() error {
	if s := p.state.Swap(nil); s != nil && s.rdb != nil {
		return s.rdb.Close()
	}
	return nil
}

var _ contract.Auth = (*Provider)(nil)
