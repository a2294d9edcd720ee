// Package limits enforces per-key request, token, cost and concurrency limits atomically in Redis.
package limits

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/store"
)

// Kind is what a limit counts.
type Kind int

// Limit kinds.
const (
	// Requests are counted when a request is admitted: never more than Max in a window.
	Requests Kind = iota
	// Tokens are charged when a request ends, with what the upstream reported.
	Tokens
	// Cost is charged when a request ends, in micro-USD.
	Cost
)

// Window is the period a limit counts over. Windows are fixed and aligned in UTC.
type Window int

// Windows.
const (
	Minute Window = iota
	Day
	Week  // ISO week, from Monday 00:00 UTC
	Month // calendar month
	Total // the key's whole life: never resets
)

// Bounds returns the window holding now; end is the zero time for Total.
func (w Window) Bounds(now time.Time) (start, end time.Time) {
	now = now.UTC()
	switch w {
	case Minute:
		start = now.Truncate(time.Minute)
		return start, start.Add(time.Minute)
	case Day:
		start = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case Week:
		back := (int(now.Weekday()) + 6) % 7 // days since Monday
		start = time.Date(now.Year(), now.Month(), now.Day()-back, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 7)
	case Month:
		start = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	return time.Time{}, time.Time{}
}

// Limit is one counted limit of a policy.
type Limit struct {
	// Name is the policy attribute, e.g. "requests_per_minute"; refusals name it.
	Name   string
	Kind   Kind
	Window Window
	// Max is the allowance per window: requests, tokens, or micro-USD.
	Max int64
}

// Set is every limit one key is under.
type Set struct {
	// Counted are checked longest window first, so a refusal names the limit that binds
	// longest.
	Counted []Limit
	// Concurrency caps requests in flight; 0 means unlimited.
	Concurrency int
}

// Empty reports whether the set limits nothing (no Redis work is needed).
func (s Set) Empty() bool { return len(s.Counted) == 0 && s.Concurrency == 0 }

// FromPolicy returns the counted limits and concurrency of a policy. A nil policy limits
// nothing.
func FromPolicy(p *config.Policy) Set {
	if p == nil {
		return Set{}
	}
	var s Set
	add := func(name string, k Kind, w Window, max int64) {
		if max > 0 {
			s.Counted = append(s.Counted, Limit{Name: name, Kind: k, Window: w, Max: max})
		}
	}
	micro := func(usd float64) int64 { return int64(math.Round(usd * 1e6)) }
	add("cost_total_usd", Cost, Total, micro(p.CostTotalUSD))
	add("cost_per_month_usd", Cost, Month, micro(p.CostPerMonthUSD))
	add("cost_per_week_usd", Cost, Week, micro(p.CostPerWeekUSD))
	add("cost_per_day_usd", Cost, Day, micro(p.CostPerDayUSD))
	add("tokens_per_day", Tokens, Day, p.TokensPerDay)
	add("requests_per_day", Requests, Day, p.RequestsPerDay)
	add("tokens_per_minute", Tokens, Minute, p.TokensPerMinute)
	add("requests_per_minute", Requests, Minute, p.RequestsPerMinute)
	s.Concurrency = p.Concurrency
	return s
}

// ConcurrencyLimit is the name refusals give the concurrency limit.
const ConcurrencyLimit = "concurrency"

// Refusal says which limit refused a request, where it stands and when it frees up.
type Refusal struct {
	Limit   string
	Kind    Kind
	Max     int64
	Current int64
	// ResetAt is when the window ends (zero for a total limit, which never resets).
	ResetAt time.Time
	// RetryAfter is how long to wait before retrying; 0 when waiting will not help.
	RetryAfter time.Duration
}

// Message is the refusal as a person reads it: the limit, the current value, the reset.
func (r *Refusal) Message() string {
	if r.Limit == ConcurrencyLimit {
		return fmt.Sprintf("concurrency limit reached: %d of %d requests of this key are in flight; retry when one finishes", r.Current, r.Max)
	}
	val := func(v int64) string {
		switch r.Kind {
		case Cost:
			return "$" + strconv.FormatFloat(float64(v)/1e6, 'f', -1, 64)
		case Tokens:
			return strconv.FormatInt(v, 10) + " tokens"
		}
		return strconv.FormatInt(v, 10) + " requests"
	}
	if r.ResetAt.IsZero() {
		return fmt.Sprintf("%s limit reached: %s used of %s; this limit never resets, ask the operator to raise it", r.Limit, val(r.Current), val(r.Max))
	}
	return fmt.Sprintf("%s limit reached: %s used of %s; it resets at %s (in %s)", r.Limit, val(r.Current), val(r.Max),
		r.ResetAt.UTC().Format(time.RFC3339), r.RetryAfter.Round(time.Second))
}

// Options configures a Limiter.
type Options struct {
	Logger hclog.Logger
	// LeaseTTL is how long a concurrency lease lives without a renewal: a sidecar that
	// dies frees its slots within this time. Default 60 s; leases are renewed every third.
	LeaseTTL time.Duration
	// Now is the clock (default time.Now); every window and lease expiry is computed from
	// it, never from Redis's clock.
	Now func() time.Time
	// Context, when set, ends the Limiter: calls after it is done fail and pipelines in
	// flight are cancelled. Close does the same explicitly.
	Context context.Context
	// unbatched sends each script call on its own (benchmarks compare it).
	unbatched bool
}

// Limiter checks and charges limits in Redis. It is safe for concurrent use by many
// requests and by many sidecars sharing one Redis. Script calls of concurrent requests are
// auto-pipelined: whatever is queued while a pipeline is in flight goes in the next one.
type Limiter struct {
	rdb      redis.UniversalClient
	batch    *batcher // nil when unbatched
	keys     store.Schema
	log      hclog.Logger
	leaseTTL time.Duration
	now      func() time.Time
	base     context.Context
	renew    renewer
	windows  [Total + 1]atomic.Pointer[windowBounds]
}

// New returns a Limiter over rdb with the store's key schema.
func New(rdb redis.UniversalClient, keys store.Schema, opts Options) *Limiter {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	l := &Limiter{rdb: rdb, keys: keys, log: opts.Logger.Named("limits"), leaseTTL: opts.LeaseTTL, now: opts.Now, base: opts.Context}
	if !opts.unbatched {
		l.batch = newBatcher(opts.Context, rdb, l.log)
	}
	return l
}

// Close stops the Limiter: later Admits and Finishes fail, leases are no longer renewed, and
// Close returns once every call already queued has been sent. The batcher owns a goroutine
// only while calls are queued, the renewer only while leases are live.
func (l *Limiter) Close() {
	l.renew.close()
	if l.batch != nil {
		l.batch.close()
	}
}

// Stats are totals since the Limiter started, for metrics.
type Stats struct {
	// Calls is how many script calls (admissions, charges, releases) were sent to Redis.
	Calls int64
	// Pipelines is how many pipelines carried them: Calls/Pipelines is the batching factor.
	Pipelines int64
}

// Stats returns the Limiter's totals; they stay zero when it is unbatched.
func (l *Limiter) Stats() Stats {
	if l.batch == nil {
		return Stats{}
	}
	return Stats{Calls: l.batch.calls.Load(), Pipelines: l.batch.pipelines.Load()}
}

// run runs script once, through the batcher unless the Limiter is unbatched.
func (l *Limiter) run(ctx context.Context, c *scriptCall) (*redis.Cmd, error) {
	if l.batch == nil {
		if c.script != nil {
			return c.script.Run(ctx, l.rdb, c.keys, c.args...), nil
		}
		pipe := l.rdb.Pipeline()
		cmds := queue(ctx, pipe, c)
		_, _ = pipe.Exec(ctx)
		return result(ctx, l.rdb, c, cmds), nil
	}
	return l.batch.do(ctx, c)
}

// Load loads the scripts into Redis so the hot path is one EVALSHA (go-redis would also
// fall back to EVAL on NOSCRIPT).
func (l *Limiter) Load(ctx context.Context) error {
	for _, s := range []*redis.Script{admitScript, renewScript} {
		if err := s.Load(ctx, l.rdb).Err(); err != nil {
			return fmt.Errorf("load limit script: %w", err)
		}
	}
	return nil
}

// admitScript checks every limit and, only when all pass, counts the request and takes a
// concurrency lease — atomically, so sidecars sharing Redis never admit more than a limit.
//
// KEYS[1]: concurrency ZSET; KEYS[2..]: counters.
// ARGV[1]: now (ms); ARGV[2]: lease id; ARGV[3]: lease TTL (ms); ARGV[4]: concurrency max
// (0: none); then per counter: max, TTL (ms, 0: none), increment (1 for request counters, 0
// for counters charged at the end).
// Returns {-1} when admitted, else {index, current}: index 0 is concurrency, i >= 1 is
// KEYS[i+1].
var admitScript = redis.NewScript(`
local now = tonumber(ARGV[1])
if #KEYS > 1 then
  local vals = redis.call('MGET', unpack(KEYS, 2))
  for i = 2, #KEYS do
    local base = 4 + (i - 2) * 3
    local max = tonumber(ARGV[base + 1])
    local inc = tonumber(ARGV[base + 3])
    local cur = tonumber(vals[i - 1] or '0')
    if cur + inc > max or (inc == 0 and cur >= max) then
      return {i - 1, cur}
    end
  end
end
local cmax = tonumber(ARGV[4])
if cmax > 0 then
  -- Leases of dead sidecars are pruned only when they could make a difference.
  local n = redis.call('ZCARD', KEYS[1])
  if n >= cmax then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    n = redis.call('ZCARD', KEYS[1])
    if n >= cmax then
      return {0, n}
    end
  end
  local ttl = tonumber(ARGV[3])
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
for i = 2, #KEYS do
  local base = 4 + (i - 2) * 3
  if tonumber(ARGV[base + 3]) > 0 then
    local v = redis.call('INCRBY', KEYS[i], ARGV[base + 3])
    local ttl = tonumber(ARGV[base + 2])
    if v == tonumber(ARGV[base + 3]) and ttl > 0 then
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
  end
end
return {-1}
`)

// renewScript moves a live lease's expiry forward. KEYS[1]: concurrency ZSET. ARGV[1]:
// lease id; ARGV[2]: new expiry (ms); ARGV[3]: TTL (ms).
var renewScript = redis.NewScript(`
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
`)

// counterSlack keeps a window's counter a little past the window's end, so a request
// finishing at the boundary charges a key that still exists for readers.
const counterSlack = time.Minute

// counterKey returns the key and TTL of limit's counter for the window holding now.
func (l *Limiter) counterKey(keyID string, lim Limit, now time.Time) (key string, ttl time.Duration, reset time.Time) {
	w := l.window(lim.Window, now)
	if lim.Window != Total {
		ttl = w.end.Sub(now) + counterSlack
	}
	return l.keys.KeyLimitCounterAt(keyID, lim.Name, w.stamp), ttl, w.end
}

// windowBounds is one window's start, end and formatted start, computed once per window
// rather than once per counter and request.
type windowBounds struct {
	start, end time.Time
	stamp      string
}

// window returns the bounds of w holding now, from a cache that follows the clock.
func (l *Limiter) window(w Window, now time.Time) *windowBounds {
	slot := &l.windows[w]
	if b := slot.Load(); b != nil && !now.Before(b.start) && (w == Total || now.Before(b.end)) {
		return b
	}
	start, end := w.Bounds(now)
	b := &windowBounds{start: start, end: end, stamp: store.LimitWindowStamp(start)}
	slot.Store(b)
	return b
}

// Admit checks every limit of set for the key and, when all pass, counts the request and
// takes a concurrency slot, in one EVALSHA. It returns a Lease to Finish on every exit
// path, or the Refusal of the first limit that binds. An empty set costs no round trip.
func (l *Limiter) Admit(ctx context.Context, keyID string, set Set) (*Lease, *Refusal, error) {
	now := l.now()
	lease := &Lease{l: l, keyID: keyID, set: set}
	if set.Empty() {
		return lease, nil, nil
	}
	keys := make([]string, 1, len(set.Counted)+1)
	keys[0] = l.keys.KeyConcurrency(keyID)
	args := make([]any, 4, 4+3*len(set.Counted))
	args[0] = now.UnixMilli()
	if set.Concurrency > 0 {
		lease.id = newLeaseID()
	}
	args[1] = lease.id
	args[2] = l.leaseTTL.Milliseconds()
	args[3] = set.Concurrency
	resets := make([]time.Time, len(set.Counted))
	for i, lim := range set.Counted {
		k, ttl, reset := l.counterKey(keyID, lim, now)
		keys = append(keys, k)
		inc := 0
		if lim.Kind == Requests {
			inc = 1
		}
		args = append(args, lim.Max, ttl.Milliseconds(), inc)
		resets[i] = reset
	}
	call := &scriptCall{script: admitScript, keys: keys, args: args}
	if lease.id != "" {
		call.onAbandon = func(cmd *redis.Cmd) { l.releaseAbandoned(keyID, lease.id, cmd) }
	}
	cmd, err := l.run(ctx, call)
	var res []int64
	if err == nil {
		res, err = cmd.Int64Slice()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("check limits of key %s: %w", keyID, err)
	}
	if len(res) == 0 || res[0] == -1 {
		if lease.id != "" {
			l.renew.add(l, lease)
		}
		return lease, nil, nil
	}
	if len(res) < 2 {
		return nil, nil, fmt.Errorf("check limits of key %s: unexpected reply %v", keyID, res)
	}
	idx, cur := res[0], res[1]
	if idx == 0 {
		return nil, &Refusal{Limit: ConcurrencyLimit, Max: int64(set.Concurrency), Current: cur, RetryAfter: time.Second}, nil
	}
	if idx < 1 || int(idx) > len(set.Counted) {
		return nil, nil, fmt.Errorf("check limits of key %s: unexpected reply %v", keyID, res)
	}
	lim := set.Counted[idx-1]
	r := &Refusal{Limit: lim.Name, Kind: lim.Kind, Max: lim.Max, Current: cur, ResetAt: resets[idx-1]}
	if !r.ResetAt.IsZero() {
		r.RetryAfter = max(r.ResetAt.Sub(now), time.Second)
	}
	return nil, r, nil
}

// releaseAbandoned frees the concurrency slot an admission took when its caller gave up
// before the result arrived: nobody will Finish that lease. The request stays counted, as it
// would had the caller gone just after admission.
func (l *Limiter) releaseAbandoned(keyID, leaseID string, cmd *redis.Cmd) {
	if res, err := cmd.Int64Slice(); err == nil && len(res) > 0 && res[0] != -1 {
		return // refused: no slot was taken
	}
	// Admitted, or unknown (an error may hide a run that took the slot): ZREM of a lease id
	// that is not there does nothing.
	l.batch.detach(&scriptCall{plain: [][]any{{"ZREM", l.keys.KeyConcurrency(keyID), leaseID}},
		what: "release of an abandoned concurrency lease"})
}

// Usage is what a finished request is charged.
type Usage struct {
	Tokens       int64
	CostMicroUSD int64
}

// Lease is one admitted request. Finish it exactly once, on every exit path; calls after
// the first do nothing.
type Lease struct {
	l     *Limiter
	keyID string
	set   Set
	id    string // concurrency lease id; "" when concurrency is unlimited

	once sync.Once
}

// ID is the concurrency lease id ("" when the key has no concurrency limit).
func (ls *Lease) ID() string { return ls.id }

// Finish charges u to the key's token and cost windows (those holding the time it ends) and
// releases the concurrency slot, with plain commands in the next pipeline. It ignores ctx's
// cancellation (the client may be gone) but not its values; it gives up after five seconds,
// and a lease it could not release expires by itself after the lease TTL.
func (ls *Lease) Finish(ctx context.Context, u Usage) error {
	var err error
	ls.once.Do(func() {
		if ls.id != "" {
			ls.l.renew.remove(ls)
		}
		err = ls.finish(ctx, u)
	})
	return err
}

func (ls *Lease) finish(ctx context.Context, u Usage) error {
	l := ls.l
	now := l.now()
	// Plain commands, not a script: nothing here is checked, only added, and Redis runs a
	// pipeline's commands in order, so the release lands before anything this sidecar
	// queues after it. Each counter expires a little after its window ends, by a TTL computed
	// from the sidecar's clock as every window is.
	var plain [][]any
	if ls.id != "" {
		plain = append(plain, []any{"ZREM", l.keys.KeyConcurrency(ls.keyID), ls.id})
	}
	for _, lim := range ls.set.Counted {
		var amt int64
		switch lim.Kind {
		case Tokens:
			amt = u.Tokens
		case Cost:
			amt = u.CostMicroUSD
		}
		if amt <= 0 {
			continue
		}
		k, ttl, _ := l.counterKey(ls.keyID, lim, now)
		if ttl > 0 {
			// Creates the window's counter with its expiry; a no-op (and nothing written
			// to the AOF or replicas) once it exists. INCRBY keeps the expiry.
			plain = append(plain, []any{"SET", k, 0, "PX", ttl.Milliseconds(), "NX"})
		}
		plain = append(plain, []any{"INCRBY", k, amt})
	}
	if len(plain) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	cmd, err := l.run(ctx, &scriptCall{plain: plain})
	if err == nil {
		err = cmd.Err()
	}
	if err != nil {
		return fmt.Errorf("charge and release key %s: %w", ls.keyID, err)
	}
	return nil
}

// InFlight returns how many concurrency leases of a key are live now.
func (l *Limiter) InFlight(ctx context.Context, keyID string) (int64, error) {
	n, err := l.rdb.ZCount(ctx, l.keys.KeyConcurrency(keyID), strconv.FormatInt(l.now().UnixMilli(), 10), "+inf").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("count leases of key %s: %w", keyID, err)
	}
	return n, nil
}

// Current returns the value of a limit's counter in the window holding now.
func (l *Limiter) Current(ctx context.Context, keyID string, lim Limit) (int64, error) {
	k, _, _ := l.counterKey(keyID, lim, l.now())
	n, err := l.rdb.Get(ctx, k).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read limit %s of key %s: %w", lim.Name, keyID, err)
	}
	return n, nil
}

func newLeaseID() string {
	var b [12]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}
