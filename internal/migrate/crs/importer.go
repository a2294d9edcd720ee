package crs

import (
	"context"
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/claude-relay/claude-relay/store"
)

// UsageSource names CRS usage in the store's import markers: each key's and account's usage
// is carried over once, ever.
const UsageSource = "crs"

// Progress counts what an import has done of its plan.
type Progress struct {
	Stage       string // "accounts", "keys", "usage"
	Done, Total int
}

// Result says what an import changed.
type Result struct {
	AccountsAdded, AccountsExisting int
	KeysCreated, KeysExisting       int
	// Seeded counts keys whose cost_total_usd counter got what they spent in CRS.
	Seeded int
	// UsageRecords counts the usage records offered (each key's and account's once: those
	// imported before are not counted twice).
	UsageRecords int
}

// keyChunk is how many keys one step of the import writes.
const keyChunk = 500

// Apply carries a plan into the store: accounts (sealed by the crypto provider through the
// store's normal account creation), keys with their legacy hash (and the CRS key, sealed),
// what each key spent against a total cost limit, and usage history. Every step is
// idempotent, so running it again (or after an interruption) adds only what is missing.
func Apply(ctx context.Context, st *store.Store, plan *Plan, crsKey []byte, progress func(Progress)) (Result, error) {
	var res Result
	report := func(stage string, done, total int) {
		if progress != nil {
			progress(Progress{Stage: stage, Done: done, Total: total})
		}
	}
	accountIDs, err := applyAccounts(ctx, st, plan, &res, func(d int) { report("accounts", d, len(plan.Accounts)) })
	if err != nil {
		return res, err
	}
	for start := 0; start < len(plan.Keys); start += keyChunk {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		chunk := plan.Keys[start:min(start+keyChunk, len(plan.Keys))]
		specs := make([]store.LegacyKeySpec, len(chunk))
		for i, kp := range chunk {
			specs[i] = kp.Spec
			if kp.BindAccount != "" {
				specs[i].Rules.Binding.AccountID = accountIDs[kp.BindAccount]
			}
		}
		got, err := st.ImportLegacyKeys(ctx, crsKey, specs)
		if err != nil {
			return res, err
		}
		var recs []store.UsageRecord
		for i, ik := range got {
			if ik.Created {
				res.KeysCreated++
			} else {
				res.KeysExisting++
			}
			kp := chunk[i]
			if kp.SpentTotalMicro > 0 {
				ok, err := st.SeedKeyLimitCounter(ctx, ik.Key.ID, "cost_total_usd", time.Time{}, kp.SpentTotalMicro)
				if err != nil {
					return res, err
				}
				if ok {
					res.Seeded++
				}
			}
			for _, r := range kp.Usage {
				r.KeyID = ik.Key.ID
				recs = append(recs, r)
			}
		}
		if err := st.ImportUsage(ctx, UsageSource, recs...); err != nil {
			return res, err
		}
		res.UsageRecords += len(recs)
		report("keys", start+len(chunk), len(plan.Keys))
	}
	var recs []store.UsageRecord
	for _, ap := range plan.Accounts {
		for _, r := range ap.Usage {
			r.AccountID = accountIDs[ap.Source]
			recs = append(recs, r)
		}
	}
	if err := st.ImportUsage(ctx, UsageSource, recs...); err != nil {
		return res, err
	}
	res.UsageRecords += len(recs)
	report("usage", 1, 1)
	return res, nil
}

// applyAccounts adds every planned account not imported before and returns source → id. An
// account that an interrupted run added without recording it is recognised (same name, type,
// base URL and credential) and adopted rather than added twice.
func applyAccounts(ctx context.Context, st *store.Store, plan *Plan, res *Result, step func(int)) (map[string]string, error) {
	ids, err := st.ImportedAccountIDs(ctx)
	if err != nil {
		return nil, err
	}
	var existing []store.Account
	listed := false
	for i, ap := range plan.Accounts {
		if ids[ap.Source] != "" {
			res.AccountsExisting++
			step(i + 1)
			continue
		}
		if !listed {
			if existing, err = st.ListAccounts(ctx); err != nil {
				return nil, err
			}
			listed = true
		}
		id, err := adopt(ctx, st, existing, ids, ap.Spec)
		if err != nil {
			return nil, err
		}
		if id == "" {
			a, err := st.AddAccount(ctx, ap.Spec)
			if err != nil {
				return nil, fmt.Errorf("add %s account %q: %w", ap.Kind, ap.Spec.Name, err)
			}
			id = a.ID
			res.AccountsAdded++
		} else {
			res.AccountsExisting++
		}
		if err := st.MarkImportedAccount(ctx, ap.Source, id); err != nil {
			return nil, err
		}
		ids[ap.Source] = id
		step(i + 1)
	}
	return ids, nil
}

// adopt finds an unrecorded account that is spec (an interrupted run's), or "".
func adopt(ctx context.Context, st *store.Store, existing []store.Account, recorded map[string]string, spec store.AccountSpec) (string, error) {
	taken := make(map[string]bool, len(recorded))
	for _, id := range recorded {
		taken[id] = true
	}
	for _, a := range existing {
		if taken[a.ID] || a.Name != spec.Name || a.Type != spec.Type {
			continue
		}
		cred, err := st.AccountCredential(ctx, a.ID)
		if err != nil {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(cred), []byte(spec.Credential)) == 1 {
			return a.ID, nil
		}
	}
	return "", nil
}
