// Package store is the Redis schema and data access shared by the control plane and the sidecar.
package store

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors returned by the store; test them with errors.Is.
var (
	// ErrNotFound means the key, account or user does not exist (or a secret matches no key).
	ErrNotFound = errors.New("not found")
	// ErrKeyDisabled means the relay key exists but an operator disabled it.
	ErrKeyDisabled = errors.New("relay key is disabled")
	// ErrKeyExpired means the relay key is past its expiry time.
	ErrKeyExpired = errors.New("relay key has expired")
	// ErrKeyRevoked means the relay key was revoked; it can never be used again.
	ErrKeyRevoked = errors.New("relay key has been revoked")
	// ErrConflict means the change contradicts the current state (e.g. enabling a revoked key).
	ErrConflict = errors.New("conflict")
)

// Sealer encrypts and decrypts small secrets; aad binds an envelope to the record it belongs to.
// The crypto provider plugin implements it.
type Sealer interface {
	Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, envelope, aad []byte) ([]byte, error)
}

// Options configures Open.
type Options struct {
	// Prefix namespaces every key and channel; "" means DefaultPrefix ("crs:").
	Prefix string
	// Sealer protects the relay-key pepper and account credentials. Required.
	Sealer Sealer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store reads and writes claude-relay's state in Redis. It is safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	keys   Schema
	sealer Sealer
	now    func() time.Time
	pepper []byte
	// legacySecret is the secret legacy key hashes were made with (nil when none are
	// stored); legacyLeft turns false once this process learns that none remain.
	legacySecret []byte
	legacyLeft   atomic.Bool
	// hourlyRetention and dailyRetention are how long report buckets live (nanoseconds;
	// 0 = the default), set from the configuration's usage block.
	hourlyRetention, dailyRetention atomic.Int64
	// ledger is the request ledger's settings (nil: off), set from the usage block.
	ledger atomic.Pointer[LedgerSettings]
}

const pepperLen = 32

// pepperAAD binds the sealed pepper to its purpose.
var pepperAAD = []byte("claude-relay relay-key pepper v1")

// Open prepares the store: it loads or creates (SETNX, so concurrent processes agree) the
// relay-key HMAC pepper — 32 random bytes stored in Redis sealed by the Sealer — used to hash
// relay keys, opens the legacy key secret when keys imported from Claude Relay Service still
// wait for their first use, and loads the Lua scripts.
func Open(ctx context.Context, rdb redis.UniversalClient, opts Options) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("open store: nil redis client")
	}
	if opts.Sealer == nil {
		return nil, errors.New("open store: a Sealer (crypto provider) is required")
	}
	if !validPrefix(opts.Prefix) {
		return nil, fmt.Errorf("open store: key prefix %q must not contain braces, spaces or glob characters", opts.Prefix)
	}
	s := &Store{rdb: rdb, keys: NewSchema(opts.Prefix), sealer: opts.Sealer, now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	pepper, err := s.loadPepper(ctx)
	if err != nil {
		return nil, err
	}
	s.pepper = pepper
	legacy, err := s.LoadLegacyKeySecret(ctx)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.useLegacySecret(legacy)
	for _, sc := range allScripts {
		if err := sc.Load(ctx, rdb).Err(); err != nil {
			return nil, fmt.Errorf("open store: load lua script: %w", err)
		}
	}
	return s, nil
}

func (s *Store) loadPepper(ctx context.Context) ([]byte, error) {
	key := s.keys.Pepper()
	env, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		var created []byte
		created, env, err = s.createPepper(ctx, key)
		if created != nil {
			return created, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read relay-key pepper %s: %w", key, err)
	}
	pepper, err := s.sealer.Open(ctx, env, pepperAAD)
	if err != nil {
		return nil, fmt.Errorf("open relay-key pepper %s (was CRS_SECURITY__ENCRYPTION_KEY changed without keeping the old key for decryption?): %w", key, err)
	}
	if len(pepper) != pepperLen {
		return nil, fmt.Errorf("relay-key pepper %s has %d bytes, want %d", key, len(pepper), pepperLen)
	}
	return pepper, nil
}

// createPepper stores a fresh sealed pepper with SETNX. It returns the pepper if this call
// created it, else the envelope another process stored first.
func (s *Store) createPepper(ctx context.Context, key string) (created, envelope []byte, err error) {
	fresh := make([]byte, pepperLen)
	if _, err := rand.Read(fresh); err != nil {
		return nil, nil, fmt.Errorf("generate: %w", err)
	}
	sealed, err := s.sealer.Seal(ctx, fresh, pepperAAD)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: %w", err)
	}
	ok, err := s.rdb.SetNX(ctx, key, sealed, 0).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("setnx: %w", err)
	}
	if ok {
		return fresh, nil, nil
	}
	// Another process won the race; use its pepper.
	envelope, err = s.rdb.Get(ctx, key).Bytes()
	return nil, envelope, err
}

// RestorePepper stores the relay-key pepper this store holds again when Redis has none (it
// was emptied while the process ran), so that processes started later hash relay keys the
// same way. When Redis holds another pepper (a process started since created it), it
// returns an error wrapping ErrConflict: keys this process writes from now on are not found
// by that one until this process restarts.
func (s *Store) RestorePepper(ctx context.Context) error {
	sealed, err := s.sealer.Seal(ctx, s.pepper, pepperAAD)
	if err != nil {
		return fmt.Errorf("restore relay-key pepper: seal: %w", err)
	}
	created, err := s.rdb.SetNX(ctx, s.keys.Pepper(), sealed, 0).Result()
	if err != nil || created {
		if err != nil {
			return fmt.Errorf("restore relay-key pepper: %w", err)
		}
		return nil
	}
	env, err := s.rdb.Get(ctx, s.keys.Pepper()).Bytes()
	if err != nil {
		return fmt.Errorf("restore relay-key pepper: %w", err)
	}
	stored, err := s.sealer.Open(ctx, env, pepperAAD)
	if err != nil {
		return fmt.Errorf("restore relay-key pepper: open the stored one: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, s.pepper) != 1 {
		return fmt.Errorf("restore relay-key pepper: Redis holds another one, created by a process started since Redis was emptied; restart this process: %w", ErrConflict)
	}
	return nil
}

// Client returns the Redis client the store uses.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Schema returns the key schema under the store's prefix.
func (s *Store) Schema() Schema { return s.keys }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// newID returns a random 16-hex-character id.
func newID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// timeLayout is fixed-width UTC so stored timestamps compare correctly as strings (Lua).
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse stored time %q: %w", s, err)
	}
	return t.UTC(), nil
}

// parseOptTime parses an optional stored time ("" → nil).
func parseOptTime(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := parseTime(s)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func boolString(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
