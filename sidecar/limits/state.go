package limits

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/store"
)

// State is where one counted limit of a key stands now.
type State struct {
	Limit
	// Used is the window's counter (requests, tokens or micro-USD).
	Used int64
	// ResetAt is when the window ends; zero for a total limit, which never resets.
	ResetAt time.Time
	// Reserved is what requests in flight hold against a reserve-mode limit (tokens or
	// micro-USD; 0 for other limits): what is left is Max-Used-Reserved.
	Reserved int64
}

// KeyState is where every limit of a key stands now.
type KeyState struct {
	Counted []State
	// InFlight is the number of live concurrency leases; Concurrency the cap (0: none).
	InFlight    int64
	Concurrency int
}

// ReadState reads the counters of set's limits for a key, its live leases and its
// reservations in one pipelined round trip (all in the key's {key:<id>} slot). It writes
// nothing: the self-service view and the control plane read it without a Limiter.
// Per-conversation limits are left out: they count each conversation, not the key.
func ReadState(ctx context.Context, rdb redis.UniversalClient, keys store.Schema, keyID string, set Set, now time.Time) (KeyState, error) {
	out := KeyState{Concurrency: set.Concurrency}
	set.Conversation = ""
	set = set.forRequest()
	gets := make([]*redis.StringCmd, len(set.Counted))
	var inflight *redis.IntCmd
	var reserved *redis.SliceCmd
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, lim := range set.Counted {
			start, _ := lim.Window.Bounds(now)
			gets[i] = p.Get(ctx, keys.KeyLimitCounter(keyID, lim.Name, start))
		}
		inflight = p.ZCount(ctx, keys.KeyConcurrency(keyID), strconv.FormatInt(now.UnixMilli(), 10), "+inf")
		if set.Reserves() {
			reserved = p.HMGet(ctx, keys.KeyReserved(keyID), "t", "c")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return KeyState{}, fmt.Errorf("read limits of key %s: %w", keyID, err)
	}
	for i, lim := range set.Counted {
		n, err := gets[i].Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return KeyState{}, fmt.Errorf("read limit %s of key %s: %w", lim.Name, keyID, err)
		}
		_, end := lim.Window.Bounds(now)
		st := State{Limit: lim, Used: n, ResetAt: end}
		if lim.Reserve && reserved != nil {
			st.Reserved = heldOf(reserved.Val(), lim.Kind)
		}
		out.Counted = append(out.Counted, st)
	}
	out.InFlight = inflight.Val()
	return out, nil
}

// heldOf picks a kind's sum from an HMGET of KeyReserved's "t" and "c".
func heldOf(v []any, k Kind) int64 {
	i := 0
	if k == Cost {
		i = 1
	}
	if len(v) != 2 {
		return 0
	}
	s, _ := v[i].(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return max(n, 0)
}

// State is ReadState on the Limiter's Redis and clock.
func (l *Limiter) State(ctx context.Context, keyID string, set Set) (KeyState, error) {
	return ReadState(ctx, l.rdb, l.keys, keyID, set, l.now())
}
