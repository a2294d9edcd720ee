package backup_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/migrate/backup"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

func open(t *testing.T, encKey string) (*store.Store, redis.UniversalClient, string) {
	t.Helper()
	rdb, prefix := testredis.New(t)
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix, Sealer: storetest.Sealer(t, encKey)})
	return st, rdb, prefix
}

// installation fills a store with one of everything a backup carries, and returns secrets
// of keys that must authenticate after a restore.
func installation(t *testing.T, st *store.Store) []string {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	exp := time.Now().Add(-time.Hour)
	oauth, err := st.AddAccount(ctx, store.AccountSpec{Name: "max", Type: store.AccountTypeClaudeOAuth, Credential: "sk-ant-oat01-access-token-0123456789",
		RefreshToken: "sk-ant-ort01-refresh", TokenExpiresAt: &exp, Scopes: "user:inference", ProxyURL: "socks5h://u:p@127.0.0.1:1080", Group: "team"})
	must(err)
	compat, err := st.AddAccount(ctx, store.AccountSpec{Name: "gateway", Type: store.AccountTypeAnthropicCompatible, BaseURL: "https://gw.example.com",
		Credential: "gw-key-0123456789abcdefghijkl", ModelMap: map[string]string{"claude-sonnet-4-5": "sonnet"}, Priority: 7, Unschedulable: true,
		Caps: store.AccountCaps{MaxConcurrency: 2, TokensPer5h: 500000, CostPerDayUSD: 12.5}})
	must(err)
	must(st.SetRefreshFailure(ctx, oauth.ID, "invalid_grant", time.Now(), time.Now().Add(time.Minute), 2))
	must(st.TouchAccount(ctx, compat.ID, time.Now()))
	live, liveSecret, err := st.CreateKey(ctx, store.KeySpec{Name: "live", Tags: []string{"a", "b"}, Policy: "team",
		Rules: store.KeyRules{DeniedModels: []string{"claude-opus-*"}, Binding: store.KeyBinding{AccountID: compat.ID}}})
	must(err)
	revoked, _, err := st.CreateKey(ctx, store.KeySpec{Name: "revoked"})
	must(err)
	must(st.RevokeKey(ctx, revoked.ID))
	deleted, _, err := st.CreateKey(ctx, store.KeySpec{Name: "deleted", Tags: []string{"a"}})
	must(err)
	must(st.DeleteKey(ctx, deleted.ID))
	legacySecret := "cr_" + strings.Repeat("5a", 32)
	crsKey := []byte("CRS-KEY")
	_, err = st.ImportLegacyKeys(ctx, crsKey, []store.LegacyKeySpec{{KeySpec: store.KeySpec{Name: "from crs"}, LegacyHash: store.LegacyKeyHash(legacySecret, crsKey), Source: "crs:1"}})
	must(err)
	must(st.MarkImportedAccount(ctx, "crs:claude:1", oauth.ID))
	day := time.Now().Add(-48 * time.Hour)
	must(st.RecordUsage(ctx,
		store.UsageRecord{KeyID: live.ID, AccountID: compat.ID, Model: "claude-sonnet-4-5", At: day, Usage: store.Usage{Requests: 2, InputTokens: 10, OutputTokens: 5, CacheWrite1h: 3, CostMicroUSD: 99}},
		store.UsageRecord{KeyID: live.ID, AccountID: oauth.ID, Model: "claude-haiku-4-5", Usage: store.Usage{Requests: 1, InputTokens: 7, CostMicroUSD: 1}},
	))
	must(st.ImportUsage(ctx, "crs", store.UsageRecord{KeyID: live.ID, TotalOnly: true, Usage: store.Usage{Requests: 40, CostMicroUSD: 4000}}))
	for i, action := range []string{"key.create", "key.revoke", "account.add"} {
		must(st.AppendAudit(ctx, store.AuditEntry{Who: "admin", Action: action, Target: "t", Remote: "127.0.0.1", Detail: map[string]string{"i": string(rune('0' + i))}}))
	}
	return []string{liveSecret, legacySecret}
}

// content is a store's keys without its prefix, less what a restore legitimately writes
// differently: sealed envelopes (compared opened), the accounts' change counter, import markers.
func content(t *testing.T, rdb redis.UniversalClient, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range testredis.Dump(t, rdb, prefix) {
		k = strings.TrimPrefix(k, prefix)
		switch {
		case k == "{keys}:pepper", k == "{keys}:legacy-secret", k == "{accounts}:version",
			strings.HasPrefix(k, "{accounts}:account:"), strings.Contains(k, "}:applied:"):
			continue
		}
		out[k] = v
	}
	return out
}

func TestBackupRoundTripLosesNothing(t *testing.T) {
	ctx := context.Background()
	src, srcRDB, srcPrefix := open(t, "0123456789abcdef0123456789abcdef")
	secrets := installation(t, src)
	pass, err := age.NewScryptRecipient("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	pass.SetWorkFactor(10)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, how := range []struct {
		name string
		to   age.Recipient
		id   age.Identity
	}{{"passphrase", pass, mustScrypt(t, "correct horse battery staple")}, {"x25519", id.Recipient(), id}} {
		t.Run(how.name, func(t *testing.T) {
			var file bytes.Buffer
			sum, err := backup.Export(ctx, src, &file, how.to)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Keys != 4 || sum.Accounts != 2 || sum.Audit != 3 {
				t.Errorf("export summary %+v, want 4 keys, 2 accounts, 3 audit entries", sum)
			}
			plain, _ := backup.ReadRaw(bytes.NewReader(file.Bytes()))
			for _, secret := range []string{"sk-ant-oat01-access-token", "sk-ant-ort01-refresh", "gw-key-0123", "u:p@"} {
				if strings.Contains(plain, secret) {
					t.Errorf("the backup file holds %q in clear", secret)
				}
			}
			dst, dstRDB, dstPrefix := open(t, "fedcba9876543210fedcba9876543210") // another encryption key
			f, sec, err := backup.Read(bytes.NewReader(file.Bytes()), how.id)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := backup.Import(ctx, dst, f, sec); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(content(t, srcRDB, srcPrefix), content(t, dstRDB, dstPrefix)); diff != "" {
				t.Errorf("stores differ after the round trip (-source +restored):\n%s", diff)
			}
			srcAccts, _ := src.ListAccounts(ctx)
			dstAccts, _ := dst.ListAccounts(ctx)
			if diff := cmp.Diff(srcAccts, dstAccts); diff != "" {
				t.Errorf("accounts differ (-source +restored):\n%s", diff)
			}
			for _, a := range srcAccts {
				want, _ := src.AccountSecrets(ctx, a.ID)
				got, err := dst.AccountSecrets(ctx, a.ID)
				if err != nil || got != want {
					t.Errorf("account %s secrets: got %+v (%v), want %+v", a.ID, got, err, want)
				}
			}
			// A restarted relay on the target accepts the same secrets.
			reopened, err := store.Open(ctx, dstRDB, store.Options{Prefix: dstPrefix, Sealer: mustSealer(t, "fedcba9876543210fedcba9876543210")})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range secrets {
				if _, err := reopened.LookupKey(ctx, s); err != nil {
					t.Errorf("key %s… after the restore: %v", s[:7], err)
				}
			}
			// Importing again adds nothing.
			before := testredis.Dump(t, dstRDB, dstPrefix)
			again, err := backup.Import(ctx, reopened, f, sec)
			if err != nil || again.Keys != 0 || again.Accounts != 0 || again.Audit != 0 {
				t.Errorf("second import: %+v, %v; want nothing restored", again, err)
			}
			if diff := cmp.Diff(before, testredis.Dump(t, dstRDB, dstPrefix)); diff != "" {
				t.Errorf("the second import changed the store:\n%s", diff)
			}
		})
	}
}

func TestBackupImportRefusesAnInstallationWithOtherKeys(t *testing.T) {
	ctx := context.Background()
	src, _, _ := open(t, "0123456789abcdef0123456789abcdef")
	installation(t, src)
	id, _ := age.GenerateX25519Identity()
	var file bytes.Buffer
	if _, err := backup.Export(ctx, src, &file, id.Recipient()); err != nil {
		t.Fatal(err)
	}
	dst, _, _ := open(t, "0123456789abcdef0123456789abcdef")
	if _, _, err := dst.CreateKey(ctx, store.KeySpec{Name: "already here"}); err != nil {
		t.Fatal(err)
	}
	f, sec, err := backup.Read(bytes.NewReader(file.Bytes()), id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Import(ctx, dst, f, sec); err == nil || !strings.Contains(err.Error(), "already has 1 relay keys") {
		t.Errorf("got %v, want a refusal naming the keys already there", err)
	}
	other, _ := age.GenerateX25519Identity()
	if _, _, err := backup.Read(bytes.NewReader(file.Bytes()), other); err == nil {
		t.Errorf("a backup opened with the wrong identity")
	}
}

func mustScrypt(t *testing.T, pass string) age.Identity {
	t.Helper()
	id, err := age.NewScryptIdentity(pass)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustSealer(t *testing.T, key string) *aesgcm.Sealer {
	t.Helper()
	s, err := aesgcm.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
