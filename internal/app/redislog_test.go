package app

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

func TestGoRedisLogLinesGoToTheRelayLogger(t *testing.T) {
	var stderr testutil.Buffer
	env := &config.Env{LogLevel: "info"}
	if _, _, err := newLogger(env, &stderr); err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on: go-redis's pool logs its failed dials.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "redis:") && time.Now().Before(deadline) {
		_ = rdb.Ping(context.Background()).Err()
		time.Sleep(20 * time.Millisecond)
	}
	out := stderr.String()
	if !strings.Contains(out, "[WARN]  claude-relay.redis:") {
		t.Fatalf("go-redis lines did not reach the relay's logger as redis warnings; stderr:\n%s", out)
	}
}
