package store

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Legacy relay-key credentials: keys carried over from Claude Relay Service (CRS) keep their
// secret. CRS stored only hex sha256(secret + its ENCRYPTION_KEY); an imported key keeps that
// hash in its record (field legacy_hash) and in LegacyKeyIndex, and the CRS key is kept sealed
// (LegacyKeySecret) while any such hash remains. A secret the HMAC index does not know is
// hashed the CRS way and looked up there; on its first successful use the key is re-indexed
// under the HMAC, its legacy hash dropped, and the CRS key deleted with the last one. After
// that the legacy path is never taken for the key.

// legacySecretAAD binds the sealed legacy key secret to its purpose.
var legacySecretAAD = []byte("claude-relay legacy key secret v1")

// legacyHint is the hint of an imported key until its first use reveals its secret's ends.
const legacyHint = SecretPrefix + "…"

// legacyImportChunk is how many keys one pipeline of ImportLegacyKeys carries.
const legacyImportChunk = 1000

// LegacyKeyHash returns the hash Claude Relay Service stored for a relay-key secret: hex
// sha256(secret + secretKey), where secretKey was its ENCRYPTION_KEY.
func LegacyKeyHash(secret string, secretKey []byte) string {
	h := sha256.New()
	h.Write([]byte(secret))
	h.Write(secretKey)
	return hex.EncodeToString(h.Sum(nil))
}

// useLegacySecret makes lookups try legacy hashes made with secret (nil: never).
func (s *Store) useLegacySecret(secret []byte) {
	if len(secret) == 0 {
		return
	}
	s.legacySecret = bytes.Clone(secret)
	s.legacyLeft.Store(true)
}

// LegacySecret returns a copy of the legacy key secret the store opened (nil when no legacy
// hash was stored), for the host to hand to an auth provider over the plugin channel.
func (s *Store) LegacySecret() []byte { return bytes.Clone(s.legacySecret) }

// LoadLegacyKeySecret opens the sealed legacy key secret; nil when none is stored (no key
// waits for its first use).
func (s *Store) LoadLegacyKeySecret(ctx context.Context) ([]byte, error) {
	key := s.keys.LegacyKeySecret()
	env, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read legacy key secret %s: %w", key, err)
	}
	plain, err := s.sealer.Open(ctx, env, legacySecretAAD)
	if err != nil {
		return nil, fmt.Errorf("open legacy key secret %s (was CRS_SECURITY__ENCRYPTION_KEY changed without keeping the old key for decryption?): %w", key, err)
	}
	return plain, nil
}

// LegacyKeysLeft returns how many imported keys still wait for their first use.
func (s *Store) LegacyKeysLeft(ctx context.Context) (int64, error) {
	n, err := s.rdb.HLen(ctx, s.keys.LegacyKeyIndex()).Result()
	if err != nil {
		return 0, fmt.Errorf("count legacy keys: %w", err)
	}
	return n, nil
}

// LegacyKeySpec describes a relay key imported with another system's hash of its secret.
type LegacyKeySpec struct {
	KeySpec
	// LegacyHash is LegacyKeyHash of the secret: 64 lowercase hex characters.
	LegacyHash string
	// Source names the key where it came from (e.g. "crs:<uuid>"). A source imported before
	// is not imported again: ImportLegacyKeys answers the key it made then.
	Source string
	// Disabled imports the key disabled.
	Disabled bool
	// CreatedAt keeps the key's creation time (zero: now). ExpiresAt may be in the past: an
	// expired key stays expired.
	CreatedAt   time.Time
	ActivatedAt *time.Time
	DeletedAt   *time.Time
	LastUsedAt  *time.Time
}

// ImportedKey is the outcome of one LegacyKeySpec: the key created, or (Created false) the
// id of the key its source was imported as before.
type ImportedKey struct {
	Key     Key
	Created bool
}

// ImportLegacyKeys creates relay keys that authenticate with a secret only their legacy hash
// is known of, indexed like every key (listing, tags, policy) plus LegacyKeyIndex and
// ImportedKeys, in pipelines of legacyImportChunk keys. secretKey is what the hashes were
// made with; it is stored sealed with the first key, atomically. Importing a source again
// changes nothing. Every spec is validated first: one bad spec imports nothing.
func (s *Store) ImportLegacyKeys(ctx context.Context, secretKey []byte, specs []LegacyKeySpec) ([]ImportedKey, error) {
	if len(secretKey) == 0 {
		return nil, errors.New("import legacy keys: empty legacy secret")
	}
	if err := s.checkLegacySecret(ctx, secretKey); err != nil {
		return nil, fmt.Errorf("import legacy keys: %w", err)
	}
	now := s.now().UTC()
	prepared := make([]preparedKey, len(specs))
	for i, spec := range specs {
		p, err := s.prepareLegacyKey(spec, now)
		if err != nil {
			return nil, fmt.Errorf("import legacy keys: key %d (%s): %w", i, spec.Source, err)
		}
		prepared[i] = p
	}
	env, err := s.sealer.Seal(ctx, secretKey, legacySecretAAD)
	if err != nil {
		return nil, fmt.Errorf("import legacy keys: seal the legacy secret: %w", err)
	}
	if err := importLegacyKeyScript.Load(ctx, s.rdb).Err(); err != nil {
		return nil, fmt.Errorf("import legacy keys: load script: %w", err)
	}
	out := make([]ImportedKey, 0, len(prepared))
	for start := 0; start < len(prepared); start += legacyImportChunk {
		chunk := prepared[start:min(start+legacyImportChunk, len(prepared))]
		cmds := make([]*redis.Cmd, len(chunk))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, pk := range chunk {
				cmds[i] = importLegacyKeyScript.EvalSha(ctx, p, pk.keys, append([]any{env}, pk.args...)...)
			}
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("import legacy keys: %w", err)
		}
		for i, c := range cmds {
			res, err := c.Slice()
			if err != nil || len(res) != 2 {
				return out, fmt.Errorf("import legacy keys: %s: script replied %v: %w", chunk[i].secret, res, err)
			}
			code, _ := res[0].(int64)
			id, _ := res[1].(string)
			switch code {
			case 1:
				out = append(out, ImportedKey{Key: chunk[i].key, Created: true})
			case 0:
				out = append(out, ImportedKey{Key: Key{ID: id}})
			default:
				return out, fmt.Errorf("import legacy keys: %s: its legacy hash belongs to key %s: %w", chunk[i].secret, id, ErrConflict)
			}
		}
	}
	return out, nil
}

// checkLegacySecret refuses to import hashes made with another secret while keys hashed with
// the stored one still wait for their first use.
func (s *Store) checkLegacySecret(ctx context.Context, secretKey []byte) error {
	cur, err := s.LoadLegacyKeySecret(ctx)
	if err != nil || cur == nil || hmac.Equal(cur, secretKey) {
		return err
	}
	left, err := s.LegacyKeysLeft(ctx)
	if err != nil {
		return err
	}
	if left > 0 {
		return fmt.Errorf("%d keys imported with another legacy secret (another CRS ENCRYPTION_KEY) still wait for their first use; "+
			"only one legacy secret can be kept: %w", left, ErrConflict)
	}
	return nil
}

// prepareLegacyKey validates spec and builds the import script's call. The preparedKey's
// secret field carries the source, for messages.
func (s *Store) prepareLegacyKey(spec LegacyKeySpec, now time.Time) (preparedKey, error) {
	if !isLowerHex(spec.LegacyHash, sha256.Size*2) {
		return preparedKey{}, errors.New("legacy hash must be 64 lowercase hex characters")
	}
	if spec.Source == "" || len(spec.Source) > maxNameLen {
		return preparedKey{}, fmt.Errorf("source must be 1 to %d bytes", maxNameLen)
	}
	created := now
	if !spec.CreatedAt.IsZero() {
		created = spec.CreatedAt.UTC()
	}
	k, err := keyFromSpec(spec.KeySpec, created)
	if err != nil {
		return preparedKey{}, err
	}
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	k.Hint, k.Enabled, k.Legacy = legacyHint, !spec.Disabled, true
	k.ActivatedAt, k.DeletedAt, k.LastUsedAt = utc(spec.ActivatedAt), utc(spec.DeletedAt), utc(spec.LastUsedAt)
	keys, args, err := s.keyRecordArgs(k, "legacy_hash", spec.LegacyHash, s.keys.LegacyKeyIndex())
	if err != nil {
		return preparedKey{}, err
	}
	// KEYS: record, legacy index, by_created, listing, imported map, secret, then tag/policy
	// indexes; ARGV (after the envelope): hash, id, score, ord, source, fields.
	keys = append(keys[:4:4], append([]string{s.keys.ImportedKeys(), s.keys.LegacyKeySecret()}, keys[4:]...)...)
	args = append(args[:4:4], append([]any{spec.Source}, args[4:]...)...)
	return preparedKey{key: k, secret: spec.Source, keys: keys, args: args}, nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// lookupLegacyKey looks a secret the HMAC index missed up among legacy hashes: one round
// trip, taken only while this process has a legacy secret and has not learnt that none
// remain (legacyLeft). A key found and usable is upgraded (one more, once per key).
func (s *Store) lookupLegacyKey(ctx context.Context, secret, hash string) (Key, error) {
	lh := LegacyKeyHash(secret, s.legacySecret)
	keys := []string{s.keys.LegacyKeyIndex(), s.keys.LegacyKeySecret(), s.keys.KeyIndex()}
	res, err := lookupLegacyKeyScript.Run(ctx, s.rdb, keys, lh, s.keys.KeyRecordPrefix(), hash).Slice()
	if err != nil {
		return Key{}, fmt.Errorf("lookup legacy key: %w", err)
	}
	if len(res) < 2 {
		return Key{}, fmt.Errorf("lookup legacy key: short script reply %v", res)
	}
	if left, _ := res[0].(int64); left == 0 {
		s.legacyLeft.Store(false)
	}
	found, _ := res[1].(string)
	flat := make([]string, 0, len(res)-2)
	for _, v := range res[2:] {
		str, _ := v.(string)
		flat = append(flat, str)
	}
	rec := pairs(flat)
	field, want := "legacy_hash", lh
	if found == "hmac" {
		// Another sidecar upgraded the key since the HMAC index missed.
		field, want = "hash", hash
	}
	if len(rec) == 0 || !hmac.Equal([]byte(rec[field]), []byte(want)) {
		return Key{}, ErrNotFound
	}
	k, err := keyFromRecord(rec)
	if err != nil {
		return Key{}, fmt.Errorf("lookup legacy key: %w", err)
	}
	if found == "legacy" && k.DeletedAt == nil && s.usable(k) == nil {
		if k, err = s.upgradeLegacyKey(ctx, k, secret, lh, hash); err != nil {
			return Key{}, err
		}
	}
	return s.admitKey(ctx, k)
}

// upgradeLegacyKey re-indexes a legacy key under the HMAC of its secret and drops its legacy
// hash, atomically; a concurrent first use on another sidecar finds it done and agrees.
func (s *Store) upgradeLegacyKey(ctx context.Context, k Key, secret, legacyHash, hash string) (Key, error) {
	hexPart := secret[len(SecretPrefix):]
	hint := SecretPrefix + hexPart[:4] + "…" + hexPart[len(hexPart)-4:]
	keys := []string{s.keys.KeyRecord(k.ID), s.keys.KeyIndex(), s.keys.LegacyKeyIndex(), s.keys.LegacyKeySecret()}
	res, err := upgradeLegacyKeyScript.Run(ctx, s.rdb, keys, legacyHash, hash, k.ID, hint).Int64Slice()
	if err != nil || len(res) != 2 {
		return Key{}, fmt.Errorf("upgrade legacy key %s: script replied %v: %w", k.ID, res, err)
	}
	if res[1] == 0 {
		s.legacyLeft.Store(false)
	}
	if res[0] != 1 {
		// Revoked, deleted or given a new secret meanwhile: read it again.
		cur, err := s.GetKey(ctx, k.ID)
		if err != nil {
			return Key{}, err
		}
		if cur.Legacy || cur.RevokedAt == nil && cur.DeletedAt == nil {
			return Key{}, ErrNotFound // the secret is not this key's any more
		}
		return cur, nil
	}
	k.Hint, k.Legacy = hint, false
	return k, nil
}

// importLegacyKeyScript stores a key imported with a legacy hash, unless its source was
// imported before. KEYS: record, legacy index, by_created, listing index, imported map,
// legacy secret, then tag and policy indexes. ARGV: sealed legacy secret, legacy hash, id,
// creation score, order member, source, then field, value, ... Returns {1, id} when created,
// {0, earlier id} when the source was imported before, {-1, holder} when the hash or id is
// taken.
var importLegacyKeyScript = redis.NewScript(`
local prev = redis.call('HGET', KEYS[5], ARGV[6])
if prev then
  return {0, prev}
end
local holder = redis.call('HGET', KEYS[2], ARGV[2])
if holder then
  return {-1, holder}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {-1, ARGV[3]}
end
if redis.call('HLEN', KEYS[2]) == 0 or redis.call('EXISTS', KEYS[6]) == 0 then
  redis.call('SET', KEYS[6], ARGV[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[5], ARGV[6], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[4], 0, ARGV[5])
for i = 7, #KEYS do
  redis.call('ZADD', KEYS[i], 0, ARGV[5])
end
return {1, ARGV[3]}
`)

// lookupLegacyKeyScript follows a legacy hash to its key record. KEYS: legacy index, legacy
// secret, HMAC index. ARGV: legacy hash, record key prefix, HMAC hash. Returns {legacy hashes
// left, "legacy", record field, value, ...}; when the legacy hash is unknown but the HMAC
// index now names the key (a concurrent first use upgraded it) {left, "hmac", record ...};
// else {left, ""}. An entry whose record no longer claims it (the key got a new secret) is
// dropped, and the secret with the last one.
var lookupLegacyKeyScript = redis.NewScript(`
local n = redis.call('HLEN', KEYS[1])
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then
  local rec = ARGV[2] .. id
  if redis.call('HEXISTS', rec, 'hash') == 0 and redis.call('HGET', rec, 'legacy_hash') == ARGV[1] then
    local out = redis.call('HGETALL', rec)
    table.insert(out, 1, 'legacy')
    table.insert(out, 1, n)
    return out
  end
  redis.call('HDEL', KEYS[1], ARGV[1])
  n = n - 1
  if n == 0 then redis.call('DEL', KEYS[2]) end
end
id = redis.call('HGET', KEYS[3], ARGV[3])
if id then
  local out = redis.call('HGETALL', ARGV[2] .. id)
  table.insert(out, 1, 'hmac')
  table.insert(out, 1, n)
  return out
end
return {n, ''}
`)

// upgradeLegacyKeyScript moves a usable legacy key to the HMAC index. KEYS: record, index,
// legacy index, legacy secret. ARGV: legacy hash, HMAC hash, id, hint. Returns {code, legacy
// hashes left}: code 1 when the key is (now, or already) indexed under the HMAC, 0 when it
// cannot be: revoked, deleted, or its legacy hash is gone without the HMAC naming it (a new
// secret), -1 if the HMAC is taken.
var upgradeLegacyKeyScript = redis.NewScript(`
local left = redis.call('HLEN', KEYS[3])
if redis.call('HGET', KEYS[1], 'legacy_hash') ~= ARGV[1] then
  if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3] then return {1, left} end
  return {0, left}
end
if redis.call('HEXISTS', KEYS[1], 'revoked_at') == 1 or redis.call('HEXISTS', KEYS[1], 'deleted_at') == 1 then
  return {0, left}
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  return {-1, left}
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], 'hash', ARGV[2], 'hint', ARGV[4])
redis.call('HDEL', KEYS[1], 'legacy_hash')
redis.call('HDEL', KEYS[3], ARGV[1])
left = left - 1
if left == 0 then
  redis.call('DEL', KEYS[4])
end
return {1, left}
`)
