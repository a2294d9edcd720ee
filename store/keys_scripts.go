package store

import (
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Lua scripts of relay-key administration. Every key they touch, including the record and
// index keys they build from ARGV prefixes, carries the {keys} hash tag.
//
// Every administrative change of a key record bumps its "rev" field (a record without one is
// at revision 1) in the same script, and a script given an expected revision checks it before
// changing anything, so a conditional write is atomic. Usage bookkeeping (last_used_at, the
// first-use activation) does not bump the revision.

// activateKeyScript stamps a key's first use and its expiry, once. KEYS: record.
// ARGV: activated_at, expires_at. Returns the stored activated_at and expires_at, or an empty
// reply if the key is gone.
var activateKeyScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
if redis.call('HEXISTS', KEYS[1], 'activated_at') == 0 then
  redis.call('HSET', KEYS[1], 'activated_at', ARGV[1], 'expires_at', ARGV[2])
end
local v = redis.call('HMGET', KEYS[1], 'activated_at', 'expires_at')
return {v[1] or '', v[2] or ''}
`)

// pageKeysScript examines at most a budget of index entries after a cursor and returns the ids
// of the keys that match a filter. KEYS: a lexicographic index. ARGV: cursor member ("" for
// the start), budget, limit, status ("" = any but deleted), lowercase name needle, now
// (fixed-width time), policy, policy filter on ("1"), tag, record key prefix.
// Returns {last member examined, "1" if the index is exhausted else "0", id, id, ...}.
var pageKeysScript = redis.NewScript(`
local min = '-'
if ARGV[1] ~= '' then min = '(' .. ARGV[1] end
local budget, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local status, needle, now = ARGV[4], ARGV[5], ARGV[6]
local policy, policyOn, tag, prefix = ARGV[7], ARGV[8] == '1', ARGV[9], ARGV[10]
local members = redis.call('ZRANGEBYLEX', KEYS[1], min, '+', 'LIMIT', 0, budget)
local out = {'', '0'}
local found, last, stopped = 0, ARGV[1], false
for i = 1, #members do
  local m = members[i]
  last = m
  local id = string.sub(m, 15)
  local r = redis.call('HMGET', prefix .. id, 'name', 'policy', 'tags', 'enabled', 'expires_at', 'revoked_at', 'deleted_at')
  if r[1] then
    local st
    if r[7] then st = 'deleted'
    elseif r[6] then st = 'revoked'
    elseif r[5] and r[5] <= now then st = 'expired'
    elseif r[4] ~= '1' then st = 'disabled'
    else st = 'active' end
    local ok
    if status == '' then ok = st ~= 'deleted' else ok = st == status end
    if ok and policyOn and (r[2] or '') ~= policy then ok = false end
    if ok and tag ~= '' and not string.find(',' .. (r[3] or '') .. ',', ',' .. tag .. ',', 1, true) then ok = false end
    if ok and needle ~= '' and not string.find(string.lower(r[1]), needle, 1, true) then ok = false end
    if ok then
      found = found + 1
      out[#out + 1] = id
      if found >= limit then
        stopped = i < #members
        break
      end
    end
  end
end
out[1] = last
if #members < budget and not stopped then out[2] = '1' end
return out
`)

// updateKeyScript changes a key's fields, moves it between tag and policy indexes, bumps its
// revision and publishes its id. KEYS: record. ARGV: index prefix, channel, id, tags on ("1"),
// tags (comma-separated), policy on ("1"), policy, expected revision ("" for any), number of
// fields to delete, the fields to delete, then field, value, ... to set. Returns {code,
// revision}: code 0 if missing, -1 if deleted, revStale if the revision is not the expected
// one (revision is the current one), 1 on success (revision is the new one).
var updateKeyScript = redis.NewScript(revisionGuard(8) + `if redis.call('HEXISTS', KEYS[1], 'deleted_at') == 1 then
  return {-1, rev}
end
local prefix, ord = ARGV[1], redis.call('HGET', KEYS[1], 'ord')
if ARGV[4] == '1' then
  local old = redis.call('HGET', KEYS[1], 'tags') or ''
  for t in string.gmatch(old, '[^,]+') do
    redis.call('ZREM', prefix .. 'tag:' .. t, ord)
  end
  for t in string.gmatch(ARGV[5], '[^,]+') do
    redis.call('ZADD', prefix .. 'tag:' .. t, 0, ord)
  end
  redis.call('HSET', KEYS[1], 'tags', ARGV[5])
end
if ARGV[6] == '1' then
  local old = redis.call('HGET', KEYS[1], 'policy') or ''
  if old ~= '' then redis.call('ZREM', prefix .. 'policy:' .. old, ord) end
  if ARGV[7] ~= '' then redis.call('ZADD', prefix .. 'policy:' .. ARGV[7], 0, ord) end
  redis.call('HSET', KEYS[1], 'policy', ARGV[7])
end
local ndel = tonumber(ARGV[9])
for i = 10, 9 + ndel do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
if #ARGV > 9 + ndel then
  redis.call('HSET', KEYS[1], unpack(ARGV, 10 + ndel))
end
rev = rev + 1
redis.call('HSET', KEYS[1], 'rev', tostring(rev))
redis.call('PUBLISH', ARGV[2], ARGV[3])
return {1, rev}
`)

// regenerateKeyScript swaps a key's secret hash in the live index, bumps its revision and
// publishes its id. KEYS: record, index. ARGV: new hash, new hint, id, channel, expected
// revision ("" for any). Returns {code, revision}: code 0 if missing, revStale if the revision
// is not the expected one, -1 if revoked or deleted, -2 if the new hash is taken, 1 on success.
var regenerateKeyScript = redis.NewScript(revisionGuard(5) + `if redis.call('HEXISTS', KEYS[1], 'revoked_at') == 1 or redis.call('HEXISTS', KEYS[1], 'deleted_at') == 1 then
  return {-1, rev}
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return {-2, rev}
end
local old = redis.call('HGET', KEYS[1], 'hash')
if old then redis.call('HDEL', KEYS[2], old) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
rev = rev + 1
redis.call('HSET', KEYS[1], 'hash', ARGV[1], 'hint', ARGV[2], 'rev', tostring(rev))
redis.call('PUBLISH', ARGV[4], ARGV[3])
return {1, rev}
`)

// deleteKeyScript soft-deletes ("1") or restores ("0") a key and bumps its revision. KEYS:
// record, index, live index, deleted index. ARGV: "1"|"0", time, channel, id, expected
// revision ("" for any). Returns {code, revision}: code 0 if missing, revStale if the revision
// is not the expected one, -1 if already in that state, 1 on success.
var deleteKeyScript = redis.NewScript(revisionGuard(5) + `local deleted = redis.call('HEXISTS', KEYS[1], 'deleted_at') == 1
local want = ARGV[1] == '1'
if deleted == want then
  return {-1, rev}
end
local v = redis.call('HMGET', KEYS[1], 'ord', 'hash', 'revoked_at')
local ord, h, revoked = v[1], v[2], v[3]
if want then
  redis.call('HSET', KEYS[1], 'deleted_at', ARGV[2])
  if h then redis.call('HDEL', KEYS[2], h) end
  redis.call('ZREM', KEYS[3], ord)
  redis.call('ZADD', KEYS[4], 0, ord)
else
  redis.call('HDEL', KEYS[1], 'deleted_at')
  if h and not revoked then redis.call('HSET', KEYS[2], h, ARGV[4]) end
  redis.call('ZREM', KEYS[4], ord)
  redis.call('ZADD', KEYS[3], 0, ord)
end
rev = rev + 1
redis.call('HSET', KEYS[1], 'rev', tostring(rev))
redis.call('PUBLISH', ARGV[3], ARGV[4])
return {1, rev}
`)

// revokeKeyScript moves the key's hash from the live index to the revoked index, stamps
// revoked_at and bumps the revision (once) and publishes the id. KEYS: record, index, revoked
// index. ARGV: revoked_at, channel, id, expected revision ("" for any). Returns {code,
// revision}: code 0 if the key does not exist, revStale if the revision is not the expected
// one, 1 on success.
var revokeKeyScript = redis.NewScript(revisionGuard(4) + `local h = redis.call('HGET', KEYS[1], 'hash')
if h then
  redis.call('HDEL', KEYS[2], h)
  redis.call('HSET', KEYS[3], h, ARGV[3])
end
if redis.call('HEXISTS', KEYS[1], 'revoked_at') == 0 then
  rev = rev + 1
  redis.call('HSET', KEYS[1], 'revoked_at', ARGV[1], 'rev', tostring(rev))
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return {1, rev}
`)

// setKeyEnabledScript sets enabled, bumps the revision when that changes it and publishes the
// id. KEYS: record. ARGV: "1"|"0", channel, id, expected revision ("" for any). Returns {code,
// revision}: code 0 if missing, revStale if the revision is not the expected one, -1 if
// enabling a revoked key, 1 on success.
var setKeyEnabledScript = redis.NewScript(revisionGuard(4) + `if ARGV[1] == '1' and redis.call('HEXISTS', KEYS[1], 'revoked_at') == 1 then
  return {-1, rev}
end
if redis.call('HGET', KEYS[1], 'enabled') ~= ARGV[1] then
  rev = rev + 1
  redis.call('HSET', KEYS[1], 'enabled', ARGV[1], 'rev', tostring(rev))
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return {1, rev}
`)

// revStale is the script reply code of a conditional write whose expected revision is not
// the key's.
const revStale = -9

// revisionGuard is the opening of every script that changes a key record (KEYS[1]): it
// answers {0, 0} when the record is missing and {revStale, rev} when ARGV[argv] names
// another revision than the record's, and leaves the record's revision in the local rev.
func revisionGuard(argv int) string {
	a := "ARGV[" + strconv.Itoa(argv) + "]"
	return `if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, 0}
end
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '1')
if ` + a + ` ~= '' and tonumber(` + a + `) ~= rev then
  return {` + strconv.Itoa(revStale) + `, rev}
end
`
}
