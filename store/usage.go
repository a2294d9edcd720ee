package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Usage counts requests, tokens and cost.
type Usage struct {
	Requests     int64
	InputTokens  int64
	OutputTokens int64
	CacheWrite5m int64
	CacheWrite1h int64
	CacheRead    int64
	// CostMicroUSD is the cost in millionths of a US dollar.
	CostMicroUSD int64
}

// UsageRecord is the usage of one upstream call (or several) to add to the counters.
type UsageRecord struct {
	KeyID     string
	AccountID string
	// Model is the model id the usage is counted under ("unknown" if empty).
	Model string
	// At picks the UTC day; the zero time means now.
	At    time.Time
	Usage Usage
	// TotalOnly counts the usage in the key's all-time total only, not in a day: usage from
	// before the daily history an import carries over.
	TotalOnly bool
}

// usageCounters names the hash fields of Usage, in a fixed order.
var usageCounters = [...]string{"requests", "input_tokens", "output_tokens", "cache_write_5m", "cache_write_1h", "cache_read", "cost_micro_usd"}

func (u Usage) values() [len(usageCounters)]int64 {
	return [...]int64{u.Requests, u.InputTokens, u.OutputTokens, u.CacheWrite5m, u.CacheWrite1h, u.CacheRead, u.CostMicroUSD}
}

// Add returns the sum of u and o.
func (u Usage) Add(o Usage) Usage {
	return Usage{
		Requests:     u.Requests + o.Requests,
		InputTokens:  u.InputTokens + o.InputTokens,
		OutputTokens: u.OutputTokens + o.OutputTokens,
		CacheWrite5m: u.CacheWrite5m + o.CacheWrite5m,
		CacheWrite1h: u.CacheWrite1h + o.CacheWrite1h,
		CacheRead:    u.CacheRead + o.CacheRead,
		CostMicroUSD: u.CostMicroUSD + o.CostMicroUSD,
	}
}

// set stores value v into the counter named name; it reports false for an unknown name.
func (u *Usage) set(name string, v int64) bool {
	switch name {
	case "requests":
		u.Requests = v
	case "input_tokens":
		u.InputTokens = v
	case "output_tokens":
		u.OutputTokens = v
	case "cache_write_5m":
		u.CacheWrite5m = v
	case "cache_write_1h":
		u.CacheWrite1h = v
	case "cache_read":
		u.CacheRead = v
	case "cost_micro_usd":
		u.CostMicroUSD = v
	default:
		return false
	}
	return true
}

// usageBucket is one hash to increment.
type usageBucket struct {
	expireAt time.Time // zero: no TTL
	fields   map[string]int64
}

// applyUsageBatch applies the buckets of one hash-tag group once per batch id: KEYS[1] is
// the group's applied-marker, KEYS[2..] the hashes; ARGV[1] the marker TTL in seconds (0:
// the marker never expires), then
// per hash: its EXPIREAT (0 = none), its number of fields, and field/increment pairs.
var applyUsageBatch = redis.NewScript(`
if ARGV[1] == '0' then
  if not redis.call('SET', KEYS[1], '1', 'NX') then
    return 0
  end
elseif not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
local a = 2
for i = 2, #KEYS do
  local exp = tonumber(ARGV[a])
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    redis.call('HINCRBY', KEYS[i], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  if exp > 0 then
    redis.call('EXPIREAT', KEYS[i], exp)
  end
end
return 1
`)

// RecordUsage records usage as a new batch; see RecordUsageBatch.
func (s *Store) RecordUsage(ctx context.Context, recs ...UsageRecord) error {
	id, err := newID()
	if err != nil {
		return err
	}
	return s.RecordUsageBatch(ctx, id, recs...)
}

// RecordUsageBatch adds records to the per key/model/day, per account/day and per key
// total counters in ONE pipelined round trip, however many records there are. Records are
// summed in memory first so each hash field is incremented once. Daily hashes expire
// UsageRetention after their day.
//
// Writing the same batch id again (with the same records) changes nothing: each hash-tag
// group applies a batch at most once, so a caller may retry a batch whose outcome it does
// not know (a timeout after Redis applied it) without counting it twice.
func (s *Store) RecordUsageBatch(ctx context.Context, batchID string, recs ...UsageRecord) error {
	return s.recordUsage(ctx, batchID, UsageBatchMarkerTTL, recs)
}

// ImportUsage adds usage carried over from another system (or a backup) to the same day and
// total counters the recorder writes. Each key's and account's records must all be in one
// call: a hash-tag group applies an import with a given source once, ever (its marker never
// expires), so running an import again or resuming it counts nothing twice.
func (s *Store) ImportUsage(ctx context.Context, source string, recs ...UsageRecord) error {
	if source == "" {
		return errors.New("import usage: empty source")
	}
	return s.recordUsage(ctx, "import:"+source, 0, recs)
}

func (s *Store) recordUsage(ctx context.Context, batchID string, markerTTL time.Duration, recs []UsageRecord) error {
	type group struct {
		keys    []string
		buckets []*usageBucket
	}
	groups := map[string]*group{} // hash tag → its hashes
	buckets := map[string]*usageBucket{}
	add := func(tag, key string, expireAt time.Time, fieldPrefix string, u Usage) {
		b := buckets[key]
		if b == nil {
			b = &usageBucket{expireAt: expireAt, fields: map[string]int64{}}
			buckets[key] = b
			g := groups[tag]
			if g == nil {
				g = &group{}
				groups[tag] = g
			}
			g.keys = append(g.keys, key)
			g.buckets = append(g.buckets, b)
		}
		for i, v := range u.values() {
			if v != 0 {
				b.fields[fieldPrefix+usageCounters[i]] += v
			}
		}
	}
	for _, r := range recs {
		for i, v := range r.Usage.values() {
			if v < 0 {
				return fmt.Errorf("record usage: negative %s %d for key %q", usageCounters[i], v, r.KeyID)
			}
		}
		at := r.At
		if at.IsZero() {
			at = s.now()
		}
		day := at.UTC().Truncate(24 * time.Hour)
		expireAt := day.Add(24*time.Hour + UsageRetention)
		model := r.Model
		if model == "" {
			model = "unknown"
		}
		if r.KeyID != "" {
			tag := "key:" + r.KeyID
			if !r.TotalOnly {
				add(tag, s.keys.KeyUsageDay(r.KeyID, day), expireAt, model+":", r.Usage)
			}
			add(tag, s.keys.KeyUsageTotal(r.KeyID), time.Time{}, "", r.Usage)
		}
		if r.AccountID != "" && !r.TotalOnly {
			add("acct:"+r.AccountID, s.keys.AccountUsageDay(r.AccountID, day), expireAt, "", r.Usage)
		}
	}
	if len(groups) == 0 {
		return nil
	}
	ttl := strconv.FormatInt(int64(markerTTL/time.Second), 10)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for tag, g := range groups {
			keys := append([]string{s.keys.UsageBatchApplied(tag, batchID)}, g.keys...)
			args := []any{ttl}
			for _, b := range g.buckets {
				exp := int64(0)
				if !b.expireAt.IsZero() {
					exp = b.expireAt.Unix()
				}
				args = append(args, exp, len(b.fields))
				for f, v := range b.fields {
					args = append(args, f, v)
				}
			}
			// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT, and Redis
			// caches the compiled script by its hash anyway.
			applyUsageBatch.Eval(ctx, p, keys, args...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record usage (%d records): %w", len(recs), err)
	}
	return nil
}

// KeyUsage returns model → usage of a relay key on the UTC day containing day (nil if none).
func (s *Store) KeyUsage(ctx context.Context, keyID string, day time.Time) (map[string]Usage, error) {
	h, err := s.rdb.HGetAll(ctx, s.keys.KeyUsageDay(keyID, day)).Result()
	if err != nil {
		return nil, fmt.Errorf("key %s usage: %w", keyID, err)
	}
	var out map[string]Usage
	for field, val := range h {
		i := strings.LastIndexByte(field, ':')
		if i < 0 {
			continue
		}
		model, counter := field[:i], field[i+1:]
		v, err := parseCounter(field, val)
		if err != nil {
			return nil, fmt.Errorf("key %s usage: %w", keyID, err)
		}
		if out == nil {
			out = map[string]Usage{}
		}
		u := out[model]
		if u.set(counter, v) {
			out[model] = u
		}
	}
	return out, nil
}

// KeyTotals returns a relay key's all-time usage.
func (s *Store) KeyTotals(ctx context.Context, keyID string) (Usage, error) {
	u, err := s.usageHash(ctx, s.keys.KeyUsageTotal(keyID))
	if err != nil {
		return Usage{}, fmt.Errorf("key %s totals: %w", keyID, err)
	}
	return u, nil
}

// AccountUsage returns an upstream account's usage on the UTC day containing day.
func (s *Store) AccountUsage(ctx context.Context, accountID string, day time.Time) (Usage, error) {
	u, err := s.usageHash(ctx, s.keys.AccountUsageDay(accountID, day))
	if err != nil {
		return Usage{}, fmt.Errorf("account %s usage: %w", accountID, err)
	}
	return u, nil
}

func (s *Store) usageHash(ctx context.Context, key string) (Usage, error) {
	h, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	for field, val := range h {
		v, err := parseCounter(field, val)
		if err != nil {
			return Usage{}, err
		}
		u.set(field, v)
	}
	return u, nil
}

func parseCounter(field, val string) (int64, error) {
	v, err := strconv.ParseInt(val, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("counter %s=%q: %w", field, val, err)
	}
	return v, nil
}

// SeedKeyLimitCounter starts a key's counter of limit in the window beginning at windowStart
// (the zero time for a total) at value, unless the counter exists: an import carries over
// what a key already spent against a limit that never resets. It reports whether it set it.
func (s *Store) SeedKeyLimitCounter(ctx context.Context, keyID, limit string, windowStart time.Time, value int64) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.keys.KeyLimitCounter(keyID, limit, windowStart), value, 0).Result()
	if err != nil {
		return false, fmt.Errorf("seed %s counter of key %s: %w", limit, keyID, err)
	}
	return ok, nil
}
