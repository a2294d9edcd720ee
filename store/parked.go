package store

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Parked is one entry of the AccountsParked hash that is in force: an account (or one model
// family of it) the scheduler must skip, and why.
type Parked struct {
	Account string
	// Family is the model family parked alone ("" for the whole account).
	Family string
	// Until is when the park ends (zero: until an operator clears it).
	Until time.Time
	// State is rate_limited, overloaded, failing, unauthorized or blocked.
	State  string
	Status int
	Reason string
}

// ParkedAccounts returns the parks in force now, sorted by account and family. It decodes the
// format schema.go documents for AccountsParked, which the sidecar's scheduler writes.
func (s *Store) ParkedAccounts(ctx context.Context) ([]Parked, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.AccountsParked()).Result()
	if err != nil {
		return nil, fmt.Errorf("parked accounts: %w", err)
	}
	now := s.now()
	var out []Parked
	for field, v := range m {
		p, ok := decodeParked(field, v)
		if !ok || (!p.Until.IsZero() && !now.Before(p.Until)) {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Account != out[j].Account {
			return out[i].Account < out[j].Account
		}
		return out[i].Family < out[j].Family
	})
	return out, nil
}

func decodeParked(field, v string) (Parked, bool) {
	parts := strings.SplitN(v, "|", 4)
	if len(parts) != 4 {
		return Parked{}, false
	}
	until, err1 := strconv.ParseInt(parts[0], 10, 64)
	status, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil {
		return Parked{}, false
	}
	acct, family, _ := strings.Cut(field, "/")
	p := Parked{Account: acct, Family: family, State: parts[1], Status: status, Reason: parts[3]}
	if until > 0 {
		p.Until = time.UnixMilli(until).UTC()
	}
	return p, true
}

// UnparkAccount returns an account (every model family) to the rotation. It reports whether
// anything was parked.
func (s *Store) UnparkAccount(ctx context.Context, id string) (bool, error) {
	fields, err := s.rdb.HKeys(ctx, s.keys.AccountsParked()).Result()
	if err != nil {
		return false, fmt.Errorf("unpark account %s: %w", id, err)
	}
	var mine []string
	for _, f := range fields {
		if a, _, _ := strings.Cut(f, "/"); a == id {
			mine = append(mine, f)
		}
	}
	if len(mine) == 0 {
		return false, nil
	}
	if err := s.rdb.HDel(ctx, s.keys.AccountsParked(), mine...).Err(); err != nil {
		return false, fmt.Errorf("unpark account %s: %w", id, err)
	}
	return true, nil
}

// clearUnauthorized deletes an account's whole-account park when its state is
// "unauthorized" (the value is "until|state|status|reason"), atomically.
var clearUnauthorized = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.match(v, '^[^|]*|([^|]*)|') == 'unauthorized' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
`)

// ClearUnauthorized returns an account parked as unauthorized to the rotation, leaving any
// other park (rate limited, overloaded, blocked) in force: the control plane calls it once
// the account's OAuth tokens have been refreshed. It reports whether a park was cleared.
func (s *Store) ClearUnauthorized(ctx context.Context, id string) (bool, error) {
	n, err := clearUnauthorized.Run(ctx, s.rdb, []string{s.keys.AccountsParked()}, id).Int()
	if err != nil {
		return false, fmt.Errorf("clear unauthorized park of %s: %w", id, err)
	}
	return n == 1, nil
}
