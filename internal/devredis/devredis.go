// Package devredis runs an IN-MEMORY Redis-protocol store (miniredis) for `claude-relay dev` only.
//
// DEV MODE ONLY. Everything stored here — relay keys, upstream accounts, usage — lives in this
// process's memory and is LOST when it exits. It is not Redis: it does not persist, replicate
// or scale, and it implements only the commands claude-relay uses. Production deployments
// must point REDIS_URL / REDIS_HOST at a real Redis 6+.
package devredis

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Banner is the warning dev mode prints when it falls back to the in-memory store.
const Banner = "USING AN IN-MEMORY REDIS (dev mode only): all keys, accounts and usage are lost on exit; set REDIS_URL or REDIS_HOST for a real Redis"

// Server is an in-memory Redis-protocol server listening on 127.0.0.1 plus a client on it.
type Server struct {
	mr     *miniredis.Miniredis
	client *redis.Client
}

// Start listens on 127.0.0.1 on a random port and returns the server with a connected client.
// TTLs follow the wall clock, as on a real Redis. The data is in memory only (dev mode).
func Start(ctx context.Context) (*Server, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start in-memory redis: %w", err)
	}
	mr.ClockTTL(true)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		mr.Close()
		return nil, fmt.Errorf("ping in-memory redis at %s: %w", mr.Addr(), err)
	}
	return &Server{mr: mr, client: client}, nil
}

// Client returns the go-redis client connected to the in-memory server.
func (s *Server) Client() redis.UniversalClient { return s.client }

// Addr returns the host:port the in-memory server listens on.
func (s *Server) Addr() string { return s.mr.Addr() }

// Close closes the client and stops the server; all data is discarded.
func (s *Server) Close() error {
	err := s.client.Close()
	s.mr.Close()
	if err != nil {
		return fmt.Errorf("close in-memory redis client: %w", err)
	}
	return nil
}
