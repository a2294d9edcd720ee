package apikey

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

func TestAuthenticateAnswersEveryKeyState(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testredis.New(t)
	clk := testutil.NewClock(time.Now().UTC())
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix, Now: clk.Now})
	mk := func(spec store.KeySpec) (store.Key, string) {
		k, secret, err := st.CreateKey(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		return k, secret
	}
	soon := clk.Now().Add(10 * time.Second)
	valid, validSecret := mk(store.KeySpec{Name: "valid", Policy: "team"})
	_, expiringSecret := mk(store.KeySpec{Name: "expiring", ExpiresAt: &soon})
	revoked, revokedSecret := mk(store.KeySpec{Name: "revoked"})
	disabled, disabledSecret := mk(store.KeySpec{Name: "disabled"})
	if err := st.RevokeKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.SetKeyEnabled(ctx, disabled.ID, false); err != nil {
		t.Fatal(err)
	}

	// The provider as the plugin runs it: configured over the contract, not from a store.
	rc, _ := json.Marshal(store.RedisConfig{Addr: rdb.(*redis.Client).Options().Addr})
	p := New("test")
	p.now = clk.Now
	if _, err := p.Authenticate(ctx, contract.AuthRequest{Credential: validSecret}); !errors.Is(err, contract.ErrNotConfigured) {
		t.Fatalf("got %v before Configure, want ErrNotConfigured", err)
	}
	if err := p.Configure(ctx, map[string]string{SettingRedis: string(rc), SettingPrefix: prefix, SettingPepper: hex.EncodeToString(st.Pepper())}); err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	tests := []struct {
		name        string
		credential  string
		wantKey     string
		wantRefusal string
		wantTTL     time.Duration
	}{
		{"valid key", validSecret, valid.ID, "", 60 * time.Second},
		{"key expiring before the cache TTL is cached until its expiry", expiringSecret, "", "", 10 * time.Second},
		{"unknown key", "cr_" + strings.Repeat("ab", 32), "", "unknown relay key", 2 * time.Second},
		{"malformed", "sk-ant-not-a-relay-key", "", "cr_ followed by 64 hex", 2 * time.Second},
		{"revoked", revokedSecret, "", "revoked", 2 * time.Second},
		{"disabled", disabledSecret, "", "disabled", 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := p.Authenticate(ctx, contract.AuthRequest{Credential: tc.credential})
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantRefusal == "" && !res.Accepted() {
				t.Fatalf("got refusal %q, want accepted", res.Refusal)
			}
			if tc.wantRefusal != "" && !strings.Contains(res.Refusal, tc.wantRefusal) {
				t.Errorf("got refusal %q, want one containing %q", res.Refusal, tc.wantRefusal)
			}
			if tc.wantKey != "" && (res.Principal.KeyID != tc.wantKey || res.Principal.Policy != "team") {
				t.Errorf("got principal %+v, want key %s under policy team", res.Principal, tc.wantKey)
			}
			if res.CacheTTL != tc.wantTTL {
				t.Errorf("got cache TTL %v, want %v", res.CacheTTL, tc.wantTTL)
			}
		})
	}
}

func TestConfigureRefusesBadSettings(t *testing.T) {
	tests := []struct {
		name     string
		settings map[string]string
		want     string
	}{
		{"no redis", map[string]string{SettingPepper: strings.Repeat("00", 32)}, "JSON Redis configuration"},
		{"pepper not hex", map[string]string{SettingRedis: `{"Addr":"127.0.0.1:1"}`, SettingPepper: "zz"}, "not hex"},
		{"bad ttl", map[string]string{SettingRedis: `{"Addr":"127.0.0.1:1"}`, SettingPepper: "00", SettingCacheTTL: "soon"}, "duration"},
		{"legacy secret not hex", map[string]string{SettingRedis: `{"Addr":"127.0.0.1:1"}`, SettingPepper: "00", SettingLegacySecret: "zz"}, "legacy_secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := New("test").Configure(context.Background(), tc.settings)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestKeyImportedFromCRSAuthenticatesWithTheLegacySecretSetting(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testredis.New(t)
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix})
	crsKey := []byte("CRS-ENCRYPTION-KEY-32-CHARACTERS")
	secret := "cr_" + strings.Repeat("c3", 32)
	if _, err := st.ImportLegacyKeys(ctx, crsKey, []store.LegacyKeySpec{{KeySpec: store.KeySpec{Name: "from crs"}, LegacyHash: store.LegacyKeyHash(secret, crsKey), Source: "crs:1"}}); err != nil {
		t.Fatal(err)
	}
	rc, _ := json.Marshal(store.RedisConfig{Addr: rdb.(*redis.Client).Options().Addr})
	settings := map[string]string{SettingRedis: string(rc), SettingPrefix: prefix, SettingPepper: hex.EncodeToString(st.Pepper())}
	without := New("test")
	if err := without.Configure(ctx, settings); err != nil {
		t.Fatal(err)
	}
	defer without.Close()
	if res, err := without.Authenticate(ctx, contract.AuthRequest{Credential: secret}); err != nil || res.Accepted() {
		t.Errorf("without the legacy secret: got %+v, %v; want a refusal", res, err)
	}
	settings[SettingLegacySecret] = hex.EncodeToString(crsKey)
	with := New("test")
	if err := with.Configure(ctx, settings); err != nil {
		t.Fatal(err)
	}
	defer with.Close()
	if res, err := with.Authenticate(ctx, contract.AuthRequest{Credential: secret}); err != nil || !res.Accepted() || res.Principal.Name != "from crs" {
		t.Errorf("with the legacy secret: got %+v, %v; want the imported key", res, err)
	}
}
