package limits

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
)

// Reservations make a token or cost limit in reserve mode hold exactly, across sidecars:
//
//   - admitScript reserves the request's worst case (WorstCase) in the same script that
//     checks the limits: a reserve-mode limit admits only when what is charged, what the
//     requests in flight reserved and this request's worst case all fit under its maximum;
//   - the reservation is a member of the key's KeyReservations ZSET, scored by a deadline
//     that the lease renewer moves forward while the request runs (as for concurrency
//     leases); KeyReserved holds the sums, so a check reads two numbers, not every member;
//   - Finish settles it (settleScript): charges the reported usage and releases the
//     reservation, atomically, so no admission sees neither;
//   - a dead sidecar renews nothing: its reservations pass their deadline and the next
//     admission of the key sweeps them (and subtracts them from the sums); nothing is
//     charged for them, since nobody knows what they cost.

// admitScript checks every limit and, only when all pass, counts the request, takes a
// concurrency lease and records a reservation — atomically, so sidecars sharing Redis never
// admit more than a limit allows.
//
// With a queue (queue.go), a request that finds no free slot — or waiters ahead of it that
// the free slots are for — takes a ticket in the key's queue instead of a refusal, and polls
// with the same script until its ticket is among the first (max − in flight) waiters.
//
// KEYS[1]: concurrency ZSET; KEYS[2]: reservations ZSET; KEYS[3]: reserved sums HASH;
// KEYS[4]: queue ZSET; KEYS[5]: queue deadlines ZSET; KEYS[6]: queue arrival counter;
// KEYS[7..]: counters.
// ARGV[1]: now (ms); ARGV[2]: concurrency lease id ("" when none is taken); ARGV[3]: lease
// TTL (ms); ARGV[4]: concurrency max (0: none); ARGV[5]: reservation member ("" when the set
// reserves nothing); ARGV[6], ARGV[7]: tokens and micro-USD to reserve; ARGV[8]: queue ticket
// ("" when the set has no queue); ARGV[9]: queue max (0: unbounded); ARGV[10]: ticket TTL
// (ms); ARGV[11]: the ticket's arrival number (0 for a request not yet queued); ARGV[12]:
// now + lease TTL (ms), the expiry a lease and a reservation are scored with; then per
// counter: max, TTL (ms, 0: none), increment (1 for request counters, else 0), kind (0:
// checked as charged, 1: reserve-mode tokens, 2: reserve-mode cost).
// Returns {-1} when admitted; {-2, arrival number, waiters ahead, in flight} when queued (or
// still waiting); else {index, current} (index 0 is concurrency, i >= 1 is KEYS[i+6]), with
// {…, reserved, need} added for a reserve-mode limit and {0, current, waiting} for a full
// queue. A refused waiter leaves the queue.
var admitScript = redis.NewScript(`
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
-- keep moves key's expiry to ttl plus a quarter from now, only when less than ttl is left:
-- the key outlives every member scored up to now + ttl, while most calls write no expiry
-- (each one written is a command Redis propagates to the AOF and replicas). peer, when
-- given, gets the same expiry, so the two keys expire together.
local function keep(key, ttl, peer)
  if redis.call('PTTL', key) < ttl or (peer and redis.call('PTTL', peer) < ttl) then
    local e = ttl + math.floor(ttl / 4)
    redis.call('PEXPIRE', key, e)
    if peer then
      redis.call('PEXPIRE', peer, e)
    end
  end
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
    local base = 13 + (i - 7) * 4
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
    keep(KEYS[4], tttl, KEYS[5])
    keep(KEYS[6], tttl)
    return {-2, seq, ahead, n}
  end
  if inq then
    leave()
  end
  redis.call('ZADD', KEYS[1], ARGV[12], ARGV[2])
  keep(KEYS[1], ttl)
end
if ARGV[5] ~= '' and (need[1] > 0 or need[2] > 0) then
  redis.call('ZADD', KEYS[2], ARGV[12], ARGV[5])
  redis.call('HINCRBY', KEYS[3], 't', need[1])
  redis.call('HINCRBY', KEYS[3], 'c', need[2])
  keep(KEYS[2], ttl, KEYS[3])
end
for i = 7, #KEYS do
  local base = 13 + (i - 7) * 4
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

// settleScript ends a request that holds a reservation: releases its concurrency slot,
// charges its usage and releases the reservation, in one step so that no admission sees the
// usage neither reserved nor charged. A reservation the sweep already removed (the request
// outlived its deadline unrenewed) is not subtracted twice.
//
// KEYS[1]: concurrency ZSET; KEYS[2]: reservations ZSET; KEYS[3]: reserved sums HASH;
// KEYS[4..]: counters to charge. ARGV[1]: concurrency lease id ("" when none); ARGV[2]:
// reservation member; ARGV[3], ARGV[4]: the reservation's tokens and micro-USD; then per
// counter: amount, TTL (ms, 0: none).
var settleScript = redis.NewScript(`
if ARGV[1] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
for i = 4, #KEYS do
  local base = 5 + (i - 4) * 2
  local ttl = tonumber(ARGV[base + 1])
  local amt = tonumber(ARGV[base])
  -- A counter the charge creates gets its expiry; INCRBY keeps an existing one.
  if redis.call('INCRBY', KEYS[i], amt) == amt and ttl > 0 then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
if redis.call('ZREM', KEYS[2], ARGV[2]) == 1 then
  if redis.call('ZCARD', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[3])
  else
    redis.call('HINCRBY', KEYS[3], 't', -tonumber(ARGV[3]))
    redis.call('HINCRBY', KEYS[3], 'c', -tonumber(ARGV[4]))
  end
end
return 1
`)

// renewScript moves a live lease's expiry forward: its concurrency slot and its
// reservation, each only while still there. KEYS as settleScript's first three. ARGV[1]:
// concurrency lease id ("" when none); ARGV[2]: reservation member ("" when none); ARGV[3]:
// new expiry (ms); ARGV[4]: TTL (ms).
var renewScript = redis.NewScript(`
local n = 0
if ARGV[1] ~= '' and redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  n = n + 1
end
if ARGV[2] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  n = n + 2
end
return n
`)

// scripts are every script the Limiter runs, for Load.
var scripts = []*redis.Script{admitScript, plainAdmitScript, settleScript, renewScript}

// leaseKeys are the keys of a lease's slot and reservation, in the scripts' order.
func (ls *Lease) leaseKeys() []string {
	k := ls.l.keys
	return []string{k.KeyConcurrency(ls.keyID), k.KeyReservations(ls.keyID), k.KeyReserved(ls.keyID)}
}

// concID is the lease's concurrency slot id, "" when it holds none.
func (ls *Lease) concID() string {
	if ls.conc {
		return ls.id
	}
	return ""
}

// settleCall is the settle script's call: release the slot and the reservation, charge u.
func (ls *Lease) settleCall(u Usage, now time.Time) *scriptCall {
	keys := ls.leaseKeys()
	args := []any{ls.concID(), ls.res, ls.need.Tokens, ls.need.CostMicroUSD}
	ls.charges(u, now, func(k string, ttl time.Duration, amt int64) {
		keys = append(keys, k)
		args = append(args, amt, ttl.Milliseconds())
	})
	return &scriptCall{script: settleScript, keys: keys, args: args}
}

// reservationMessage is a reserve-mode refusal as a person reads it: what the request could
// cost, what is left and why, and when retrying helps.
func (r *Refusal) reservationMessage() string {
	bound := "its body's size as input tokens plus its max_tokens"
	if r.Kind == Cost {
		bound += ", at the model's highest rates"
	}
	if r.Need > r.Max {
		return fmt.Sprintf("%s limit: this request could use up to %s (%s), more than the whole limit of %s; lower max_tokens or send a smaller request",
			r.Limit, r.Format(r.Need), bound, r.Format(r.Max))
	}
	msg := fmt.Sprintf("%s limit: this request could use up to %s (%s), but %s is left of %s (%s used, %s reserved by requests in flight)%s",
		r.Limit, r.Format(r.Need), bound, r.Format(r.Remaining()), r.Format(r.Max), r.Format(r.Current), r.Format(r.Reserved), r.scope())
	switch {
	case r.Reserved > 0 && r.Current+r.Need <= r.Max:
		return msg + "; it fits once requests in flight finish: retry shortly"
	case r.ResetAt.IsZero():
		return msg + "; this limit never resets: lower max_tokens, or ask the operator to raise it"
	}
	return msg + fmt.Sprintf("; it resets at %s (in %s)", r.ResetAt.UTC().Format(time.RFC3339), r.RetryAfter.Round(time.Second))
}

// WorstCase is the most a request can be charged, which a reserve-mode limit reserves: its
// body's size in bytes as input tokens (no tokenizer yields more tokens than bytes for text,
// and base64 media is larger than its token count), charged at the highest of the input,
// cache-write and cache-read rates, plus maxTokens output tokens (thinking included) at the
// output rate; over every price given, each with its long-context tier when the input bound
// is above the tier's threshold (a prompt can then be long enough for it). Usage the body
// does not bound — server tools that fetch content, media referenced by URL or file id — can
// exceed it; the settlement charges what the upstream reports.
func WorstCase(bodyBytes, maxTokens int64, prices ...config.Price) Usage {
	in, out := max(bodyBytes, 0), max(maxTokens, 0)
	var inRate, outRate float64
	for _, p := range prices {
		inRate = max(inRate, p.Input, p.CacheWrite5m, p.CacheWrite1h, p.CacheRead)
		outRate = max(outRate, p.Output)
		if lc := p.LongContext; lc.AboveInputTokens > 0 && in > lc.AboveInputTokens {
			inRate = max(inRate, lc.Input, lc.CacheWrite5m, lc.CacheWrite1h, lc.CacheRead)
			outRate = max(outRate, lc.Output)
		}
	}
	// Rates are USD per million tokens: a token costs rate micro-USD.
	cost := math.Ceil(float64(in)*inRate + float64(out)*outRate)
	if cost > math.MaxInt64/2 || math.IsNaN(cost) {
		cost = math.MaxInt64 / 2
	}
	return Usage{Tokens: in + out, CostMicroUSD: int64(cost)}
}

// Reserved returns what the key's live reservations hold: requests in flight under a
// reserve-mode limit. Reservations past their deadline count until an admission sweeps them.
func (l *Limiter) Reserved(ctx context.Context, keyID string) (Usage, error) {
	v, err := l.rdb.HMGet(ctx, l.keys.KeyReserved(keyID), "t", "c").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Usage{}, fmt.Errorf("read reservations of key %s: %w", keyID, err)
	}
	return Usage{Tokens: heldOf(v, Tokens), CostMicroUSD: heldOf(v, Cost)}, nil
}
