package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestPublishConfigNumbersNewContentAndKeepsTheVersionOfKnownContent(t *testing.T) {
	s, _, rdb, prefix := newStore(t)
	ctx := t.Context()
	if cur, err := s.CurrentConfig(ctx); err != nil || cur != nil {
		t.Fatalf("empty store: got %+v, %v, want nothing", cur, err)
	}
	created := time.Date(2026, 5, 1, 12, 0, 0, 123, time.UTC)
	steps := []struct {
		sha       string
		published bool
		version   int64
	}{
		{"a", true, 1},
		{"a", false, 1}, // same content: no new version
		{"b", true, 2},
		{"a", true, 3}, // back to earlier content is a new version
	}
	var epoch string
	for i, st := range steps {
		c := &StoredConfig{SHA256: st.sha, Config: []byte(`{"n":` + fmt.Sprint(i) + `}`), CreatedAt: created}
		published, err := s.PublishConfig(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			epoch = c.Epoch
		}
		if published != st.published || c.Version != st.version || c.Epoch != epoch || epoch == "" {
			t.Errorf("step %d: got published %v version %d epoch %q, want %v %d %q", i, published, c.Version, c.Epoch, st.published, st.version, epoch)
		}
	}
	cur, err := s.CurrentConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := StoredConfig{Epoch: epoch, Version: 3, SHA256: "a", CreatedAt: created, Config: []byte(`{"n":3}`)}
	if cur == nil || cur.Epoch != want.Epoch || cur.Version != want.Version || cur.SHA256 != want.SHA256 ||
		!cur.CreatedAt.Equal(want.CreatedAt) || string(cur.Config) != string(want.Config) {
		t.Errorf("current: got %+v, want %+v", cur, want)
	}

	// A wiped store starts a new epoch: its numbering restarts.
	if err := rdb.Del(ctx, prefix+"{config}:epoch", prefix+"{config}:version", prefix+"{config}:current").Err(); err != nil {
		t.Fatal(err)
	}
	c := &StoredConfig{SHA256: "a", Config: []byte(`{}`), CreatedAt: created}
	if published, err := s.PublishConfig(ctx, c); err != nil || !published || c.Version != 1 || c.Epoch == epoch {
		t.Errorf("after a wipe: got published %v version %d epoch %q (%v), want version 1 of a new epoch", published, c.Version, c.Epoch, err)
	}
}

func TestCurrentConfigWithABadVersionIsAnError(t *testing.T) {
	s, _, rdb, prefix := newStore(t)
	if err := rdb.HSet(t.Context(), prefix+"{config}:current", "version", "x", "epoch", "e").Err(); err != nil {
		t.Fatal(err)
	}
	if cur, err := s.CurrentConfig(t.Context()); err == nil {
		t.Errorf("got %+v, want an error", cur)
	}
}

func TestAnnounceConfigReachesSubscribers(t *testing.T) {
	s, _, _, _ := newStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sub := s.SubscribeConfig(ctx)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatal(err)
	}
	if err := s.AnnounceConfig(ctx, 7); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := msg.(*redis.Message); !ok || m.Payload != "7" {
		t.Errorf("got %#v, want the announcement of version 7", msg)
	}
}

func TestSidecarRegistryRecordsReportsAndForgetsThem(t *testing.T) {
	s, _, _, _ := newStore(t)
	ctx := t.Context()
	for id, report := range map[string]string{"a": `{"id":"a"}`, "b": `{"id":"b"}`, "c": `{"id":"c"}`} {
		if err := s.RecordSidecar(ctx, id, []byte(report)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordSidecar(ctx, "a", []byte(`{"id":"a","version":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetSidecars(ctx, "b", "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetSidecars(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := s.SidecarReports(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ids := slices.Sorted(maps.Keys(m)); !slices.Equal(ids, []string{"a"}) || m["a"] != `{"id":"a","version":2}` {
		t.Errorf("got %v, want only a's latest report", m)
	}
}
