package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// OpenKeyLookup returns a store that can look relay keys up (LookupKey, GetKey) with a pepper
// the caller already holds, without a Sealer: an auth provider gets the pepper (and, while
// imported keys wait for their first use, the legacy key secret; nil if none) from the host
// and never sees the encryption key. Operations that seal or open secrets fail on it.
func OpenKeyLookup(rdb redis.UniversalClient, prefix string, pepper, legacySecret []byte, now func() time.Time) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("open key lookup: nil redis client")
	}
	if !validPrefix(prefix) {
		return nil, fmt.Errorf("open key lookup: key prefix %q must not contain braces, spaces or glob characters", prefix)
	}
	if len(pepper) != pepperLen {
		return nil, fmt.Errorf("open key lookup: pepper has %d bytes, want %d", len(pepper), pepperLen)
	}
	if now == nil {
		now = time.Now
	}
	s := &Store{rdb: rdb, keys: NewSchema(prefix), sealer: noSealer{}, now: now, pepper: append([]byte(nil), pepper...)}
	s.useLegacySecret(legacySecret)
	return s, nil
}

// Pepper returns a copy of the relay-key HMAC pepper, for the host to hand to an auth provider.
func (s *Store) Pepper() []byte { return append([]byte(nil), s.pepper...) }

type noSealer struct{}

func (noSealer) Seal(context.Context, []byte, []byte) ([]byte, error) {
	return nil, errors.New("this store has no crypto provider (opened for key lookups only)")
}

func (noSealer) Open(context.Context, []byte, []byte) ([]byte, error) {
	return nil, errors.New("this store has no crypto provider (opened for key lookups only)")
}

// Rewrapper re-seals an envelope under the crypto provider's primary key; changed is false
// when the envelope already was.
type Rewrapper interface {
	Rewrap(ctx context.Context, envelope, aad []byte) (out []byte, changed bool, err error)
}

// RotateProgress counts the sealed secrets a rotation has visited.
type RotateProgress struct {
	Total     int // secrets to visit: the pepper, the legacy key secret, every account credential
	Done      int // visited so far
	Rewrapped int // re-sealed under the primary key by this run
	Current   int // already under the primary key
	Failed    int // could not be re-sealed (see the error)
}

// RotateSecrets re-seals every stored secret (the relay-key pepper, the legacy key secret
// while one is kept, and each account credential) under rw's primary key. Each write is a compare-and-set on the envelope it
// read, so a credential changed meanwhile is read again rather than overwritten, and the
// plaintext never changes: a reader holding any accepted key can open every envelope before,
// during and after. It is idempotent and so resumable: a second run finds everything current.
// progress, if not nil, is called after each secret. The error joins every secret's failure.
func (s *Store) RotateSecrets(ctx context.Context, rw Rewrapper, progress func(RotateProgress)) (RotateProgress, error) {
	ids, err := s.rdb.ZRange(ctx, s.keys.AccountsByCreation(), 0, -1).Result()
	if err != nil {
		return RotateProgress{}, fmt.Errorf("rotate: list accounts: %w", err)
	}
	hasLegacy, err := s.rdb.Exists(ctx, s.keys.LegacyKeySecret()).Result()
	if err != nil {
		return RotateProgress{}, fmt.Errorf("rotate: look for the legacy key secret: %w", err)
	}
	p := RotateProgress{Total: len(ids) + 1 + int(hasLegacy)}
	var errs []error
	step := func(name string, changed bool, err error) {
		p.Done++
		switch {
		case err != nil:
			p.Failed++
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		case changed:
			p.Rewrapped++
		default:
			p.Current++
		}
		if progress != nil {
			progress(p)
		}
	}
	changed, err := s.rewrapString(ctx, rw, s.keys.Pepper(), pepperAAD)
	step("relay-key pepper", changed, err)
	if hasLegacy > 0 {
		changed, err := s.rewrapString(ctx, rw, s.keys.LegacyKeySecret(), legacySecretAAD)
		step("legacy key secret", changed, err)
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		changed, err := s.rewrapAccount(ctx, rw, id)
		step("account "+id, changed, err)
	}
	return p, errors.Join(errs...)
}

// casAttempts bounds how often one secret is re-read after a concurrent change.
const casAttempts = 5

// rewrapString re-seals the envelope a STRING key holds (the pepper, the legacy key secret).
func (s *Store) rewrapString(ctx context.Context, rw Rewrapper, key string, aad []byte) (bool, error) {
	for range casAttempts {
		env, err := s.rdb.Get(ctx, key).Bytes()
		if errors.Is(err, redis.Nil) {
			return false, nil // nothing sealed (any more)
		}
		if err != nil {
			return false, fmt.Errorf("read: %w", err)
		}
		out, changed, err := rw.Rewrap(ctx, env, aad)
		if err != nil || !changed {
			return false, err
		}
		ok, err := casStringScript.Run(ctx, s.rdb, []string{key}, env, out).Int()
		if err != nil {
			return false, fmt.Errorf("write: %w", err)
		}
		if ok == 1 {
			return true, nil
		}
	}
	return false, errors.New("changed concurrently too often; run the rotation again")
}

func (s *Store) rewrapAccount(ctx context.Context, rw Rewrapper, id string) (bool, error) {
	key := s.keys.Account(id)
	for range casAttempts {
		env, err := s.rdb.HGet(ctx, key, "credential").Bytes()
		if errors.Is(err, redis.Nil) {
			return false, nil // deleted meanwhile
		}
		if err != nil {
			return false, fmt.Errorf("read: %w", err)
		}
		out, changed, err := rw.Rewrap(ctx, env, []byte(id))
		if err != nil || !changed {
			return false, err
		}
		ok, err := casHashFieldScript.Run(ctx, s.rdb, []string{key}, "credential", env, out).Int()
		if err != nil {
			return false, fmt.Errorf("write: %w", err)
		}
		if ok == 1 {
			return true, nil
		}
	}
	return false, errors.New("changed concurrently too often; run the rotation again")
}

// SealedSecrets returns every stored envelope by name ("pepper", "legacy-secret",
// "account:<id>"), for checks after a rotation.
func (s *Store) SealedSecrets(ctx context.Context) (map[string][]byte, error) {
	out := make(map[string][]byte)
	for name, key := range map[string]string{"pepper": s.keys.Pepper(), "legacy-secret": s.keys.LegacyKeySecret()} {
		env, err := s.rdb.Get(ctx, key).Bytes()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		if err == nil {
			out[name] = env
		}
	}
	ids, err := s.rdb.ZRange(ctx, s.keys.AccountsByCreation(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	for _, id := range ids {
		env, err := s.rdb.HGet(ctx, s.keys.Account(id), "credential").Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read account %s: %w", id, err)
		}
		out["account:"+id] = env
	}
	return out, nil
}

// casStringScript sets a STRING only if it still holds the expected value.
// KEYS: key. ARGV: expected, new. Returns 1 if set.
var casStringScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// casHashFieldScript sets a HASH field only if it still holds the expected value.
// KEYS: key. ARGV: field, expected, new. Returns 1 if set.
var casHashFieldScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
`)
