package store

import "github.com/redis/go-redis/v9"

// Lua scripts. Every key a script touches shares one {hash tag} with its KEYS, so scripts run
// on Redis Cluster; keys built from ARGV (the lookup's record key) are in the same slot.

// createKeyScript stores a new relay key unless its id or hash is taken.
// KEYS: record, index, by_created, then the lexicographic indexes to add it to (live, tags,
// policy). ARGV: hash, id, score, order member, field, value, ...
var createKeyScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
for i = 4, #KEYS do
  redis.call('ZADD', KEYS[i], 0, ARGV[4])
end
return 1
`)

// lookupKeyScript follows the secret's hash to the key record in one round trip.
// KEYS: index, revoked index. ARGV: hash, record key prefix. Returns the HGETALL of the record
// or nil.
var lookupKeyScript = redis.NewScript(`
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then
  id = redis.call('HGET', KEYS[2], ARGV[1])
end
if not id then
  return false
end
return redis.call('HGETALL', ARGV[2] .. id)
`)

// touchKeyScript moves last_used_at forward (never back). KEYS: record. ARGV: time (fixed
// width, so string order is time order). Returns 0 if the key does not exist.
var touchKeyScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local cur = redis.call('HGET', KEYS[1], 'last_used_at')
if not cur or cur < ARGV[1] then
  redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1])
end
return 1
`)

// createAccountScript stores a new account and bumps the version. KEYS: record, by_created,
// version. ARGV: id, score, field, value, ... Returns 0 if the id is taken.
var createAccountScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
`)

// updateAccountScript deletes and sets fields of an existing account and bumps the version,
// if the fields it checks still hold their values. KEYS: record, version. ARGV: number of
// checks, that many field/expected pairs ("" expects the field absent), number of fields to
// delete, those fields, then field, value, ... to set. Returns 0 if the account does not
// exist, -1 (writing nothing) if a check failed, 1 once written.
var updateAccountScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local nchk = tonumber(ARGV[1])
local a = 2
for _ = 1, nchk do
  if (redis.call('HGET', KEYS[1], ARGV[a]) or '') ~= ARGV[a + 1] then
    return -1
  end
  a = a + 2
end
local ndel = tonumber(ARGV[a])
for i = a + 1, a + ndel do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
a = a + 1 + ndel
if #ARGV >= a then
  redis.call('HSET', KEYS[1], unpack(ARGV, a))
end
redis.call('INCR', KEYS[2])
return 1
`)

// deleteAccountScript removes an account and bumps the version. KEYS: record, by_created,
// version. ARGV: id. Returns 0 if the account does not exist.
var deleteAccountScript = redis.NewScript(`
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
`)

// allScripts are loaded by Open so the hot path runs EVALSHA in one round trip.
var allScripts = []*redis.Script{
	createKeyScript, lookupKeyScript, revokeKeyScript, setKeyEnabledScript, touchKeyScript,
	createAccountScript, updateAccountScript, deleteAccountScript,
	activateKeyScript, pageKeysScript, updateKeyScript, regenerateKeyScript, deleteKeyScript,
}
