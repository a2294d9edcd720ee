package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// tokenRevocationGrace keeps a revoked token id a little past its expiry, covering the clock
// skew leeway a JWT verifier may allow.
const tokenRevocationGrace = time.Minute

// SetAdminPassword stores the password hash (e.g. bcrypt) of an admin user.
func (s *Store) SetAdminPassword(ctx context.Context, username string, hash []byte) error {
	if username == "" {
		return errors.New("set admin password: username is required")
	}
	if len(hash) == 0 {
		return errors.New("set admin password: empty password hash")
	}
	if err := s.rdb.Set(ctx, s.keys.AdminPassword(username), hash, 0).Err(); err != nil {
		return fmt.Errorf("set admin password for %s: %w", username, err)
	}
	return nil
}

// AdminPasswordHash returns the stored password hash of an admin user, or ErrNotFound.
func (s *Store) AdminPasswordHash(ctx context.Context, username string) ([]byte, error) {
	h, err := s.rdb.Get(ctx, s.keys.AdminPassword(username)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("admin user %s: %w", username, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("admin user %s: %w", username, err)
	}
	return h, nil
}

// RevokeToken marks an admin token id as revoked until the token's expiry (plus a minute of
// clock-skew grace); after that the token is invalid anyway and Redis drops the mark.
func (s *Store) RevokeToken(ctx context.Context, jti string, until time.Time) error {
	if jti == "" {
		return errors.New("revoke token: empty token id")
	}
	ttl := until.Sub(s.now()) + tokenRevocationGrace
	if ttl <= 0 {
		return nil
	}
	ttl = max(ttl.Truncate(time.Millisecond), time.Millisecond) // PX takes whole ms, at least 1
	if err := s.rdb.Set(ctx, s.keys.RevokedToken(jti), "1", ttl).Err(); err != nil {
		return fmt.Errorf("revoke token %s: %w", jti, err)
	}
	return nil
}

// TokenRevoked reports whether an admin token id was revoked.
func (s *Store) TokenRevoked(ctx context.Context, jti string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.keys.RevokedToken(jti)).Result()
	if err != nil {
		return false, fmt.Errorf("token %s revoked: %w", jti, err)
	}
	return n == 1, nil
}
