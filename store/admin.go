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

// CreateAdminIfAbsent stores the password hash of a new admin user unless the user exists
// (SET NX, so concurrent first starts agree on one password). It reports whether it created
// the user.
func (s *Store) CreateAdminIfAbsent(ctx context.Context, username string, hash []byte) (bool, error) {
	if username == "" {
		return false, errors.New("create admin: username is required")
	}
	if len(hash) == 0 {
		return false, errors.New("create admin: empty password hash")
	}
	ok, err := s.rdb.SetNX(ctx, s.keys.AdminPassword(username), hash, 0).Result()
	if err != nil {
		return false, fmt.Errorf("create admin %s: %w", username, err)
	}
	return ok, nil
}

// ChangeAdminPassword stores a new password hash and starts a new token generation, so every
// session token of the user issued before is refused. It returns the new generation. The
// generation moves first, so a failure between the two writes leaves old tokens refused
// rather than the old password's sessions alive.
func (s *Store) ChangeAdminPassword(ctx context.Context, username string, hash []byte) (int64, error) {
	if len(hash) == 0 {
		return 0, errors.New("change admin password: empty password hash")
	}
	gen, err := s.rdb.Incr(ctx, s.keys.AdminTokenGeneration(username)).Result()
	if err != nil {
		return 0, fmt.Errorf("change admin password for %s: %w", username, err)
	}
	if err := s.rdb.Set(ctx, s.keys.AdminPassword(username), hash, 0).Err(); err != nil {
		return 0, fmt.Errorf("change admin password for %s: %w", username, err)
	}
	return gen, nil
}

// SessionState is what decides whether an admin session token still holds, read in one
// round trip by Store.SessionState.
type SessionState struct {
	// Revoked reports whether the token id was logged out.
	Revoked bool
	// Generation is the user's current token generation (0 before any password change).
	Generation int64
	// Epoch is the store's admin epoch; "" when the store has none (it was emptied).
	Epoch string
	// UserExists reports whether the user has a password hash.
	UserExists bool
}

// SessionState reads, in one round trip, whether an admin token id was revoked, the user's
// current token generation, the store's admin epoch and whether the user exists.
func (s *Store) SessionState(ctx context.Context, jti, username string) (SessionState, error) {
	var revoked, exists *redis.IntCmd
	var gen, epoch *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		revoked = p.Exists(ctx, s.keys.RevokedToken(jti))
		gen = p.Get(ctx, s.keys.AdminTokenGeneration(username))
		epoch = p.Get(ctx, s.keys.AdminEpoch())
		exists = p.Exists(ctx, s.keys.AdminPassword(username))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return SessionState{}, fmt.Errorf("session state of %s: %w", username, err)
	}
	st := SessionState{Revoked: revoked.Val() == 1, Epoch: epoch.Val(), UserExists: exists.Val() == 1}
	if g, err := gen.Int64(); err == nil {
		st.Generation = g
	} else if !errors.Is(err, redis.Nil) {
		return SessionState{}, fmt.Errorf("session state of %s: %w", username, err)
	}
	return st, nil
}

// SessionBasis reads, in one round trip, what a new session token of username carries: the
// user's token generation and the store's admin epoch ("" when there is none).
func (s *Store) SessionBasis(ctx context.Context, username string) (generation int64, epoch string, err error) {
	var gen, ep *redis.StringCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		gen = p.Get(ctx, s.keys.AdminTokenGeneration(username))
		ep = p.Get(ctx, s.keys.AdminEpoch())
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, "", fmt.Errorf("session basis of %s: %w", username, err)
	}
	if g, err := gen.Int64(); err == nil {
		generation = g
	} else if !errors.Is(err, redis.Nil) {
		return 0, "", fmt.Errorf("session basis of %s: %w", username, err)
	}
	return generation, ep.Val(), nil
}

// AdminEpoch returns the store's admin epoch, or "" when it has none (a new or emptied store).
func (s *Store) AdminEpoch(ctx context.Context) (string, error) {
	epoch, err := s.rdb.Get(ctx, s.keys.AdminEpoch()).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("admin epoch: %w", err)
	}
	return epoch, nil
}

// CreateAdminEpoch stores a new random admin epoch unless the store has one (SET NX, so
// control planes noticing an emptied store at once agree on one). It returns the epoch in
// force and whether this call created it.
func (s *Store) CreateAdminEpoch(ctx context.Context) (epoch string, created bool, err error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", false, fmt.Errorf("create admin epoch: %w", err)
	}
	fresh := hex.EncodeToString(b)
	ok, err := s.rdb.SetNX(ctx, s.keys.AdminEpoch(), fresh, 0).Result()
	if err != nil {
		return "", false, fmt.Errorf("create admin epoch: %w", err)
	}
	if ok {
		return fresh, true, nil
	}
	epoch, err = s.AdminEpoch(ctx)
	return epoch, false, err
}

// oauthPendingTTL is how long a started OAuth login waits for its code.
const oauthPendingTTL = 10 * time.Minute

// OAuthPendingTTL returns how long a started OAuth login waits for its code.
func OAuthPendingTTL() time.Duration { return oauthPendingTTL }

// PutOAuthPending stores a started OAuth login (its PKCE verifier and the account to create)
// sealed under its state for ten minutes.
func (s *Store) PutOAuthPending(ctx context.Context, state string, data []byte) error {
	env, err := s.sealer.Seal(ctx, data, []byte("oauth:"+state))
	if err != nil {
		return fmt.Errorf("store oauth login: seal: %w", err)
	}
	if err := s.rdb.Set(ctx, s.keys.OAuthPending(state), env, oauthPendingTTL).Err(); err != nil {
		return fmt.Errorf("store oauth login: %w", err)
	}
	return nil
}

// TakeOAuthPending returns and deletes a started OAuth login (so a code is exchanged once),
// or ErrNotFound when the state is unknown or its ten minutes are over.
func (s *Store) TakeOAuthPending(ctx context.Context, state string) ([]byte, error) {
	env, err := s.rdb.GetDel(ctx, s.keys.OAuthPending(state)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("oauth login: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("oauth login: %w", err)
	}
	data, err := s.sealer.Open(ctx, env, []byte("oauth:"+state))
	if err != nil {
		return nil, fmt.Errorf("oauth login: open: %w", err)
	}
	return data, nil
}
