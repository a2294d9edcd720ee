package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func wantRevision(t *testing.T, s *Store, id string, want int64, after string) {
	t.Helper()
	k, err := s.GetKey(context.Background(), id)
	if err != nil {
		t.Fatalf("GetKey after %s: %v", after, err)
	}
	if k.Revision != want {
		t.Errorf("revision after %s: got %d, want %d", after, k.Revision, want)
	}
}

func TestKeyRevisionIncrementsOnEveryAdministrativeChange(t *testing.T) {
	ctx := context.Background()
	s, clk, _, _ := newStore(t)
	k, secret, err := s.CreateKey(ctx, KeySpec{Name: "r", ExpiresAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if k.Revision != FirstRevision {
		t.Fatalf("CreateKey: got revision %d, want %d", k.Revision, FirstRevision)
	}
	wantRevision(t, s, k.ID, 1, "create")

	name := "renamed"
	steps := []struct {
		what string
		do   func() error
		want int64
	}{
		{"update", func() error { _, err := s.UpdateKey(ctx, k.ID, KeyUpdate{Name: &name}); return err }, 2},
		{"rules", func() error {
			_, err := s.UpdateKey(ctx, k.ID, KeyUpdate{Rules: &KeyRules{AllowedModels: []string{"claude-*"}}})
			return err
		}, 3},
		{"first use (activation)", func() error { _, err := s.LookupKey(ctx, secret); return err }, 3},
		{"touch", func() error { return s.TouchKey(ctx, k.ID, clk.Now()) }, 3},
		{"disable", func() error { return s.SetKeyEnabled(ctx, k.ID, false) }, 4},
		{"disable again (no change)", func() error { return s.SetKeyEnabled(ctx, k.ID, false) }, 4},
		{"enable", func() error { return s.SetKeyEnabled(ctx, k.ID, true) }, 5},
		{"regenerate", func() error { _, _, err := s.RegenerateKey(ctx, k.ID); return err }, 6},
		{"delete", func() error { return s.DeleteKey(ctx, k.ID) }, 7},
		{"restore", func() error { return s.RestoreKey(ctx, k.ID) }, 8},
		{"revoke", func() error { return s.RevokeKey(ctx, k.ID) }, 9},
		{"revoke again (no change)", func() error { return s.RevokeKey(ctx, k.ID) }, 9},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		wantRevision(t, s, k.ID, st.want, st.what)
	}
}

func TestKeyStoredWithoutRevisionReadsAsFirstRevision(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	k, _, err := s.CreateKey(ctx, KeySpec{Name: "old"})
	if err != nil {
		t.Fatal(err)
	}
	// A record written before revisions existed has no "rev" field.
	if err := rdb.HDel(ctx, s.keys.KeyRecord(k.ID), "rev").Err(); err != nil {
		t.Fatal(err)
	}
	wantRevision(t, s, k.ID, FirstRevision, "removing rev")
	name := "n"
	if _, err := s.UpdateKey(ctx, k.ID, KeyUpdate{Name: &name, IfRevision: FirstRevision}); err != nil {
		t.Fatalf("update conditional on revision 1 of a record without rev: %v", err)
	}
	wantRevision(t, s, k.ID, FirstRevision+1, "conditional update")
}

func TestStaleRevisionChangesNothingAndNamesTheCurrentRevision(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	k, secret, err := s.CreateKey(ctx, KeySpec{Name: "k", Tags: []string{"old"}})
	if err != nil {
		t.Fatal(err)
	}
	name := "moved"
	if _, err := s.UpdateKey(ctx, k.ID, KeyUpdate{Name: &name}); err != nil { // revision 2
		t.Fatal(err)
	}
	before, err := rdb.HGetAll(ctx, s.keys.KeyRecord(k.ID)).Result()
	if err != nil {
		t.Fatal(err)
	}
	tags := []string{"new"}
	stale := map[string]func() error{
		"update": func() error {
			_, err := s.UpdateKey(ctx, k.ID, KeyUpdate{Tags: &tags, Rules: &KeyRules{AllowedModels: []string{"x"}}, IfRevision: 1})
			return err
		},
		"disable":    func() error { return s.SetKeyEnabledIf(ctx, k.ID, false, 1) },
		"regenerate": func() error { _, _, err := s.RegenerateKeyIf(ctx, k.ID, 1); return err },
		"delete":     func() error { return s.DeleteKeyIf(ctx, k.ID, 1) },
		"restore":    func() error { return s.RestoreKeyIf(ctx, k.ID, 3) },
		"revoke":     func() error { return s.RevokeKeyIf(ctx, k.ID, 1) },
	}
	for what, do := range stale {
		err := do()
		var se *StaleError
		if !errors.As(err, &se) || !errors.Is(err, ErrStale) {
			t.Fatalf("%s with a stale revision: got %v, want a *StaleError", what, err)
		}
		if se.Current != 2 || se.ID != k.ID {
			t.Errorf("%s: got %+v, want current revision 2 of %s", what, *se, k.ID)
		}
	}
	after, err := rdb.HGetAll(ctx, s.keys.KeyRecord(k.ID)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("record changed by refused writes:\n got %v\nwant %v", after, before)
	}
	if ids := pageAll(t, s, KeyFilter{Tag: "old"}, 10); !slices.Equal(ids, []string{k.ID}) {
		t.Errorf("tag index old: got %v, want [%s]", ids, k.ID)
	}
	if ids := pageAll(t, s, KeyFilter{Tag: "new"}, 10); len(ids) != 0 {
		t.Errorf("tag index new: got %v, want none", ids)
	}
	if _, err := s.LookupKey(ctx, secret); err != nil {
		t.Errorf("the secret stopped working after refused writes: %v", err)
	}

	// The right revision goes through, and moves the indexes.
	if _, err := s.UpdateKey(ctx, k.ID, KeyUpdate{Tags: &tags, IfRevision: 2}); err != nil {
		t.Fatalf("update at the current revision: %v", err)
	}
	if ids := pageAll(t, s, KeyFilter{Tag: "new"}, 10); !slices.Equal(ids, []string{k.ID}) {
		t.Errorf("tag index new after the update: got %v, want [%s]", ids, k.ID)
	}
	if err := s.SetKeyEnabledIf(ctx, "nosuchkey", false, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("conditional change of a missing key: got %v, want ErrNotFound", err)
	}
}

func TestConcurrentConditionalReadModifyWritesLoseNoModel(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := newStore(t)
	k, _, err := s.CreateKey(ctx, KeySpec{Name: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			model := fmt.Sprintf("model-%02d", i)
			// Each stale attempt means another writer succeeded, so n attempts always suffice.
			for attempt := 0; attempt < n; attempt++ {
				cur, err := s.GetKey(ctx, k.ID)
				if err != nil {
					errs <- err
					return
				}
				rules := cur.Rules
				rules.AllowedModels = append(slices.Clone(rules.AllowedModels), model)
				_, err = s.UpdateKey(ctx, k.ID, KeyUpdate{Rules: &rules, IfRevision: cur.Revision})
				if errors.Is(err, ErrStale) {
					continue
				}
				errs <- err
				return
			}
			errs <- fmt.Errorf("%s: still stale after %d attempts", model, n)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got, err := s.GetKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	models := slices.Sorted(slices.Values(got.Rules.AllowedModels))
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("model-%02d", i))
	}
	if !slices.Equal(models, want) {
		t.Errorf("allowed models: got %v, want all %d: %v", models, n, want)
	}
	if got.Revision != 1+n {
		t.Errorf("revision: got %d, want %d (one per write)", got.Revision, 1+n)
	}
}
