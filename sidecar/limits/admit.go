package limits

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// plainAdmitScript is admitScript for the common set: counters checked as charged and a
// concurrency cap, with no queue and no reserve-mode limit. It decides exactly as admitScript
// does for such a set (same checks, same writes, same replies) but takes only the keys and
// arguments that set needs and runs none of the queue and reservation code: a third less
// Redis time per call (BenchmarkAdmit).
//
// KEYS[1]: concurrency ZSET; KEYS[2..]: counters. ARGV[1]: now (ms); ARGV[2]: concurrency
// lease id; ARGV[3]: now + lease TTL (ms), the lease's score; ARGV[4]: lease TTL (ms);
// ARGV[5]: concurrency max (0: none); then per counter: max, TTL (ms, 0: none), increment (1
// for request counters, else 0).
// Returns {-1} when admitted, else {index, current} (index 0 is concurrency, i >= 1 is
// KEYS[i+1]).
var plainAdmitScript = redis.NewScript(`
if #KEYS > 1 then
  local vals = redis.call('MGET', unpack(KEYS, 2))
  for i = 2, #KEYS do
    local b = 6 + (i - 2) * 3
    local max, inc = tonumber(ARGV[b]), tonumber(ARGV[b + 2])
    local cur = tonumber(vals[i - 1] or '0')
    if cur + inc > max or (inc == 0 and cur >= max) then
      return {i - 1, cur}
    end
  end
end
local cmax = tonumber(ARGV[5])
if cmax > 0 then
  -- Leases of dead sidecars are pruned only when they could make a difference.
  local n = redis.call('ZCARD', KEYS[1])
  if n >= cmax then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
    n = redis.call('ZCARD', KEYS[1])
    if n >= cmax then
      return {0, n}
    end
  end
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
  -- The set's expiry moves only when less than a lease TTL is left (see admitScript's keep).
  local ttl = tonumber(ARGV[4])
  if redis.call('PTTL', KEYS[1]) < ttl then
    redis.call('PEXPIRE', KEYS[1], ttl + math.floor(ttl / 4))
  end
end
for i = 2, #KEYS do
  local b = 6 + (i - 2) * 3
  if ARGV[b + 2] ~= '0' then
    local inc = tonumber(ARGV[b + 2])
    if redis.call('INCRBY', KEYS[i], inc) == inc and ARGV[b + 1] ~= '0' then
      redis.call('PEXPIRE', KEYS[i], ARGV[b + 1])
    end
  end
end
return {-1}
`)

// plainAdmitCall builds plainAdmitScript's call for a set that neither queues nor reserves;
// the lease holds a concurrency slot when the set has a cap.
func (l *Limiter) plainAdmitCall(keyID string, set Set, now time.Time, lease *Lease) (*scriptCall, []time.Time) {
	if lease.id == "" && set.Concurrency > 0 {
		lease.id, lease.conc = newLeaseID(), true
	}
	keys := make([]string, 1, len(set.Counted)+1)
	keys[0] = l.keys.KeyConcurrency(keyID)
	ttl := l.leaseTTL.Milliseconds()
	args := make([]any, 5, 5+3*len(set.Counted))
	args[0], args[1], args[2], args[3], args[4] = now.UnixMilli(), lease.concID(), now.UnixMilli()+ttl, ttl, set.Concurrency
	resets := make([]time.Time, len(set.Counted))
	for i, lim := range set.Counted {
		k, cttl, reset := l.counterKey(keyID, set.Conversation, lim, now)
		keys = append(keys, k)
		inc := 0
		if lim.Kind == Requests {
			inc = 1
		}
		args = append(args, lim.Max, cttl.Milliseconds(), inc)
		resets[i] = reset
	}
	return &scriptCall{script: plainAdmitScript, keys: keys, args: args}, resets
}
