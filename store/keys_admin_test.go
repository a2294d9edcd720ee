package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/testredis"
)

// pageAll walks every page of f and returns the ids in order.
func pageAll(t *testing.T, s *Store, f KeyFilter, limit int) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatal("paging does not end")
		}
		p, err := s.PageKeys(context.Background(), f, cursor, limit)
		if err != nil {
			t.Fatalf("PageKeys(%+v, %q): %v", f, cursor, err)
		}
		if len(p.Keys) > limit {
			t.Fatalf("got %d keys on a page, want at most %d", len(p.Keys), limit)
		}
		for _, k := range p.Keys {
			ids = append(ids, k.ID)
		}
		if p.Next == "" {
			return ids
		}
		cursor = p.Next
	}
}

func TestPageTenThousandKeysIssuesNoKeysOrScan(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 keys")
	}
	ctx := context.Background()
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	clk := newClock()
	s, err := Open(ctx, rdb, Options{Sealer: sealer(t, testEncKey), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	const total, batch = 10000, 500
	var want []string
	for i := 0; i < total; i += batch {
		specs := make([]KeySpec, batch)
		for j := range specs {
			specs[j] = KeySpec{Name: fmt.Sprintf("key %05d", i+j), Tags: []string{fmt.Sprintf("team%d", (i+j)%10)}}
		}
		created, err := s.CreateKeys(ctx, specs)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range created {
			want = append(want, orderMember(c.Key.CreatedAt, c.Key.ID))
		}
		clk.Advance(time.Millisecond)
	}
	slices.Sort(want)
	for i := range want {
		want[i] = want[i][orderPrefixLen:]
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	got := pageAll(t, s, KeyFilter{}, 500)
	all := time.Since(start)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("paged ids differ from creation order (-want +got):\n%.2000s", diff)
	}
	start = time.Now()
	tagged := pageAll(t, s, KeyFilter{Tag: "team3", NameContains: "KEY 0"}, 100)
	filtered := time.Since(start)
	if len(tagged) != 1000 {
		t.Errorf("tag team3 with name filter: got %d keys, want 1000", len(tagged))
	}
	t.Logf("paged %d keys in %v (20 pages of 500); 1000 of them by tag and name in %v", total, all, filtered)

	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"cmdstat_keys:", "cmdstat_scan:"} {
		if strings.Contains(stats, cmd) {
			t.Errorf("INFO commandstats lists %s: listing must not scan the keyspace\n%s", strings.TrimSuffix(cmd, ":"), stats)
		}
	}
	if !strings.Contains(stats, "cmdstat_zrangebylex:") {
		t.Errorf("INFO commandstats has no zrangebylex; is the check looking at the right server?\n%s", stats)
	}
}

func TestPageKeysFilters(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	mk := func(spec KeySpec) Key {
		t.Helper()
		k, _, err := s.CreateKey(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Millisecond)
		return k
	}
	exp := clk.Now().Add(time.Hour)
	alice := mk(KeySpec{Name: "Alice laptop", Tags: []string{"eng", "ci"}, Policy: "team"})
	bob := mk(KeySpec{Name: "bob", Tags: []string{"eng"}, Policy: "admin"})
	carol := mk(KeySpec{Name: "carol", Policy: "team", ExpiresAt: &exp})
	dave := mk(KeySpec{Name: "dave laptop"})
	erin := mk(KeySpec{Name: "erin", Tags: []string{"ci"}})
	if err := s.SetKeyEnabled(ctx, bob.ID, false); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeKey(ctx, dave.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKey(ctx, erin.ID); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour) // carol expires

	tests := []struct {
		name string
		f    KeyFilter
		want []string
	}{
		{"no filter hides deleted", KeyFilter{}, []string{alice.ID, bob.ID, carol.ID, dave.ID}},
		{"name substring ignores case", KeyFilter{NameContains: "LAPTOP"}, []string{alice.ID, dave.ID}},
		{"tag", KeyFilter{Tag: "eng"}, []string{alice.ID, bob.ID}},
		{"tag hides deleted", KeyFilter{Tag: "ci"}, []string{alice.ID}},
		{"policy", KeyFilter{Policy: "team", PolicySet: true}, []string{alice.ID, carol.ID}},
		{"default policy", KeyFilter{PolicySet: true}, []string{dave.ID}},
		{"active", KeyFilter{Status: KeyStatusActive}, []string{alice.ID}},
		{"disabled", KeyFilter{Status: KeyStatusDisabled}, []string{bob.ID}},
		{"expired", KeyFilter{Status: KeyStatusExpired}, []string{carol.ID}},
		{"revoked", KeyFilter{Status: KeyStatusRevoked}, []string{dave.ID}},
		{"deleted", KeyFilter{Status: KeyStatusDeleted}, []string{erin.ID}},
		{"deleted by tag", KeyFilter{Status: KeyStatusDeleted, Tag: "ci"}, []string{erin.ID}},
		{"tag and policy", KeyFilter{Tag: "eng", Policy: "admin", PolicySet: true}, []string{bob.ID}},
		{"nothing matches", KeyFilter{NameContains: "zed"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, limit := range []int{1, 2, 100} {
				if diff := cmp.Diff(tt.want, pageAll(t, s, tt.f, limit)); diff != "" {
					t.Errorf("limit %d (-want +got):\n%s", limit, diff)
				}
			}
		})
	}

	t.Run("bad cursor and status are invalid", func(t *testing.T) {
		for _, tc := range []struct {
			f      KeyFilter
			cursor string
		}{{KeyFilter{}, "nope"}, {KeyFilter{Status: "sleeping"}, ""}} {
			if _, err := s.PageKeys(ctx, tc.f, tc.cursor, 10); !errors.Is(err, ErrInvalid) {
				t.Errorf("PageKeys(%+v, %q): got %v, want ErrInvalid", tc.f, tc.cursor, err)
			}
		}
	})
}

func TestUpdateKeyMovesTagAndPolicyIndexesAndPublishes(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := newStore(t)
	k, _, err := s.CreateKey(ctx, KeySpec{Name: "k", Tags: []string{"old"}, Policy: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	sub := s.SubscribeRevocations(ctx)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // subscription confirmation
		t.Fatal(err)
	}
	rpm := int64(30)
	rules := KeyRules{Limits: KeyLimits{RequestsPerMinute: &rpm}, AllowedModels: []string{"claude-sonnet-*"},
		AllowedCIDRs: []string{"10.0.0.0/8"}, Binding: KeyBinding{Group: "eu"}}
	tags := []string{"new", "ci"}
	desc, policy := "build bot", "p2"
	got, err := s.UpdateKey(ctx, k.ID, KeyUpdate{Description: &desc, Tags: &tags, Policy: &policy, Rules: &rules,
		Expiry: &KeyExpiry{After: 48 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	want := k
	want.Description, want.Tags, want.Policy, want.Rules, want.ExpiresAfter = desc, []string{"ci", "new"}, policy, rules, 48*time.Hour
	want.Revision = k.Revision + 1
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("updated key (-want +got):\n%s", diff)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != k.ID {
		t.Errorf("revocations channel: got (%v, %v), want the key id %s", msg, err, k.ID)
	}
	for _, tc := range []struct {
		f    KeyFilter
		want int
	}{
		{KeyFilter{Tag: "old"}, 0}, {KeyFilter{Tag: "new"}, 1}, {KeyFilter{Tag: "ci"}, 1},
		{KeyFilter{Policy: "p1", PolicySet: true}, 0}, {KeyFilter{Policy: "p2", PolicySet: true}, 1},
	} {
		if n := len(pageAll(t, s, tc.f, 10)); n != tc.want {
			t.Errorf("filter %+v: got %d keys, want %d", tc.f, n, tc.want)
		}
	}
	if err := s.DeleteKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateKey(ctx, k.ID, KeyUpdate{Description: &desc}); !errors.Is(err, ErrConflict) {
		t.Errorf("update of a deleted key: got %v, want ErrConflict", err)
	}
	if _, err := s.UpdateKey(ctx, "nokey", KeyUpdate{Description: &desc}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of a missing key: got %v, want ErrNotFound", err)
	}
}

func TestLookupKeyReturnsRulesAndActivatesExpiryOnFirstUse(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	conc := int64(2)
	rules := KeyRules{Limits: KeyLimits{Concurrency: &conc}, DeniedModels: []string{"claude-opus-*"},
		AllowedClients: []string{"claude_code"}, Binding: KeyBinding{AccountID: "acct1"}}
	k, secret, err := s.CreateKey(ctx, KeySpec{Name: "trial", ExpiresAfter: 24 * time.Hour, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	if k.ExpiresAt != nil || k.ActivatedAt != nil {
		t.Fatalf("new key: got expires %v activated %v, want neither before first use", k.ExpiresAt, k.ActivatedAt)
	}
	clk.Advance(time.Hour)
	first := clk.Now()
	got, err := s.LookupKey(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rules, got.Rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if got.ActivatedAt == nil || !got.ActivatedAt.Equal(first) || got.ExpiresAt == nil || !got.ExpiresAt.Equal(first.Add(24*time.Hour)) {
		t.Errorf("after first use: got activated %v expires %v, want %v and a day later", got.ActivatedAt, got.ExpiresAt, first)
	}
	clk.Advance(23 * time.Hour)
	again, err := s.LookupKey(ctx, secret)
	if err != nil {
		t.Fatalf("second use within the day: %v", err)
	}
	if !again.ActivatedAt.Equal(first) {
		t.Errorf("second use: got activated %v, want the first use %v kept", again.ActivatedAt, first)
	}
	clk.Advance(time.Hour)
	if _, err := s.LookupKey(ctx, secret); !errors.Is(err, ErrKeyExpired) {
		t.Errorf("a day after first use: got %v, want ErrKeyExpired", err)
	}
}

func TestRegenerateKeyRetiresTheOldSecret(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := newStore(t)
	k, oldSecret, err := s.CreateKey(ctx, KeySpec{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	k2, newSecret, err := s.RegenerateKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if newSecret == oldSecret || k2.Hint == k.Hint || !ParseSecret(newSecret) {
		t.Errorf("got secret %q hint %q, want a new well-formed secret and hint", newSecret, k2.Hint)
	}
	if _, err := s.LookupKey(ctx, oldSecret); !errors.Is(err, ErrNotFound) {
		t.Errorf("old secret: got %v, want ErrNotFound", err)
	}
	if got, err := s.LookupKey(ctx, newSecret); err != nil || got.ID != k.ID {
		t.Errorf("new secret: got (%v, %v), want key %s", got.ID, err, k.ID)
	}
	if err := s.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RegenerateKey(ctx, k.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("regenerate a revoked key: got %v, want ErrConflict", err)
	}
}

func TestDeleteAndRestoreKey(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	k, secret, err := s.CreateKey(ctx, KeySpec{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupKey(ctx, secret); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted key: got %v, want ErrNotFound", err)
	}
	got, _ := s.GetKey(ctx, k.ID)
	if got.DeletedAt == nil || !got.DeletedAt.Equal(clk.Now()) || got.Status(clk.Now()) != KeyStatusDeleted {
		t.Errorf("got deleted_at %v status %q, want deleted now", got.DeletedAt, got.Status(clk.Now()))
	}
	if err := s.DeleteKey(ctx, k.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("delete twice: got %v, want ErrConflict", err)
	}
	if err := s.RestoreKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupKey(ctx, secret); err != nil {
		t.Errorf("restored key: got %v, want it usable", err)
	}
	if err := s.RestoreKey(ctx, k.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("restore a live key: got %v, want ErrConflict", err)
	}
	if err := s.DeleteKey(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete a missing key: got %v, want ErrNotFound", err)
	}
	if ids := pageAll(t, s, KeyFilter{}, 10); !slices.Equal(ids, []string{k.ID}) {
		t.Errorf("live listing after restore: got %v, want [%s]", ids, k.ID)
	}
}

func TestCreateKeysIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := newStore(t)
	_, err := s.CreateKeys(ctx, []KeySpec{{Name: "ok"}, {Name: " "}})
	if err == nil || !strings.Contains(err.Error(), "key 1") {
		t.Errorf("got %v, want an error naming key 1", err)
	}
	if ids := pageAll(t, s, KeyFilter{}, 10); len(ids) != 0 {
		t.Errorf("got %d keys after a refused bulk create, want 0", len(ids))
	}
}

func TestBackfillIndexesKeysCreatedBeforeTheIndexes(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	k, _, err := s.CreateKey(ctx, KeySpec{Name: "old", Tags: []string{"legacy"}, Policy: "team"})
	if err != nil {
		t.Fatal(err)
	}
	// Make it look like a key from before: no ord field, in no listing index.
	rdb.HDel(ctx, s.keys.KeyRecord(k.ID), "ord")
	rdb.Del(ctx, s.keys.KeysLive(), s.keys.KeysByTag("legacy"), s.keys.KeysByPolicy("team"))
	if ids := pageAll(t, s, KeyFilter{}, 10); len(ids) != 0 {
		t.Fatalf("before backfill: got %v, want nothing listed", ids)
	}
	n, err := s.BackfillKeyIndexes(ctx)
	if err != nil || n != 1 {
		t.Fatalf("BackfillKeyIndexes: got (%d, %v), want 1", n, err)
	}
	for _, f := range []KeyFilter{{}, {Tag: "legacy"}, {Policy: "team", PolicySet: true}} {
		if ids := pageAll(t, s, f, 10); !slices.Equal(ids, []string{k.ID}) {
			t.Errorf("filter %+v after backfill: got %v, want [%s]", f, ids, k.ID)
		}
	}
	if n, _ := s.BackfillKeyIndexes(ctx); n != 0 {
		t.Errorf("second backfill: indexed %d, want 0", n)
	}
}
