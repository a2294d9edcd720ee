package store

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/testredis"
)

// TestReceiveDeliversAcrossABrokenSubscriptionAndEndsWithItsContext: messages reach fn; a
// subscription whose connection Redis kills is reported broken, comes back with a
// (re)subscription confirmation and delivers again; cancelling ctx ends Receive.
func TestReceiveDeliversAcrossABrokenSubscriptionAndEndsWithItsContext(t *testing.T) {
	// A Redis of its own: killing pub/sub connections must not reach other tests' ones.
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	channel := "pubsub-test-" + t.Name()
	msgs := make(chan string, 16)
	subs := make(chan struct{}, 16)
	var breaks atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		Receive(ctx, rdb.Subscribe(ctx, channel), func(msg any) {
			switch m := msg.(type) {
			case *redis.Subscription:
				subs <- struct{}{}
			case *redis.Message:
				msgs <- m.Payload
			}
		}, func(error, time.Duration) { breaks.Add(1) })
	}()
	publishUntil := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			rdb.Publish(ctx, channel, want)
			select {
			case got := <-msgs:
				if got == want {
					return
				}
			case <-time.After(50 * time.Millisecond):
			}
		}
		t.Fatalf("message %q never arrived", want)
	}
	<-subs
	publishUntil("first")

	// Kill the subscriber's connection from Redis's side.
	if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-subs:
	case <-time.After(10 * time.Second):
		t.Fatal("no re-subscription after the connection was killed")
	}
	if breaks.Load() == 0 {
		t.Error("the broken subscription was not reported")
	}
	publishUntil("second")

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Receive did not end with its context")
	}
}
