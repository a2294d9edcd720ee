package sched

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/store"
)

// Per-account capacity (store.AccountCaps), exact across sidecars:
//
//   - An account with caps costs one Redis round trip when a request is about to use it
//     (acquireScript: checks the day and rolling 5-hour use, and takes a max_concurrency
//     lease) and one when the request ends (releaseScript: drops the lease and counts the
//     request's tokens and cost). Accounts without caps cost nothing.
//   - A lease lives leaseTTL and is renewed every leaseTTL/3 by Run while its request runs,
//     so the leases of a sidecar that dies expire by themselves.
//   - Token and cost caps are checked before a request (its use is not known yet), so an
//     account may go over by what its requests in flight use.

// leaseTTL bounds how long a dead sidecar's lease holds a slot.
const leaseTTL = time.Minute

// capBuckets is how many store.CapBucket buckets make the rolling window.
var capBuckets = int64(store.CapWindow / store.CapBucket)

// Capacity names, as they appear in answers and logs.
const (
	CapConcurrency = "max_concurrency"
	CapTokensDay   = "tokens_per_day"
	CapCostDay     = "cost_per_day_usd"
	CapTokens5h    = "tokens_per_5h"
	CapCost5h      = "cost_per_5h_usd"
	// CapUnknown: the account's capacity could not be checked (Redis unavailable).
	CapUnknown = "capacity_unknown"
)

// CapFull says which cap of an account refused a request and when it frees.
type CapFull struct {
	Account string
	Cap     string
	// Limit and Used are in the cap's unit (requests, tokens or USD).
	Limit, Used float64
	// Frees is when the account can take a request again: the end of the UTC day, the time
	// enough use leaves the 5-hour window, or (max_concurrency) a second from now, since a
	// slot frees whenever one of its requests ends.
	Frees time.Time
}

func (f CapFull) String() string {
	switch f.Cap {
	case CapUnknown:
		return fmt.Sprintf("account %s skipped: its capacity cannot be checked (Redis unavailable)", f.Account)
	case CapConcurrency:
		return fmt.Sprintf("account %s at its max_concurrency (%.0f of %.0f requests in flight; a slot frees when one ends)", f.Account, f.Used, f.Limit)
	case CapCostDay, CapCost5h:
		return fmt.Sprintf("account %s at its %s cap ($%.2f of $%.2f used) until %s", f.Account, f.Cap, f.Used, f.Limit, f.Frees.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("account %s at its %s cap (%.0f of %.0f tokens used) until %s", f.Account, f.Cap, f.Used, f.Limit, f.Frees.UTC().Format(time.RFC3339))
}

// acquireScript checks an account's caps and takes a concurrency lease.
// KEYS[1]: AccountInFlight; KEYS[2]: AccountCapUsage. ARGV: now ms, lease id, lease expiry
// ms, max_concurrency, tokens/day, micro-USD/day, tokens/5h, micro-USD/5h, day, bucket,
// buckets per window. Returns {"", 0, 0} when admitted, else {cap, frees, used}: frees is
// the lease expiry (ms) for max_concurrency, the bucket number at which the use falls under
// the cap for the 5-hour caps, 0 for the day caps.
var acquireScript = redis.NewScript(`
local now, maxc = tonumber(ARGV[1]), tonumber(ARGV[4])
local function num(v) return tonumber(v) or 0 end
local td, cd = tonumber(ARGV[5]), tonumber(ARGV[6])
if td > 0 or cd > 0 then
  local v = redis.call('HMGET', KEYS[2], 'd:' .. ARGV[9] .. ':t', 'd:' .. ARGV[9] .. ':c')
  if td > 0 and num(v[1]) >= td then return {'tokens_per_day', 0, num(v[1])} end
  if cd > 0 and num(v[2]) >= cd then return {'cost_per_day_usd', 0, num(v[2])} end
end
local t5, c5 = tonumber(ARGV[7]), tonumber(ARGV[8])
if t5 > 0 or c5 > 0 then
  local idx, n = tonumber(ARGV[10]), tonumber(ARGV[11])
  local f = {}
  for i = idx - n + 1, idx do
    f[#f + 1] = 'b:' .. i .. ':t'
    f[#f + 1] = 'b:' .. i .. ':c'
  end
  local v = redis.call('HMGET', KEYS[2], unpack(f))
  local tt, cc = 0, 0
  for k = 1, #v, 2 do
    tt = tt + num(v[k])
    cc = cc + num(v[k + 1])
  end
  local which, cap, used, off
  if t5 > 0 and tt >= t5 then
    which, cap, used, off = 'tokens_per_5h', t5, tt, 0
  elseif c5 > 0 and cc >= c5 then
    which, cap, used, off = 'cost_per_5h_usd', c5, cc, 1
  end
  if which then
    local left = used
    for k = 1, #v, 2 do
      left = left - num(v[k + off])
      if left < cap then
        return {which, idx - n + 1 + (k - 1) / 2 + n, used}
      end
    end
    return {which, idx + n, used}
  end
end
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local n = redis.call('ZCARD', KEYS[1])
  if n >= maxc then
    return {'max_concurrency', 0, n}
  end
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) - now + 60000)
end
return {'', 0, 0}
`)

// releaseScript ends a request on a capped account: it drops its lease and counts its use.
// KEYS as acquireScript. ARGV: lease id ("" for none), tokens, micro-USD, day, bucket,
// buckets per window. Fields that left both windows are dropped on the way.
var releaseScript = redis.NewScript(`
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
local t, c = tonumber(ARGV[2]), tonumber(ARGV[3])
if t > 0 or c > 0 then
  local d, b = 'd:' .. ARGV[4], 'b:' .. ARGV[5]
  redis.call('HINCRBY', KEYS[2], d .. ':t', t)
  redis.call('HINCRBY', KEYS[2], d .. ':c', c)
  redis.call('HINCRBY', KEYS[2], b .. ':t', t)
  redis.call('HINCRBY', KEYS[2], b .. ':c', c)
  local oldest = tonumber(ARGV[5]) - tonumber(ARGV[6]) + 1
  for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
    local kind, id = string.match(f, '^(%a):([^:]+):')
    if (kind == 'b' and (tonumber(id) or 0) < oldest) or (kind == 'd' and id ~= ARGV[4]) then
      redis.call('HDEL', KEYS[2], f)
    end
  end
  redis.call('PEXPIRE', KEYS[2], 172800000)
end
return 1
`)

// AccountLease is one request's hold on a capped account; Release ends it.
type AccountLease struct {
	s       *Scheduler
	account string
	id      string // "" without max_concurrency
	counts  bool   // the account has token or cost caps: its use is counted
}

// capStamps returns the day and bucket that use at now is counted in.
func capStamps(now time.Time) (day string, bucket int64) {
	return now.UTC().Format("20060102"), now.UnixMilli() / store.CapBucket.Milliseconds()
}

// AcquireCapacity admits a request to account under its caps, shared with every sidecar:
// it returns a lease to release when the request ends, or why the account is full. An
// account without caps (or a scheduler without Redis) needs neither: nil, nil, nil.
func (s *Scheduler) AcquireCapacity(ctx context.Context, account string, caps store.AccountCaps) (*AccountLease, *CapFull, error) {
	if caps.IsZero() || s.rdb == nil {
		return nil, nil, nil
	}
	now := s.now()
	l := &AccountLease{s: s, account: account, counts: caps.CountsUsage()}
	if caps.MaxConcurrency > 0 {
		var b [12]byte
		_, _ = rand.Read(b[:])
		l.id = hex.EncodeToString(b[:])
	}
	day, bucket := capStamps(now)
	res, err := acquireScript.Run(ctx, s.rdb, []string{s.keys.AccountInFlight(account), s.keys.AccountCapUsage(account)},
		now.UnixMilli(), l.id, now.Add(leaseTTL).UnixMilli(), caps.MaxConcurrency,
		caps.TokensPerDay, microUSD(caps.CostPerDayUSD), caps.TokensPer5h, microUSD(caps.CostPer5hUSD),
		day, bucket, capBuckets).Slice()
	if err != nil {
		return nil, nil, fmt.Errorf("check capacity of account %s: %w", account, err)
	}
	if len(res) != 3 {
		return nil, nil, fmt.Errorf("check capacity of account %s: unexpected answer %v", account, res)
	}
	name, _ := res[0].(string)
	if name == "" {
		if l.id != "" {
			s.leases.Store(l.id, account)
		}
		return l, nil, nil
	}
	frees, _ := res[1].(int64)
	used, _ := res[2].(int64)
	return nil, capFull(account, name, caps, frees, used, now), nil
}

// capFull describes a refusal of acquireScript.
func capFull(account, name string, caps store.AccountCaps, frees, used int64, now time.Time) *CapFull {
	f := &CapFull{Account: account, Cap: name, Used: float64(used)}
	switch name {
	case CapConcurrency:
		f.Limit, f.Frees = float64(caps.MaxConcurrency), now.Add(time.Second)
	case CapTokensDay, CapCostDay:
		y, m, d := now.UTC().Date()
		f.Frees = time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
		f.Limit = float64(caps.TokensPerDay)
	case CapTokens5h, CapCost5h:
		f.Frees = time.UnixMilli(frees * store.CapBucket.Milliseconds())
		f.Limit = float64(caps.TokensPer5h)
	}
	switch name {
	case CapCostDay:
		f.Limit, f.Used = caps.CostPerDayUSD, float64(used)/1e6
	case CapCost5h:
		f.Limit, f.Used = caps.CostPer5hUSD, float64(used)/1e6
	}
	return f
}

func microUSD(usd float64) int64 { return int64(math.Round(usd * 1e6)) }

// Release ends the request: its concurrency slot frees and its use (tokens, cost in
// micro-USD) counts toward the account's caps. Safe on a nil lease.
func (l *AccountLease) Release(ctx context.Context, tokens, costMicroUSD int64) {
	if l == nil {
		return
	}
	s := l.s
	if l.id != "" {
		s.leases.Delete(l.id)
	}
	if !l.counts {
		tokens, costMicroUSD = 0, 0
	}
	if l.id == "" && tokens == 0 && costMicroUSD == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	day, bucket := capStamps(s.now())
	err := releaseScript.Run(ctx, s.rdb, []string{s.keys.AccountInFlight(l.account), s.keys.AccountCapUsage(l.account)},
		l.id, tokens, costMicroUSD, day, bucket, capBuckets).Err()
	if err != nil {
		s.log.Warn("cannot release an account's capacity; its slot expires by itself", "account", l.account, "expires_in", leaseTTL, "error", err)
	}
}

// renewLeases extends every lease this sidecar holds, in one pipeline.
func (s *Scheduler) renewLeases(ctx context.Context) error {
	until := float64(s.now().Add(leaseTTL).UnixMilli())
	pipe := s.rdb.Pipeline()
	n := 0
	s.leases.Range(func(id, account any) bool {
		key := s.keys.AccountInFlight(account.(string))
		pipe.ZAddXX(ctx, key, redis.Z{Score: until, Member: id})
		pipe.PExpire(ctx, key, leaseTTL+time.Minute)
		n++
		return true
	})
	if n == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("renew %d account leases: %w", n, err)
	}
	return nil
}

// InFlightShared returns the requests in flight on account across all sidecars, as its
// max_concurrency leases count them (0 for an account without one).
func (s *Scheduler) InFlightShared(ctx context.Context, account string) (int64, error) {
	if s.rdb == nil {
		return 0, nil
	}
	n, err := s.rdb.ZCount(ctx, s.keys.AccountInFlight(account), strconv.FormatInt(s.now().UnixMilli(), 10), "+inf").Result()
	if err != nil {
		return 0, fmt.Errorf("count requests in flight on account %s: %w", account, err)
	}
	return n, nil
}
