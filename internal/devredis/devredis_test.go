package devredis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func startT(t *testing.T) *Server {
	t.Helper()
	s, err := Start(context.Background())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestStartListensOnLoopbackAndAnswersPing(t *testing.T) {
	s := startT(t)
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("got addr %q, want 127.0.0.1:<port>", s.Addr())
	}
	if got, err := s.Client().Ping(context.Background()).Result(); err != nil || got != "PONG" {
		t.Errorf("got (%q, %v), want (PONG, nil)", got, err)
	}
	// A second instance gets its own port and data.
	other := startT(t)
	if other.Addr() == s.Addr() {
		t.Errorf("got the same addr %s twice, want distinct ports", s.Addr())
	}
}

func TestLuaScriptRuns(t *testing.T) {
	ctx := context.Background()
	s := startT(t)
	script := redis.NewScript(`
local n = redis.call("INCRBY", KEYS[1], ARGV[1])
redis.call("HSET", KEYS[2], "last", n)
return n`)
	tests := []struct {
		by   int
		want int64
	}{{2, 2}, {5, 7}}
	for _, tt := range tests {
		got, err := script.Run(ctx, s.Client(), []string{"c", "h"}, tt.by).Int64()
		if err != nil || got != tt.want {
			t.Fatalf("got (%d, %v), want (%d, nil)", got, err, tt.want)
		}
	}
	if got, _ := s.Client().HGet(ctx, "h", "last").Result(); got != "7" {
		t.Errorf("got h.last=%q, want %q", got, "7")
	}
}

func TestPublishReachesSubscriber(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := startT(t)
	sub := s.Client().Subscribe(ctx, "events")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // subscription confirmation
		t.Fatalf("subscribe: %v", err)
	}
	if n, err := s.Client().Publish(ctx, "events", "key_123").Result(); err != nil || n != 1 {
		t.Fatalf("got (%d receivers, %v), want (1, nil)", n, err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if msg.Channel != "events" || msg.Payload != "key_123" {
		t.Errorf("got %s/%s, want events/key_123", msg.Channel, msg.Payload)
	}
}

func TestTTLFollowsWallClock(t *testing.T) {
	ctx := context.Background()
	s := startT(t)
	if err := s.Client().Set(ctx, "short", "v", 50*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond)
	if n, err := s.Client().Exists(ctx, "short").Result(); err != nil || n != 0 {
		t.Errorf("got exists=%d err=%v, want the key expired", n, err)
	}
}

func TestCloseDiscardsEverything(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Errorf("got PING ok at %s after Close, want connection refused", addr)
	}
}
