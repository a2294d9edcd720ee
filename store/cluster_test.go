package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/redis/go-redis/v9"
)

// TestStoreWorksOnRedisCluster runs every multi-key operation against a one-node Redis
// Cluster: Cluster refuses multi-key commands and scripts across slots even on one node, so
// this proves the {hash tags} in schema.go keep each operation in one slot.
func TestStoreWorksOnRedisCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testredis.StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("add slots: %v", err)
	}
	for {
		info, err := admin.ClusterInfo(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info, "cluster_state:ok") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("cluster never became ok: %s", info)
		case <-time.After(50 * time.Millisecond):
		}
	}

	rdb, err := Connect(ctx, RedisConfig{ClusterAddrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatalf("Connect cluster: %v", err)
	}
	defer rdb.Close()
	s, err := Open(ctx, rdb, Options{Sealer: sealer(t, testEncKey)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	k, secret, err := s.CreateKey(ctx, KeySpec{Name: "c"})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if _, err := s.LookupKey(ctx, secret); err != nil {
		t.Fatalf("LookupKey: %v", err)
	}
	if _, err := s.ListKeys(ctx); err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	if err := s.TouchKey(ctx, k.ID, time.Now()); err != nil {
		t.Fatalf("TouchKey: %v", err)
	}
	if err := s.SetKeyEnabled(ctx, k.ID, false); err != nil {
		t.Fatalf("SetKeyEnabled: %v", err)
	}
	if err := s.RevokeKey(ctx, k.ID); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	if _, err := s.LookupKey(ctx, secret); !errors.Is(err, ErrKeyRevoked) {
		t.Fatalf("got %v, want %v", err, ErrKeyRevoked)
	}
	a, err := s.AddAccount(ctx, AccountSpec{Name: "a", Credential: "c"})
	if err != nil {
		t.Fatalf("AddAccount: %v", err)
	}
	if _, err := s.ListAccounts(ctx); err != nil {
		t.Fatalf("ListAccounts: %v", err)
	}
	if err := s.SetAccountSchedulable(ctx, a.ID, false); err != nil {
		t.Fatalf("SetAccountSchedulable: %v", err)
	}
	if err := s.DeleteAccount(ctx, a.ID); err != nil {
		t.Fatalf("DeleteAccount: %v", err)
	}
	if err := s.RecordUsage(ctx,
		UsageRecord{KeyID: k.ID, AccountID: a.ID, Model: "m", Usage: Usage{Requests: 1}},
		UsageRecord{KeyID: "other", AccountID: "b", Model: "m", Usage: Usage{Requests: 1}},
	); err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	if tot, err := s.KeyTotals(ctx, k.ID); err != nil || tot.Requests != 1 {
		t.Fatalf("got (%+v, %v), want 1 request", tot, err)
	}
	cfg := &StoredConfig{SHA256: "h", Config: []byte(`{}`), CreatedAt: time.Now()}
	if published, err := s.PublishConfig(ctx, cfg); err != nil || !published || cfg.Version != 1 {
		t.Fatalf("PublishConfig: got %v, version %d, %v", published, cfg.Version, err)
	}
	if cur, err := s.CurrentConfig(ctx); err != nil || cur == nil || cur.Version != 1 {
		t.Fatalf("CurrentConfig: got %+v, %v", cur, err)
	}
	if err := s.RecordSidecar(ctx, "s1", []byte(`{}`)); err != nil {
		t.Fatalf("RecordSidecar: %v", err)
	}
	if m, err := s.SidecarReports(ctx); err != nil || len(m) != 1 {
		t.Fatalf("SidecarReports: got %v, %v", m, err)
	}
	if err := s.ForgetSidecars(ctx, "s1"); err != nil {
		t.Fatalf("ForgetSidecars: %v", err)
	}
}
