package store

import (
	"strings"
	"time"
)

// DefaultPrefix namespaces every Redis key and channel of claude-relay.
const DefaultPrefix = "crs:"

// UsageRetention is how long daily usage hashes live after the day they describe.
const UsageRetention = 400 * 24 * time.Hour

// Schema names every Redis key and Pub/Sub channel claude-relay uses; nothing else in the code
// base spells a key. Each key is listed with its Redis type, its owner (the plane that writes
// it) and its TTL.
//
// Keys that a Lua script or MULTI touches together carry the same {hash tag} so they live in
// one Redis Cluster slot: all relay-key records and their indexes share {keys} (the lookup
// script follows index → record in one call), all accounts share {accounts}, and per-key
// usage and limit counters share {key:<id>} so a limit script can read both.
//
// The {keys} slot is a deliberate hot spot on Cluster: every auth lookup reads it. Sidecars
// cache lookups and drop entries on the revocations channel, so the slot sees cache misses
// only.
type Schema struct {
	p string
}

// NewSchema returns the schema under prefix ("" means DefaultPrefix).
func NewSchema(prefix string) Schema {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Schema{p: prefix}
}

// Prefix returns the prefix in front of every key and channel.
func (s Schema) Prefix() string { return s.p }

// --- Relay keys (hash tag {keys}) ---

// Pepper is a STRING holding the relay-key HMAC pepper (32 random bytes) sealed by the crypto
// provider. Owner: whichever process opens the store first (SETNX). TTL: none.
func (s Schema) Pepper() string { return s.p + "{keys}:pepper" }

// KeyIndex is a HASH: hex HMAC-SHA256(pepper, secret) → key id, for live (unrevoked) keys.
// Owner: control plane; read by sidecars. TTL: none.
func (s Schema) KeyIndex() string { return s.p + "{keys}:index" }

// KeyRevokedIndex is a HASH: hex HMAC of a revoked key's secret → key id, so a revoked key is
// reported as revoked rather than unknown. Owner: control plane. TTL: none.
func (s Schema) KeyRevokedIndex() string { return s.p + "{keys}:revoked" }

// KeyRecordPrefix is what KeyRecord puts in front of a key id (used by the lookup script).
func (s Schema) KeyRecordPrefix() string { return s.p + "{keys}:key:" }

// KeyRecord is a HASH describing one relay key (fields id, name, hint, policy, enabled,
// created_at, expires_at, revoked_at, last_used_at, hash). Owner: control plane; sidecars
// write last_used_at only. TTL: none.
func (s Schema) KeyRecord(id string) string { return s.KeyRecordPrefix() + id }

// KeysByCreation is a ZSET of key ids scored by creation time (unix ms), for listing.
// Owner: control plane. TTL: none.
func (s Schema) KeysByCreation() string { return s.p + "{keys}:by_created" }

// RevocationsChannel is the Pub/Sub channel on which the id of every key that is revoked,
// disabled or re-enabled is published; sidecars drop cached auth results for it.
// Owner: control plane publishes, sidecars subscribe.
func (s Schema) RevocationsChannel() string { return s.p + "chan:key-revocations" }

// --- Upstream accounts (hash tag {accounts}) ---

// Account is a HASH describing one upstream account (fields id, name, type, base_url,
// priority, schedulable, created_at, credential_hint, and credential: the envelope sealed with
// aad = account id). Owner: control plane. TTL: none.
func (s Schema) Account(id string) string { return s.p + "{accounts}:account:" + id }

// AccountsByCreation is a ZSET of account ids scored by creation time (unix ms).
// Owner: control plane. TTL: none.
func (s Schema) AccountsByCreation() string { return s.p + "{accounts}:by_created" }

// AccountsVersion is a STRING counter INCR'd on every account change, so sidecars can cache
// the account list and re-read it only when this moves. Owner: control plane. TTL: none.
func (s Schema) AccountsVersion() string { return s.p + "{accounts}:version" }

// --- Usage (hash tags {key:<id>} and {acct:<id>}) ---

// KeyUsageDay is a HASH of one relay key's usage on one UTC day, fields "<model>:<counter>"
// (counters: requests, input_tokens, output_tokens, cache_write_5m, cache_write_1h,
// cache_read, cost_micro_usd). Owner: sidecar. TTL: UsageRetention after the day.
func (s Schema) KeyUsageDay(keyID string, day time.Time) string {
	return s.p + "usage:{key:" + keyID + "}:day:" + dayString(day)
}

// KeyUsageTotal is a HASH of one relay key's all-time usage, fields "<counter>".
// Owner: sidecar. TTL: none.
func (s Schema) KeyUsageTotal(keyID string) string { return s.p + "usage:{key:" + keyID + "}:total" }

// AccountUsageDay is a HASH of one upstream account's usage on one UTC day, fields
// "<counter>". Owner: sidecar. TTL: UsageRetention after the day.
func (s Schema) AccountUsageDay(accountID string, day time.Time) string {
	return s.p + "usage:{acct:" + accountID + "}:day:" + dayString(day)
}

// --- Limits and scheduling (sidecar; reserved here so the names live in one place) ---

// KeyLimitCounter is a STRING counter of limit name (e.g. "rpm", "tokens_day") for one relay
// key in the window starting at windowStart. Owner: sidecar limit scripts. TTL: the window
// length (set by the script). Shares {key:<id>} with the key's usage.
func (s Schema) KeyLimitCounter(keyID, limit string, windowStart time.Time) string {
	return s.p + "limit:{key:" + keyID + "}:" + limit + ":" + windowStart.UTC().Format("20060102T150405")
}

// KeyConcurrency is a ZSET of in-flight request lease ids scored by lease expiry (unix ms)
// for one relay key. Owner: sidecar. TTL: refreshed to the longest lease by the script.
func (s Schema) KeyConcurrency(keyID string) string {
	return s.p + "limit:{key:" + keyID + "}:concurrency"
}

// AccountParked is a STRING holding why an account is parked (e.g. "429"); it exists while
// the account must not be scheduled. Owner: sidecar. TTL: until the upstream's reset time.
func (s Schema) AccountParked(accountID string) string {
	return s.p + "sched:{acct:" + accountID + "}:parked"
}

// StickySession is a STRING: session hash → account id, so a conversation stays on one
// account. Owner: sidecar. TTL: the pool's sticky TTL, refreshed on use.
func (s Schema) StickySession(sessionHash string) string { return s.p + "sched:sticky:" + sessionHash }

// Lock is a STRING holding the owner token of a named cluster-wide lock (e.g. token refresh of
// one account). Owner: control plane jobs. TTL: the lock lease.
func (s Schema) Lock(name string) string { return s.p + "lock:" + name }

// --- Admin (control plane) ---

// AdminPassword is a STRING holding an admin user's password hash. Owner: control plane.
// TTL: none.
func (s Schema) AdminPassword(username string) string {
	return s.p + "admin:user:" + username + ":password"
}

// RevokedToken is a STRING marking an admin JWT id as revoked. Owner: control plane.
// TTL: until the token would have expired anyway.
func (s Schema) RevokedToken(jti string) string { return s.p + "admin:revoked-jti:" + jti }

// dayString formats the UTC calendar day of t.
func dayString(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// validPrefix reports whether prefix can safely prefix keys: no hash-tag braces (they would
// capture the slot of every key) and no whitespace or glob characters.
func validPrefix(prefix string) bool {
	return !strings.ContainsAny(prefix, "{} \t\r\n*?[]")
}
