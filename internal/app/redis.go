package app

import (
	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/store"
)

// RedisConfig is how the running processes reach Redis for env: single server, Sentinel or
// Cluster, with the same pool and timeouts. `claude-relay doctor` uses it to check the same
// Redis the sidecar and control plane would use.
func RedisConfig(env *config.Env) store.RedisConfig { return redisConfig(env) }
