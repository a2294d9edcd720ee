package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCreateAdminIfAbsentLetsOneConcurrentStartWin(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := newStore(t)
	var wg sync.WaitGroup
	results := make([]bool, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.CreateAdminIfAbsent(ctx, "admin", []byte(fmt.Sprintf("hash-%d", i)))
			if err != nil {
				t.Error(err)
			}
			results[i] = ok
		}()
	}
	wg.Wait()
	winners := 0
	winner := -1
	for i, ok := range results {
		if ok {
			winners++
			winner = i
		}
	}
	if winners != 1 {
		t.Fatalf("got %d creators, want exactly 1", winners)
	}
	h, err := s.AdminPasswordHash(ctx, "admin")
	if err != nil || string(h) != fmt.Sprintf("hash-%d", winner) {
		t.Errorf("stored hash: got (%q, %v), want the winner's", h, err)
	}
}

func TestChangeAdminPasswordStartsANewTokenGeneration(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	if st, err := s.SessionState(ctx, "jti1", "admin"); err != nil || st.Generation != 0 {
		t.Fatalf("fresh user: got generation %d err %v, want 0", st.Generation, err)
	}
	gen, err := s.ChangeAdminPassword(ctx, "admin", []byte("h2"))
	if err != nil || gen != 1 {
		t.Fatalf("ChangeAdminPassword: got (%d, %v), want 1", gen, err)
	}
	if err := s.RevokeToken(ctx, "jti1", clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	st, err := s.SessionState(ctx, "jti1", "admin")
	if err != nil || !st.Revoked || st.Generation != 1 || !st.UserExists {
		t.Errorf("SessionState: got (%+v, %v), want revoked, generation 1, user exists", st, err)
	}
	if h, _ := s.AdminPasswordHash(ctx, "admin"); string(h) != "h2" {
		t.Errorf("got hash %q, want h2", h)
	}
}

func TestAuditListsNewestFirstInPages(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	for i := range 5 {
		clk.Advance(time.Second)
		if err := s.AppendAudit(ctx, AuditEntry{Who: "admin", Action: fmt.Sprintf("a%d", i), Target: "t", Remote: "127.0.0.1", Detail: map[string]string{"n": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	cursor := ""
	for {
		page, next, err := s.ListAudit(ctx, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			got = append(got, e.Action)
			if e.Who != "admin" || e.Remote != "127.0.0.1" || e.Detail["n"] != e.Action[1:] || e.At.IsZero() {
				t.Errorf("entry %+v: want who, remote, detail and time kept", e)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if diff := cmp.Diff([]string{"a4", "a3", "a2", "a1", "a0"}, got); diff != "" {
		t.Errorf("audit order (-want +got):\n%s", diff)
	}
	if _, _, err := s.ListAudit(ctx, "garbage", 2); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad cursor: got %v, want ErrInvalid", err)
	}
}

func TestPreviousStreamID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"5-3", "5-2"}, {"5-0", "4-18446744073709551615"}, {"0-0", ""},
	}
	for _, tt := range tests {
		if got, ok := previousStreamID(tt.in); !ok || got != tt.want {
			t.Errorf("previousStreamID(%q): got (%q, %t), want %q", tt.in, got, ok, tt.want)
		}
	}
}

func TestTryLockExcludesOthersAndReleasesOnlyItsOwn(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	l1, ok, err := s.TryLock(ctx, "job", time.Minute)
	if err != nil || !ok {
		t.Fatalf("first TryLock: got (%t, %v), want the lock", ok, err)
	}
	if _, ok, _ := s.TryLock(ctx, "job", time.Minute); ok {
		t.Fatal("second TryLock while held: got the lock, want refused")
	}
	// The lease ran out and someone else took the lock: the first holder must not free it.
	if err := rdb.Set(ctx, s.keys.Lock("job"), "someone-else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := rdb.Get(ctx, s.keys.Lock("job")).Result(); v != "someone-else" {
		t.Errorf("after a stale release: got lock value %q, want the other holder's kept", v)
	}
	rdb.Del(ctx, s.keys.Lock("job"))
	l2, ok, _ := s.TryLock(ctx, "job", time.Minute)
	if !ok {
		t.Fatal("TryLock after the lock was freed: refused")
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.TryLock(ctx, "job", time.Minute); !ok {
		t.Error("TryLock after Release: refused, want the lock")
	}
}

func TestParkedAccountsDecodesTheSchedulersEntries(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb, _ := newStore(t)
	until := clk.Now().Add(time.Minute).UnixMilli()
	past := clk.Now().Add(-time.Minute).UnixMilli()
	rdb.HSet(ctx, s.keys.AccountsParked(),
		"a1", fmt.Sprintf("%d|rate_limited|429|slow down", until),
		"a1/opus", "0|blocked|403|no opus",
		"a2", fmt.Sprintf("%d|overloaded|529|busy", past),
		"a3", "garbage")
	got, err := s.ParkedAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Parked{
		{Account: "a1", Until: time.UnixMilli(until).UTC(), State: "rate_limited", Status: 429, Reason: "slow down"},
		{Account: "a1", Family: "opus", State: "blocked", Status: 403, Reason: "no opus"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parks in force (-want +got):\n%s", diff)
	}
	if ok, err := s.UnparkAccount(ctx, "a1"); err != nil || !ok {
		t.Fatalf("UnparkAccount: got (%t, %v)", ok, err)
	}
	if got, _ := s.ParkedAccounts(ctx); len(got) != 0 {
		t.Errorf("after unpark: got %v, want none", got)
	}
}

func TestAccountSecretsAreSealedPerField(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb, _ := newStore(t)
	exp := clk.Now().Add(time.Hour)
	a, err := s.AddAccount(ctx, AccountSpec{Name: "sub", Type: AccountTypeClaudeOAuth, Credential: "sk-ant-oat01-access-token-0123456789",
		RefreshToken: "sk-ant-ort01-refresh-token-0123456789", TokenExpiresAt: &exp, ProxyURL: "socks5://user:pw@proxy.example:1080", Priority: 5})
	if err != nil {
		t.Fatal(err)
	}
	if a.ProxyHint != "socks5://***@proxy.example:1080" || !a.HasRefreshToken {
		t.Errorf("got proxy hint %q has refresh %t, want masked credentials and true", a.ProxyHint, a.HasRefreshToken)
	}
	raw, _ := rdb.HGetAll(ctx, s.keys.Account(a.ID)).Result()
	for f, v := range raw {
		for _, secret := range []string{"access-token", "refresh-token", "user:pw"} {
			if strings.Contains(v, secret) {
				t.Errorf("field %s holds %q in plaintext", f, secret)
			}
		}
	}
	sec, err := s.AccountSecrets(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := AccountSecrets{Credential: "sk-ant-oat01-access-token-0123456789", RefreshToken: "sk-ant-ort01-refresh-token-0123456789", ProxyURL: "socks5://user:pw@proxy.example:1080",
		Type: AccountTypeClaudeOAuth, BaseURL: DefaultBaseURL}
	if diff := cmp.Diff(want, sec); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
	// A refresh envelope copied into the credential field must not open as the credential.
	rdb.HSet(ctx, s.keys.Account(a.ID), "credential", raw["refresh_token"])
	if _, err := s.AccountCredential(ctx, a.ID); err == nil {
		t.Error("refresh envelope opened as the credential; want the aad to bind each field")
	}
}

func TestAdminEpochIsCreatedOnceAndVanishesWithTheStore(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	if e, err := s.AdminEpoch(ctx); err != nil || e != "" {
		t.Fatalf("new store: got epoch (%q, %v), want none", e, err)
	}
	first, created, err := s.CreateAdminEpoch(ctx)
	if err != nil || !created || len(first) != 32 {
		t.Fatalf("CreateAdminEpoch: got (%q, %t, %v), want a new 32-character epoch", first, created, err)
	}
	again, created, err := s.CreateAdminEpoch(ctx)
	if err != nil || created || again != first {
		t.Fatalf("second CreateAdminEpoch: got (%q, %t, %v), want the first epoch kept", again, created, err)
	}
	gen, epoch, err := s.SessionBasis(ctx, "nobody")
	if err != nil || gen != 0 || epoch != first {
		t.Fatalf("SessionBasis: got (%d, %q, %v), want (0, %q, nil)", gen, epoch, err, first)
	}
	st, err := s.SessionState(ctx, "jti", "nobody")
	if err != nil || st.Epoch != first || st.UserExists || st.Revoked {
		t.Fatalf("SessionState: got (%+v, %v), want epoch %q and no such user", st, err, first)
	}
	if err := rdb.Del(ctx, s.Schema().AdminEpoch()).Err(); err != nil {
		t.Fatal(err)
	}
	if st, err := s.SessionState(ctx, "jti", "nobody"); err != nil || st.Epoch != "" {
		t.Fatalf("after the epoch vanished: got (%+v, %v), want no epoch", st, err)
	}
	if next, created, err := s.CreateAdminEpoch(ctx); err != nil || !created || next == first {
		t.Fatalf("after the epoch vanished: got (%q, %t, %v), want a new epoch", next, created, err)
	}
}

func TestRestorePepperPutsTheHeldPepperBackAfterRedisLostIt(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb, prefix := newStore(t)
	if err := rdb.Del(ctx, s.Schema().Pepper()).Err(); err != nil { // as an emptied Redis would
		t.Fatal(err)
	}
	if err := s.RestorePepper(ctx); err != nil {
		t.Fatalf("RestorePepper: %v", err)
	}
	if err := s.RestorePepper(ctx); err != nil {
		t.Fatalf("RestorePepper again: %v", err)
	}
	_, secret, err := s.CreateKey(ctx, KeySpec{Name: "after the loss"})
	if err != nil {
		t.Fatal(err)
	}
	// A process started now (a sidecar) hashes the key the same way.
	later, err := Open(ctx, rdb, Options{Prefix: prefix, Sealer: sealer(t, testEncKey), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := later.LookupKey(ctx, secret); err != nil {
		t.Errorf("a process started after the restore: LookupKey got %v, want the key", err)
	}

	// Another pepper in Redis is reported, not overwritten.
	if err := rdb.Del(ctx, s.Schema().Pepper()).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, rdb, Options{Prefix: prefix, Sealer: sealer(t, testEncKey), Now: clk.Now}); err != nil {
		t.Fatal(err) // creates a new pepper
	}
	if err := s.RestorePepper(ctx); !errors.Is(err, ErrConflict) {
		t.Errorf("with another pepper in Redis: got %v, want ErrConflict", err)
	}
}
