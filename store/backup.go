package store

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Backups: what `claude-relay export` reads and `import backup` writes. Keys travel as their
// records (hashes only: no secret exists), accounts through AddAccount (so they are sealed by
// the target's crypto provider), usage through ImportUsage, the audit log entry by entry.

// DumpKeys returns the record of every relay key, as stored, oldest first.
func (s *Store) DumpKeys(ctx context.Context) ([]map[string]string, error) {
	ids, err := s.rdb.ZRange(ctx, s.keys.KeysByCreation(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("dump keys: %w", err)
	}
	out := make([]map[string]string, 0, len(ids))
	for start := 0; start < len(ids); start += 1000 {
		chunk := ids[start:min(start+1000, len(ids))]
		cmds := make([]*redis.MapStringStringCmd, len(chunk))
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range chunk {
				cmds[i] = p.HGetAll(ctx, s.keys.KeyRecord(id))
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("dump keys: %w", err)
		}
		for _, c := range cmds {
			if len(c.Val()) > 0 {
				out = append(out, c.Val())
			}
		}
	}
	return out, nil
}

// RestoreKeyRecord stores a key record from DumpKeys with every index it belongs to: its hash in
// the live, revoked or legacy index (none while soft-deleted), the listing, tag and policy
// indexes. A key whose id exists is left alone (false).
func (s *Store) RestoreKeyRecord(ctx context.Context, rec map[string]string) (bool, error) {
	k, err := keyFromRecord(rec)
	if err != nil {
		return false, fmt.Errorf("restore key: %w", err)
	}
	if !ValidIndexName(k.ID) {
		return false, fmt.Errorf("restore key: bad id %q", k.ID)
	}
	hashKey, hash := "", ""
	switch {
	case rec["legacy_hash"] != "":
		hashKey, hash = s.keys.LegacyKeyIndex(), rec["legacy_hash"]
	case k.DeletedAt != nil && k.RevokedAt == nil:
	case k.RevokedAt != nil:
		hashKey, hash = s.keys.KeyRevokedIndex(), rec["hash"]
	default:
		hashKey, hash = s.keys.KeyIndex(), rec["hash"]
	}
	ord := rec["ord"]
	if ord == "" {
		ord = orderMember(k.CreatedAt, k.ID)
	}
	listing := s.keys.KeysLive()
	if k.DeletedAt != nil {
		listing = s.keys.KeysDeleted()
	}
	keys := []string{s.keys.KeyRecord(k.ID), s.keys.KeysByCreation(), listing, hashKey}
	for _, t := range k.Tags {
		keys = append(keys, s.keys.KeysByTag(t))
	}
	if k.Policy != "" {
		keys = append(keys, s.keys.KeysByPolicy(k.Policy))
	}
	if hashKey == "" {
		keys[3] = s.keys.KeyIndex() // unused: hash is ""
	}
	args := []any{k.ID, k.CreatedAt.UnixMilli(), ord, hash}
	fields := make([]string, 0, len(rec))
	for f := range rec {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		args = append(args, f, rec[f])
	}
	ok, err := restoreKeyScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return false, fmt.Errorf("restore key %s: %w", k.ID, err)
	}
	if ok == -1 {
		return false, fmt.Errorf("restore key %s: its hash belongs to another key: %w", k.ID, ErrConflict)
	}
	return ok == 1, nil
}

// restoreKeyScript stores a key record and its indexes unless the id exists. KEYS: record,
// by_created, listing index, hash index, then tag and policy indexes. ARGV: id, creation
// score, order member, hash ("" for none), field, value, ... Returns 1 when stored, 0 when the
// id exists, -1 when the hash is taken.
var restoreKeyScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if ARGV[4] ~= '' then
  local holder = redis.call('HGET', KEYS[4], ARGV[4])
  if holder and holder ~= ARGV[1] then return -1 end
  redis.call('HSET', KEYS[4], ARGV[4], ARGV[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
for i = 5, #KEYS do
  redis.call('ZADD', KEYS[i], 0, ARGV[3])
end
return 1
`)

// AdoptPepper makes pepper the relay-key HMAC pepper, so key hashes made elsewhere match: a
// no-op when it already is; refused (ErrConflict) when this store holds keys hashed with
// another. Processes that opened the store before keep the old pepper until restarted.
func (s *Store) AdoptPepper(ctx context.Context, pepper []byte) error {
	if len(pepper) != pepperLen {
		return fmt.Errorf("adopt pepper: %d bytes, want %d", len(pepper), pepperLen)
	}
	if hmac.Equal(pepper, s.pepper) {
		return nil
	}
	n, err := s.rdb.ZCard(ctx, s.keys.KeysByCreation()).Result()
	if err != nil {
		return fmt.Errorf("adopt pepper: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("adopt pepper: this installation already has %d relay keys hashed with its own pepper; restore into one without keys: %w", n, ErrConflict)
	}
	env, err := s.sealer.Seal(ctx, pepper, pepperAAD)
	if err != nil {
		return fmt.Errorf("adopt pepper: seal: %w", err)
	}
	if err := s.rdb.Set(ctx, s.keys.Pepper(), env, 0).Err(); err != nil {
		return fmt.Errorf("adopt pepper: %w", err)
	}
	s.pepper = bytes.Clone(pepper)
	return nil
}

// RestoreLegacyKeySecret stores the legacy key secret sealed, unless one is stored.
func (s *Store) RestoreLegacyKeySecret(ctx context.Context, secret []byte) error {
	env, err := s.sealer.Seal(ctx, secret, legacySecretAAD)
	if err != nil {
		return fmt.Errorf("restore legacy key secret: %w", err)
	}
	if err := s.rdb.SetNX(ctx, s.keys.LegacyKeySecret(), env, 0).Err(); err != nil {
		return fmt.Errorf("restore legacy key secret: %w", err)
	}
	return nil
}

// RestoreImported adds source → id entries of ImportedKeys and ImportedAccounts that are
// missing.
func (s *Store) RestoreImported(ctx context.Context, keys, accounts map[string]string) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for src, id := range keys {
			p.HSetNX(ctx, s.keys.ImportedKeys(), src, id)
		}
		for src, id := range accounts {
			p.HSetNX(ctx, s.keys.ImportedAccounts(), src, id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore import records: %w", err)
	}
	return nil
}

// RestoreAccountState writes what an account learnt while in use (last use, token refresh
// state) from a backup of it; its secrets and settings come through AddAccount.
func (s *Store) RestoreAccountState(ctx context.Context, a Account) error {
	var set []any
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"last_used_at", a.LastUsedAt}, {"refresh_failed_at", a.RefreshFailedAt}, {"refresh_retry_at", a.RefreshRetryAt}, {"token_refreshed_at", a.TokenRefreshedAt}} {
		if f.t != nil {
			set = append(set, f.name, formatTime(*f.t))
		}
	}
	if a.RefreshError != "" {
		set = append(set, "refresh_error", a.RefreshError)
	}
	if a.RefreshFailures != 0 {
		set = append(set, "refresh_failures", a.RefreshFailures)
	}
	if err := s.writeAccount(ctx, a.ID, set, nil); err != nil {
		return fmt.Errorf("restore account state: %w", err)
	}
	return nil
}

// UsageDump is every usage hash of a store: per key, UTC day (YYYY-MM-DD) and model; per
// key all-time; per account and UTC day.
type UsageDump struct {
	KeyDays     map[string]map[string]map[string]Usage `json:"key_days,omitempty"`
	KeyTotals   map[string]Usage                       `json:"key_totals,omitempty"`
	AccountDays map[string]map[string]Usage            `json:"account_days,omitempty"`
	// Reports are the report buckets as stored: day (YYYY-MM-DD) → "all" or "hour:HH" →
	// field ("<key>|<account>|<model>") → packed counters; and their rollups as stored,
	// under "sum:all", "keys:all" and "sum:hour:HH". A backup without them (an older file)
	// has its reports rebuilt from the key days instead; one without rollups has them
	// marked partial (reports read the buckets).
	Reports map[string]map[string]map[string]string `json:"reports,omitempty"`
}

// DumpUsage reads every usage hash. It SCANs (on every master of a Cluster), so it is for
// exports, never for a request path.
func (s *Store) DumpUsage(ctx context.Context) (UsageDump, error) {
	d := UsageDump{KeyDays: map[string]map[string]map[string]Usage{}, KeyTotals: map[string]Usage{}, AccountDays: map[string]map[string]Usage{}, Reports: map[string]map[string]map[string]string{}}
	names, err := s.scanKeys(ctx, s.keys.p+"usage:{*")
	if err != nil {
		return d, fmt.Errorf("dump usage: %w", err)
	}
	for _, name := range names {
		rest := strings.TrimPrefix(name, s.keys.p+"usage:{")
		tag, tail, ok := strings.Cut(rest, "}:")
		if !ok {
			continue
		}
		kind, id, _ := strings.Cut(tag, ":")
		switch {
		case kind == "key" && tail == "total":
			u, err := s.usageHash(ctx, name)
			if err != nil {
				return d, fmt.Errorf("dump usage %s: %w", name, err)
			}
			d.KeyTotals[id] = u
		case kind == "key" && strings.HasPrefix(tail, "day:"):
			day := strings.TrimPrefix(tail, "day:")
			t, err := time.Parse(time.DateOnly, day)
			if err != nil {
				continue
			}
			m, err := s.KeyUsage(ctx, id, t)
			if err != nil {
				return d, err
			}
			if d.KeyDays[id] == nil {
				d.KeyDays[id] = map[string]map[string]Usage{}
			}
			d.KeyDays[id][day] = m
		case kind == "acct" && strings.HasPrefix(tail, "day:"):
			day := strings.TrimPrefix(tail, "day:")
			u, err := s.usageHash(ctx, name)
			if err != nil {
				return d, fmt.Errorf("dump usage %s: %w", name, err)
			}
			if d.AccountDays[id] == nil {
				d.AccountDays[id] = map[string]Usage{}
			}
			d.AccountDays[id][day] = u
		case kind == "day" && (tail == "all" || strings.HasPrefix(tail, "hour:") || tail == "keys:all" || strings.HasPrefix(tail, "sum:")):
			fields, err := s.rdb.HGetAll(ctx, name).Result()
			if err != nil {
				return d, fmt.Errorf("dump usage %s: %w", name, err)
			}
			if d.Reports[id] == nil {
				d.Reports[id] = map[string]map[string]string{}
			}
			d.Reports[id][tail] = fields
		}
	}
	return d, nil
}

// AuditEntries returns the whole audit log, oldest first.
func (s *Store) AuditEntries(ctx context.Context) ([]AuditEntry, error) {
	var out []AuditEntry
	cursor := ""
	for {
		page, next, err := s.ListAudit(ctx, cursor, MaxPageLimit)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// RestoreAudit appends audit entries from a backup, oldest first, keeping their ids while
// they are newer than the log's last entry and giving later ones new ids (their time, who,
// action, target and detail kept, the original id in the field "restored_id"). An entry
// restored before is skipped, so restoring again adds nothing. It returns how many it added.
func (s *Store) RestoreAudit(ctx context.Context, entries []AuditEntry) (int, error) {
	key := s.keys.AdminAudit()
	msgs, err := s.rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil {
		return 0, fmt.Errorf("restore audit: %w", err)
	}
	have := make(map[string]bool, len(msgs))
	last := ""
	for _, m := range msgs {
		have[m.ID] = true
		if r, _ := m.Values["restored_id"].(string); r != "" {
			have[r] = true
		}
		last = m.ID
	}
	added := 0
	for _, e := range entries {
		if have[e.ID] {
			continue
		}
		id := e.ID
		values := []any{"at", formatTime(e.At), "who", e.Who, "action", e.Action, "target", e.Target, "remote", e.Remote, "detail", ""}
		if len(e.Detail) > 0 {
			b, err := json.Marshal(e.Detail)
			if err != nil {
				return added, fmt.Errorf("restore audit: %w", err)
			}
			values[len(values)-1] = string(b)
		}
		if last != "" && !streamIDAfter(id, last) {
			values = append(values, "restored_id", id)
			id = "*"
		}
		newID, err := s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: id, Values: values}).Result()
		if err != nil {
			return added, fmt.Errorf("restore audit entry %s: %w", e.ID, err)
		}
		last = newID
		added++
	}
	return added, nil
}

// streamIDAfter reports whether stream id a sorts after b.
func streamIDAfter(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if len(am) != len(bm) {
		return len(am) > len(bm)
	}
	if am != bm {
		return am > bm
	}
	if len(as) != len(bs) {
		return len(as) > len(bs)
	}
	return as > bs
}

// RestoreUsageReports writes report buckets from a backup (UsageDump.Reports) as they were:
// a field already present is left alone, so importing again adds nothing. A bucket past its
// retention is skipped; the others expire as the recorder's would. A bucket that did not
// exist gets its rollups as the backup carries them; one merged into an existing bucket (or
// restored from a backup without rollups) has its rollups marked partial, so that reports
// read the bucket itself.
func (s *Store) RestoreUsageReports(ctx context.Context, reports map[string]map[string]map[string]string) error {
	for dayText, buckets := range reports {
		day, err := time.Parse(time.DateOnly, dayText)
		if err != nil {
			return fmt.Errorf("restore usage reports: day %q: %w", dayText, err)
		}
		if err := s.restoreReportDay(ctx, day, buckets); err != nil {
			return fmt.Errorf("restore usage reports of %s: %w", dayText, err)
		}
	}
	return nil
}

// reportBucketOf is a backed-up report bucket of day: its hash, its rollups (tail → hash)
// and when it expires.
type reportBucketOf struct {
	name     string
	rollups  map[string]string
	expireAt time.Time
}

func (s *Store) reportBucket(day time.Time, tail string) (reportBucketOf, error) {
	hourly, daily := s.UsageRetention()
	if tail == "all" {
		return reportBucketOf{s.keys.UsageDay(day), map[string]string{"sum:all": s.keys.UsageDaySum(day), "keys:all": s.keys.UsageDayKeys(day)}, day.Add(24*time.Hour + daily)}, nil
	}
	h, err := strconv.Atoi(strings.TrimPrefix(tail, "hour:"))
	if err != nil || h < 0 || h > 23 || !strings.HasPrefix(tail, "hour:") {
		return reportBucketOf{}, fmt.Errorf("bucket %q", tail)
	}
	hour := day.Add(time.Duration(h) * time.Hour)
	return reportBucketOf{s.keys.UsageHour(hour), map[string]string{"sum:" + tail: s.keys.UsageHourSum(hour)}, hour.Add(time.Hour + hourly)}, nil
}

// restoreReportDay restores one day's buckets: one round trip to see which exist, one to
// write them, one for their rollups.
func (s *Store) restoreReportDay(ctx context.Context, day time.Time, buckets map[string]map[string]string) error {
	now := s.now()
	var todo []string
	plans := map[string]reportBucketOf{}
	for tail, fields := range buckets {
		if tail == "keys:all" || strings.HasPrefix(tail, "sum:") {
			continue // a rollup: written with its bucket
		}
		b, err := s.reportBucket(day, tail)
		if err != nil {
			return err
		}
		if b.expireAt.After(now) && len(fields) > 0 {
			todo, plans[tail] = append(todo, tail), b
		}
	}
	existed := make([]*redis.IntCmd, len(todo))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, tail := range todo {
			existed[i] = p.Exists(ctx, plans[tail].name)
		}
		return nil
	}); err != nil {
		return err
	}
	added := make([][]*redis.BoolCmd, len(todo))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, tail := range todo {
			b := plans[tail]
			for f, v := range buckets[tail] {
				added[i] = append(added[i], p.HSetNX(ctx, b.name, f, v))
			}
			p.ExpireAt(ctx, b.name, b.expireAt)
		}
		return nil
	}); err != nil {
		return err
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, tail := range todo {
			b := plans[tail]
			grew := slices.ContainsFunc(added[i], func(c *redis.BoolCmd) bool { return c.Val() })
			for rtail, rname := range b.rollups {
				sums, carried := buckets[rtail]
				switch {
				case existed[i].Val() == 0 && carried && len(sums) > 0:
					p.Del(ctx, rname)
					p.HSet(ctx, rname, sums)
				case grew: // merged into what was there: its rollups no longer add up
					p.HSet(ctx, rname, rollupPartial, "1")
				default:
					continue // nothing was added
				}
				p.ExpireAt(ctx, rname, b.expireAt)
			}
		}
		return nil
	})
	return err
}
