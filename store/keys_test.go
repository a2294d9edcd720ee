package store

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/internal/testredis"
)

func TestCreateKeyReturnsWellFormedSecretAndHint(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	k, secret, err := s.CreateKey(ctx, KeySpec{Name: "  alice  ", Policy: "team"})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^cr_[0-9a-f]{64}$`).MatchString(secret) || !ParseSecret(secret) {
		t.Errorf("got secret %q, want cr_ + 64 lowercase hex", secret)
	}
	wantHint := "cr_" + secret[3:7] + "…" + secret[63:]
	if k.Hint != wantHint {
		t.Errorf("got hint %q, want %q", k.Hint, wantHint)
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(k.ID) {
		t.Errorf("got id %q, want 16 hex chars", k.ID)
	}
	want := Key{ID: k.ID, Name: "alice", Hint: wantHint, Policy: "team", Enabled: true, CreatedAt: clk.Now(), Revision: FirstRevision}
	if diff := cmp.Diff(want, k); diff != "" {
		t.Errorf("CreateKey result (-want +got):\n%s", diff)
	}
	got, err := s.GetKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k, got); diff != "" {
		t.Errorf("GetKey (-created +stored):\n%s", diff)
	}
	_, secret2, _ := s.CreateKey(ctx, KeySpec{Name: "bob"})
	if secret2 == secret {
		t.Errorf("got the same secret twice")
	}
}

func TestCreateKeyRejectsBadSpec(t *testing.T) {
	s, clk, _, _ := newStore(t)
	past := clk.Now().Add(-time.Second)
	tests := []struct {
		name string
		spec KeySpec
		want string
	}{
		{"empty name", KeySpec{Name: " "}, "name is required"},
		{"long name", KeySpec{Name: strings.Repeat("n", 201)}, "at most 200"},
		{"expiry in the past", KeySpec{Name: "x", ExpiresAt: &past}, "not in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.CreateKey(context.Background(), tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseSecretChecksFormatOnly(t *testing.T) {
	good := "cr_" + strings.Repeat("ab", 32)
	tests := []struct {
		in   string
		want bool
	}{
		{good, true},
		{"", false},
		{"cr_", false},
		{strings.TrimPrefix(good, "cr_"), false},
		{"CR_" + good[3:], false},
		{strings.ToUpper(good[:10]) + good[10:], false},
		{good[:66], false},
		{good + "0", false},
		{"cr_" + strings.Repeat("g", 64), false},
		{"sk-ant-api03-" + strings.Repeat("a", 54), false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := ParseSecret(tt.in); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLookupKeyAcceptsOnlyTheRightSecret(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := newStore(t)
	k, secret, err := s.CreateKey(ctx, KeySpec{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	other, otherSecret, err := s.CreateKey(ctx, KeySpec{Name: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	flipped := secret[:10] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", secret[10])+1)%16]) + secret[11:]
	tests := []struct {
		name    string
		secret  string
		wantID  string
		wantErr error
	}{
		{"right secret", secret, k.ID, nil},
		{"other key's secret", otherSecret, other.ID, nil},
		{"one hex digit changed", flipped, "", ErrNotFound},
		{"unknown well-formed", "cr_" + strings.Repeat("0", 64), "", ErrNotFound},
		{"uppercase", strings.ToUpper(secret), "", ErrNotFound},
		{"bad format", "cr_short", "", ErrNotFound},
		{"empty", "", "", ErrNotFound},
		{"with whitespace", secret + " ", "", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.LookupKey(ctx, tt.secret)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if got.ID != tt.wantID {
				t.Errorf("got key %q, want %q", got.ID, tt.wantID)
			}
		})
	}
}

func TestLookupKeyReportsRevokedDisabledExpired(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	in := func(d time.Duration) *time.Time { x := clk.Now().Add(d); return &x }
	tests := []struct {
		name    string
		spec    KeySpec
		change  func(t *testing.T, id string)
		wantErr error
	}{
		{"usable", KeySpec{Name: "ok"}, nil, nil},
		{"not yet expired", KeySpec{Name: "later", ExpiresAt: in(time.Hour)}, nil, nil},
		{"revoked", KeySpec{Name: "r"}, func(t *testing.T, id string) {
			if err := s.RevokeKey(ctx, id); err != nil {
				t.Fatal(err)
			}
		}, ErrKeyRevoked},
		{"disabled", KeySpec{Name: "d"}, func(t *testing.T, id string) {
			if err := s.SetKeyEnabled(ctx, id, false); err != nil {
				t.Fatal(err)
			}
		}, ErrKeyDisabled},
		{"re-enabled", KeySpec{Name: "e"}, func(t *testing.T, id string) {
			if err := s.SetKeyEnabled(ctx, id, false); err != nil {
				t.Fatal(err)
			}
			if err := s.SetKeyEnabled(ctx, id, true); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"revoked beats disabled", KeySpec{Name: "rd"}, func(t *testing.T, id string) {
			_ = s.SetKeyEnabled(ctx, id, false)
			_ = s.RevokeKey(ctx, id)
		}, ErrKeyRevoked},
		{"expired", KeySpec{Name: "x", ExpiresAt: in(time.Minute)}, func(t *testing.T, id string) {
			clk.Advance(time.Minute)
		}, ErrKeyExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, secret, err := s.CreateKey(ctx, tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if tt.change != nil {
				tt.change(t, k.ID)
			}
			got, err := s.LookupKey(ctx, secret)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if got.ID != k.ID {
				t.Errorf("got key %q, want %q returned with the status", got.ID, k.ID)
			}
		})
	}
}

func TestLookupKeyIsOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	_, secret, err := s.CreateKey(ctx, KeySpec{Name: "hot"})
	if err != nil {
		t.Fatal(err)
	}
	hook := &countHook{}
	rdb.AddHook(hook)
	for i := range 3 {
		hook.reset()
		if _, err := s.LookupKey(ctx, secret); err != nil {
			t.Fatal(err)
		}
		if got := hook.roundTrips(); got != 1 {
			t.Errorf("lookup #%d: got %d round trips, want 1", i, got)
		}
	}
	hook.reset()
	if _, err := s.LookupKey(ctx, "cr_bad"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if got := hook.roundTrips(); got != 0 {
		t.Errorf("got %d round trips for a malformed secret, want 0", got)
	}
}

func TestSecretsNeverStoredInRedis(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, prefix := newStore(t)
	const credential = "sk-ant-api03-NEVER-STORED-IN-CLEAR-0123456789"
	_, secret, err := s.CreateKey(ctx, KeySpec{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	k2, secret2, err := s.CreateKey(ctx, KeySpec{Name: "revoked"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeKey(ctx, k2.ID); err != nil {
		t.Fatal(err)
	}
	a, err := s.AddAccount(ctx, AccountSpec{Name: "acct", Credential: credential})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.TouchKey(ctx, k2.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	forbidden := []string{secret, secret[3:], secret2, secret2[3:], credential, "NEVER-STORED", string(s.pepper)}

	var all []string
	var n int
	for _, key := range testredis.Keys(t, rdb, prefix) {
		n++
		all = append(all, key)
		typ, err := rdb.Type(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case "string":
			all = append(all, rdb.Get(ctx, key).Val())
		case "hash":
			for f, v := range rdb.HGetAll(ctx, key).Val() {
				all = append(all, f, v)
			}
		case "zset":
			all = append(all, rdb.ZRange(ctx, key, 0, -1).Val()...)
		default:
			t.Fatalf("unexpected type %s for %s; extend this test", typ, key)
		}
	}
	if n < 5 {
		t.Fatalf("got %d keys under %s, want at least 5 (the scan found nothing?)", n, prefix)
	}
	for _, v := range all {
		for _, f := range forbidden {
			if strings.Contains(v, f) {
				t.Errorf("found a secret in Redis: %q contains %q", v, f)
			}
		}
	}
	// ...and yet it all still works.
	if _, err := s.LookupKey(ctx, secret); err != nil {
		t.Errorf("got %v, want nil", err)
	}
	if got, err := s.AccountCredential(ctx, a.ID); err != nil || got != credential {
		t.Errorf("got (%q, %v), want the credential back", got, err)
	}
}

func TestListKeysOldestFirst(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	if got, err := s.ListKeys(ctx); err != nil || got != nil {
		t.Fatalf("got (%v, %v), want (nil, nil) for no keys", got, err)
	}
	var want []string
	for _, name := range []string{"c", "a", "b", "d"} {
		k, _, err := s.CreateKey(ctx, KeySpec{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, k.ID)
		clk.Advance(time.Second)
	}
	if err := s.RevokeKey(ctx, want[1]); err != nil {
		t.Fatal(err)
	}
	keys, err := s.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.ID)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListKeys ids (-want +got):\n%s", diff)
	}
	if keys[1].RevokedAt == nil {
		t.Errorf("got RevokedAt nil for a revoked key in the list, want it set")
	}
}

func TestRevokeKeyPublishesToSubscriber(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, clk, _, _ := newStore(t)
	k, secret, err := s.CreateKey(ctx, KeySpec{Name: "doomed"})
	if err != nil {
		t.Fatal(err)
	}
	sub := s.SubscribeRevocations(ctx)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	revokedAt := clk.Now()
	if err := s.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if msg.Channel != s.Schema().RevocationsChannel() || msg.Payload != k.ID {
		t.Errorf("got %s %q, want %s %q", msg.Channel, msg.Payload, s.Schema().RevocationsChannel(), k.ID)
	}
	got, err := s.GetKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.RevokedAt == nil || !got.RevokedAt.Equal(revokedAt) {
		t.Errorf("got RevokedAt %v, want %v", got.RevokedAt, revokedAt)
	}
	// The live index no longer maps the secret.
	if n := s.rdb.HLen(ctx, s.keys.KeyIndex()).Val(); n != 0 {
		t.Errorf("got %d live index entries, want 0", n)
	}
	// Revoking again keeps the first time.
	clk.Advance(time.Hour)
	if err := s.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.GetKey(ctx, k.ID); !again.RevokedAt.Equal(revokedAt) {
		t.Errorf("got RevokedAt %v after second revoke, want %v", again.RevokedAt, revokedAt)
	}
	if _, err := s.LookupKey(ctx, secret); !errors.Is(err, ErrKeyRevoked) {
		t.Errorf("got %v, want %v", err, ErrKeyRevoked)
	}
}

func TestKeyChangesOnUnknownOrRevokedKeys(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := newStore(t)
	k, _, err := s.CreateKey(ctx, KeySpec{Name: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"revoke unknown", func() error { return s.RevokeKey(ctx, "nope") }, ErrNotFound},
		{"disable unknown", func() error { return s.SetKeyEnabled(ctx, "nope", false) }, ErrNotFound},
		{"touch unknown", func() error { return s.TouchKey(ctx, "nope", time.Now()) }, ErrNotFound},
		{"get unknown", func() error { _, err := s.GetKey(ctx, "nope"); return err }, ErrNotFound},
		{"enable revoked", func() error { return s.SetKeyEnabled(ctx, k.ID, true) }, ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	if n, err := s.rdb.Exists(ctx, s.keys.KeyRecord("nope")).Result(); err != nil || n != 0 {
		t.Errorf("got a record created for an unknown key, want none")
	}
}

func TestTouchKeyOnlyMovesForward(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	k, _, err := s.CreateKey(ctx, KeySpec{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	t1 := clk.Now().Add(time.Minute)
	t0 := clk.Now().Add(time.Second)
	t2 := clk.Now().Add(time.Hour + 123*time.Nanosecond)
	for _, step := range []struct {
		at   time.Time
		want time.Time
	}{{t1, t1}, {t0, t1}, {t2, t2}} {
		if err := s.TouchKey(ctx, k.ID, step.at); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetKey(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.LastUsedAt == nil || !got.LastUsedAt.Equal(step.want) {
			t.Errorf("after touch at %v: got LastUsedAt %v, want %v", step.at, got.LastUsedAt, step.want)
		}
	}
}

func TestCreateKeyWithAGivenSecretTakesItOnceAndNeverRevivesARevokedOne(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := newStore(t)
	secret := "cr_" + strings.Repeat("c0ffee", 10) + "beef"
	k, got, err := s.CreateKey(ctx, KeySpec{Name: "dev", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if got != secret || k.Hint != "cr_c0ff…beef" {
		t.Errorf("got secret %q hint %q, want the given secret and its hint", got, k.Hint)
	}
	if found, err := s.LookupKey(ctx, secret); err != nil || found.ID != k.ID {
		t.Fatalf("LookupKey: got %v, %v; want key %s", found.ID, err, k.ID)
	}
	if _, _, err := s.CreateKey(ctx, KeySpec{Name: "again", Secret: secret}); !errors.Is(err, ErrConflict) {
		t.Errorf("the same secret again: got %v, want ErrConflict", err)
	}
	if err := s.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateKey(ctx, KeySpec{Name: "revived", Secret: secret}); !errors.Is(err, ErrConflict) {
		t.Errorf("a revoked secret: got %v, want ErrConflict", err)
	}
	if _, _, err := s.CreateKey(ctx, KeySpec{Name: "bad", Secret: "cr_NOTHEX"}); err == nil || !strings.Contains(err.Error(), "64 lowercase hex") {
		t.Errorf("a malformed secret: got %v, want a refusal naming the format", err)
	}
}
