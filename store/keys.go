package store

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// SecretPrefix starts every relay key secret.
const SecretPrefix = "cr_"

// secretHexLen is the number of lowercase hex characters after SecretPrefix (32 random bytes).
const secretHexLen = 64

// maxNameLen bounds key and account names.
const maxNameLen = 200

// Key is a relay key as stored; the secret itself is never stored.
type Key struct {
	ID   string
	Name string
	// Hint shows the secret's first and last 4 hex characters, e.g. "cr_ab12…ef90".
	Hint string
	// Policy names the HCL limit policy the key is subject to ("" for the default).
	Policy     string
	Enabled    bool
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
}

// KeySpec describes a relay key to create.
type KeySpec struct {
	Name      string
	Policy    string
	ExpiresAt *time.Time
}

// ParseSecret reports whether secret has the relay key format "cr_" + 64 lowercase hex
// characters. It does no I/O, so malformed keys are refused before Redis is asked.
func ParseSecret(secret string) bool {
	hexPart, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok || len(hexPart) != secretHexLen {
		return false
	}
	for i := 0; i < len(hexPart); i++ {
		c := hexPart[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// hashSecret returns hex HMAC-SHA256(pepper, secret), the only form of a secret stored.
func (s *Store) hashSecret(secret string) string {
	m := hmac.New(sha256.New, s.pepper)
	m.Write([]byte(secret))
	return hex.EncodeToString(m.Sum(nil))
}

// CreateKey creates an enabled relay key and returns it with its secret, which is shown once
// and never stored (only its HMAC is).
func (s *Store) CreateKey(ctx context.Context, spec KeySpec) (Key, string, error) {
	name := strings.TrimSpace(spec.Name)
	if name == "" {
		return Key{}, "", errors.New("create key: name is required")
	}
	if len(name) > maxNameLen {
		return Key{}, "", fmt.Errorf("create key: name is %d bytes, want at most %d", len(name), maxNameLen)
	}
	now := s.now().UTC()
	var expires *time.Time
	if spec.ExpiresAt != nil {
		e := spec.ExpiresAt.UTC()
		if !e.After(now) {
			return Key{}, "", fmt.Errorf("create key: expiry %s is not in the future", e.Format(time.RFC3339))
		}
		expires = &e
	}
	id, err := newID()
	if err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	raw := make([]byte, secretHexLen/2)
	if _, err := rand.Read(raw); err != nil {
		return Key{}, "", fmt.Errorf("create key: generate secret: %w", err)
	}
	hexPart := hex.EncodeToString(raw)
	secret := SecretPrefix + hexPart
	k := Key{
		ID:        id,
		Name:      name,
		Hint:      SecretPrefix + hexPart[:4] + "…" + hexPart[secretHexLen-4:],
		Policy:    spec.Policy,
		Enabled:   true,
		CreatedAt: now,
		ExpiresAt: expires,
	}
	hash := s.hashSecret(secret)
	args := []any{hash, id, now.UnixMilli(),
		"id", id, "name", k.Name, "hint", k.Hint, "policy", k.Policy,
		"enabled", "1", "created_at", formatTime(now), "hash", hash}
	if expires != nil {
		args = append(args, "expires_at", formatTime(*expires))
	}
	keys := []string{s.keys.KeyRecord(id), s.keys.KeyIndex(), s.keys.KeysByCreation()}
	ok, err := createKeyScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	if ok == 0 {
		return Key{}, "", fmt.Errorf("create key: id %s: %w", id, ErrConflict)
	}
	return k, secret, nil
}

// LookupKey finds the key for a secret in one Redis round trip. It returns ErrNotFound for a
// malformed or unknown secret; for a known key that cannot be used it returns the key together
// with ErrKeyRevoked, ErrKeyDisabled or ErrKeyExpired (checked in that order).
func (s *Store) LookupKey(ctx context.Context, secret string) (Key, error) {
	if !ParseSecret(secret) {
		return Key{}, ErrNotFound
	}
	hash := s.hashSecret(secret)
	keys := []string{s.keys.KeyIndex(), s.keys.KeyRevokedIndex()}
	fields, err := lookupKeyScript.Run(ctx, s.rdb, keys, hash, s.keys.KeyRecordPrefix()).StringSlice()
	if errors.Is(err, redis.Nil) {
		return Key{}, ErrNotFound
	}
	if err != nil {
		return Key{}, fmt.Errorf("lookup key: %w", err)
	}
	rec := pairs(fields)
	if len(rec) == 0 || !hmac.Equal([]byte(rec["hash"]), []byte(hash)) {
		return Key{}, ErrNotFound
	}
	k, err := keyFromRecord(rec)
	if err != nil {
		return Key{}, fmt.Errorf("lookup key: %w", err)
	}
	return k, s.usable(k)
}

// usable says why a key cannot be used now, or nil.
func (s *Store) usable(k Key) error {
	switch {
	case k.RevokedAt != nil:
		return ErrKeyRevoked
	case !k.Enabled:
		return ErrKeyDisabled
	case k.ExpiresAt != nil && !s.now().Before(*k.ExpiresAt):
		return ErrKeyExpired
	}
	return nil
}

// GetKey returns the key with the given id, or ErrNotFound.
func (s *Store) GetKey(ctx context.Context, id string) (Key, error) {
	rec, err := s.rdb.HGetAll(ctx, s.keys.KeyRecord(id)).Result()
	if err != nil {
		return Key{}, fmt.Errorf("get key %s: %w", id, err)
	}
	if len(rec) == 0 {
		return Key{}, fmt.Errorf("get key %s: %w", id, ErrNotFound)
	}
	k, err := keyFromRecord(rec)
	if err != nil {
		return Key{}, fmt.Errorf("get key %s: %w", id, err)
	}
	return k, nil
}

// ListKeys returns every key, revoked ones included, oldest first. It reads the creation-time
// index, never KEYS or SCAN.
func (s *Store) ListKeys(ctx context.Context) ([]Key, error) {
	ids, err := s.rdb.ZRange(ctx, s.keys.KeysByCreation(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.keys.KeyRecord(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var out []Key
	for _, c := range cmds {
		rec := c.Val()
		if len(rec) == 0 {
			continue // deleted between the two reads
		}
		k, err := keyFromRecord(rec)
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		out = append(out, k)
	}
	return out, nil
}

// RevokeKey revokes a key for good: it removes the secret's hash from the live index, sets
// RevokedAt and publishes the key id on the revocations channel. Revoking twice keeps the
// first RevokedAt.
func (s *Store) RevokeKey(ctx context.Context, id string) error {
	keys := []string{s.keys.KeyRecord(id), s.keys.KeyIndex(), s.keys.KeyRevokedIndex()}
	ok, err := revokeKeyScript.Run(ctx, s.rdb, keys, formatTime(s.now()), s.keys.RevocationsChannel(), id).Int()
	if err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	}
	if ok == 0 {
		return fmt.Errorf("revoke key %s: %w", id, ErrNotFound)
	}
	return nil
}

// SetKeyEnabled disables or re-enables a key and publishes its id on the revocations channel
// so sidecars drop cached results. Enabling a revoked key fails with ErrConflict.
func (s *Store) SetKeyEnabled(ctx context.Context, id string, enabled bool) error {
	res, err := setKeyEnabledScript.Run(ctx, s.rdb, []string{s.keys.KeyRecord(id)},
		boolString(enabled), s.keys.RevocationsChannel(), id).Int()
	if err != nil {
		return fmt.Errorf("set key %s enabled=%t: %w", id, enabled, err)
	}
	switch res {
	case 0:
		return fmt.Errorf("set key %s enabled=%t: %w", id, enabled, ErrNotFound)
	case -1:
		return fmt.Errorf("enable key %s: key is revoked: %w", id, ErrConflict)
	}
	return nil
}

// SubscribeRevocations subscribes to the channel on which revoked, disabled and re-enabled key
// ids are published. The caller closes the PubSub.
func (s *Store) SubscribeRevocations(ctx context.Context) *redis.PubSub {
	return s.rdb.Subscribe(ctx, s.keys.RevocationsChannel())
}

// TouchKey records that the key was used at at; last_used_at only moves forward.
func (s *Store) TouchKey(ctx context.Context, id string, at time.Time) error {
	ok, err := touchKeyScript.Run(ctx, s.rdb, []string{s.keys.KeyRecord(id)}, formatTime(at)).Int()
	if err != nil {
		return fmt.Errorf("touch key %s: %w", id, err)
	}
	if ok == 0 {
		return fmt.Errorf("touch key %s: %w", id, ErrNotFound)
	}
	return nil
}

// pairs turns a flat HGETALL reply into a map.
func pairs(flat []string) map[string]string {
	if len(flat) == 0 {
		return nil
	}
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		m[flat[i]] = flat[i+1]
	}
	return m
}

func keyFromRecord(rec map[string]string) (Key, error) {
	k := Key{
		ID:      rec["id"],
		Name:    rec["name"],
		Hint:    rec["hint"],
		Policy:  rec["policy"],
		Enabled: rec["enabled"] == "1",
	}
	var err error
	if k.CreatedAt, err = parseTime(rec["created_at"]); err != nil {
		return Key{}, fmt.Errorf("key %s: %w", k.ID, err)
	}
	for _, f := range []struct {
		field string
		dst   **time.Time
	}{
		{"expires_at", &k.ExpiresAt},
		{"revoked_at", &k.RevokedAt},
		{"last_used_at", &k.LastUsedAt},
	} {
		if *f.dst, err = parseOptTime(rec[f.field]); err != nil {
			return Key{}, fmt.Errorf("key %s %s: %w", k.ID, f.field, err)
		}
	}
	return k, nil
}
