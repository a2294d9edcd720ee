package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testredis"
)

const (
	sentinelDataPW = "data-secret-pw"
	sentinelPW     = "sentinel-secret-pw"
)

func sentinelConfig(s *testredis.Sentinel) RedisConfig {
	return RedisConfig{
		SentinelMaster:   s.MasterName(),
		SentinelAddrs:    s.SentinelAddrs(),
		SentinelPassword: sentinelPW,
		Password:         sentinelDataPW,
		DialTimeout:      time.Second,
	}
}

// TestSentinelClientKeepsWritingAcrossFailover connects through live Sentinels (both
// passwords set), proves writes land on the master, then moves the master — by SENTINEL
// FAILOVER and by killing the master process — and proves the same client's writes land on
// the promoted replica within a bounded time, with the data written before still there.
func TestSentinelClientKeepsWritingAcrossFailover(t *testing.T) {
	for _, tt := range testredis.MasterMoves() {
		t.Run(tt.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s := testredis.StartSentinel(t, testredis.WithDataPassword(sentinelDataPW), testredis.WithSentinelPassword(sentinelPW))
			rdb, err := Connect(ctx, sentinelConfig(s))
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer rdb.Close()

			oldMaster, replica := s.Master(), s.Replica()
			if err := rdb.Set(ctx, "before", "v1", 0).Err(); err != nil {
				t.Fatalf("SET through Sentinel: %v", err)
			}
			mc := s.DataClient(oldMaster)
			defer mc.Close()
			if got, err := mc.Get(ctx, "before").Result(); err != nil || got != "v1" {
				t.Fatalf("GET on master %s: got (%q, %v), want (%q, nil): the write did not land on the master", oldMaster, got, err, "v1")
			}
			if n, err := mc.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
				t.Fatalf("WAIT 1: got (%d, %v), want (1, nil)", n, err)
			}

			begin := time.Now()
			newMaster := tt.Do(ctx, s)
			promoted := time.Since(begin)
			if newMaster != replica {
				t.Fatalf("promoted %s, want the replica %s", newMaster, replica)
			}

			// The client may see errors while it notices the switch; the write must land
			// within a bounded window.
			const window = 15 * time.Second
			var attempts int
			var lastErr error
			for deadline := time.Now().Add(window); ; {
				attempts++
				wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
				lastErr = rdb.Set(wctx, "after", "v2", 0).Err()
				wcancel()
				if lastErr == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no write succeeded within %s after the failover (%d attempts), last error: %v", window, attempts, lastErr)
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("promoted in %s; first write after it succeeded %s after the move began, attempt %d",
				promoted.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond), attempts)

			nc := s.DataClient(newMaster)
			defer nc.Close()
			info, err := nc.Info(ctx, "replication").Result()
			if err != nil || !strings.Contains(info, "role:master") {
				t.Fatalf("INFO replication on %s: got (%q, %v), want role:master", newMaster, info, err)
			}
			if got, err := nc.Get(ctx, "after").Result(); err != nil || got != "v2" {
				t.Errorf("GET on new master %s: got (%q, %v), want (%q, nil): the write did not land on the new master", newMaster, got, err, "v2")
			}
			if got, err := rdb.Get(ctx, "before").Result(); err != nil || got != "v1" {
				t.Errorf("GET through Sentinel after failover: got (%q, %v), want (%q, nil)", got, err, "v1")
			}
		})
	}
}

// TestSentinelConnectErrorNamesSentinelsNotPassword proves that a wrong or missing
// REDIS_SENTINEL_PASSWORD, or a wrong REDIS_PASSWORD, fails Connect with an error that names
// the master set and every Sentinel address and contains neither password.
func TestSentinelConnectErrorNamesSentinelsNotPassword(t *testing.T) {
	s := testredis.StartSentinel(t, testredis.WithDataPassword(sentinelDataPW), testredis.WithSentinelPassword(sentinelPW))
	const stale = "stale-rotated-secret"
	tests := []struct {
		name string
		edit func(*RedisConfig)
	}{
		{"wrong sentinel password", func(c *RedisConfig) { c.SentinelPassword = stale }},
		{"missing sentinel password", func(c *RedisConfig) { c.SentinelPassword = "" }},
		{"wrong data password", func(c *RedisConfig) { c.Password = stale }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cfg := sentinelConfig(s)
			tt.edit(&cfg)
			rdb, err := Connect(ctx, cfg)
			if err == nil {
				rdb.Close()
				t.Fatal("got nil error, want a failed connect")
			}
			msg := err.Error()
			want := fmt.Sprintf("sentinel master %s via %s", s.MasterName(), strings.Join(s.SentinelAddrs(), ","))
			if !strings.Contains(msg, want) {
				t.Errorf("got %q, want it to contain %q", msg, want)
			}
			for _, pw := range []string{stale, sentinelPW, sentinelDataPW} {
				if strings.Contains(msg, pw) {
					t.Errorf("got %q, want no password (%q) in the error", msg, pw)
				}
			}
			t.Logf("error: %v", err)
		})
	}
}
