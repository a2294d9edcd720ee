package app

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"
)

// go-redis logs its own events (a pool that cannot dial, a Sentinel that moved the master)
// through one process-wide logger, which by default prints unstructured lines to stderr,
// past the daily files and the redaction. redisLogs routes them into the process's logger
// as "redis" warnings. The hook is process-wide because go-redis's is; a process runs one
// Base, and where tests run several, the newest receives the lines.
var redisLogs struct {
	once sync.Once
	to   atomic.Pointer[hclog.Logger]
}

// routeRedisLogs sends go-redis's log lines to log from now on.
func routeRedisLogs(log hclog.Logger) {
	l := log.Named("redis")
	redisLogs.to.Store(&l)
	redisLogs.once.Do(func() { redis.SetLogger(redisLogger{}) })
}

// redisLogger implements go-redis's logging interface.
type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	l := redisLogs.to.Load()
	if l == nil {
		return
	}
	(*l).Warn(strings.TrimSpace(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")))
}
