package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
)

// addBound adds an account with a proxy and returns it and its raw record.
func addBound(t *testing.T, s *Store, spec AccountSpec) (Account, map[string]string) {
	t.Helper()
	ctx := context.Background()
	a, err := s.AddAccount(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.rdb.HGetAll(ctx, s.keys.Account(a.ID)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return a, raw
}

func TestCredentialDoesNotOpenOnceItsDestinationIsChangedInRedis(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	const cred = "sk-ant-api03-credential-bound-to-its-destination"
	spec := AccountSpec{Name: "a", Type: AccountTypeAnthropicCompatible, BaseURL: "https://upstream.example", Credential: cred, ProxyURL: "socks5://u:p@proxy.example:1080"}
	a, raw := addBound(t, s, spec)
	other, otherRaw := addBound(t, s, AccountSpec{Name: "b", Credential: "sk-ant-api03-credential-of-another-account", ProxyURL: "http://proxy2.example:3128"})
	// An older proxy envelope of the same account (it opens under the account's proxy aad).
	oldProxy, err := s.sealer.Seal(ctx, []byte("http://attacker.example:8080"), []byte(a.ID+aadProxy))
	if err != nil {
		t.Fatal(err)
	}
	opened, err := s.OpenAccount(ctx, a.ID)
	want := OpenedAccount{ID: a.ID, Type: AccountTypeAnthropicCompatible, BaseURL: "https://upstream.example", Credential: cred, ProxyURL: spec.ProxyURL}
	if err != nil || opened != want {
		t.Fatalf("got (%+v, %v), want (%+v, nil)", opened, err, want)
	}
	tests := []struct {
		name  string
		field string
		value string // "" deletes the field
	}{
		{"base URL pointed elsewhere", "base_url", "https://attacker.example"},
		{"base URL downgraded to http", "base_url", "http://upstream.example"},
		{"type changed (bearer instead of x-api-key)", "type", AccountTypeClaudeOAuth},
		{"proxy removed (direct connection)", "proxy", ""},
		{"proxy replaced by another sealed for this account", "proxy", string(oldProxy)},
		{"binding marker removed (opened as a legacy record)", credentialBindingField, ""},
		{"credential replaced by another account's", "credential", otherRaw["credential"]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := s.keys.Account(a.ID)
			if tt.value == "" {
				rdb.HDel(ctx, key, tt.field)
			} else {
				rdb.HSet(ctx, key, tt.field, tt.value)
			}
			t.Cleanup(func() { rdb.HSet(ctx, key, tt.field, raw[tt.field]) })
			if got, err := s.OpenAccount(ctx, a.ID); !errors.Is(err, ErrTampered) {
				t.Errorf("OpenAccount: got (%+v, %v), want %v", got, err, ErrTampered)
			}
			if got, err := s.AccountSecrets(ctx, a.ID); !errors.Is(err, ErrTampered) {
				t.Errorf("AccountSecrets: got (%+v, %v), want %v", got, err, ErrTampered)
			}
			tampered, err := s.TamperedAccounts(ctx, []string{a.ID, other.ID, "gone"})
			if err != nil {
				t.Fatal(err)
			}
			if len(tampered) != 1 || !strings.Contains(tampered[a.ID], "changed outside the admin API") {
				t.Errorf("TamperedAccounts: got %v, want only %s, with the reason", tampered, a.ID)
			}
		})
	}
	if got, err := s.OpenAccount(ctx, a.ID); err != nil || got != want {
		t.Errorf("restored: got (%+v, %v), want (%+v, nil)", got, err, want)
	}
}

// legacyAccount rewrites an account the way versions before bindings stored it: the
// credential sealed with aad = account id, no binding field.
func legacyAccount(t *testing.T, s *Store, id, cred string) {
	t.Helper()
	ctx := context.Background()
	env, err := s.sealer.Seal(ctx, []byte(cred), []byte(id))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.HSet(ctx, s.keys.Account(id), "credential", env).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.HDel(ctx, s.keys.Account(id), credentialBindingField).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestLegacyCredentialWorksUntilRotateBindsIt(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	const cred = "sk-ant-api03-credential-sealed-by-an-older-version"
	a, _ := addBound(t, s, AccountSpec{Name: "old", Credential: cred, ProxyURL: "socks5://proxy.example:1080", RefreshToken: "r"})
	legacyAccount(t, s, a.ID, cred)
	b, _ := addBound(t, s, AccountSpec{Name: "new", Credential: "sk-ant-api03-credential-already-bound"})

	got, err := s.OpenAccount(ctx, a.ID)
	if err != nil || !got.Legacy || got.Credential != cred || got.ProxyURL != "socks5://proxy.example:1080" {
		t.Fatalf("legacy record: got (%+v, %v), want it opened and marked legacy", got, err)
	}
	res, err := s.RotateSecrets(ctx, s.sealer.(Rewrapper), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (RotateProgress{Total: 3, Done: 3, Rewrapped: 1, Current: 2, Bound: 1}); res != want {
		t.Errorf("rotate: got %+v, want %+v", res, want)
	}
	got, err = s.OpenAccount(ctx, a.ID)
	if err != nil || got.Legacy || got.Credential != cred {
		t.Fatalf("after rotate: got (%+v, %v), want the credential bound", got, err)
	}
	if sec, err := s.AccountSecrets(ctx, a.ID); err != nil || sec.RefreshToken != "r" {
		t.Errorf("refresh token after rotate: got (%+v, %v)", sec, err)
	}
	again, err := s.RotateSecrets(ctx, s.sealer.(Rewrapper), nil)
	if want := (RotateProgress{Total: 3, Done: 3, Current: 3}); err != nil || again != want {
		t.Errorf("second run: got (%+v, %v), want (%+v, nil)", again, err, want)
	}
	if _, err := s.OpenAccount(ctx, b.ID); err != nil {
		t.Errorf("the other account: %v", err)
	}
	rdb.HSet(ctx, s.keys.Account(a.ID), "base_url", "https://attacker.example")
	if _, err := s.OpenAccount(ctx, a.ID); !errors.Is(err, ErrTampered) {
		t.Errorf("a migrated record's base URL changed in Redis: got %v, want %v", err, ErrTampered)
	}
	// A rotation to a new key meeting a tampered record reports it and writes nothing.
	before := rdb.HGet(ctx, s.keys.Account(a.ID), "credential").Val()
	next, err := aesgcm.New("fedcba9876543210fedcba9876543210", testEncKey)
	if err != nil {
		t.Fatal(err)
	}
	res, err = s.RotateSecrets(ctx, next, nil)
	if !errors.Is(err, ErrTampered) || res.Failed != 1 {
		t.Errorf("rotate over a tampered record: got (%+v, %v), want 1 failed with %v", res, err, ErrTampered)
	}
	if after := rdb.HGet(ctx, s.keys.Account(a.ID), "credential").Val(); after != before {
		t.Error("rotate rewrote a tampered record's credential")
	}
}

func TestChangingBaseURLProxyOrTokensThroughTheStoreReseals(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	const cred = "sk-ant-api03-credential-that-moves"
	a, _ := addBound(t, s, AccountSpec{Name: "a", Credential: cred})
	legacyAccount(t, s, a.ID, cred) // an update migrates a legacy record too
	str := func(v string) *string { return &v }
	steps := []struct {
		name string
		u    AccountUpdate
		want OpenedAccount
	}{
		{"base URL", AccountUpdate{BaseURL: str("https://eu.upstream.example/")}, OpenedAccount{BaseURL: "https://eu.upstream.example"}},
		{"proxy added", AccountUpdate{ProxyURL: str("socks5://proxy.example:1080")}, OpenedAccount{BaseURL: "https://eu.upstream.example", ProxyURL: "socks5://proxy.example:1080"}},
		{"proxy removed and name", AccountUpdate{ProxyURL: str(""), Name: str("renamed")}, OpenedAccount{BaseURL: "https://eu.upstream.example"}},
	}
	for _, st := range steps {
		if _, err := s.UpdateAccount(ctx, a.ID, st.u); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := s.OpenAccount(ctx, a.ID)
		st.want.ID, st.want.Type, st.want.Credential = a.ID, AccountTypeAnthropicAPIKey, cred
		if err != nil || got != st.want {
			t.Errorf("%s: got (%+v, %v), want (%+v, nil)", st.name, got, err, st.want)
		}
	}
	// Tampered: the base URL cannot be changed without the credential, which can be given.
	rdb.HSet(ctx, s.keys.Account(a.ID), "base_url", "https://attacker.example")
	if _, err := s.UpdateAccount(ctx, a.ID, AccountUpdate{BaseURL: str("https://upstream.example")}); !errors.Is(err, ErrTampered) {
		t.Errorf("update of a tampered record: got %v, want %v", err, ErrTampered)
	}
	if _, err := s.UpdateAccount(ctx, a.ID, AccountUpdate{BaseURL: str("https://upstream.example"), Credential: str("sk-ant-api03-given-again")}); err != nil {
		t.Fatalf("update with the credential given again: %v", err)
	}
	if got, err := s.OpenAccount(ctx, a.ID); err != nil || got.BaseURL != "https://upstream.example" || got.Credential != "sk-ant-api03-given-again" {
		t.Errorf("after giving it again: got (%+v, %v)", got, err)
	}
	// A refreshed OAuth token is bound to the fields it is stored with.
	o, _ := addBound(t, s, AccountSpec{Name: "o", Type: AccountTypeClaudeOAuth, Credential: "access-0", RefreshToken: "refresh-0", ProxyURL: "http://proxy.example:3128"})
	if err := s.SetOAuthTokens(ctx, o.ID, "access-1", "refresh-1", nil); err != nil {
		t.Fatal(err)
	}
	if sec, err := s.AccountSecrets(ctx, o.ID); err != nil || sec.Credential != "access-1" || sec.RefreshToken != "refresh-1" || sec.ProxyURL != "http://proxy.example:3128" {
		t.Errorf("after a refresh: got (%+v, %v)", sec, err)
	}
	rdb.HSet(ctx, s.keys.Account(o.ID), "base_url", "https://attacker.example")
	if _, err := s.OpenAccount(ctx, o.ID); !errors.Is(err, ErrTampered) {
		t.Errorf("refreshed token, base URL changed in Redis: got %v, want %v", err, ErrTampered)
	}
}

func TestRotateReencryptsRefreshTokensAndProxyURLs(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, prefix := newStore(t)
	const newKey = "fedcba9876543210fedcba9876543210"
	a, _ := addBound(t, s, AccountSpec{Name: "sub", Type: AccountTypeClaudeOAuth, Credential: "access", RefreshToken: "refresh", ProxyURL: "socks5://u:p@proxy.example:1080"})
	both, err := aesgcm.New(newKey, testEncKey)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.RotateSecrets(ctx, both, nil); err != nil || res.Rewrapped != 2 {
		t.Fatalf("rotate: got (%+v, %v), want the pepper and the account re-encrypted", res, err)
	}
	onlyNew, err := Open(ctx, rdb, Options{Prefix: prefix, Sealer: sealer(t, newKey)})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := onlyNew.AccountSecrets(ctx, a.ID)
	want := AccountSecrets{Credential: "access", RefreshToken: "refresh", ProxyURL: "socks5://u:p@proxy.example:1080", Type: AccountTypeClaudeOAuth, BaseURL: DefaultBaseURL}
	if err != nil || sec != want {
		t.Errorf("with the old key dropped: got (%+v, %v), want (%+v, nil)", sec, err, want)
	}
	sealed, err := onlyNew.SealedSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != 4 {
		t.Errorf("got %d sealed secrets, want 4 (pepper, credential, proxy, refresh token)", len(sealed))
	}
	for name, env := range sealed {
		if id, _ := aesgcm.KeyIDOf(env); id != sealer(t, newKey).KeyID() {
			t.Errorf("%s is under key %s, want the new one", name, id)
		}
	}
}
