package main

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// runFloorProxy is (r): the ReverseProxy of (b) plus the least Redis work an exact limiter can
// do per request on a Redis of its own: one INCR of an in-flight counter before forwarding
// (the admission) and one DECR after (the release), each its own round trip, both writes the
// AOF logs. It is not a limiter; it measures, in the same run as the relay, what two Redis
// round trips per request cost the Redis process on this machine, the floor under any
// admission-then-release design. It exports the counters the relay does on /metrics, so its
// Redis cost is reported like the relay's.
func runFloorProxy(addr, upstream, redisAddr string) error {
	proxy, err := newReverseProxy(upstream, false)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	var incrs, decrs atomic.Int64
	return serveUntilSignal(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			fmt.Fprintln(w, "ok")
			return
		case "/metrics":
			incr, decr := incrs.Load(), decrs.Load()
			fmt.Fprintf(w, "claude_relay_redis_round_trips_total %d\n", incr+decr)
			fmt.Fprintf(w, "claude_relay_redis_commands_total{command=\"incr\"} %d\n", incr)
			fmt.Fprintf(w, "claude_relay_redis_commands_total{command=\"decr\"} %d\n", decr)
			return
		}
		if err := rdb.Incr(r.Context(), "floor:in_flight").Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		incrs.Add(1)
		defer func() {
			_ = rdb.Decr(context.WithoutCancel(r.Context()), "floor:in_flight").Err()
			decrs.Add(1)
		}()
		proxy.ServeHTTP(w, r)
	}))
}
