// Package backup moves an installation between hosts: Export writes relay keys (their
// records: hashes only, no secret exists), upstream accounts, usage and the audit log to one
// file, with every secret (account credentials, the key pepper, the legacy key secret)
// sealed to an age recipient or passphrase; Import restores it into another installation's
// store through the store's normal functions, so accounts are sealed by the target's crypto
// provider. Importing a file again adds nothing.
//
// The file is gzip-compressed JSON (File); its Secrets field is an armored age file holding
// the JSON of secrets.
package backup

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/claude-relay/claude-relay/store"
)

// Format names the file format; Version its version.
const (
	Format  = "claude-relay-backup"
	Version = 1
)

// File is a backup.
type File struct {
	Format    string    `json:"format"`
	Version   int       `json:"version"`
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	// Keys are the relay-key records as stored (hash, rules, state; never a secret).
	Keys []map[string]string `json:"keys"`
	// Accounts are the upstream accounts without their secrets.
	Accounts []store.Account `json:"accounts"`
	// ImportedKeys and ImportedAccounts are the records of earlier imports (source → id).
	ImportedKeys     map[string]string  `json:"imported_keys,omitempty"`
	ImportedAccounts map[string]string  `json:"imported_accounts,omitempty"`
	Usage            store.UsageDump    `json:"usage"`
	Audit            []store.AuditEntry `json:"audit"`
	// Secrets is an armored age file of the JSON of Secrets.
	Secrets string `json:"secrets"`
}

// Secrets are what a backup seals with age.
type Secrets struct {
	Pepper       []byte                          `json:"pepper"`
	LegacySecret []byte                          `json:"legacy_secret,omitempty"`
	Accounts     map[string]store.AccountSecrets `json:"accounts,omitempty"`
}

// Summary counts what an export wrote or an import restored (usage days: offered; each
// key's and account's usage is applied once, ever).
type Summary struct {
	Keys, Accounts, KeyDays, AccountDays, Audit int
}

// Export writes st's keys, accounts, usage and audit log to w, sealing the secrets to to.
func Export(ctx context.Context, st *store.Store, w io.Writer, to ...age.Recipient) (Summary, error) {
	var sum Summary
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return sum, err
	}
	f := File{Format: Format, Version: Version, ID: hex.EncodeToString(id), CreatedAt: time.Now().UTC()}
	var err error
	if f.Keys, err = st.DumpKeys(ctx); err != nil {
		return sum, err
	}
	if f.Accounts, err = st.ListAccounts(ctx); err != nil {
		return sum, err
	}
	sec := Secrets{Pepper: st.Pepper(), Accounts: map[string]store.AccountSecrets{}}
	if sec.LegacySecret, err = st.LoadLegacyKeySecret(ctx); err != nil {
		return sum, err
	}
	for _, a := range f.Accounts {
		if sec.Accounts[a.ID], err = st.AccountSecrets(ctx, a.ID); err != nil {
			return sum, err
		}
	}
	if f.ImportedKeys, err = st.ImportedKeyIDs(ctx); err != nil {
		return sum, err
	}
	if f.ImportedAccounts, err = st.ImportedAccountIDs(ctx); err != nil {
		return sum, err
	}
	if f.Usage, err = st.DumpUsage(ctx); err != nil {
		return sum, err
	}
	if f.Audit, err = st.AuditEntries(ctx); err != nil {
		return sum, err
	}
	if f.Secrets, err = seal(sec, to...); err != nil {
		return sum, err
	}
	zw := gzip.NewWriter(w)
	enc := json.NewEncoder(zw)
	if err := enc.Encode(f); err != nil {
		return sum, fmt.Errorf("write backup: %w", err)
	}
	if err := zw.Close(); err != nil {
		return sum, fmt.Errorf("write backup: %w", err)
	}
	return f.summary(), nil
}

func (f *File) summary() Summary {
	s := Summary{Keys: len(f.Keys), Accounts: len(f.Accounts), Audit: len(f.Audit)}
	for _, days := range f.Usage.KeyDays {
		s.KeyDays += len(days)
	}
	for _, days := range f.Usage.AccountDays {
		s.AccountDays += len(days)
	}
	return s
}

func seal(sec Secrets, to ...age.Recipient) (string, error) {
	if len(to) == 0 {
		return "", errors.New("seal backup secrets: no age recipient or passphrase")
	}
	plain, err := json.Marshal(sec)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	ew, err := age.Encrypt(aw, to...)
	if err != nil {
		return "", fmt.Errorf("seal backup secrets: %w", err)
	}
	if _, err := ew.Write(plain); err != nil {
		return "", err
	}
	if err := ew.Close(); err != nil {
		return "", err
	}
	if err := aw.Close(); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// Read reads a backup and opens its secrets with one of identities.
func Read(r io.Reader, identities ...age.Identity) (*File, *Secrets, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, nil, fmt.Errorf("read backup: not a claude-relay backup (gzip): %w", err)
	}
	var f File
	if err := json.NewDecoder(zr).Decode(&f); err != nil {
		return nil, nil, fmt.Errorf("read backup: %w", err)
	}
	if f.Format != Format || f.Version != Version {
		return nil, nil, fmt.Errorf("read backup: format %q version %d, want %s version %d", f.Format, f.Version, Format, Version)
	}
	dr, err := age.Decrypt(armor.NewReader(bytes.NewReader([]byte(f.Secrets))), identities...)
	if err != nil {
		return nil, nil, fmt.Errorf("open the backup's secrets (wrong passphrase or identity?): %w", err)
	}
	var sec Secrets
	if err := json.NewDecoder(dr).Decode(&sec); err != nil {
		return nil, nil, fmt.Errorf("open the backup's secrets: %w", err)
	}
	return &f, &sec, nil
}

// Summary counts what the backup holds.
func (f *File) Summary() Summary { return f.summary() }

// usageChunk is how many keys' usage one ImportUsage call carries.
const usageChunk = 200

// Import restores a backup into st: the pepper (st must hold no keys hashed with another),
// the legacy key secret, accounts with their ids (sealed by st's crypto provider), key
// records with their indexes, earlier imports' records, usage and the audit log. What
// exists is left alone, so importing again adds nothing; an interrupted import resumes.
func Import(ctx context.Context, st *store.Store, f *File, sec *Secrets) (Summary, error) {
	var sum Summary
	if err := st.AdoptPepper(ctx, sec.Pepper); err != nil {
		return sum, err
	}
	for _, a := range f.Accounts {
		if _, err := st.GetAccount(ctx, a.ID); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return sum, err
		}
		s := sec.Accounts[a.ID]
		spec := store.AccountSpec{
			ID: a.ID, CreatedAt: a.CreatedAt, Name: a.Name, Type: a.Type, BaseURL: a.BaseURL,
			Credential: s.Credential, RefreshToken: s.RefreshToken, ProxyURL: s.ProxyURL,
			Priority: a.Priority, Group: a.Group, Unschedulable: !a.Schedulable, ModelMap: a.ModelMap, Caps: a.Caps,
			TokenExpiresAt: a.TokenExpiresAt, Scopes: a.Scopes,
		}
		if _, err := st.AddAccount(ctx, spec); err != nil {
			return sum, fmt.Errorf("restore account %s: %w", a.ID, err)
		}
		if err := st.RestoreAccountState(ctx, a); err != nil {
			return sum, err
		}
		sum.Accounts++
	}
	for _, rec := range f.Keys {
		ok, err := st.RestoreKeyRecord(ctx, rec)
		if err != nil {
			return sum, err
		}
		if ok {
			sum.Keys++
		}
	}
	if left, err := st.LegacyKeysLeft(ctx); err != nil {
		return sum, err
	} else if left > 0 && len(sec.LegacySecret) > 0 {
		if err := st.RestoreLegacyKeySecret(ctx, sec.LegacySecret); err != nil {
			return sum, err
		}
	}
	if err := st.RestoreImported(ctx, f.ImportedKeys, f.ImportedAccounts); err != nil {
		return sum, err
	}
	if err := importUsage(ctx, st, f, &sum); err != nil {
		return sum, err
	}
	n, err := st.RestoreAudit(ctx, f.Audit)
	sum.Audit = n
	return sum, err
}

func importUsage(ctx context.Context, st *store.Store, f *File, sum *Summary) error {
	source := "backup:" + f.ID
	// A backup that carries its report buckets restores them as they were; the day totals
	// then must not add to them again.
	noReport := len(f.Usage.Reports) > 0
	ids := make([]string, 0, len(f.Usage.KeyTotals)+len(f.Usage.KeyDays))
	seen := map[string]bool{}
	for id := range f.Usage.KeyDays {
		ids, seen[id] = append(ids, id), true
	}
	for id := range f.Usage.KeyTotals {
		if !seen[id] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for start := 0; start < len(ids); start += usageChunk {
		var recs []store.UsageRecord
		for _, id := range ids[start:min(start+usageChunk, len(ids))] {
			var sumDays store.Usage
			for day, models := range f.Usage.KeyDays[id] {
				at, err := time.Parse(time.DateOnly, day)
				if err != nil {
					return fmt.Errorf("backup usage of key %s: day %q: %w", id, day, err)
				}
				for model, u := range models {
					recs = append(recs, store.UsageRecord{KeyID: id, Model: model, At: at, Usage: u, NoReport: noReport})
					sumDays = sumDays.Add(u)
				}
				sum.KeyDays++
			}
			if rest := minus(f.Usage.KeyTotals[id], sumDays); rest != (store.Usage{}) {
				recs = append(recs, store.UsageRecord{KeyID: id, TotalOnly: true, Usage: rest})
			}
		}
		if err := st.ImportUsage(ctx, source, recs...); err != nil {
			return err
		}
	}
	var recs []store.UsageRecord
	for id, days := range f.Usage.AccountDays {
		for day, u := range days {
			at, err := time.Parse(time.DateOnly, day)
			if err != nil {
				return fmt.Errorf("backup usage of account %s: day %q: %w", id, day, err)
			}
			recs = append(recs, store.UsageRecord{AccountID: id, At: at, Usage: u})
			sum.AccountDays++
		}
	}
	if err := st.ImportUsage(ctx, source, recs...); err != nil {
		return err
	}
	return st.RestoreUsageReports(ctx, f.Usage.Reports)
}

// minus is a − b per counter, never below 0 (days whose total expired are in a only).
func minus(a, b store.Usage) store.Usage {
	return store.Usage{
		Requests: max(0, a.Requests-b.Requests), InputTokens: max(0, a.InputTokens-b.InputTokens),
		OutputTokens: max(0, a.OutputTokens-b.OutputTokens), CacheWrite5m: max(0, a.CacheWrite5m-b.CacheWrite5m),
		CacheWrite1h: max(0, a.CacheWrite1h-b.CacheWrite1h), CacheRead: max(0, a.CacheRead-b.CacheRead),
		CostMicroUSD:     max(0, a.CostMicroUSD-b.CostMicroUSD),
		UnpricedRequests: max(0, a.UnpricedRequests-b.UnpricedRequests), EstimatedRequests: max(0, a.EstimatedRequests-b.EstimatedRequests),
		RefusedRequests: max(0, a.RefusedRequests-b.RefusedRequests), FailedRequests: max(0, a.FailedRequests-b.FailedRequests),
	}
}
