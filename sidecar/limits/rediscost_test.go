package limits

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/store"
)

// The Redis cost of one request's limits, measured on Redis's side: what the admission and
// the charge and release cost the redis-server process, before (legacyAdmitScript and the
// charge as it was: SET … NX PX before each INCRBY, the lease set's PEXPIRE on every
// admission) and now, through the same batcher, in the same run.

// legacyAdmitScript is the admission script as it was before the Redis-cost work (issue 19),
// kept only as the benchmark's baseline. Its ARGV lack ARGV[12] (the lease expiry).
var legacyAdmitScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local held = {0, 0}
local need = {tonumber(ARGV[6]), tonumber(ARGV[7])}
local swept = false
local ticket = ARGV[8]
local polling = tonumber(ARGV[11]) > 0
local function leave()
  redis.call('ZREM', KEYS[4], ticket)
  redis.call('ZREM', KEYS[5], ticket)
end
local function readHeld()
  local v = redis.call('HMGET', KEYS[3], 't', 'c')
  held[1] = math.max(tonumber(v[1]) or 0, 0)
  held[2] = math.max(tonumber(v[2]) or 0, 0)
end
-- Reservations of dead sidecars are swept only when they could make a difference: when a
-- reserve-mode limit would refuse.
local function sweep()
  swept = true
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 256)
  if #dead == 0 then
    if redis.call('EXISTS', KEYS[2]) == 1 then
      return false
    end
    -- Sums without reservations (they expired apart): nothing is held.
    redis.call('DEL', KEYS[3])
    held[1], held[2] = 0, 0
    return true
  end
  local dt, dc = 0, 0
  for _, m in ipairs(dead) do
    local t, c = string.match(m, ':(%d+):(%d+)$')
    dt = dt + (tonumber(t) or 0)
    dc = dc + (tonumber(c) or 0)
    redis.call('ZREM', KEYS[2], m)
  end
  if redis.call('ZCARD', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[3])
  else
    redis.call('HINCRBY', KEYS[3], 't', -dt)
    redis.call('HINCRBY', KEYS[3], 'c', -dc)
  end
  readHeld()
  return true
end
if ARGV[5] ~= '' then
  readHeld()
end
if #KEYS > 6 then
  local vals = redis.call('MGET', unpack(KEYS, 7))
  for i = 7, #KEYS do
    local base = 12 + (i - 7) * 4
    local max = tonumber(ARGV[base])
    local inc = tonumber(ARGV[base + 2])
    local kind = tonumber(ARGV[base + 3])
    local cur = tonumber(vals[i - 6] or '0')
    if kind > 0 then
      local over = cur + held[kind] + need[kind] > max
      if over and held[kind] > 0 and not swept and sweep() then
        over = cur + held[kind] + need[kind] > max
      end
      if over then
        if polling then leave() end
        return {i - 6, cur, held[kind], need[kind]}
      end
    elseif cur + inc > max or (inc == 0 and cur >= max) then
      if polling then leave() end
      return {i - 6, cur}
    end
  end
end
local ttl = tonumber(ARGV[3])
local cmax = tonumber(ARGV[4])
if cmax > 0 then
  -- Waiters ahead: the whole queue for a newcomer, those before its ticket for a waiter.
  -- Tickets of dead sidecars are swept first; an empty queue costs one ZCARD.
  local ahead, inq = 0, false
  if ticket ~= '' and redis.call('ZCARD', KEYS[4]) > 0 then
    local dead = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 256)
    for _, m in ipairs(dead) do
      redis.call('ZREM', KEYS[4], m)
      redis.call('ZREM', KEYS[5], m)
    end
    local rank = redis.call('ZRANK', KEYS[4], ticket)
    if rank then
      ahead, inq = rank, true
    else
      ahead = redis.call('ZCARD', KEYS[4])
    end
  end
  -- Leases of dead sidecars are pruned only when they could make a difference.
  local n = redis.call('ZCARD', KEYS[1])
  if n + ahead >= cmax then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    n = redis.call('ZCARD', KEYS[1])
  end
  if n + ahead >= cmax then
    if ticket == '' then
      return {0, n}
    end
    local tttl = tonumber(ARGV[10])
    local seq = tonumber(ARGV[11])
    if not inq then
      local q = redis.call('ZCARD', KEYS[4])
      local qmax = tonumber(ARGV[9])
      if qmax > 0 and q >= qmax then
        return {0, n, q}
      end
      if seq == 0 then
        seq = redis.call('INCR', KEYS[6])
      end
      redis.call('ZADD', KEYS[4], seq, ticket)
    end
    redis.call('ZADD', KEYS[5], now + tttl, ticket)
    redis.call('PEXPIRE', KEYS[4], tttl)
    redis.call('PEXPIRE', KEYS[5], tttl)
    redis.call('PEXPIRE', KEYS[6], tttl)
    return {-2, seq, ahead, n}
  end
  if inq then
    leave()
  end
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if ARGV[5] ~= '' and (need[1] > 0 or need[2] > 0) then
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[5])
  redis.call('HINCRBY', KEYS[3], 't', need[1])
  redis.call('HINCRBY', KEYS[3], 'c', need[2])
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
for i = 7, #KEYS do
  local base = 12 + (i - 7) * 4
  if tonumber(ARGV[base + 2]) > 0 then
    local v = redis.call('INCRBY', KEYS[i], ARGV[base + 2])
    local cttl = tonumber(ARGV[base + 1])
    if v == tonumber(ARGV[base + 2]) and cttl > 0 then
      redis.call('PEXPIRE', KEYS[i], cttl)
    end
  end
end
return {-1}
`)

// redisCounters are the totals of a redis-server that the cost per request is read from.
type redisCounters struct {
	cpu      time.Duration // used_cpu_sys + used_cpu_user
	commands int64         // total_commands_processed (a script's own commands included)
	reads    int64         // total_reads_processed: one per read event, ~ one per round trip
	evalUsec int64         // cmdstat_evalsha usec
	evalN    int64         // cmdstat_evalsha calls
}

// readCounters reads the counters from INFO.
func readCounters(ctx context.Context, rdb *redis.Client) (redisCounters, error) {
	s, err := rdb.Info(ctx, "cpu", "stats", "commandstats").Result()
	if err != nil {
		return redisCounters{}, fmt.Errorf("info: %w", err)
	}
	var c redisCounters
	var cpu float64
	for _, line := range strings.Split(s, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "used_cpu_sys", "used_cpu_user":
			f, _ := strconv.ParseFloat(v, 64)
			cpu += f
		case "total_commands_processed":
			c.commands, _ = strconv.ParseInt(v, 10, 64)
		case "total_reads_processed":
			c.reads, _ = strconv.ParseInt(v, 10, 64)
		case "cmdstat_evalsha":
			for _, f := range strings.Split(v, ",") {
				name, n, _ := strings.Cut(f, "=")
				switch name {
				case "calls":
					c.evalN, _ = strconv.ParseInt(n, 10, 64)
				case "usec":
					c.evalUsec, _ = strconv.ParseInt(n, 10, 64)
				}
			}
		}
	}
	c.cpu = time.Duration(cpu * float64(time.Second))
	return c, nil
}

// requestCost is what one request's limits cost Redis, on average over a round.
type requestCost struct {
	cpu              time.Duration
	commands, reads  float64
	admitUsecPerCall float64
}

func (c redisCounters) per(before redisCounters, n int) requestCost {
	r := requestCost{
		cpu:      (c.cpu - before.cpu) / time.Duration(n),
		commands: float64(c.commands-before.commands-1) / float64(n), // less the INFO itself
		reads:    float64(c.reads-before.reads-1) / float64(n),
	}
	if calls := c.evalN - before.evalN; calls > 0 {
		r.admitUsecPerCall = float64(c.evalUsec-before.evalUsec) / float64(calls)
	}
	return r
}

// legacyAdmit runs the admission as it was: the legacy script, the same keys and arguments
// but the lease expiry.
func (l *Limiter) legacyAdmit(ctx context.Context, keyID string, set Set) (*Lease, error) {
	lease := &Lease{l: l, keyID: keyID, set: set}
	call, _ := l.fullAdmitCall(keyID, set, Usage{}, l.now(), lease, 0)
	call.script = legacyAdmitScript
	call.args = append(call.args[:11:11], call.args[12:]...)
	cmd, err := l.run(ctx, call)
	if err == nil {
		err = cmd.Err()
	}
	return lease, err
}

// legacyFinish charges u and releases the lease as Finish did: ZREM, then SET … NX PX and
// INCRBY per counter.
func (ls *Lease) legacyFinish(ctx context.Context, u Usage) error {
	l := ls.l
	var plain [][]any
	if ls.conc {
		plain = append(plain, []any{"ZREM", l.keys.KeyConcurrency(ls.keyID), ls.id})
	}
	ls.charges(u, l.now(), func(k string, ttl time.Duration, amt int64) {
		if ttl > 0 {
			plain = append(plain, []any{"SET", k, 0, "PX", ttl.Milliseconds(), "NX"})
		}
		plain = append(plain, []any{"INCRBY", k, amt})
	})
	cmd, err := l.run(ctx, &scriptCall{plain: plain})
	if err == nil {
		err = cmd.Err()
	}
	return err
}

// benchSet is the limits of make bench's policy: requests per minute, tokens and cost per
// day (charged at the end) and a concurrency cap, none of them reached.
func benchSet() Set {
	return FromPolicy(&config.Policy{RequestsPerMinute: 1e9, TokensPerDay: 1e12, CostPerDayUSD: 1e9, Concurrency: 1e6})
}

// BenchmarkRedisCostPerRequest measures, on a redis-server of its own with AOF on (as
// production runs it), what one request's admission and charge cost Redis: process CPU,
// commands, read events (round trips) and the admission script's commandstats time per
// call, before this change (legacy) and now, with one caller at a time (c=1) and 32 at once
// (c=32), alternated over five rounds and keeping each one's cheapest round; and two PINGs
// one after the other, the floor of a request's two round trips at c=1.
func BenchmarkRedisCostPerRequest(b *testing.B) {
	srv := testredis.StartServer(b, "--appendonly", "yes", "--appendfsync", "everysec")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64})
	defer rdb.Close()
	ctx := context.Background()
	l := New(rdb, store.NewSchema("cost:"), Options{LeaseTTL: time.Minute})
	defer l.Close()
	if err := l.Load(ctx); err != nil {
		b.Fatal(err)
	}
	if err := legacyAdmitScript.Load(ctx, rdb).Err(); err != nil {
		b.Fatal(err)
	}
	set := benchSet()
	u := Usage{Tokens: 30, CostMicroUSD: 150}
	now := func(ctx context.Context, key string) error {
		lease, ref, err := l.Admit(ctx, key, set)
		if err != nil || ref != nil {
			return fmt.Errorf("admit: %v %v", ref, err)
		}
		return lease.Finish(ctx, u)
	}
	legacy := func(ctx context.Context, key string) error {
		lease, err := l.legacyAdmit(ctx, key, set)
		if err != nil {
			return err
		}
		return lease.legacyFinish(ctx, u)
	}
	// Two PINGs, one caller at a time, are the floor of two round trips per request.
	pings := func(ctx context.Context, _ string) error {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return err
		}
		return rdb.Ping(ctx).Err()
	}
	costs := map[string]requestCost{}
	for b.Loop() {
		for range 5 {
			if c, err := measureCost(ctx, rdb, 1, 2000, pings); err != nil {
				b.Fatal(err)
			} else if old, ok := costs["pings"]; !ok || c.cpu < old.cpu {
				costs["pings"] = c
			}
			for _, conc := range []int{1, 32} {
				for name, one := range map[string]func(context.Context, string) error{"legacy": legacy, "now": now} {
					c, err := measureCost(ctx, rdb, conc, 2000, one)
					if err != nil {
						b.Fatal(err)
					}
					k := fmt.Sprintf("%s-c%d", name, conc)
					if old, ok := costs[k]; !ok || c.cpu < old.cpu {
						costs[k] = c
					}
				}
			}
		}
	}
	b.ReportMetric(float64(costs["pings"].cpu.Nanoseconds())/1e3, "two-pings-redis-us-c1")
	for _, conc := range []string{"c1", "c32"} {
		old, cur := costs["legacy-"+conc], costs["now-"+conc]
		b.ReportMetric(float64(old.cpu.Nanoseconds())/1e3, "legacy-redis-us/req-"+conc)
		b.ReportMetric(float64(cur.cpu.Nanoseconds())/1e3, "redis-us/req-"+conc)
		b.ReportMetric(float64(cur.cpu)/float64(old.cpu), "redis-cpu-ratio-"+conc)
		b.ReportMetric(old.commands, "legacy-cmds/req-"+conc)
		b.ReportMetric(cur.commands, "cmds/req-"+conc)
		b.ReportMetric(old.reads, "legacy-reads/req-"+conc)
		b.ReportMetric(cur.reads, "reads/req-"+conc)
		b.ReportMetric(old.admitUsecPerCall, "legacy-admit-usec/call-"+conc)
		b.ReportMetric(cur.admitUsecPerCall, "admit-usec/call-"+conc)
	}
}

// measureCost runs n requests' limits with conc callers (each its own key, as concurrent
// requests of different keys) and returns their cost per request on Redis's side.
func measureCost(ctx context.Context, rdb *redis.Client, conc, n int, one func(context.Context, string) error) (requestCost, error) {
	before, err := readCounters(ctx, rdb)
	if err != nil {
		return requestCost{}, err
	}
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "bench" + strconv.Itoa(w%8)
			for range n / conc {
				if err := one(ctx, key); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return requestCost{}, err
	}
	after, err := readCounters(ctx, rdb)
	if err != nil {
		return requestCost{}, err
	}
	return after.per(before, n/conc*conc), nil
}
