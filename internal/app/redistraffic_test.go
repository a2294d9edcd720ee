package app

import (
	"context"
	"testing"

	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/redis/go-redis/v9"
)

// TestRedisTrafficCountsRoundTripsAndCommandsSent sends a command alone, a pipeline, a
// transaction and a script to a real Redis and checks what the hook counted: one round trip
// each (two for a script Redis does not know yet: EVALSHA refused, then EVAL), and the
// commands by name as they went on the wire, a script's inner commands not among them.
func TestRedisTrafficCountsRoundTripsAndCommandsSent(t *testing.T) {
	rdb, prefix := testredis.New(t)
	ctx := context.Background()
	// Dial before counting: go-redis dials again for its first pipeline.
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { p.Ping(ctx); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	tr := registerRedisTraffic(metrics.NewRegistry(), rdb)
	key := func(s string) string { return prefix + "{rt}" + s }
	script := redis.NewScript("redis.call('incrby', KEYS[1], 1) return redis.call('get', KEYS[1]) -- " + prefix)

	steps := []struct {
		name       string
		do         func() error
		roundTrips float64
		commands   map[string]float64
	}{
		{"alone", func() error { return rdb.Set(ctx, key("a"), "1", 0).Err() }, 1, map[string]float64{"set": 1}},
		{"pipeline", func() error {
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.IncrBy(ctx, key("a"), 2)
				p.Get(ctx, key("a"))
				p.Get(ctx, key("b"))
				return nil
			})
			if err == redis.Nil {
				err = nil
			}
			return err
		}, 1, map[string]float64{"incrby": 1, "get": 2}},
		{"transaction", func() error {
			_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Incr(ctx, key("a"))
				p.Incr(ctx, key("a"))
				return nil
			})
			return err
		}, 1, map[string]float64{"multi": 1, "incr": 2, "exec": 1}},
		{"new script", func() error { return script.Run(ctx, rdb, []string{key("a")}).Err() }, 2, map[string]float64{"evalsha": 1, "eval": 1}},
		{"known script", func() error { return script.Run(ctx, rdb, []string{key("a")}).Err() }, 1, map[string]float64{"evalsha": 1}},
	}
	names := []string{"set", "get", "incr", "incrby", "multi", "exec", "evalsha", "eval"}
	for _, st := range steps {
		rt0, c0 := tr.roundTrips.Value(), map[string]float64{}
		for _, n := range names {
			c0[n] = tr.commands.With(n).Value()
		}
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := tr.roundTrips.Value() - rt0; got != st.roundTrips {
			t.Errorf("%s: round trips: got %v, want %v", st.name, got, st.roundTrips)
		}
		for _, n := range names {
			if got, want := tr.commands.With(n).Value()-c0[n], st.commands[n]; got != want {
				t.Errorf("%s: %s commands: got %v, want %v", st.name, n, got, want)
			}
		}
	}
}
