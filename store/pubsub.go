package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Receive reads the subscription ps until ctx ends, handing fn each message: a
// *redis.Message, or a *redis.Subscription when go-redis (re)subscribes after a broken
// connection (a listener that may have missed messages meanwhile acts on it). A broken
// subscription is retried after a backoff of 100 ms doubling to 5 s (back to 100 ms at the
// next subscription), telling broken, when not nil, about each break. Receive closes ps.
func Receive(ctx context.Context, ps *redis.PubSub, fn func(msg any), broken func(err error, retry time.Duration)) {
	// ps.Receive does not watch ctx while it waits on the socket: closing the
	// subscription is what ends a blocked Receive.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	defer ps.Close()
	const first, most = 100 * time.Millisecond, 5 * time.Second
	backoff := first
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if broken != nil {
				broken(err, backoff)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, most)
			continue
		}
		if _, ok := msg.(*redis.Subscription); ok {
			backoff = first
		}
		fn(msg)
	}
}
