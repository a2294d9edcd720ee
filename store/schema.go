package store

import (
	"strings"
	"time"
)

// DefaultPrefix namespaces every Redis key and channel of claude-relay.
const DefaultPrefix = "crs:"

// UsageRetention is how long daily usage hashes live after the day they describe.
const UsageRetention = 400 * 24 * time.Hour

// DefaultHourlyRetention is how long the hourly report buckets (UsageHour) live after their
// hour unless the configuration's usage block says otherwise; daily ones (UsageDay) live
// UsageRetention.
const DefaultHourlyRetention = 35 * 24 * time.Hour

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

// KeyRecord is a HASH describing one relay key (fields id, name, description, owner, tags
// (comma-separated), hint, policy, rules (JSON: limit overrides, model/client rules, CIDRs,
// binding), enabled, created_at, ord (its KeysLive member), expires_at, expires_after_ms,
// activated_at, revoked_at, deleted_at, last_used_at, hash, rev: the revision, an integer the
// key scripts increment with every administrative change; absent means 1). Owner: control
// plane; the auth path writes activated_at/expires_at (first use) and last_used_at, which do
// not move rev. TTL: none.
func (s Schema) KeyRecord(id string) string { return s.KeyRecordPrefix() + id }

// KeysByCreation is a ZSET of key ids scored by creation time (unix ms), for listing.
// Owner: control plane. TTL: none.
func (s Schema) KeysByCreation() string { return s.p + "{keys}:by_created" }

// KeysLive is a ZSET (all scores 0, ordered by member) of every relay key that is not soft
// deleted, members "<creation unix ms, 13 digits>:<id>" (the record's "ord" field), so a
// page starts after a cursor with ZRANGEBYLEX. Owner: control plane. TTL: none.
func (s Schema) KeysLive() string { return s.p + "{keys}:idx:live" }

// KeysDeleted is a ZSET like KeysLive of the soft-deleted relay keys. Owner: control plane.
// TTL: none.
func (s Schema) KeysDeleted() string { return s.p + "{keys}:idx:deleted" }

// KeysIndexPrefix is what KeysByTag and KeysByPolicy put in front of their name (used by the
// key update script, which moves keys between tag and policy indexes).
func (s Schema) KeysIndexPrefix() string { return s.p + "{keys}:idx:" }

// KeysByTag is a ZSET like KeysLive of the keys (deleted ones included) carrying tag.
// Owner: control plane. TTL: none (an empty ZSET disappears by itself).
func (s Schema) KeysByTag(tag string) string { return s.KeysIndexPrefix() + "tag:" + tag }

// KeysByPolicy is a ZSET like KeysLive of the keys (deleted ones included) naming policy.
// Owner: control plane. TTL: none.
func (s Schema) KeysByPolicy(policy string) string { return s.KeysIndexPrefix() + "policy:" + policy }

// LegacyKeyIndex is a HASH: legacy hash of a secret → key id, for keys imported from Claude
// Relay Service (hex sha256(secret + its ENCRYPTION_KEY)) that have not been used since; the
// first successful use moves the key to KeyIndex and drops its entry here. Owner: control
// plane (import) writes, the auth path drops entries. TTL: none.
func (s Schema) LegacyKeyIndex() string { return s.p + "{keys}:legacy" }

// LegacyKeySecret is a STRING holding the secret legacy hashes were made with (CRS's
// ENCRYPTION_KEY) sealed by the crypto provider; it exists while LegacyKeyIndex is not empty
// and is deleted with its last entry. Owner: control plane (import); the auth path deletes
// it. TTL: none.
func (s Schema) LegacyKeySecret() string { return s.p + "{keys}:legacy-secret" }

// ImportedKeys is a HASH: source of an imported key ("crs:<CRS key id>") → key id, so an
// import run again (or resumed) creates no key twice. Owner: control plane (import).
// TTL: none.
func (s Schema) ImportedKeys() string { return s.p + "{keys}:imported" }

// RevocationsChannel is the Pub/Sub channel on which the id of every key that is revoked,
// disabled or re-enabled is published; sidecars drop cached auth results for it.
// Owner: control plane publishes, sidecars subscribe.
func (s Schema) RevocationsChannel() string { return s.p + "chan:key-revocations" }

// --- Upstream accounts (hash tag {accounts}) ---

// Account is a HASH describing one upstream account (fields id, name, type, base_url,
// priority, schedulable, created_at, credential_hint, group, model_map, last_used_at, the
// OAuth fields, and the sealed secrets: credential, refresh_token (aad "<id>/refresh"),
// proxy (aad "<id>/proxy")). credential_binding "2" means the credential is sealed bound to
// the account id, type, base_url and the SHA-256 of the sealed proxy, so a record whose
// destination is changed in Redis no longer opens; absent, it is bound to the account id only
// (written before bindings; `claude-relay crypto rotate` binds it). Owner: control plane.
// TTL: none.
func (s Schema) Account(id string) string { return s.p + "{accounts}:account:" + id }

// AccountsByCreation is a ZSET of account ids scored by creation time (unix ms).
// Owner: control plane. TTL: none.
func (s Schema) AccountsByCreation() string { return s.p + "{accounts}:by_created" }

// ImportedAccounts is a HASH: source of an imported account ("crs:<platform>:<CRS account
// id>") → account id, so an import run again (or resumed) adds no account twice. Owner:
// control plane (import). TTL: none.
func (s Schema) ImportedAccounts() string { return s.p + "{accounts}:imported" }

// AccountsVersion is a STRING counter INCR'd on every account change, so sidecars can cache
// the account list and re-read it only when this moves. Owner: control plane. TTL: none.
func (s Schema) AccountsVersion() string { return s.p + "{accounts}:version" }

// AccountsChannel is the Pub/Sub channel on which every change of an account (added,
// updated, deleted) is announced, with the account id as payload, right after the change, so
// that sidecars reload their account list at once instead of at their next AccountsVersion
// poll. Owner: control plane publishes, sidecars subscribe.
func (s Schema) AccountsChannel() string { return s.p + "chan:accounts" }

// AccountRefreshChannel is the Pub/Sub channel on which a sidecar that met a 401 on an OAuth
// account publishes the account id, asking the control plane for one token refresh.
// Owner: sidecars publish, control planes subscribe.
func (s Schema) AccountRefreshChannel() string { return s.p + "chan:account-refresh" }

// OAuthPending is a STRING holding a started Claude OAuth login (PKCE verifier and the
// account to create) sealed with aad = state, keyed by the OAuth state. Owner: control plane.
// TTL: ten minutes; read once with GETDEL.
func (s Schema) OAuthPending(state string) string { return s.p + "admin:oauth:" + state }

// --- Usage (hash tags {key:<id>} and {acct:<id>}) ---

// KeyUsageDay is a HASH of one relay key's usage on one UTC day, fields "<model>:<counter>"
// (counters: requests, input_tokens, output_tokens, cache_write_5m, cache_write_1h,
// cache_read, cost_micro_usd, unpriced_requests, estimated_requests; a zero counter is
// not written). Owner: sidecar. TTL: UsageRetention after the day.
func (s Schema) KeyUsageDay(keyID string, day time.Time) string {
	return s.p + "usage:{key:" + keyID + "}:day:" + dayString(day)
}

// KeyUsageTotal is a HASH of one relay key's all-time usage, fields "<counter>".
// Owner: sidecar. TTL: none.
func (s Schema) KeyUsageTotal(keyID string) string { return s.p + "usage:{key:" + keyID + "}:total" }

// UsageApplied is a HASH of the usage batches applied to the counters of one hash-tag group
// ("key:<id>" or "acct:<id>"): field = writer (a sidecar's recorder, one per process start)
// → "<highest batch sequence applied>:<unix seconds>". A writer applies its batches in
// sequence order, so a batch retried after an ambiguous failure (a timeout after Redis
// applied it), or replayed from the shutdown spool, is recognised and not counted twice. One
// small entry per writer and group, whatever the number of requests; entries of writers
// silent for UsageBatchMarkerTTL are dropped when a new writer arrives. Owner: sidecar.
// TTL: UsageBatchMarkerTTL, renewed by every batch.
func (s Schema) UsageApplied(tag string) string {
	return s.p + "usage:{" + tag + "}:applied"
}

// UsageBatchApplied is a STRING marker that one named usage batch (a store.BatchID with Seq
// 0: a spool line written before batch sequences, or a batch an operator re-applies) has been
// applied to the counters of one hash-tag group; an import (batch "import:<source>") writes
// one too. Owner: sidecar; imports. TTL: UsageBatchMarkerTTL; none for an import's, so
// importing again never counts twice.
func (s Schema) UsageBatchApplied(tag, batchID string) string {
	return s.p + "usage:{" + tag + "}:applied:" + batchID
}

// UsageBatchMarkerTTL bounds how late a batch may be retried (including a replay of the
// shutdown spool) and still be recognised as already applied.
const UsageBatchMarkerTTL = 14 * 24 * time.Hour

// AccountUsageDay is a HASH of one upstream account's usage on one UTC day, fields
// "<counter>". Owner: sidecar. TTL: UsageRetention after the day.
func (s Schema) AccountUsageDay(accountID string, day time.Time) string {
	return s.p + "usage:{acct:" + accountID + "}:day:" + dayString(day)
}

// UsageHour is a HASH of every relay key's usage in one UTC hour, for reports: field
// "<key id>|<account id>|<model>" (the model last: it is the one part a client influences)
// → the packed counters "<n0>,<n1>,…" in usageCounters order (a counter added later is
// appended, so an older value reads it as 0). One field per key, account and model, not per
// counter, so a 30-day report reads a few thousand fields a day. Shares {day:<date>} with
// the day's other buckets, so one batch updates a day in one script call; a Cluster puts
// one day's report writes on one slot (one script call per recorder batch). Owner: sidecar
// (recorder batches). TTL: the hourly retention after the hour.
func (s Schema) UsageHour(hour time.Time) string {
	return s.p + "usage:{day:" + dayString(hour) + "}:hour:" + hour.UTC().Format("15")
}

// UsageDay is a HASH like UsageHour for one whole UTC day. Owner: sidecar (recorder batches).
// TTL: the daily retention after the day.
func (s Schema) UsageDay(day time.Time) string {
	return s.p + "usage:{day:" + dayString(day) + "}:all"
}

// UsageHourSum is a HASH, the rollup of UsageHour without the key: field "<account
// id>|<model>" → the same packed counters, so that reports not grouped by a key attribute
// read a few fields an hour instead of every key's. Written in the same script call as its
// bucket; one created after its bucket began (by a version without rollups, or a backup
// restore) holds the field "!partial" and reports read the bucket instead. Owner: sidecar
// (recorder batches). TTL: as its UsageHour.
func (s Schema) UsageHourSum(hour time.Time) string {
	return s.p + "usage:{day:" + dayString(hour) + "}:sum:hour:" + hour.UTC().Format("15")
}

// UsageDaySum is the rollup of UsageDay, as UsageHourSum is of UsageHour. TTL: as its
// UsageDay.
func (s Schema) UsageDaySum(day time.Time) string {
	return s.p + "usage:{day:" + dayString(day) + "}:sum:all"
}

// UsageDayKeys is a HASH, the rollup of UsageDay by key alone: field "<key id>" (""
// for refusals of an unknown key) → the packed counters, for day and month reports grouped
// by key, owner, tag or policy only ("top keys"). Partial as UsageHourSum. Owner: sidecar
// (recorder batches). TTL: as its UsageDay.
func (s Schema) UsageDayKeys(day time.Time) string {
	return s.p + "usage:{day:" + dayString(day) + "}:keys:all"
}

// LedgerDay is a STREAM of the request ledger's records of one UTC day (the request's day),
// one entry per relayed request, metadata only (see store.LedgerRecord for the fields). It
// shares {day:<date>} with the day's report buckets, so it rides the same script call of a
// recorder batch. Owner: sidecar (recorder batches). Bounds: MAXLEN the usage block's
// ledger_max_records_per_day (oldest trimmed first); TTL the ledger retention after the day.
func (s Schema) LedgerDay(day time.Time) string {
	return s.p + "usage:{day:" + dayString(day) + "}:ledger"
}

// UsageDayTag is the hash-tag group of UsageHour and UsageDay of day (for UsageApplied).
func UsageDayTag(day time.Time) string { return "day:" + dayString(day) }

// --- Limits and scheduling (sidecar; reserved here so the names live in one place) ---

// KeyLimitCounter is a STRING counter of limit name (e.g. "rpm", "tokens_day") for one relay
// key in the window starting at windowStart. Owner: sidecar limits (the admission script, the
// charge's INCRBY). TTL: to the window's end plus a minute, set once by whichever command
// creates the counter (none for a total). Shares {key:<id>} with the key's usage.
func (s Schema) KeyLimitCounter(keyID, limit string, windowStart time.Time) string {
	return s.KeyLimitCounterAt(keyID, limit, LimitWindowStamp(windowStart))
}

// KeyLimitCounterAt is KeyLimitCounter with the window start already formatted by
// LimitWindowStamp, for callers that build many keys of one window.
func (s Schema) KeyLimitCounterAt(keyID, limit, windowStamp string) string {
	return s.p + "limit:{key:" + keyID + "}:" + limit + ":" + windowStamp
}

// KeyConversationCounterAt is a STRING counter of a per-conversation limit (e.g.
// "conversation_tokens_per_minute") for one conversation of one relay key (session: the
// scheduler's session hash) in the window whose start LimitWindowStamp formatted. Owner:
// sidecar limit scripts. TTL: the window length plus a minute. Shares {key:<id>} with the
// key's counters, so one admission script checks both.
func (s Schema) KeyConversationCounterAt(keyID, session, limit, windowStamp string) string {
	return s.p + "limit:{key:" + keyID + "}:conv:" + session + ":" + limit + ":" + windowStamp
}

// LimitWindowStamp formats a limit window's start as it appears in counter keys.
func LimitWindowStamp(windowStart time.Time) string {
	return windowStart.UTC().Format("20060102T150405")
}

// KeyConcurrency is a ZSET of in-flight request lease ids scored by lease expiry (unix ms)
// for one relay key. Owner: sidecar. TTL: at least the lease TTL past the newest lease: the
// admission script moves it to 1.25 lease TTLs only when less than one is left, so most
// admissions write no expiry; renewals move it to one lease TTL.
func (s Schema) KeyConcurrency(keyID string) string {
	return s.p + "limit:{key:" + keyID + "}:concurrency"
}

// KeyQueue is a ZSET of one relay key's requests waiting for a concurrency slot (policy
// queue_timeout): member the waiter's lease id, scored by its arrival number from KeyQueueSeq,
// so the admission script lets in only the first waiters, in arrival order across sidecars.
// Owner: sidecar limit scripts (added when a request finds no free slot, removed when it is
// admitted, leaves or its deadline in KeyQueueDeadlines passes). TTL: at least the ticket
// TTL past the newest deadline (moved to 1.25 ticket TTLs by a poll that finds less than one
// left). Shares {key:<id>} with the key's counters.
func (s Schema) KeyQueue(keyID string) string {
	return s.p + "limit:{key:" + keyID + "}:queue"
}

// KeyQueueDeadlines is a ZSET of the same members as KeyQueue scored by their deadline (unix
// ms): a waiter moves its deadline forward with every poll, so a dead sidecar's waiters are
// swept by the next admission that finds the queue non-empty. Owner and TTL: as KeyQueue.
func (s Schema) KeyQueueDeadlines(keyID string) string {
	return s.p + "limit:{key:" + keyID + "}:queue:deadlines"
}

// KeyQueueSeq is a STRING counter handing out KeyQueue's arrival numbers. Owner and TTL: as
// KeyQueue (it may restart once the whole queue expired).
func (s Schema) KeyQueueSeq(keyID string) string {
	return s.p + "limit:{key:" + keyID + "}:queue:seq"
}

// KeyReservations is a ZSET of one relay key's live reservations (requests admitted under a
// limit in reserve mode), member "<lease id>:<tokens>:<micro-USD>" scored by its deadline
// (unix ms). Owner: sidecar limit scripts; the admission script sweeps members whose deadline
// passed (a dead sidecar's) and subtracts them from KeyReserved. TTL: at least the lease TTL
// past the newest deadline, moved together with KeyReserved's (by an admission that finds
// less than one lease TTL left, and by renewals). Shares {key:<id>} with the key's counters.
func (s Schema) KeyReservations(keyID string) string {
	return s.p + "limit:{key:" + keyID + "}:reservations"
}

// KeyReserved is a HASH of the sums of KeyReservations: field "t" (tokens) and "c" (micro-USD),
// what requests in flight may still be charged. Owner: sidecar limit scripts (added at
// admission, subtracted at settlement or sweep; deleted when no reservation is left). TTL: as
// KeyReservations.
func (s Schema) KeyReserved(keyID string) string {
	return s.p + "limit:{key:" + keyID + "}:reserved"
}

// AccountsParked is a HASH of the accounts that must not be scheduled now: field "<account
// id>" (the whole account) or "<account id>/<model family>" (one family only) → "<until unix
// ms>|<state>|<upstream status>|<reason>", where state is rate_limited, near_limit,
// overloaded, failing, unauthorized or blocked and until 0 means "until an operator clears it". Entries
// whose time has passed are ignored by readers and overwritten or swept by writers, so a
// parked account comes back by itself. Owner: sidecar (parking script); the control plane
// clears entries. TTL: none (one small hash per deployment, read in one HGETALL).
func (s Schema) AccountsParked() string { return s.p + "sched:{accounts}:parked" }

// AccountWindows is a HASH: account id → JSON of the account's latest subscription-window
// reading (store.Windows: utilization, reset and status of the 5-hour and 7-day windows, the
// overall status and the representative claim, and when it was seen), taken from the
// anthropic-ratelimit-unified-* headers of its responses. Owner: sidecar (batched, at most one
// HSET per scheduler refresh interval, never on the request path); read by the control plane.
// TTL: none (one small field per account; deleting an account drops its field).
func (s Schema) AccountWindows() string { return s.p + "sched:{accounts}:windows" }

// AccountErrors is a STRING counter of an account's 5xx answers in the current error window,
// used to park an account that fails repeatedly. Owner: sidecar. TTL: the pool's
// park_5xx_window, set when the counter is created.
func (s Schema) AccountErrors(accountID string) string {
	return s.p + "sched:{acct:" + accountID + "}:errors"
}

// AccountInFlight is a ZSET of the requests in flight on an account with max_concurrency,
// lease ids scored by lease expiry (unix ms), shared by all sidecars: the capacity script adds
// a lease only while fewer than max_concurrency unexpired ones exist; the sidecar removes it
// when the request ends and renews it while the request runs, so a crashed sidecar's leases
// expire by themselves. Owner: sidecar. TTL: refreshed past the longest lease by the scripts.
func (s Schema) AccountInFlight(accountID string) string {
	return s.p + "sched:{acct:" + accountID + "}:inflight"
}

// AccountCapUsage is a HASH of an account's use counted for its token and cost caps: fields
// "d:<YYYYMMDD>:t" / "d:<YYYYMMDD>:c" (tokens and micro-USD of one UTC day) and
// "b:<bucket>:t" / "b:<bucket>:c" (of one CapBucket, numbered unix ms / CapBucket, for the
// rolling 5-hour caps). The charge script drops fields that left both windows. Owner:
// sidecar. TTL: two days, renewed by every charge.
func (s Schema) AccountCapUsage(accountID string) string {
	return s.p + "sched:{acct:" + accountID + "}:use"
}

// StickySession is a STRING: pool name and session hash → account id, so a conversation
// stays on one account. Owner: sidecar. TTL: the pool's sticky TTL, refreshed on use.
func (s Schema) StickySession(pool, sessionHash string) string {
	return s.p + "sched:sticky:" + pool + ":" + sessionHash
}

// StickySessionsMatch is the SCAN pattern of every sticky binding ("" sessionHash) or of one
// session's bindings in every pool.
func (s Schema) StickySessionsMatch(sessionHash string) string {
	if sessionHash == "" {
		return s.p + "sched:sticky:*"
	}
	return s.p + "sched:sticky:*:" + sessionHash
}

// StickyClearedChannel is the Pub/Sub channel on which the control plane announces sticky
// bindings an operator cleared, payload "session:<hash>" or "account:<id>", so sidecars drop
// their cached copies at once. Owner: control plane publishes, sidecars subscribe.
func (s Schema) StickyClearedChannel() string { return s.p + "chan:sticky-cleared" }

// Lock is a STRING holding the owner token of a named cluster-wide lock (e.g. token refresh of
// one account). Owner: control plane jobs. TTL: the lock lease.
func (s Schema) Lock(name string) string { return s.p + "lock:" + name }

// --- Admin (control plane) ---

// AdminPassword is a STRING holding an admin user's password hash. Owner: control plane.
// TTL: none.
func (s Schema) AdminPassword(username string) string {
	return s.p + "admin:user:" + username + ":password"
}

// AdminTokenGeneration is a STRING counter INCR'd when an admin user's password changes;
// session tokens carry the generation they were issued in and older ones are refused.
// Owner: control plane. TTL: none.
func (s Schema) AdminTokenGeneration(username string) string {
	return s.p + "admin:user:" + username + ":token-gen"
}

// AdminAudit is a STREAM of admin actions (fields at, who, action, target, remote, detail),
// capped near AuditMaxLen entries. Owner: control plane. TTL: none.
func (s Schema) AdminAudit() string { return s.p + "admin:audit" }

// RevokedToken is a STRING marking an admin JWT id as revoked. Owner: control plane.
// TTL: until the token would have expired anyway.
func (s Schema) RevokedToken(jti string) string { return s.p + "admin:revoked-jti:" + jti }

// AdminEpoch is a STRING holding a random id created (SETNX) when a control plane bootstraps
// the admin user; session tokens carry it. It vanishes only when Redis is emptied, which is
// how control planes notice the loss (they re-create the admin and a new epoch, and tokens
// of the old epoch are refused). Owner: control plane. TTL: none.
func (s Schema) AdminEpoch() string { return s.p + "admin:epoch" }

// --- Configuration distribution (hash tag {config}; control plane) ---

// ConfigEpoch is a STRING holding a random id that names this store's version numbering; it
// is set once (SETNX) and changes only if the store is wiped. Owner: control plane. TTL: none.
func (s Schema) ConfigEpoch() string { return s.p + "{config}:epoch" }

// ConfigVersion is a STRING counter INCR'd for every new configuration snapshot, so versions
// strictly increase across control plane restarts and agree between control planes.
// Owner: control plane (publish script). TTL: none.
func (s Schema) ConfigVersion() string { return s.p + "{config}:version" }

// ConfigCurrent is a HASH describing the current snapshot (fields epoch, version, sha256,
// created_at, config: the snapshot JSON). Written by the publish script together with
// ConfigVersion, so a content hash already published gets no new version. Owner: control
// plane. TTL: none.
func (s Schema) ConfigCurrent() string { return s.p + "{config}:current" }

// ConfigChannel is the Pub/Sub channel on which a control plane announces the version it
// just published, so other control planes wake their long-polls. Owner: control plane.
func (s Schema) ConfigChannel() string { return s.p + "chan:config" }

// Sidecars is a HASH: sidecar id → JSON of what it last reported (address, applied version,
// last NACK, last seen). Owner: control plane (written on each long-poll). TTL: none;
// entries unseen for a day are dropped when listed.
func (s Schema) Sidecars() string { return s.p + "{config}:sidecars" }

// SidecarLoad is a HASH: sidecar id → JSON of its load now (requests in flight, streams being
// relayed, when it said so; SidecarLoad in sidecarload.go). Owner: sidecars (each writes its
// own field when the numbers change, at least every LoadRefresh). TTL: none; entries silent
// for a day are dropped when listed.
func (s Schema) SidecarLoad() string { return s.p + "{config}:sidecar_load" }

// dayString formats the UTC calendar day of t.
func dayString(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// validPrefix reports whether prefix can safely prefix keys: no hash-tag braces (they would
// capture the slot of every key) and no whitespace or glob characters.
func validPrefix(prefix string) bool {
	return !strings.ContainsAny(prefix, "{} \t\r\n*?[]")
}

// --- Alerts (hash tag {alerts}: the outbox scripts and transactions touch these together) ---

// AlertsState is a HASH of the conditions being alerted on now: field "<event>|<subject>" →
// the raising event (JSON). A condition is raised once (HSETNX) and cleared once (HDEL), so
// however many control planes observe it, one event and one all-clear enter the stream.
// Owner: control plane. TTL: none.
func (s Schema) AlertsState() string { return s.p + "alerts:{alerts}:state" }

// AlertsEvents is a STREAM of alert events (field "e": the event as JSON), capped near
// 10,000 entries. Owner: control plane (any). TTL: none.
func (s Schema) AlertsEvents() string { return s.p + "alerts:{alerts}:events" }

// AlertsCursor is a STRING: the id of the last AlertsEvents entry routed into messages.
// Owner: the control plane holding the alerts lock. TTL: none.
func (s Schema) AlertsCursor() string { return s.p + "alerts:{alerts}:cursor" }

// AlertsMessages is a HASH: message id → message (JSON: destination, events, attempts,
// status, last error). Owner: the control plane holding the alerts lock (and `admin alerts
// test`). TTL: none; trimmed with AlertsRecent.
func (s Schema) AlertsMessages() string { return s.p + "alerts:{alerts}:messages" }

// AlertsDue is a ZSET of the messages still to send: message id scored by when (unix ms).
// Owner: as AlertsMessages. TTL: none.
func (s Schema) AlertsDue() string { return s.p + "alerts:{alerts}:due" }

// AlertsRecent is a ZSET of every kept message by creation time (unix ms), trimmed to the
// newest 500 (their AlertsMessages fields go with them). Owner: as AlertsMessages. TTL: none.
func (s Schema) AlertsRecent() string { return s.p + "alerts:{alerts}:recent" }

// AlertsOpen is a HASH: "<alert>|<event>[|resolved]" → the id of the message still gathering
// events for that pair (not yet attempted). Owner: as AlertsMessages. TTL: none.
func (s Schema) AlertsOpen() string { return s.p + "alerts:{alerts}:open" }

// AlertsLastSent is a HASH: "<alert>|<event>[|resolved]" → unix ms of the last message's first
// attempt, from which the alert's cooldown runs. Owner: as AlertsMessages. TTL: none.
func (s Schema) AlertsLastSent() string { return s.p + "alerts:{alerts}:last-sent" }

// AlertsOverloads is a HASH of the overloaded (529) parks the alerts lock holder has seen:
// field "<account>|<family>|<until unix ms>" (one park) → unix ms when first seen. Fields
// older than the overload window are dropped at each look. Owner: the control plane holding
// the alerts lock. TTL: none (a few fields per overloaded account).
func (s Schema) AlertsOverloads() string { return s.p + "alerts:{alerts}:overloads" }
