package testredis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestNewGivesWorkingClientAndUniquePrefix(t *testing.T) {
	ctx := context.Background()
	rdb1, p1 := New(t)
	_, p2 := New(t)
	if p1 == p2 {
		t.Fatalf("got the same prefix %q twice, want unique prefixes", p1)
	}
	if strings.ContainsAny(p1, "{}*?[]") {
		t.Errorf("got prefix %q, want no hash-tag or glob characters", p1)
	}
	if err := rdb1.Set(ctx, p1+"k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := rdb1.Get(ctx, p1+"k").Result(); err != nil || got != "v" {
		t.Errorf("got (%q, %v), want (%q, nil)", got, err, "v")
	}
}

func TestDeletePrefixRemovesOnlyThatPrefix(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := New(t)
	for i := range 1200 {
		rdb.Set(ctx, fmt.Sprintf("%sa:%d", prefix, i), 1, 0)
	}
	rdb.Set(ctx, prefix+"b:keep", 1, 0)
	if err := DeletePrefix(ctx, rdb, prefix+"a:"); err != nil {
		t.Fatalf("DeletePrefix: %v", err)
	}
	if keys := Keys(t, rdb, prefix); len(keys) != 1 || keys[0] != prefix+"b:keep" {
		t.Errorf("got keys %v, want [%s]", keys, prefix+"b:keep")
	}
}

func TestStartServerStopAndRestartOnSamePort(t *testing.T) {
	ctx := context.Background()
	srv := StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING running server: %v", err)
	}
	srv.Stop()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatalf("got PING ok on a stopped server, want an error")
	}
	srv.Start()
	var err error
	for range 3 { // the pool may hand out one dead connection first
		if err = rdb.Ping(ctx).Err(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("got %v after restart, want PING ok", err)
	}
}

func TestStartServerPassesArgs(t *testing.T) {
	ctx := context.Background()
	srv := StartServer(t, "--requirepass", "s3cret")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("got %v, want NOAUTH without a password", err)
	}
	authed := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "s3cret"})
	defer authed.Close()
	if err := authed.Ping(ctx).Err(); err != nil {
		t.Errorf("got %v, want PING ok with the password", err)
	}
}

func TestStartClusterSpreadsKeysOverThreeMasters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := StartCluster(t)
	if got := len(c.Addrs()); got != 3 {
		t.Fatalf("got %d masters, want 3", got)
	}
	rdb := c.Client()
	defer rdb.Close()
	for i := range 100 {
		if err := rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET k%d: %v", i, err)
		}
	}
	var mu sync.Mutex
	perNode := map[string]int64{}
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		size, err := n.DBSize(ctx).Result()
		mu.Lock()
		perNode[n.Options().Addr] = size
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for addr, n := range perNode {
		if n == 0 {
			t.Errorf("master %s holds no keys, want the slots spread over all three", addr)
		}
		total += n
	}
	if total != 100 {
		t.Errorf("got %d keys over the masters, want 100", total)
	}
	if err := DeletePrefix(ctx, rdb, "k"); err != nil {
		t.Fatalf("DeletePrefix on cluster: %v", err)
	}
	if n, err := rdb.Exists(ctx, "k1").Result(); err != nil || n != 0 {
		t.Errorf("got (%d, %v) after DeletePrefix, want (0, nil)", n, err)
	}
}
