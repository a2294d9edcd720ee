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
	// UnpricedRequests counts the requests whose model no price matched: their cost is
	// pricing_fallback's, not the model's.
	UnpricedRequests int64
	// EstimatedRequests counts the requests whose output tokens are the relay's estimate
	// (the client left before the upstream's final count), not the upstream's figure.
	EstimatedRequests int64
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
	// before the days an import carries over (it has no day to land on).
	TotalOnly bool
	// NoReport keeps the record out of the report buckets (UsageHour, UsageDay): a backup
	// restores those hashes as they were (RestoreUsageReports) rather than rebuilding them
	// from day totals that no longer know their hour or account.
	NoReport bool
	// Ledger, when set and the ledger is on (Store.SetLedger), adds this request's record
	// to the day's ledger stream in the same write.
	Ledger *LedgerEntry `json:"ledger,omitempty"`
}

// usageCounters names the hash fields of Usage, in a fixed order.
var usageCounters = [...]string{"requests", "input_tokens", "output_tokens", "cache_write_5m", "cache_write_1h", "cache_read", "cost_micro_usd", "unpriced_requests", "estimated_requests"}

func (u Usage) values() [len(usageCounters)]int64 {
	return [...]int64{u.Requests, u.InputTokens, u.OutputTokens, u.CacheWrite5m, u.CacheWrite1h, u.CacheRead, u.CostMicroUSD, u.UnpricedRequests, u.EstimatedRequests}
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

		UnpricedRequests:  u.UnpricedRequests + o.UnpricedRequests,
		EstimatedRequests: u.EstimatedRequests + o.EstimatedRequests,
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
	case "unpriced_requests":
		u.UnpricedRequests = v
	case "estimated_requests":
		u.EstimatedRequests = v
	default:
		return false
	}
	return true
}

// usageBucket is one hash to increment: plain counters (HINCRBY per field), or, for the
// report buckets, packed ones (one field holds every counter; see Schema.UsageHour).
type usageBucket struct {
	expireAt time.Time // zero: no TTL
	fields   map[string]int64
	packed   map[string]*usageValues
	// ledger, for a ledger stream: entries to XADD (values in ledgerFields order), trimmed
	// to maxLen.
	ledger [][]any
	maxLen int64
}

// usageValues are the counters of Usage in usageCounters order.
type usageValues = [len(usageCounters)]int64

// packValues formats counters as a packed report field ("n0,n1,…").
func packValues(v *usageValues) string {
	b := make([]byte, 0, 8*len(v))
	for i, n := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, n, 10)
	}
	return string(b)
}

// ErrUsageRefused means the store will never apply a usage batch as it is: a record holds a
// count out of range, or Redis answered the write with an error that retrying does not
// change (a key of the wrong type, a counter that would overflow). The caller sets the batch
// aside instead of retrying it; other errors are worth a retry.
var ErrUsageRefused = errors.New("usage batch refused")

// MaxUsageValue bounds each count of one usage record (tokens, requests, micro-dollars), so
// no sum of records can overflow a Redis counter: a record above it is refused.
const MaxUsageValue = 1 << 50

// BatchID names a batch of usage records so that writing it again changes nothing.
//
// A writer (a recorder, one per process start) numbers its batches 1, 2, 3, … and writes them
// in that order, each one until it is written or set aside, so the store keeps, per writer
// and hash-tag group, only the highest sequence applied (UsageApplied): a batch at or below it
// was applied before. Bookkeeping grows with writers and keys, never with requests.
//
// Seq 0 names a batch by Writer alone, applied at most once through a marker of its own
// (UsageBatchApplied): spools written by versions before sequences, and re-applied batches.
type BatchID struct {
	Writer string
	Seq    uint64
}

// applyUsageBatch applies the buckets of one hash-tag group once per batch: KEYS[1] is the
// group's bookkeeping key (UsageApplied, or UsageBatchApplied for a named batch), KEYS[2..]
// the hashes. ARGV: the mode ("seq", "once" or "none"), the writer, the sequence, now (unix
// seconds), the bookkeeping TTL in seconds, then per hash: its EXPIREAT (0 = none), its
// number of fields, and field/increment pairs; a negative number of fields means packed
// fields (report buckets): field/"i0,i1,…" pairs added position by position, counters a
// value lacks read as 0 (a packed sum stays exact below 2^53, or the script refuses it); a
// number of fields "L" means a ledger stream: MAXLEN, the number of entries m, the number of
// fields f, the f field names, then m×f values, each entry XADDed with an exact MAXLEN.
//
// In "seq" mode KEYS[1] is a hash of writer → "<last sequence>:<unix seconds applied>"; a
// writer new to the hash first drops the entries of writers silent for longer than the TTL,
// so writers that stopped (restarts) do not pile up while the group stays busy.
var applyUsageBatch = redis.NewScript(`
local mode = ARGV[1]
if mode == 'seq' then
  local writer, seq, now, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local cur = redis.call('HGET', KEYS[1], writer)
  if cur then
    if seq <= tonumber(string.match(cur, '^(%d+)') or '0') then
      return 0
    end
  elseif redis.call('HLEN', KEYS[1]) >= 8 then
    local all = redis.call('HGETALL', KEYS[1])
    for i = 1, #all, 2 do
      local at = tonumber(string.match(all[i + 1], ':(%d+)$')) or 0
      if at < now - ttl then
        redis.call('HDEL', KEYS[1], all[i])
      end
    end
  end
  redis.call('HSET', KEYS[1], writer, ARGV[3] .. ':' .. ARGV[4])
  redis.call('EXPIRE', KEYS[1], ttl)
elseif mode == 'once' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[5]) then
    return 0
  end
elseif mode == 'forever' then
  if not redis.call('SET', KEYS[1], '1', 'NX') then
    return 0
  end
end
local a = 6
for i = 2, #KEYS do
  local exp = tonumber(ARGV[a])
  local n = ARGV[a + 1]
  a = a + 2
  if n == 'L' then
    local maxlen, m, f = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local names = a + 3
    a = names + f
    for _ = 1, m do
      local args = {KEYS[i], 'MAXLEN', maxlen, '*'}
      for k = 0, f - 1 do
        args[#args + 1] = ARGV[names + k]
        args[#args + 1] = ARGV[a + k]
      end
      redis.call('XADD', unpack(args))
      a = a + f
    end
    n = 0
  end
  n = tonumber(n)
  for _ = 1, n do
    redis.call('HINCRBY', KEYS[i], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  for _ = 1, -n do
    local old, out, j = {}, {}, 0
    for x in string.gmatch(redis.call('HGET', KEYS[i], ARGV[a]) or '', '[^,]+') do
      old[#old + 1] = tonumber(x) or 0
    end
    for x in string.gmatch(ARGV[a + 1], '[^,]+') do
      j = j + 1
      local v = (old[j] or 0) + tonumber(x)
      if v > 9007199254740991 then
        return redis.error_reply('ERR packed usage counter above 2^53 in ' .. KEYS[i])
      end
      out[j] = string.format('%.0f', v)
    end
    for k = j + 1, #old do
      out[k] = string.format('%.0f', old[k])
    end
    redis.call('HSET', KEYS[i], ARGV[a], table.concat(out, ','))
    a = a + 2
  end
  if exp > 0 then
    redis.call('EXPIREAT', KEYS[i], exp)
  end
end
return 1
`)

// RecordUsage adds records to the counters with no batch identity: a retry counts again.
// See RecordUsageBatch.
func (s *Store) RecordUsage(ctx context.Context, recs ...UsageRecord) error {
	return s.recordUsage(ctx, nil, recs)
}

// RecordUsageBatch adds records to the per key/model/day, per account/day and per key
// total counters in ONE pipelined round trip, however many records there are. Records are
// summed in memory first so each hash field is incremented once. Daily hashes expire
// UsageRetention after their day.
//
// Writing the same batch again (with the same records) changes nothing: each hash-tag group
// applies a batch at most once (see BatchID), so a caller may retry a batch whose outcome it
// does not know (a timeout after Redis applied it) without counting it twice. A batch the
// store can never apply fails with ErrUsageRefused; when Redis refused it, the groups the
// error does not name may have applied it.
func (s *Store) RecordUsageBatch(ctx context.Context, id BatchID, recs ...UsageRecord) error {
	if id.Writer == "" {
		return fmt.Errorf("record usage: a batch needs a writer: %w", ErrUsageRefused)
	}
	return s.recordUsage(ctx, &id, recs)
}

// usageGroup is the hashes of one hash-tag group.
type usageGroup struct {
	tag     string
	keys    []string
	buckets []*usageBucket
}

// ImportUsage adds usage carried over from another system (or a backup) to the same day and
// total counters the recorder writes. Each key's and account's records must all be in one
// call: a hash-tag group applies an import with a given source once, ever (its marker never
// expires), so running an import again or resuming it counts nothing twice.
func (s *Store) ImportUsage(ctx context.Context, source string, recs ...UsageRecord) error {
	if source == "" {
		return errors.New("import usage: empty source")
	}
	return s.recordUsageAs(ctx, "forever", "import:"+source, 0, recs)
}

func (s *Store) recordUsage(ctx context.Context, id *BatchID, recs []UsageRecord) error {
	mode, writer, seq := "none", "", uint64(0)
	if id != nil {
		mode, writer, seq = "seq", id.Writer, id.Seq
		if id.Seq == 0 {
			mode = "once"
		}
	}
	return s.recordUsageAs(ctx, mode, writer, seq, recs)
}

// recordUsageAs writes recs under one bookkeeping mode of applyUsageBatch: "seq" (a writer's
// numbered batch), "once" (a named batch, its marker kept UsageBatchMarkerTTL), "forever" (an
// import, its marker kept for good) or "none".
func (s *Store) recordUsageAs(ctx context.Context, mode, writer string, seq uint64, recs []UsageRecord) error {
	groups, err := s.usageGroups(recs)
	if err != nil {
		return err
	}
	if len(groups) == 0 {
		return nil
	}
	ttl := strconv.FormatInt(int64(UsageBatchMarkerTTL/time.Second), 10)
	now := strconv.FormatInt(s.now().Unix(), 10)
	keys := make([][]string, len(groups))
	args := make([][]any, len(groups))
	for i, g := range groups {
		marker := s.keys.UsageApplied(g.tag)
		if mode == "once" || mode == "forever" {
			marker = s.keys.UsageBatchApplied(g.tag, writer)
		}
		keys[i] = append([]string{marker}, g.keys...)
		args[i] = groupArgs(g, []any{mode, writer, seq, now, ttl})
	}
	cmds, err := s.applyGroups(ctx, keys, args)
	if err == nil {
		return nil
	}
	// Name the groups Redis refused; any other failure (a connection, a timeout, a
	// replica or a full Redis) is worth a retry.
	var refused []string
	for i, c := range cmds {
		if c != nil && refusedByRedis(c.Err()) {
			refused = append(refused, groups[i].tag+": "+c.Err().Error())
		}
	}
	if len(refused) > 0 && len(refused) == countErrs(cmds) {
		return fmt.Errorf("record usage (%d records): Redis refused %s: %w", len(recs), strings.Join(refused, "; "), ErrUsageRefused)
	}
	return fmt.Errorf("record usage (%d records): %w", len(recs), err)
}

// applyGroups runs applyUsageBatch once per group in one pipeline, by its hash (EVALSHA: the
// ~2 KB script is neither sent nor hashed by Redis again per group and batch). The groups a
// Redis without the script answered NOSCRIPT are sent again with EVAL, which loads it: they
// did nothing, so nothing counts twice.
func (s *Store) applyGroups(ctx context.Context, keys [][]string, args [][]any) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(keys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range keys {
			cmds[i] = applyUsageBatch.EvalSha(ctx, p, keys[i], args[i]...)
		}
		return nil
	})
	var again []int
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return cmds, err
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, i := range again {
			cmds[i] = applyUsageBatch.Eval(ctx, p, keys[i], args[i]...)
		}
		return nil
	})
	for _, c := range cmds {
		if e := c.Err(); e != nil && err == nil {
			err = e
		}
	}
	return cmds, err
}

// groupArgs appends the per-hash arguments of applyUsageBatch for g's hashes to args.
func groupArgs(g *usageGroup, args []any) []any {
	for _, b := range g.buckets {
		exp := int64(0)
		if !b.expireAt.IsZero() {
			exp = b.expireAt.Unix()
		}
		switch {
		case b.ledger != nil:
			args = appendLedgerArgs(append(args, exp), b)
		case b.packed != nil:
			args = append(args, exp, -len(b.packed))
			for f, v := range b.packed {
				args = append(args, f, packValues(v))
			}
		default:
			args = append(args, exp, len(b.fields))
			for f, v := range b.fields {
				args = append(args, f, v)
			}
		}
	}
	return args
}

func countErrs(cmds []*redis.Cmd) int {
	n := 0
	for _, c := range cmds {
		if c != nil && c.Err() != nil {
			n++
		}
	}
	return n
}

// transientRedisErrors are error replies that say something about Redis's state, not about
// the write: it is loading, a replica, out of memory, busy, failing over, or refusing us.
var transientRedisErrors = []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN",
	"BUSY", "OOM", "NOREPLICAS", "MISCONF", "NOAUTH", "WRONGPASS", "NOPERM", "MOVED", "ASK",
	"max number of clients"}

// refusedByRedis reports whether err is Redis refusing the script's writes themselves (a
// wrong type, an overflow), which a retry meets again.
func refusedByRedis(err error) bool {
	var rerr redis.Error
	if err == nil || errors.Is(err, redis.Nil) || !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, code := range transientRedisErrors {
		if strings.Contains(msg, code) {
			return false
		}
	}
	return true
}

// usageGroups validates records and sums them into hashes grouped by hash tag, in the order
// the groups first appear.
func (s *Store) usageGroups(recs []UsageRecord) ([]*usageGroup, error) {
	gb := groupBuilder{byTag: map[string]*usageGroup{}, buckets: map[string]*usageBucket{}}
	hourly, daily := s.UsageRetention()
	for _, r := range recs {
		if err := checkRecord(r); err != nil {
			return nil, err
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
				gb.add(tag, s.keys.KeyUsageDay(r.KeyID, day), expireAt, model+":", r.Usage)
			}
			gb.add(tag, s.keys.KeyUsageTotal(r.KeyID), time.Time{}, "", r.Usage)
		}
		if r.TotalOnly {
			continue
		}
		if r.AccountID != "" {
			gb.add("acct:"+r.AccountID, s.keys.AccountUsageDay(r.AccountID, day), expireAt, "", r.Usage)
		}
		// A report row is a key's usage (on an account, when known): usage of an account
		// alone (an import's account days) is already in its keys' rows and would count twice.
		if r.NoReport || r.KeyID == "" {
			continue
		}
		tag, field := UsageDayTag(day), reportField(r.KeyID, r.AccountID, model)
		hour := at.UTC().Truncate(time.Hour)
		gb.addPacked(tag, s.keys.UsageHour(hour), hour.Add(time.Hour+hourly), field, r.Usage)
		gb.addPacked(tag, s.keys.UsageDay(day), day.Add(24*time.Hour+daily), field, r.Usage)
		if l := s.ledger.Load(); l != nil && r.Ledger != nil {
			b := gb.bucket(tag, s.keys.LedgerDay(day), day.Add(24*time.Hour+l.Retention))
			b.maxLen = l.MaxPerDay
			b.ledger = append(b.ledger, ledgerValues(r, at, model))
		}
	}
	return gb.groups, nil
}

// appendLedgerArgs adds a ledger stream's arguments of applyUsageBatch: "L", MAXLEN, the
// number of entries, the number of fields, the field names, then each entry's values.
func appendLedgerArgs(args []any, b *usageBucket) []any {
	args = append(args, "L", b.maxLen, len(b.ledger), len(ledgerFields))
	for _, f := range ledgerFields {
		args = append(args, f)
	}
	for _, e := range b.ledger {
		args = append(args, e...)
	}
	return args
}

// checkRecord refuses a record holding a count out of range.
func checkRecord(r UsageRecord) error {
	for i, v := range r.Usage.values() {
		if v < 0 {
			return fmt.Errorf("record usage: negative %s %d for key %q: %w", usageCounters[i], v, r.KeyID, ErrUsageRefused)
		}
		if v > MaxUsageValue {
			return fmt.Errorf("record usage: %s %d for key %q is above %d: %w", usageCounters[i], v, r.KeyID, int64(MaxUsageValue), ErrUsageRefused)
		}
	}
	return nil
}

// groupBuilder sums records into hashes grouped by hash tag, in the order groups appear.
type groupBuilder struct {
	groups  []*usageGroup
	byTag   map[string]*usageGroup
	buckets map[string]*usageBucket
}

func (gb *groupBuilder) bucket(tag, key string, expireAt time.Time) *usageBucket {
	b := gb.buckets[key]
	if b == nil {
		b = &usageBucket{expireAt: expireAt}
		gb.buckets[key] = b
		g := gb.byTag[tag]
		if g == nil {
			g = &usageGroup{tag: tag}
			gb.byTag[tag] = g
			gb.groups = append(gb.groups, g)
		}
		g.keys = append(g.keys, key)
		g.buckets = append(g.buckets, b)
	}
	return b
}

// add sums u into plain counter fields named fieldPrefix + counter.
func (gb *groupBuilder) add(tag, key string, expireAt time.Time, fieldPrefix string, u Usage) {
	b := gb.bucket(tag, key, expireAt)
	if b.fields == nil {
		b.fields = map[string]int64{}
	}
	for i, v := range u.values() {
		if v != 0 {
			b.fields[fieldPrefix+usageCounters[i]] += v
		}
	}
}

// addPacked sums u into one packed report field.
func (gb *groupBuilder) addPacked(tag, key string, expireAt time.Time, field string, u Usage) {
	b := gb.bucket(tag, key, expireAt)
	if b.packed == nil {
		b.packed = map[string]*usageValues{}
	}
	v := b.packed[field]
	if v == nil {
		v = new(usageValues)
		b.packed[field] = v
	}
	for i, n := range u.values() {
		v[i] += n
	}
}

// KeyUsage returns model → usage of a relay key on the UTC day containing day (nil if none).
func (s *Store) KeyUsage(ctx context.Context, keyID string, day time.Time) (map[string]Usage, error) {
	h, err := s.rdb.HGetAll(ctx, s.keys.KeyUsageDay(keyID, day)).Result()
	if err != nil {
		return nil, fmt.Errorf("key %s usage: %w", keyID, err)
	}
	out, err := modelUsage(h)
	if err != nil {
		return nil, fmt.Errorf("key %s usage: %w", keyID, err)
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
