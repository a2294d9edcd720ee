package app

import (
	"context"

	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/redis/go-redis/v9"
)

// redisTraffic counts what the process sends to Redis, as a go-redis hook: one round trip
// per command sent alone and per pipeline (a transaction included), and every command by
// name (a script counts as one EVALSHA, not the commands it runs inside Redis). `make bench`
// divides them by the requests of a phase: the round trips and commands each request costs.
type redisTraffic struct {
	roundTrips *metrics.Counter
	commands   *metrics.CounterVec
}

// registerRedisTraffic adds the counting hook to rdb and exports its counters.
func registerRedisTraffic(m *metrics.Registry, rdb redis.UniversalClient) *redisTraffic {
	t := &redisTraffic{
		roundTrips: m.Counter("claude_relay_redis_round_trips_total",
			"Round trips to Redis: commands sent alone plus pipelines (a pipeline a Cluster splits across masters counts once).").With(),
		commands: m.Counter("claude_relay_redis_commands_total",
			"Commands sent to Redis, by command (a script is one EVALSHA or EVAL; the commands it runs inside Redis are not counted).", "command"),
	}
	rdb.AddHook(t)
	return t
}

func (t *redisTraffic) DialHook(next redis.DialHook) redis.DialHook { return next }

func (t *redisTraffic) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		t.roundTrips.Inc()
		t.commands.With(cmd.Name()).Inc()
		return next(ctx, cmd)
	}
}

func (t *redisTraffic) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 {
			t.roundTrips.Inc()
		}
		for _, cmd := range cmds {
			t.commands.With(cmd.Name()).Inc()
		}
		return next(ctx, cmds)
	}
}

var _ redis.Hook = (*redisTraffic)(nil)
