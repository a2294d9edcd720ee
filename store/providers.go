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

// Rewrapper re-seals an envelope under the crypto provider's primary key (changed is false
// when the envelope already was), and seals and opens, for credentials whose binding changes.
type Rewrapper interface {
	Sealer
	Rewrap(ctx context.Context, envelope, aad []byte) (out []byte, changed bool, err error)
}

// RotateProgress counts the sealed secrets a rotation has visited.
type RotateProgress struct {
	Total     int // secrets to visit: the pepper, the legacy key secret, every account
	Done      int // visited so far
	Rewrapped int // re-sealed under the primary key (or bound anew) by this run
	Current   int // already under the primary key
	Failed    int // could not be re-sealed (see the error)
	// Bound counts the accounts whose credential this run bound to its type, base URL and
	// proxy (sealed before bindings, bound to the account id only); included in Rewrapped.
	Bound int
}

// RotateSecrets re-seals every stored secret (the relay-key pepper, the legacy key secret while one is kept, and each account's
// credential, refresh token and proxy URL) under rw's primary key, and binds credentials
// sealed before bindings to their account's type, base URL and proxy (see OpenAccount).
// Each write is a compare-and-set on the fields it read, so an account changed meanwhile is
// read again rather than overwritten, and the plaintext never changes: a reader holding any
// accepted key can open every envelope before, during and after. It is idempotent and so
// resumable: a second run finds everything current. progress, if not nil, is called after
// each secret. The error joins every secret's failure.
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
		res, err := s.rewrapAccount(ctx, rw, id)
		if res == accountBound {
			p.Bound++
		}
		step("account "+id, res != accountCurrent, err)
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

// What rewrapAccount did to an account.
const (
	accountCurrent   = iota // everything already under the primary key and bound
	accountRewrapped        // re-sealed under the primary key
	accountBound            // its credential bound to its type, base URL and proxy
)

// rewrapAccount re-seals an account's envelopes under rw's primary key in one conditional
// write: the proxy URL and refresh token as they are, the credential bound to the account's
// type, base URL and (new) sealed proxy.
func (s *Store) rewrapAccount(ctx context.Context, rw Rewrapper, id string) (int, error) {
	key := s.keys.Account(id)
	for range casAttempts {
		vals, err := s.rdb.HMGet(ctx, key, append(boundFields, "refresh_token")...).Result()
		if err != nil {
			return accountCurrent, fmt.Errorf("read: %w", err)
		}
		cur := boundFromValues(vals)
		refresh, _ := vals[len(boundFields)].(string)
		if cur.credential == "" {
			return accountCurrent, nil // deleted meanwhile
		}
		next, res := cur, accountCurrent
		var set []any
		if cur.proxy != "" {
			out, changed, err := rw.Rewrap(ctx, []byte(cur.proxy), []byte(id+aadProxy))
			if err != nil {
				return accountCurrent, openFailed("proxy", err)
			}
			if changed {
				next.proxy, res = string(out), accountRewrapped
				set = append(set, "proxy", out)
			}
		}
		if refresh != "" {
			out, changed, err := rw.Rewrap(ctx, []byte(refresh), []byte(id+aadRefresh))
			if err != nil {
				return accountCurrent, openFailed("refresh token", err)
			}
			if changed {
				res = accountRewrapped
				set = append(set, "refresh_token", out)
			}
		}
		next.binding = bindingDestination
		if cur.binding == bindingDestination && next.proxy == cur.proxy {
			out, changed, err := rw.Rewrap(ctx, []byte(cur.credential), cur.aad(id))
			if err != nil {
				return accountCurrent, openFailed("credential", err)
			}
			if changed {
				res = accountRewrapped
				set = append(set, "credential", out)
			}
		} else {
			// Sealed before bindings, or bound to the proxy envelope just re-sealed:
			// open it as it is bound now and seal it for the new fields.
			plain, err := rw.Open(ctx, []byte(cur.credential), cur.aad(id))
			if err != nil {
				return accountCurrent, openFailed("credential", err)
			}
			out, err := rw.Seal(ctx, plain, next.aad(id))
			clear(plain)
			if err != nil {
				return accountCurrent, fmt.Errorf("seal credential: %w", err)
			}
			if cur.binding != bindingDestination {
				res = accountBound
			} else {
				res = max(res, accountRewrapped)
			}
			set = append(set, "credential", out, credentialBindingField, bindingDestination)
		}
		if len(set) == 0 {
			return accountCurrent, nil
		}
		// Not a version bump: the plaintexts and what they are bound to are unchanged, so
		// nothing a sidecar holds is stale.
		checks := append(cur.checks(), "refresh_token", refresh)
		args := append(append([]any{len(checks) / 2}, checks...), set...)
		ok, err := casHashFieldsScript.Run(ctx, s.rdb, []string{key}, args...).Int()
		if err != nil {
			return accountCurrent, fmt.Errorf("write: %w", err)
		}
		if ok == 1 {
			return res, nil
		}
	}
	return accountCurrent, errors.New("changed concurrently too often; run the rotation again")
}

// SealedSecrets returns every stored envelope by name ("pepper", "legacy-secret",
// "account:<id>", "account:<id>/proxy", "account:<id>/refresh"), for checks after a rotation.
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
		vals, err := s.rdb.HMGet(ctx, s.keys.Account(id), "credential", "proxy", "refresh_token").Result()
		if err != nil {
			return nil, fmt.Errorf("read account %s: %w", id, err)
		}
		for i, name := range []string{"account:" + id, "account:" + id + aadProxy, "account:" + id + aadRefresh} {
			if env, _ := vals[i].(string); env != "" {
				out[name] = []byte(env)
			}
		}
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

// casHashFieldsScript sets HASH fields only if others still hold their values.
// KEYS: key. ARGV: number of checks, that many field/expected pairs ("" expects the field
// absent), then field, value, ... to set. Returns 1 if set.
var casHashFieldsScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local n = tonumber(ARGV[1])
for i = 2, 2 * n, 2 do
  if (redis.call('HGET', KEYS[1], ARGV[i]) or '') ~= ARGV[i + 1] then
    return 0
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2 + 2 * n))
return 1
`)
