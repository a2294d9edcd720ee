package testredis

import (
	"context"
	"fmt"
	"strings"
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
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != prefix+"b:keep" {
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
