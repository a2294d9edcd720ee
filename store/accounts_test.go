package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/google/go-cmp/cmp"
)

func TestAccountsCRUD(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	const cred = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz-wxyz"
	a, err := s.AddAccount(ctx, AccountSpec{Name: "main", Credential: cred + "\n", Priority: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := Account{
		ID: a.ID, Name: "main", Type: AccountTypeAnthropicAPIKey, BaseURL: DefaultBaseURL,
		Priority: 10, Schedulable: true, CreatedAt: clk.Now(), CredentialHint: "sk-ant-…wxyz",
	}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("AddAccount (-want +got):\n%s", diff)
	}
	got, err := s.GetAccount(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetAccount (-want +got):\n%s", diff)
	}
	list, err := s.ListAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Account{want}, list); diff != "" {
		t.Errorf("ListAccounts (-want +got):\n%s", diff)
	}
	if c, err := s.AccountCredential(ctx, a.ID); err != nil || c != cred {
		t.Errorf("got (%q, %v), want (%q, nil) with the pasted newline trimmed", c, err, cred)
	}
	if err := s.SetAccountSchedulable(ctx, a.ID, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAccount(ctx, a.ID); got.Schedulable {
		t.Errorf("got Schedulable true after SetAccountSchedulable(false)")
	}
	if err := s.DeleteAccount(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"get after delete":         func() error { _, err := s.GetAccount(ctx, a.ID); return err }(),
		"credential after delete":  func() error { _, err := s.AccountCredential(ctx, a.ID); return err }(),
		"delete twice":             s.DeleteAccount(ctx, a.ID),
		"schedulable after delete": s.SetAccountSchedulable(ctx, a.ID, true),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: got %v, want %v", name, err, ErrNotFound)
		}
	}
	if list, err := s.ListAccounts(ctx); err != nil || list != nil {
		t.Errorf("got (%v, %v), want (nil, nil) after delete", list, err)
	}
}

func TestAccountCredentialIsBoundToItsAccount(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	a, err := s.AddAccount(ctx, AccountSpec{Name: "a", Credential: "sk-ant-credential-of-account-a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.AddAccount(ctx, AccountSpec{Name: "b", Credential: "sk-ant-credential-of-account-b"})
	if err != nil {
		t.Fatal(err)
	}
	// Someone with write access to Redis copies a's envelope onto b.
	env := rdb.HGet(ctx, s.keys.Account(a.ID), "credential").Val()
	if err := rdb.HSet(ctx, s.keys.Account(b.ID), "credential", env).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.AccountCredential(ctx, b.ID); !errors.Is(err, aesgcm.ErrAuth) {
		t.Errorf("got (%q, %v), want %v for a swapped envelope", got, err, aesgcm.ErrAuth)
	}
	if got, err := s.AccountCredential(ctx, a.ID); err != nil || got != "sk-ant-credential-of-account-a" {
		t.Errorf("got (%q, %v), want a's credential", got, err)
	}
}

func TestAddAccountValidatesSpec(t *testing.T) {
	s, _, _, _ := newStore(t)
	ok := AccountSpec{Name: "n", Credential: "c"}
	with := func(f func(*AccountSpec)) AccountSpec { x := ok; f(&x); return x }
	tests := []struct {
		name        string
		spec        AccountSpec
		wantErr     string
		wantBaseURL string
	}{
		{"defaults", ok, "", DefaultBaseURL},
		{"custom base url trailing slash", with(func(a *AccountSpec) { a.BaseURL = "http://10.0.0.5:8080/proxy/" }), "", "http://10.0.0.5:8080/proxy"},
		{"no name", with(func(a *AccountSpec) { a.Name = "" }), "name is required", ""},
		{"no credential", with(func(a *AccountSpec) { a.Credential = "  " }), "credential is required", ""},
		{"unknown type", with(func(a *AccountSpec) { a.Type = "bedrock" }), `unknown account type "bedrock"`, ""},
		{"compatible without base url", with(func(a *AccountSpec) { a.Type = AccountTypeAnthropicCompatible }), "needs a base URL", ""},
		{"model map on api key account", with(func(a *AccountSpec) { a.ModelMap = map[string]string{"a": "b"} }), "only for anthropic_compatible", ""},
		{"bad proxy scheme", with(func(a *AccountSpec) { a.ProxyURL = "ftp://p:1" }), "proxy URL must start with", ""},
		{"proxy without port", with(func(a *AccountSpec) { a.ProxyURL = "socks5://u:pw@p" }), "host and a port", ""},
		{"bad group", with(func(a *AccountSpec) { a.Group = "team a" }), `group "team a"`, ""},
		{"ftp url", with(func(a *AccountSpec) { a.BaseURL = "ftp://x" }), "http:// or https://", ""},
		{"no host", with(func(a *AccountSpec) { a.BaseURL = "https://" }), "http:// or https://", ""},
		{"relative", with(func(a *AccountSpec) { a.BaseURL = "api.anthropic.com" }), "http:// or https://", ""},
		{"url with credentials", with(func(a *AccountSpec) { a.BaseURL = "https://u:pw@x" }), "must not carry credentials", ""},
		{"negative priority", with(func(a *AccountSpec) { a.Priority = -1 }), "priority -1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := s.AddAccount(context.Background(), tt.spec)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				if a.BaseURL != tt.wantBaseURL {
					t.Errorf("got base URL %q, want %q", a.BaseURL, tt.wantBaseURL)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want error containing %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "pw@") {
				t.Errorf("got %q, want no URL password in the error", err)
			}
		})
	}
}

func TestCredentialHintRevealsLittle(t *testing.T) {
	tests := []struct{ in, want string }{
		{"sk-ant-api03-0123456789abcdefghij-XYZW", "sk-ant-…XYZW"},
		{"short-secret", "…"},
		{"exactly-23-characters!!", "…"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := credentialHint(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestListAccountsSortedByPriorityThenCreation(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	for _, a := range []struct {
		name     string
		priority int
	}{{"p50-old", 50}, {"p10", 10}, {"p50-new", 50}, {"p0", 0}, {"p10-new", 10}} {
		if _, err := s.AddAccount(ctx, AccountSpec{Name: a.name, Credential: "c", Priority: a.priority}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Millisecond)
	}
	list, err := s.ListAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range list {
		got = append(got, a.Name)
	}
	want := []string{"p0", "p10", "p10-new", "p50-old", "p50-new"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestAccountsVersionIncrementsOnEveryChange(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := newStore(t)
	version := func() int64 {
		t.Helper()
		v, err := s.AccountsVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := version(); v != 0 {
		t.Fatalf("got version %d before any account, want 0", v)
	}
	a, err := s.AddAccount(ctx, AccountSpec{Name: "a", Credential: "c"})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		op      func() error
		changes bool
	}{
		{"add", func() error { _, err := s.AddAccount(ctx, AccountSpec{Name: "b", Credential: "c"}); return err }, true},
		{"unschedule", func() error { return s.SetAccountSchedulable(ctx, a.ID, false) }, true},
		{"delete", func() error { return s.DeleteAccount(ctx, a.ID) }, true},
		{"failed delete", func() error { _ = s.DeleteAccount(ctx, a.ID); return nil }, false},
		{"failed add", func() error { _, _ = s.AddAccount(ctx, AccountSpec{}); return nil }, false},
		{"read", func() error { _, err := s.ListAccounts(ctx); return err }, false},
	}
	prev := version()
	if prev != 1 {
		t.Fatalf("got version %d after one add, want 1", prev)
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.op(); err != nil {
				t.Fatal(err)
			}
			v := version()
			if got := v > prev; got != st.changes {
				t.Errorf("got version %d after %s (was %d), want changed=%v", v, st.name, prev, st.changes)
			}
			prev = v
		})
	}
}
