package store

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/keylimits"
)

// SecretPrefix starts every relay key secret.
const SecretPrefix = "cr_"

// secretHexLen is the number of lowercase hex characters after SecretPrefix (32 random bytes).
const secretHexLen = 64

// maxNameLen bounds key and account names.
const maxNameLen = 200

// ErrInvalid means a request to the store is malformed (a bad cursor, filter or field).
var ErrInvalid = errors.New("invalid")

// ErrStale means a conditional change named a revision the key no longer has: someone else
// changed it since it was read. The error is a *StaleError carrying the current revision.
var ErrStale = errors.New("stale revision")

// StaleError is the error of a conditional change of a key whose revision moved on.
type StaleError struct {
	ID string
	// Want is the revision the change was conditional on; Current is the key's.
	Want, Current int64
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("key %s is at revision %d, not %d", e.ID, e.Current, e.Want)
}

// Unwrap makes errors.Is(err, ErrStale) hold.
func (e *StaleError) Unwrap() error { return ErrStale }

// FirstRevision is the revision of a new key, and of a key stored before revisions existed
// (its record has no "rev" field), so no migration is needed.
const FirstRevision = 1

// Key statuses, as PageKeys filters them and the admin API reports them.
const (
	KeyStatusActive   = "active"
	KeyStatusDisabled = "disabled"
	KeyStatusExpired  = "expired"
	KeyStatusRevoked  = "revoked"
	KeyStatusDeleted  = "deleted"
)

// KeyLimits are per-key replacements of the values of the key's HCL policy; nil leaves the
// policy's value. It is config.KeyLimits, defined once in internal/keylimits so that the
// store (and the auth plugin) need not link config.
type KeyLimits = keylimits.KeyLimits

// KeyBinding ties a key to one upstream account or to an account group; both empty means
// the key may use any account its route's pool offers.
type KeyBinding struct {
	AccountID string `json:"account_id,omitempty"`
	Group     string `json:"group,omitempty"`
}

// KeyRules are what a key may do beyond its policy: limit overrides, model and client rules,
// an IP allowlist and an account binding. They are stored as one JSON field.
type KeyRules struct {
	Limits KeyLimits `json:"limits,omitzero"`
	// AllowedModels and DeniedModels are model globs ("*" matches any run of characters).
	AllowedModels []string `json:"allowed_models,omitempty"`
	DeniedModels  []string `json:"denied_models,omitempty"`
	// AllowedClients are known client names or User-Agent globs (see config.KnownClients).
	AllowedClients []string `json:"allowed_clients,omitempty"`
	// AllowedCIDRs is the key's IP allowlist (nil allows any address).
	AllowedCIDRs []string   `json:"allowed_cidrs,omitempty"`
	Binding      KeyBinding `json:"binding,omitzero"`
}

// Key is a relay key as stored; the secret itself is never stored.
type Key struct {
	ID          string
	Name        string
	Description string
	Owner       string
	Tags        []string
	// Hint shows the secret's first and last 4 hex characters, e.g. "cr_ab12…ef90".
	Hint string
	// Policy names the HCL limit policy the key is subject to ("" for the default).
	Policy  string
	Rules   KeyRules
	Enabled bool
	// ExpiresAt is a fixed expiry, or the one set when a key with ExpiresAfter was first used.
	ExpiresAt *time.Time
	// ExpiresAfter, when positive, makes the key expire this long after its first use.
	ExpiresAfter time.Duration
	// ActivatedAt is when a key with ExpiresAfter was first used.
	ActivatedAt *time.Time
	CreatedAt   time.Time
	RevokedAt   *time.Time
	DeletedAt   *time.Time
	LastUsedAt  *time.Time
	// Revision counts the key's administrative changes, from FirstRevision: every update,
	// enable/disable, revoke, regenerate, delete and restore increments it atomically with the
	// change. Usage (last use, first-use activation) does not.
	Revision int64
	// Legacy is true for a key imported with another system's hash of its secret (Claude
	// Relay Service) that has not been used since: its first successful use re-indexes it
	// under the HMAC and clears this.
	Legacy bool
}

// Status says whether k can be used at now, and if not why: KeyStatusDeleted, then
// Revoked, Expired, Disabled, else Active.
func (k Key) Status(now time.Time) string {
	switch {
	case k.DeletedAt != nil:
		return KeyStatusDeleted
	case k.RevokedAt != nil:
		return KeyStatusRevoked
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return KeyStatusExpired
	case !k.Enabled:
		return KeyStatusDisabled
	}
	return KeyStatusActive
}

// KeySpec describes a relay key to create. ExpiresAt and ExpiresAfter exclude each other.
type KeySpec struct {
	Name         string
	Description  string
	Owner        string
	Tags         []string
	Policy       string
	Rules        KeyRules
	ExpiresAt    *time.Time
	ExpiresAfter time.Duration
	// Secret, when set, is the key's secret instead of a fresh random one: dev mode
	// re-creates the key it keeps in its data dir in a store that starts empty. It must have
	// the relay key format, and CreateKey refuses one the store knows already (ErrConflict),
	// revoked ones included.
	Secret string
}

// KeyUpdate changes the fields that are non-nil. Expiry replaces both expiry forms (and
// forgets an activation); an Expiry with neither set removes the expiry.
type KeyUpdate struct {
	Name        *string
	Description *string
	Owner       *string
	Tags        *[]string
	Policy      *string
	Rules       *KeyRules
	Expiry      *KeyExpiry
	// IfRevision, when positive, makes the update conditional: it applies only if the key is
	// still at this revision, else it fails with a *StaleError and changes nothing.
	IfRevision int64
}

// KeyExpiry is a fixed expiry time or a lifetime counted from first use (or neither).
type KeyExpiry struct {
	At    *time.Time
	After time.Duration
}

// ParseSecret reports whether secret has the relay key format "cr_" + 64 lowercase hex
// characters. It does no I/O, so malformed keys are refused before Redis is asked.
func ParseSecret(secret string) bool {
	hexPart, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok || len(hexPart) != secretHexLen {
		return false
	}
	for i := 0; i < len(hexPart); i++ {
		c := hexPart[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ValidIndexName reports whether a tag, policy or group name can be indexed: 1 to 64 of
// [A-Za-z0-9._:-] (no commas or spaces: tags are stored comma-separated).
func ValidIndexName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '.' && c != '_' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

// hashSecret returns hex HMAC-SHA256(pepper, secret), the only form of a secret stored.
func (s *Store) hashSecret(secret string) string {
	m := hmac.New(sha256.New, s.pepper)
	m.Write([]byte(secret))
	return hex.EncodeToString(m.Sum(nil))
}

// newSecret returns a fresh secret, its hint and its hash.
func (s *Store) newSecret() (secret, hint, hash string, err error) {
	raw := make([]byte, secretHexLen/2)
	if _, err := rand.Read(raw); err != nil {
		return "", "", "", fmt.Errorf("generate secret: %w", err)
	}
	secret = SecretPrefix + hex.EncodeToString(raw)
	return secret, secretHint(secret), s.hashSecret(secret), nil
}

// secretHint shows a secret's first and last 4 hex characters.
func secretHint(secret string) string {
	hexPart := secret[len(SecretPrefix):]
	return SecretPrefix + hexPart[:4] + "…" + hexPart[secretHexLen-4:]
}

// orderMember is a key's member in the lexicographic indexes: creation ms, then id.
func orderMember(created time.Time, id string) string {
	return fmt.Sprintf("%013d:%s", created.UnixMilli(), id)
}

// orderPrefixLen is the length of "<13 digits>:" in an order member.
const orderPrefixLen = 14

func checkIndexNames(what string, names []string) error {
	for _, n := range names {
		if !ValidIndexName(n) {
			return fmt.Errorf("%s %q must be 1 to 64 of A-Z a-z 0-9 . _ : -", what, n)
		}
	}
	return nil
}

// normTags sorts and de-duplicates tags.
func normTags(tags []string) []string {
	if len(tags) == 0 {
		return nil
	}
	out := slices.Clone(tags)
	slices.Sort(out)
	return slices.Compact(out)
}

// preparedKey is a key ready to be written by createKeyScript.
type preparedKey struct {
	key    Key
	secret string
	keys   []string
	args   []any
}

func (s *Store) prepareKey(spec KeySpec, now time.Time) (preparedKey, error) {
	k, err := keyFromSpec(spec, now)
	if err != nil {
		return preparedKey{}, err
	}
	if k.ExpiresAt != nil && !k.ExpiresAt.After(now) {
		return preparedKey{}, fmt.Errorf("expiry %s is not in the future", k.ExpiresAt.Format(time.RFC3339))
	}
	var secret, hint, hash string
	if spec.Secret != "" {
		if !ParseSecret(spec.Secret) {
			return preparedKey{}, errors.New("a given secret must be " + SecretPrefix + " and 64 lowercase hex characters")
		}
		secret, hint, hash = spec.Secret, secretHint(spec.Secret), s.hashSecret(spec.Secret)
	} else if secret, hint, hash, err = s.newSecret(); err != nil {
		return preparedKey{}, err
	}
	k.Hint = hint
	keys, args, err := s.keyRecordArgs(k, "hash", hash, s.keys.KeyIndex())
	if err != nil {
		return preparedKey{}, err
	}
	return preparedKey{key: k, secret: secret, keys: keys, args: args}, nil
}

// keyFromSpec validates spec and returns the enabled key it describes, with a fresh id,
// created at now. It does not judge the expiry against now (an import may carry a key that
// has already expired).
func keyFromSpec(spec KeySpec, now time.Time) (Key, error) {
	name := strings.TrimSpace(spec.Name)
	if name == "" {
		return Key{}, errors.New("name is required")
	}
	if len(name) > maxNameLen {
		return Key{}, fmt.Errorf("name is %d bytes, want at most %d", len(name), maxNameLen)
	}
	tags := normTags(spec.Tags)
	if err := checkIndexNames("tag", tags); err != nil {
		return Key{}, err
	}
	if spec.Policy != "" {
		if err := checkIndexNames("policy", []string{spec.Policy}); err != nil {
			return Key{}, err
		}
	}
	if spec.ExpiresAt != nil && spec.ExpiresAfter > 0 {
		return Key{}, errors.New("give a fixed expiry or an expiry after first use, not both")
	}
	if spec.ExpiresAfter < 0 {
		return Key{}, errors.New("expiry after first use must be positive")
	}
	var expires *time.Time
	if spec.ExpiresAt != nil {
		e := spec.ExpiresAt.UTC()
		expires = &e
	}
	id, err := newID()
	if err != nil {
		return Key{}, err
	}
	return Key{
		ID: id, Name: name, Description: spec.Description, Owner: spec.Owner, Tags: tags,
		Policy: spec.Policy, Rules: spec.Rules, Enabled: true, CreatedAt: now,
		ExpiresAt: expires, ExpiresAfter: spec.ExpiresAfter, Revision: FirstRevision,
	}, nil
}

// keyRecordArgs returns the KEYS and ARGV with which createKeyScript (or the legacy import
// script) stores k: index is the hash index its secret's hash goes into, hashField the
// record field naming that hash ("hash", or "legacy_hash" for a key imported with another
// system's hash).
func (s *Store) keyRecordArgs(k Key, hashField, hash, index string) ([]string, []any, error) {
	rules, err := json.Marshal(k.Rules)
	if err != nil {
		return nil, nil, fmt.Errorf("encode rules: %w", err)
	}
	ord := orderMember(k.CreatedAt, k.ID)
	args := []any{hash, k.ID, k.CreatedAt.UnixMilli(), ord,
		"id", k.ID, "name", k.Name, "description", k.Description, "owner", k.Owner,
		"tags", strings.Join(k.Tags, ","), "hint", k.Hint, "policy", k.Policy, "rules", string(rules),
		"enabled", boolString(k.Enabled), "created_at", formatTime(k.CreatedAt), "ord", ord, hashField, hash, "rev", FirstRevision}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"expires_at", k.ExpiresAt}, {"activated_at", k.ActivatedAt}, {"deleted_at", k.DeletedAt}, {"last_used_at", k.LastUsedAt}} {
		if f.t != nil {
			args = append(args, f.name, formatTime(*f.t))
		}
	}
	if k.ExpiresAfter > 0 {
		args = append(args, "expires_after_ms", k.ExpiresAfter.Milliseconds())
	}
	listing := s.keys.KeysLive()
	if k.DeletedAt != nil {
		listing = s.keys.KeysDeleted()
	}
	keys := []string{s.keys.KeyRecord(k.ID), index, s.keys.KeysByCreation(), listing}
	for _, t := range k.Tags {
		keys = append(keys, s.keys.KeysByTag(t))
	}
	if k.Policy != "" {
		keys = append(keys, s.keys.KeysByPolicy(k.Policy))
	}
	return keys, args, nil
}

// CreateKey creates an enabled relay key and returns it with its secret, which is shown once
// and never stored (only its HMAC is).
func (s *Store) CreateKey(ctx context.Context, spec KeySpec) (Key, string, error) {
	p, err := s.prepareKey(spec, s.now().UTC())
	if err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	if spec.Secret != "" {
		// The script refuses a secret live in the index; a revoked one must not come back
		// either.
		if _, err := s.LookupKey(ctx, spec.Secret); !errors.Is(err, ErrNotFound) {
			if err == nil || errors.Is(err, ErrKeyRevoked) || errors.Is(err, ErrKeyDisabled) || errors.Is(err, ErrKeyExpired) {
				err = ErrConflict
			}
			return Key{}, "", fmt.Errorf("create key with a given secret: %w", err)
		}
	}
	ok, err := createKeyScript.Run(ctx, s.rdb, p.keys, p.args...).Int()
	if err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	if ok == 0 {
		return Key{}, "", fmt.Errorf("create key: id %s: %w", p.key.ID, ErrConflict)
	}
	return p.key, p.secret, nil
}

// CreatedKey is one key made by CreateKeys, with its secret.
type CreatedKey struct {
	Key    Key
	Secret string
}

// CreateKeys creates several keys in one pipelined round trip. Every spec is validated first:
// one bad spec creates nothing and the error names its index.
func (s *Store) CreateKeys(ctx context.Context, specs []KeySpec) ([]CreatedKey, error) {
	now := s.now().UTC()
	prepared := make([]preparedKey, len(specs))
	for i, spec := range specs {
		p, err := s.prepareKey(spec, now)
		if err != nil {
			return nil, fmt.Errorf("create keys: key %d: %w", i, err)
		}
		prepared[i] = p
	}
	cmds := make([]*redis.Cmd, len(prepared))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, pk := range prepared {
			cmds[i] = createKeyScript.EvalSha(ctx, p, pk.keys, pk.args...)
		}
		return nil
	})
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if lerr := createKeyScript.Load(ctx, s.rdb).Err(); lerr != nil {
			return nil, fmt.Errorf("create keys: load script: %w", lerr)
		}
		return s.createKeysOneByOne(ctx, prepared)
	}
	if err != nil {
		return nil, fmt.Errorf("create keys: %w", err)
	}
	out := make([]CreatedKey, len(prepared))
	for i, c := range cmds {
		if n, _ := c.Int(); n == 0 {
			return nil, fmt.Errorf("create keys: id %s: %w", prepared[i].key.ID, ErrConflict)
		}
		out[i] = CreatedKey{Key: prepared[i].key, Secret: prepared[i].secret}
	}
	return out, nil
}

func (s *Store) createKeysOneByOne(ctx context.Context, prepared []preparedKey) ([]CreatedKey, error) {
	out := make([]CreatedKey, len(prepared))
	for i, p := range prepared {
		ok, err := createKeyScript.Run(ctx, s.rdb, p.keys, p.args...).Int()
		if err != nil {
			return nil, fmt.Errorf("create keys: %w", err)
		}
		if ok == 0 {
			return nil, fmt.Errorf("create keys: id %s: %w", p.key.ID, ErrConflict)
		}
		out[i] = CreatedKey{Key: p.key, Secret: p.secret}
	}
	return out, nil
}

// LookupKey finds the key for a secret in one Redis round trip. It returns ErrNotFound for a
// malformed or unknown secret (a soft-deleted key is unknown); for a known key that cannot be
// used it returns the key together with ErrKeyRevoked, ErrKeyDisabled or ErrKeyExpired
// (checked in that order). The first successful lookup of a key that expires some time after
// first use activates it (one more round trip, once per key). A secret the HMAC index does not
// know is looked up among legacy hashes while any remain (see lookupLegacyKey).
func (s *Store) LookupKey(ctx context.Context, secret string) (Key, error) {
	if !ParseSecret(secret) {
		return Key{}, ErrNotFound
	}
	hash := s.hashSecret(secret)
	// Read before the HMAC lookup: if legacy hashes remained then, a miss may be a key that
	// a concurrent first use is upgrading right now, which the legacy lookup then finds.
	legacy := s.legacyLeft.Load()
	keys := []string{s.keys.KeyIndex(), s.keys.KeyRevokedIndex()}
	fields, err := lookupKeyScript.Run(ctx, s.rdb, keys, hash, s.keys.KeyRecordPrefix()).StringSlice()
	if errors.Is(err, redis.Nil) {
		if !legacy {
			return Key{}, ErrNotFound
		}
		return s.lookupLegacyKey(ctx, secret, hash)
	}
	if err != nil {
		return Key{}, fmt.Errorf("lookup key: %w", err)
	}
	rec := pairs(fields)
	if len(rec) == 0 || !hmac.Equal([]byte(rec["hash"]), []byte(hash)) {
		return Key{}, ErrNotFound
	}
	k, err := keyFromRecord(rec)
	if err != nil {
		return Key{}, fmt.Errorf("lookup key: %w", err)
	}
	return s.admitKey(ctx, k)
}

// admitKey finishes a lookup of a key found by its secret: a soft-deleted key is unknown, an
// unusable one is returned with why, and a key that expires some time after first use is
// activated.
func (s *Store) admitKey(ctx context.Context, k Key) (Key, error) {
	if k.DeletedAt != nil && k.RevokedAt == nil {
		return Key{}, ErrNotFound
	}
	if err := s.usable(k); err != nil {
		return k, err
	}
	if k.ExpiresAfter > 0 && k.ActivatedAt == nil {
		var err error
		if k, err = s.activateKey(ctx, k); err != nil {
			return Key{}, err
		}
		return k, s.usable(k)
	}
	return k, nil
}

// activateKey starts the lifetime of a key that expires after first use (once: a concurrent
// activation keeps the first).
func (s *Store) activateKey(ctx context.Context, k Key) (Key, error) {
	now := s.now().UTC()
	vals, err := activateKeyScript.Run(ctx, s.rdb, []string{s.keys.KeyRecord(k.ID)},
		formatTime(now), formatTime(now.Add(k.ExpiresAfter))).StringSlice()
	if err != nil {
		return Key{}, fmt.Errorf("activate key %s: %w", k.ID, err)
	}
	if len(vals) != 2 {
		return Key{}, fmt.Errorf("activate key %s: %w", k.ID, ErrNotFound)
	}
	if k.ActivatedAt, err = parseOptTime(vals[0]); err != nil {
		return Key{}, fmt.Errorf("activate key %s: %w", k.ID, err)
	}
	if k.ExpiresAt, err = parseOptTime(vals[1]); err != nil {
		return Key{}, fmt.Errorf("activate key %s: %w", k.ID, err)
	}
	return k, nil
}

// usable says why a key cannot be used now, or nil.
func (s *Store) usable(k Key) error {
	switch {
	case k.RevokedAt != nil:
		return ErrKeyRevoked
	case !k.Enabled:
		return ErrKeyDisabled
	case k.ExpiresAt != nil && !s.now().Before(*k.ExpiresAt):
		return ErrKeyExpired
	}
	return nil
}

// GetKey returns the key with the given id, or ErrNotFound.
func (s *Store) GetKey(ctx context.Context, id string) (Key, error) {
	rec, err := s.rdb.HGetAll(ctx, s.keys.KeyRecord(id)).Result()
	if err != nil {
		return Key{}, fmt.Errorf("get key %s: %w", id, err)
	}
	if len(rec) == 0 {
		return Key{}, fmt.Errorf("get key %s: %w", id, ErrNotFound)
	}
	k, err := keyFromRecord(rec)
	if err != nil {
		return Key{}, fmt.Errorf("get key %s: %w", id, err)
	}
	return k, nil
}

// ListKeys returns every key, revoked and deleted ones included, oldest first. It reads the
// creation-time index, never KEYS or SCAN; for large sets use PageKeys.
func (s *Store) ListKeys(ctx context.Context) ([]Key, error) {
	ids, err := s.rdb.ZRange(ctx, s.keys.KeysByCreation(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	out, err := s.getKeys(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return out, nil
}

// getKeys reads the records of ids in one pipeline, skipping ids that vanished.
func (s *Store) getKeys(ctx context.Context, ids []string) ([]Key, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.keys.KeyRecord(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Key
	for _, c := range cmds {
		rec := c.Val()
		if len(rec) == 0 {
			continue // deleted between the two reads
		}
		k, err := keyFromRecord(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// KeyFilter selects keys for PageKeys; zero fields match everything. Deleted keys are listed
// only when Status is KeyStatusDeleted.
type KeyFilter struct {
	// NameContains matches names containing it, ignoring ASCII case.
	NameContains string
	Tag          string
	// Policy matches keys naming this policy; PolicySet with an empty Policy matches keys
	// on the default policy.
	Policy    string
	PolicySet bool
	// Status is one of the KeyStatus constants, or "" for every status but deleted.
	Status string
}

// KeyPage is one page of keys, oldest first, and the cursor of the next ("" at the end).
type KeyPage struct {
	Keys []Key
	Next string
}

// pageScanBudget is how many index entries one call of the page script examines, so a
// selective filter over a large index never blocks Redis for long.
const pageScanBudget = 1000

// MaxPageLimit bounds PageKeys' limit.
const MaxPageLimit = 1000

// PageKeys returns up to limit keys matching f that were created after cursor ("" for the
// start), oldest first. It walks a sorted-set index — the tag's or policy's when the filter
// names one — with ZRANGEBYLEX inside a script that applies the rest of the filter to each
// record, a bounded number of entries per call; it never issues KEYS or SCAN.
func (s *Store) PageKeys(ctx context.Context, f KeyFilter, cursor string, limit int) (KeyPage, error) {
	if limit <= 0 || limit > MaxPageLimit {
		return KeyPage{}, fmt.Errorf("page keys: limit %d must be 1 to %d", limit, MaxPageLimit)
	}
	if cursor != "" && (len(cursor) <= orderPrefixLen || cursor[orderPrefixLen-1] != ':') {
		return KeyPage{}, fmt.Errorf("page keys: malformed cursor: %w", ErrInvalid)
	}
	switch f.Status {
	case "", KeyStatusActive, KeyStatusDisabled, KeyStatusExpired, KeyStatusRevoked, KeyStatusDeleted:
	default:
		return KeyPage{}, fmt.Errorf("page keys: unknown status %q: %w", f.Status, ErrInvalid)
	}
	index := s.keys.KeysLive()
	switch {
	case f.Tag != "":
		index = s.keys.KeysByTag(f.Tag)
	case f.PolicySet && f.Policy != "":
		index = s.keys.KeysByPolicy(f.Policy)
	case f.Status == KeyStatusDeleted:
		index = s.keys.KeysDeleted()
	}
	policyOn := "0"
	if f.PolicySet {
		policyOn = "1"
	}
	now := formatTime(s.now())
	needle := strings.ToLower(f.NameContains)
	var ids []string
	for {
		res, err := pageKeysScript.Run(ctx, s.rdb, []string{index}, cursor, pageScanBudget, limit-len(ids),
			f.Status, needle, now, f.Policy, policyOn, f.Tag, s.keys.KeyRecordPrefix()).StringSlice()
		if err != nil {
			return KeyPage{}, fmt.Errorf("page keys: %w", err)
		}
		if len(res) < 2 {
			return KeyPage{}, errors.New("page keys: short script reply")
		}
		last, exhausted := res[0], res[1] == "1"
		ids = append(ids, res[2:]...)
		if exhausted {
			cursor = ""
			break
		}
		cursor = last
		if len(ids) >= limit {
			break
		}
	}
	keys, err := s.getKeys(ctx, ids)
	if err != nil {
		return KeyPage{}, fmt.Errorf("page keys: %w", err)
	}
	return KeyPage{Keys: keys, Next: cursor}, nil
}

// UpdateKey changes a key's fields as u says and publishes its id on the revocations channel,
// so sidecars drop cached results and apply the new rules. A deleted key is ErrConflict.
func (s *Store) UpdateKey(ctx context.Context, id string, u KeyUpdate) (Key, error) {
	var set []any
	var del []any
	if u.Name != nil {
		name := strings.TrimSpace(*u.Name)
		if name == "" || len(name) > maxNameLen {
			return Key{}, fmt.Errorf("update key %s: name must be 1 to %d bytes: %w", id, maxNameLen, ErrInvalid)
		}
		set = append(set, "name", name)
	}
	if u.Description != nil {
		set = append(set, "description", *u.Description)
	}
	if u.Owner != nil {
		set = append(set, "owner", *u.Owner)
	}
	tagsOn, tags := "0", ""
	if u.Tags != nil {
		t := normTags(*u.Tags)
		if err := checkIndexNames("tag", t); err != nil {
			return Key{}, fmt.Errorf("update key %s: %w: %w", id, err, ErrInvalid)
		}
		tagsOn, tags = "1", strings.Join(t, ",")
	}
	policyOn, policy := "0", ""
	if u.Policy != nil {
		if *u.Policy != "" {
			if err := checkIndexNames("policy", []string{*u.Policy}); err != nil {
				return Key{}, fmt.Errorf("update key %s: %w: %w", id, err, ErrInvalid)
			}
		}
		policyOn, policy = "1", *u.Policy
	}
	if u.Rules != nil {
		b, err := json.Marshal(*u.Rules)
		if err != nil {
			return Key{}, fmt.Errorf("update key %s: encode rules: %w", id, err)
		}
		set = append(set, "rules", string(b))
	}
	if e := u.Expiry; e != nil {
		if e.At != nil && e.After > 0 {
			return Key{}, fmt.Errorf("update key %s: give a fixed expiry or one after first use, not both: %w", id, ErrInvalid)
		}
		del = append(del, "activated_at", "expires_at", "expires_after_ms")
		if e.At != nil {
			set = append(set, "expires_at", formatTime(*e.At))
		}
		if e.After > 0 {
			set = append(set, "expires_after_ms", e.After.Milliseconds())
		}
	}
	args := []any{s.keys.KeysIndexPrefix(), s.keys.RevocationsChannel(), id, tagsOn, tags, policyOn, policy,
		revisionArg(u.IfRevision), len(del)}
	args = append(args, del...)
	args = append(args, set...)
	code, err := runRevScript(ctx, s, updateKeyScript, []string{s.keys.KeyRecord(id)}, id, u.IfRevision, args...)
	if err != nil {
		return Key{}, fmt.Errorf("update key %s: %w", id, err)
	}
	if code == -1 {
		return Key{}, fmt.Errorf("update key %s: key is deleted; restore it first: %w", id, ErrConflict)
	}
	return s.GetKey(ctx, id)
}

// revisionArg is the expected-revision argument of a key script: "" for an unconditional
// change.
func revisionArg(ifRevision int64) string {
	if ifRevision <= 0 {
		return ""
	}
	return strconv.FormatInt(ifRevision, 10)
}

// runRevScript runs a key script that replies {code, revision} and turns code 0 into
// ErrNotFound and revStale into a *StaleError; it returns any other code.
func runRevScript(ctx context.Context, s *Store, script *redis.Script, keys []string, id string, ifRevision int64, args ...any) (int64, error) {
	res, err := script.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err != nil {
		return 0, err
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("script replied %v, want {code, revision}", res)
	}
	switch res[0] {
	case 0:
		return 0, ErrNotFound
	case revStale:
		return 0, &StaleError{ID: id, Want: ifRevision, Current: res[1]}
	}
	return res[0], nil
}

// RevokeKey revokes a key for good: it removes the secret's hash from the live index, sets
// RevokedAt and publishes the key id on the revocations channel. Revoking twice keeps the
// first RevokedAt.
func (s *Store) RevokeKey(ctx context.Context, id string) error {
	return s.RevokeKeyIf(ctx, id, 0)
}

// RevokeKeyIf is RevokeKey conditional on the key's revision, like KeyUpdate.IfRevision
// (0: unconditional).
func (s *Store) RevokeKeyIf(ctx context.Context, id string, ifRevision int64) error {
	keys := []string{s.keys.KeyRecord(id), s.keys.KeyIndex(), s.keys.KeyRevokedIndex()}
	_, err := runRevScript(ctx, s, revokeKeyScript, keys, id, ifRevision,
		formatTime(s.now()), s.keys.RevocationsChannel(), id, revisionArg(ifRevision))
	if err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	}
	return nil
}

// SetKeyEnabled disables or re-enables a key and publishes its id on the revocations channel
// so sidecars drop cached results. Enabling a revoked key fails with ErrConflict.
func (s *Store) SetKeyEnabled(ctx context.Context, id string, enabled bool) error {
	return s.SetKeyEnabledIf(ctx, id, enabled, 0)
}

// SetKeyEnabledIf is SetKeyEnabled conditional on the key's revision (0: unconditional).
func (s *Store) SetKeyEnabledIf(ctx context.Context, id string, enabled bool, ifRevision int64) error {
	code, err := runRevScript(ctx, s, setKeyEnabledScript, []string{s.keys.KeyRecord(id)}, id, ifRevision,
		boolString(enabled), s.keys.RevocationsChannel(), id, revisionArg(ifRevision))
	if err != nil {
		return fmt.Errorf("set key %s enabled=%t: %w", id, enabled, err)
	}
	if code == -1 {
		return fmt.Errorf("enable key %s: key is revoked: %w", id, ErrConflict)
	}
	return nil
}

// RegenerateKey gives a key a new secret, returned once; the old secret stops working at
// once (sidecars drop cached results on the published id). A revoked or deleted key is
// ErrConflict.
func (s *Store) RegenerateKey(ctx context.Context, id string) (Key, string, error) {
	return s.RegenerateKeyIf(ctx, id, 0)
}

// RegenerateKeyIf is RegenerateKey conditional on the key's revision (0: unconditional).
func (s *Store) RegenerateKeyIf(ctx context.Context, id string, ifRevision int64) (Key, string, error) {
	secret, hint, hash, err := s.newSecret()
	if err != nil {
		return Key{}, "", fmt.Errorf("regenerate key %s: %w", id, err)
	}
	res, err := runRevScript(ctx, s, regenerateKeyScript, []string{s.keys.KeyRecord(id), s.keys.KeyIndex()}, id, ifRevision,
		hash, hint, id, s.keys.RevocationsChannel(), revisionArg(ifRevision))
	if err != nil {
		return Key{}, "", fmt.Errorf("regenerate key %s: %w", id, err)
	}
	switch res {
	case -1:
		return Key{}, "", fmt.Errorf("regenerate key %s: key is revoked or deleted: %w", id, ErrConflict)
	case -2:
		return Key{}, "", fmt.Errorf("regenerate key %s: secret collision: %w", id, ErrConflict)
	}
	k, err := s.GetKey(ctx, id)
	return k, secret, err
}

// DeleteKey soft-deletes a key: its secret stops working at once and it leaves the default
// listing, but RestoreKey brings it back. Deleting a deleted key is ErrConflict.
func (s *Store) DeleteKey(ctx context.Context, id string) error {
	return s.setKeyDeleted(ctx, id, true, 0)
}

// DeleteKeyIf is DeleteKey conditional on the key's revision (0: unconditional).
func (s *Store) DeleteKeyIf(ctx context.Context, id string, ifRevision int64) error {
	return s.setKeyDeleted(ctx, id, true, ifRevision)
}

// RestoreKey undoes DeleteKey; a key that was revoked stays revoked. Restoring a key that is
// not deleted is ErrConflict.
func (s *Store) RestoreKey(ctx context.Context, id string) error {
	return s.setKeyDeleted(ctx, id, false, 0)
}

// RestoreKeyIf is RestoreKey conditional on the key's revision (0: unconditional).
func (s *Store) RestoreKeyIf(ctx context.Context, id string, ifRevision int64) error {
	return s.setKeyDeleted(ctx, id, false, ifRevision)
}

func (s *Store) setKeyDeleted(ctx context.Context, id string, deleted bool, ifRevision int64) error {
	keys := []string{s.keys.KeyRecord(id), s.keys.KeyIndex(), s.keys.KeysLive(), s.keys.KeysDeleted()}
	res, err := runRevScript(ctx, s, deleteKeyScript, keys, id, ifRevision, boolString(deleted), formatTime(s.now()),
		s.keys.RevocationsChannel(), id, revisionArg(ifRevision))
	verb := "restore"
	if deleted {
		verb = "delete"
	}
	if err != nil {
		return fmt.Errorf("%s key %s: %w", verb, id, err)
	}
	switch res {
	case -1:
		if deleted {
			return fmt.Errorf("delete key %s: already deleted: %w", id, ErrConflict)
		}
		return fmt.Errorf("restore key %s: not deleted: %w", id, ErrConflict)
	}
	return nil
}

// SubscribeRevocations subscribes to the channel on which revoked, disabled, re-enabled,
// updated, regenerated and deleted key ids are published. The caller closes the PubSub.
func (s *Store) SubscribeRevocations(ctx context.Context) *redis.PubSub {
	return s.rdb.Subscribe(ctx, s.keys.RevocationsChannel())
}

// TouchKey records that the key was used at at; last_used_at only moves forward.
func (s *Store) TouchKey(ctx context.Context, id string, at time.Time) error {
	ok, err := touchKeyScript.Run(ctx, s.rdb, []string{s.keys.KeyRecord(id)}, formatTime(at)).Int()
	if err != nil {
		return fmt.Errorf("touch key %s: %w", id, err)
	}
	if ok == 0 {
		return fmt.Errorf("touch key %s: %w", id, ErrNotFound)
	}
	return nil
}

// pairs turns a flat HGETALL reply into a map.
func pairs(flat []string) map[string]string {
	if len(flat) == 0 {
		return nil
	}
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		m[flat[i]] = flat[i+1]
	}
	return m
}

func keyFromRecord(rec map[string]string) (Key, error) {
	k := Key{
		ID:          rec["id"],
		Name:        rec["name"],
		Description: rec["description"],
		Owner:       rec["owner"],
		Hint:        rec["hint"],
		Policy:      rec["policy"],
		Enabled:     rec["enabled"] == "1",
		Revision:    FirstRevision,
		Legacy:      rec["legacy_hash"] != "",
	}
	if r := rec["rev"]; r != "" {
		n, err := strconv.ParseInt(r, 10, 64)
		if err != nil || n < FirstRevision {
			return Key{}, fmt.Errorf("key %s rev %q: not a revision", k.ID, r)
		}
		k.Revision = n
	}
	if t := rec["tags"]; t != "" {
		k.Tags = strings.Split(t, ",")
	}
	if r := rec["rules"]; r != "" {
		if err := json.Unmarshal([]byte(r), &k.Rules); err != nil {
			return Key{}, fmt.Errorf("key %s rules: %w", k.ID, err)
		}
	}
	if ms := rec["expires_after_ms"]; ms != "" {
		n, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			return Key{}, fmt.Errorf("key %s expires_after_ms %q: %w", k.ID, ms, err)
		}
		k.ExpiresAfter = time.Duration(n) * time.Millisecond
	}
	var err error
	if k.CreatedAt, err = parseTime(rec["created_at"]); err != nil {
		return Key{}, fmt.Errorf("key %s: %w", k.ID, err)
	}
	for _, f := range []struct {
		field string
		dst   **time.Time
	}{
		{"expires_at", &k.ExpiresAt},
		{"activated_at", &k.ActivatedAt},
		{"revoked_at", &k.RevokedAt},
		{"deleted_at", &k.DeletedAt},
		{"last_used_at", &k.LastUsedAt},
	} {
		if *f.dst, err = parseOptTime(rec[f.field]); err != nil {
			return Key{}, fmt.Errorf("key %s %s: %w", k.ID, f.field, err)
		}
	}
	return k, nil
}
