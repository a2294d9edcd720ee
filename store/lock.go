package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// releaseLockScript deletes a lock only if it still holds the caller's token.
// KEYS: lock. ARGV: token. Returns 1 if released.
var releaseLockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Lock is a held cluster-wide lock; Release it when done.
type Lock struct {
	s     *Store
	key   string
	token string
}

// TryLock takes the named lock for lease (SET NX PX with a random token) or reports false when
// another holder has it. The lease bounds how long a crashed holder blocks others.
func (s *Store) TryLock(ctx context.Context, name string, lease time.Duration) (*Lock, bool, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	l := &Lock{s: s, key: s.keys.Lock(name), token: hex.EncodeToString(b)}
	ok, err := s.rdb.SetNX(ctx, l.key, l.token, lease).Result()
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	if !ok {
		return nil, false, nil
	}
	return l, true, nil
}

// Release frees the lock if this holder still has it (a lease that ran out and was taken by
// another holder is left alone).
func (l *Lock) Release(ctx context.Context) error {
	err := releaseLockScript.Run(ctx, l.s.rdb, []string{l.key}, l.token).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("release lock: %w", err)
	}
	return nil
}

// extendLockScript renews a lock's lease only if it still holds the caller's token.
// KEYS: lock. ARGV: token, lease ms. Returns 1 if extended.
var extendLockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// Extend renews the lease for a holder that keeps working under the lock. It reports false
// when the lock was lost (the lease ran out and another holder may have it).
func (l *Lock) Extend(ctx context.Context, lease time.Duration) (bool, error) {
	n, err := extendLockScript.Run(ctx, l.s.rdb, []string{l.key}, l.token, lease.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("extend lock: %w", err)
	}
	return n == 1, nil
}
