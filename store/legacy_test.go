package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
)

// crsKeyBytes is a Claude Relay Service ENCRYPTION_KEY, the secret its key hashes were made with.
var crsKeyBytes = []byte("CRS-ENCRYPTION-KEY-32-CHARACTERS")

// crsSecret returns a relay-key secret as CRS made them: cr_ + 64 hex.
func crsSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return SecretPrefix + hex.EncodeToString(b)
}

// importOne imports one legacy key for secret under source and returns it.
func importOne(t *testing.T, s *Store, source, secret string, mod func(*LegacyKeySpec)) Key {
	t.Helper()
	spec := LegacyKeySpec{KeySpec: KeySpec{Name: source}, LegacyHash: LegacyKeyHash(secret, crsKeyBytes), Source: source}
	if mod != nil {
		mod(&spec)
	}
	got, err := s.ImportLegacyKeys(context.Background(), crsKeyBytes, []LegacyKeySpec{spec})
	if err != nil {
		t.Fatalf("ImportLegacyKeys: %v", err)
	}
	if len(got) != 1 || !got[0].Created {
		t.Fatalf("got %+v, want one created key", got)
	}
	return got[0].Key
}

// reopen opens the store again, as a restarted process does, so it loads the legacy secret.
func reopen(t *testing.T, rdb redis.UniversalClient, prefix string, clk *testutil.Clock) *Store {
	t.Helper()
	s, err := Open(context.Background(), rdb, Options{Prefix: prefix, Sealer: sealer(t, testEncKey), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLegacyKeyHashIsSHA256OfSecretAndCRSKey(t *testing.T) {
	// sha256("abc"), the FIPS 180-2 test vector: secret "ab" + CRS key "c".
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := LegacyKeyHash("ab", []byte("c")); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestImportedLegacyKeyAuthenticatesWithItsOldSecretAndIsUpgradedOnFirstUse(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb, prefix := newStore(t)
	secret := crsSecret(t)
	k := importOne(t, s, "crs:alice", secret, func(sp *LegacyKeySpec) { sp.Tags = []string{"team"} })
	if !k.Legacy || k.Hint != legacyHint {
		t.Errorf("got legacy=%v hint %q, want a legacy key with hint %q", k.Legacy, k.Hint, legacyHint)
	}
	if _, err := s.LookupKey(ctx, secret); !errors.Is(err, ErrNotFound) {
		t.Errorf("a store opened before the import: got %v, want ErrNotFound (it has no legacy secret)", err)
	}
	s = reopen(t, rdb, prefix, clk)
	got, err := s.LookupKey(ctx, secret)
	if err != nil {
		t.Fatalf("LookupKey with the CRS secret: %v", err)
	}
	wantHint := "cr_" + secret[3:7] + "…" + secret[63:]
	if got.ID != k.ID || got.Legacy || got.Hint != wantHint {
		t.Errorf("got id %s legacy=%v hint %q, want %s upgraded with hint %q", got.ID, got.Legacy, got.Hint, k.ID, wantHint)
	}
	keys := s.Schema()
	rec, _ := rdb.HGetAll(ctx, keys.KeyRecord(k.ID)).Result()
	if rec["legacy_hash"] != "" || rec["hash"] != s.hashSecret(secret) {
		t.Errorf("record after first use: legacy_hash %q, hash %q; want no legacy hash and the HMAC", rec["legacy_hash"], rec["hash"])
	}
	if n, _ := rdb.HLen(ctx, keys.LegacyKeyIndex()).Result(); n != 0 {
		t.Errorf("legacy index has %d entries, want 0", n)
	}
	if n, _ := rdb.Exists(ctx, keys.LegacyKeySecret()).Result(); n != 0 {
		t.Errorf("the legacy key secret is still stored after the last legacy hash went")
	}
	// From now on the HMAC index finds it in one round trip, and a fresh process too.
	hook := &countHook{}
	rdb.AddHook(hook)
	if _, err := s.LookupKey(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if got := hook.roundTrips(); got != 1 {
		t.Errorf("lookup after the upgrade: got %d round trips, want 1", got)
	}
	hook.reset()
	if _, err := s.LookupKey(ctx, crsSecret(t)); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if got := hook.roundTrips(); got != 1 {
		t.Errorf("unknown secret once no legacy hash remains: got %d round trips, want 1 (no legacy lookup)", got)
	}
	if _, err := reopen(t, rdb, prefix, clk).LookupKey(ctx, secret); err != nil {
		t.Errorf("a restarted process: %v", err)
	}
}

func TestUnknownSecretCostsOneLegacyLookupWhileLegacyHashesRemain(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb, prefix := newStore(t)
	importOne(t, s, "crs:waiting", crsSecret(t), nil)
	s = reopen(t, rdb, prefix, clk)
	hook := &countHook{}
	rdb.AddHook(hook)
	if _, err := s.LookupKey(ctx, crsSecret(t)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if got := hook.roundTrips(); got != 2 {
		t.Errorf("got %d round trips, want 2 (HMAC index, then legacy index)", got)
	}
}

func TestLegacyKeysThatCannotBeUsedStayRefusedAndKeepTheirLegacyHash(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb, prefix := newStore(t)
	past := clk.Now().Add(-time.Hour)
	secrets := map[string]string{}
	for _, name := range []string{"disabled", "expired", "deleted", "revoked"} {
		secrets[name] = crsSecret(t)
	}
	importOne(t, s, "disabled", secrets["disabled"], func(sp *LegacyKeySpec) { sp.Disabled = true })
	importOne(t, s, "expired", secrets["expired"], func(sp *LegacyKeySpec) { sp.ExpiresAt = &past })
	importOne(t, s, "deleted", secrets["deleted"], func(sp *LegacyKeySpec) { sp.DeletedAt = &past })
	revoked := importOne(t, s, "revoked", secrets["revoked"], nil)
	if err := s.RevokeKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, rdb, prefix, clk)
	for name, want := range map[string]error{"disabled": ErrKeyDisabled, "expired": ErrKeyExpired, "deleted": ErrNotFound, "revoked": ErrKeyRevoked} {
		if _, err := s.LookupKey(ctx, secrets[name]); !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
		}
	}
	if n, _ := rdb.HLen(ctx, s.Schema().LegacyKeyIndex()).Result(); n != 4 {
		t.Errorf("legacy index has %d entries, want all 4 kept (none was used)", n)
	}
	// Re-enabled, the disabled one works and is upgraded.
	ids, _ := rdb.HGetAll(ctx, s.Schema().ImportedKeys()).Result()
	if err := s.SetKeyEnabled(ctx, ids["disabled"], true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupKey(ctx, secrets["disabled"]); err != nil {
		t.Errorf("re-enabled legacy key: %v", err)
	}
	if n, _ := rdb.HLen(ctx, s.Schema().LegacyKeyIndex()).Result(); n != 3 {
		t.Errorf("legacy index has %d entries, want 3", n)
	}
}

func TestRegeneratedLegacyKeyRefusesItsOldSecret(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb, prefix := newStore(t)
	old := crsSecret(t)
	k := importOne(t, s, "crs:regen", old, nil)
	_, fresh, err := s.RegenerateKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	s = reopen(t, rdb, prefix, clk)
	if _, err := s.LookupKey(ctx, old); !errors.Is(err, ErrNotFound) {
		t.Errorf("old CRS secret after regenerate: got %v, want ErrNotFound", err)
	}
	if _, err := s.LookupKey(ctx, fresh); err != nil {
		t.Errorf("new secret: %v", err)
	}
	if n, _ := rdb.Exists(ctx, s.Schema().LegacyKeySecret(), s.Schema().LegacyKeyIndex()).Result(); n != 0 {
		t.Errorf("the stale legacy entry and secret were not dropped (%d keys left)", n)
	}
}

func TestConcurrentFirstUsesOfALegacyKeyOnTwoSidecarsAgree(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb, prefix := newStore(t)
	secrets := make([]string, 5)
	for i := range secrets {
		secrets[i] = crsSecret(t)
		importOne(t, s, "crs:"+secrets[i][3:11], secrets[i], nil)
	}
	// Two auth providers, as two sidecars run them: lookup-only stores with the legacy secret.
	var sidecars [2]*Store
	for i := range sidecars {
		st, err := OpenKeyLookup(rdb, prefix, s.Pepper(), crsKeyBytes, clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		sidecars[i] = st
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for _, st := range sidecars {
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, sec := range secrets {
					if _, err := st.LookupKey(ctx, sec); err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a concurrent first use failed: %v", err)
	}
	idx, _ := rdb.HGetAll(ctx, s.Schema().KeyIndex()).Result()
	if len(idx) != len(secrets) {
		t.Errorf("HMAC index has %d entries, want %d", len(idx), len(secrets))
	}
	if n, _ := rdb.Exists(ctx, s.Schema().LegacyKeyIndex(), s.Schema().LegacyKeySecret()).Result(); n != 0 {
		t.Errorf("legacy index or secret left behind after every key was used")
	}
	_ = reopen(t, rdb, prefix, clk) // opens without a legacy secret
}

func TestImportLegacyKeysTwiceChangesNothing(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, prefix := newStore(t)
	specs := make([]LegacyKeySpec, 3)
	for i := range specs {
		specs[i] = LegacyKeySpec{KeySpec: KeySpec{Name: "k", Tags: []string{"imported"}}, LegacyHash: LegacyKeyHash(crsSecret(t), crsKeyBytes), Source: "crs:" + string(rune('a'+i))}
	}
	first, err := s.ImportLegacyKeys(ctx, crsKeyBytes, specs)
	if err != nil {
		t.Fatal(err)
	}
	before := dumpPrefix(t, rdb, prefix)
	second, err := s.ImportLegacyKeys(ctx, crsKeyBytes, specs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range specs {
		if second[i].Created || second[i].Key.ID != first[i].Key.ID {
			t.Errorf("key %d: second import got created=%v id %s, want not created, id %s", i, second[i].Created, second[i].Key.ID, first[i].Key.ID)
		}
	}
	if after := dumpPrefix(t, rdb, prefix); !equalDumps(before, after) {
		t.Errorf("the second import changed the store")
	}
}

func TestImportLegacyKeysRefusesAnotherSecretWhileHashesRemain(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := newStore(t)
	importOne(t, s, "crs:first", crsSecret(t), nil)
	spec := LegacyKeySpec{KeySpec: KeySpec{Name: "other"}, LegacyHash: LegacyKeyHash(crsSecret(t), []byte("another")), Source: "crs:other"}
	if _, err := s.ImportLegacyKeys(ctx, []byte("another CRS key"), []LegacyKeySpec{spec}); !errors.Is(err, ErrConflict) {
		t.Errorf("got %v, want ErrConflict", err)
	}
}

func TestRotateSecretsRewrapsTheLegacyKeySecret(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb, prefix := newStore(t)
	secret := crsSecret(t)
	importOne(t, s, "crs:rotated", secret, nil)
	rotated, err := Open(ctx, rdb, Options{Prefix: prefix, Sealer: twoKeySealer(t), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	p, err := rotated.RotateSecrets(ctx, twoKeySealer(t), nil)
	if err != nil || p.Total != 2 || p.Rewrapped != 2 {
		t.Fatalf("got %+v, %v; want 2 secrets (pepper, legacy secret) re-sealed", p, err)
	}
	onlyNew, err := Open(ctx, rdb, Options{Prefix: prefix, Sealer: sealer(t, otherEncKey), Now: clk.Now})
	if err != nil {
		t.Fatalf("open with only the new key: %v", err)
	}
	if _, err := onlyNew.LookupKey(ctx, secret); err != nil {
		t.Errorf("legacy key after rotation: %v", err)
	}
}

// twoKeySealer seals under otherEncKey and still opens what testEncKey sealed.
func twoKeySealer(t *testing.T) *aesgcm.Sealer {
	t.Helper()
	s, err := aesgcm.New(otherEncKey, testEncKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dumpPrefix returns every key under prefix in a canonical form.
func dumpPrefix(t *testing.T, rdb redis.UniversalClient, prefix string) map[string]string {
	t.Helper()
	return testredis.Dump(t, rdb, prefix)
}

func equalDumps(a, b map[string]string) bool { return maps.Equal(a, b) }
