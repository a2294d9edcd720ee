package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// StickySessionHash is the hash a conversation's sticky binding is keyed by, for the session
// id a client sends in metadata.user_id (Claude Code's session uuid): the scheduler and the
// admin API both derive it here.
func StickySessionHash(sessionID string) string {
	sum := sha256.Sum256([]byte("u:" + sessionID))
	return hex.EncodeToString(sum[:16])
}

// clearIfScript deletes a binding only while it still names the account (a sidecar may
// re-bind it meanwhile). KEYS[1]: binding. ARGV[1]: account id. Returns 1 when deleted.
var clearIfScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// ClearStickySession deletes one conversation's sticky bindings in every pool, so its next
// request is scheduled afresh. session is the client's session id, or the binding's hash
// (32 hex digits) itself. It returns how many bindings it deleted and tells sidecars to drop
// their cached copies. SCANs every master: an operator action, never a request path.
func (s *Store) ClearStickySession(ctx context.Context, session string) (int, error) {
	hashes := []string{StickySessionHash(session)}
	if isHash(session) {
		hashes = append(hashes, session)
	}
	n := 0
	for _, h := range hashes {
		keys, err := s.scanKeys(ctx, s.keys.StickySessionsMatch(h))
		if err != nil {
			return n, fmt.Errorf("clear sticky session: %w", err)
		}
		for _, k := range keys {
			d, err := s.rdb.Del(ctx, k).Result()
			if err != nil {
				return n, fmt.Errorf("clear sticky session: %w", err)
			}
			n += int(d)
		}
		_ = s.rdb.Publish(ctx, s.keys.StickyClearedChannel(), "session:"+h).Err()
	}
	return n, nil
}

// ClearAccountBindings deletes every sticky binding to account, so the conversations on it
// are scheduled afresh with their next request. It returns how many it deleted and tells
// sidecars to drop their cached copies. SCANs every master: an operator action.
func (s *Store) ClearAccountBindings(ctx context.Context, accountID string) (int, error) {
	keys, err := s.scanKeys(ctx, s.keys.StickySessionsMatch(""))
	if err != nil {
		return 0, fmt.Errorf("clear bindings of account %s: %w", accountID, err)
	}
	n := 0
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(start+500, len(keys))]
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(batch))
		for i, k := range batch {
			cmds[i] = clearIfScript.Eval(ctx, pipe, []string{k}, accountID) // EVAL: a pipeline cannot fall back from EVALSHA
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return n, fmt.Errorf("clear bindings of account %s: %w", accountID, err)
		}
		for _, c := range cmds {
			if v, _ := c.Int(); v == 1 {
				n++
			}
		}
	}
	_ = s.rdb.Publish(ctx, s.keys.StickyClearedChannel(), "account:"+accountID).Err()
	return n, nil
}

// SubscribeStickyCleared subscribes to the announcements of cleared sticky bindings. The
// caller closes the PubSub.
func (s *Store) SubscribeStickyCleared(ctx context.Context) *redis.PubSub {
	return s.rdb.Subscribe(ctx, s.keys.StickyClearedChannel())
}

// scanKeys returns the keys matching pattern, on every master of a Cluster.
func (s *Store) scanKeys(ctx context.Context, pattern string) ([]string, error) {
	var names []string
	var mu sync.Mutex
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			names = append(names, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		err = errors.New("unsupported Redis client")
	}
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", pattern, err)
	}
	return names, nil
}

// isHash reports whether s looks like a binding's hash (32 lower-case hex digits).
func isHash(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
