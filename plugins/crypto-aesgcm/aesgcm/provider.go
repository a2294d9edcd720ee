package aesgcm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/claude-relay/claude-relay/plugins/contract"
)

// Settings the host passes to Configure.
const (
	// SettingKey is the primary secret (CRS_SECURITY__ENCRYPTION_KEY).
	SettingKey = "encryption_key"
	// SettingPreviousKeys are older secrets accepted for decryption only, comma-separated
	// (CRS_SECURITY__ENCRYPTION_KEY_PREVIOUS).
	SettingPreviousKeys = "previous_encryption_keys"
)

// ProviderName is the name the provider reports in Info.
const ProviderName = "crypto-aesgcm"

// Provider is the default crypto provider: a Sealer behind the contract.Crypto interface,
// configured through Configure (never from its environment). It is what the plugin binary
// serves and what the relay runs in-process when no plugin binary is installed.
type Provider struct {
	version string
	sealer  atomic.Pointer[Sealer]
}

// NewProvider returns an unconfigured provider reporting version.
func NewProvider(version string) *Provider { return &Provider{version: version} }

// Configure builds the Sealer from SettingKey and SettingPreviousKeys.
func (p *Provider) Configure(_ context.Context, settings map[string]string) error {
	var prev []string
	for _, k := range strings.Split(settings[SettingPreviousKeys], ",") {
		if k = strings.TrimSpace(k); k != "" {
			prev = append(prev, k)
		}
	}
	s, err := New(settings[SettingKey], prev...)
	if err != nil {
		return fmt.Errorf("configure %s: %w", ProviderName, err)
	}
	p.sealer.Store(s)
	return nil
}

// Info names the provider.
func (p *Provider) Info(context.Context) (contract.Info, error) {
	return contract.Info{Name: ProviderName, Version: p.version}, nil
}

func (p *Provider) get() (*Sealer, error) {
	s := p.sealer.Load()
	if s == nil {
		return nil, contract.ErrNotConfigured
	}
	return s, nil
}

// Encrypt seals plaintext under the primary key.
func (p *Provider) Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	s, err := p.get()
	if err != nil {
		return nil, err
	}
	return s.Seal(ctx, plaintext, aad)
}

// Decrypt opens an envelope under any accepted key.
func (p *Provider) Decrypt(ctx context.Context, envelope, aad []byte) ([]byte, error) {
	s, err := p.get()
	if err != nil {
		return nil, err
	}
	plain, err := s.Open(ctx, envelope, aad)
	return plain, rejected(err)
}

// Rewrap re-seals an envelope under the primary key.
func (p *Provider) Rewrap(ctx context.Context, envelope, aad []byte) ([]byte, bool, error) {
	s, err := p.get()
	if err != nil {
		return nil, false, err
	}
	out, changed, err := s.Rewrap(ctx, envelope, aad)
	return out, changed, rejected(err)
}

// KeyInfo lists the primary key id and every accepted key id.
func (p *Provider) KeyInfo(context.Context) (contract.KeyInfo, error) {
	s, err := p.get()
	if err != nil {
		return contract.KeyInfo{}, err
	}
	ids := make([]string, 0, len(s.keys))
	for id := range s.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return contract.KeyInfo{PrimaryKeyID: s.KeyID(), KeyIDs: ids}, nil
}

// rejected marks envelope errors as the caller's (not retryable) for the contract.
func rejected(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrAuth) {
		return fmt.Errorf("%w: %w", contract.ErrRejected, err)
	}
	return err
}

var _ contract.Crypto = (*Provider)(nil)
