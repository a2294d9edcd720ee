package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

// TestSidecarOnSentinelRelaysAcrossFailover runs the real sidecar with REDIS_SENTINEL_* (and
// both passwords) against live Sentinels, relays a request, moves the master — by SENTINEL
// FAILOVER and by killing the master process — and proves a request after the move succeeds,
// /health reports redis ok again, and the usage of every request is in Redis on the new master,
// each within a bounded time.
func TestSidecarOnSentinelRelaysAcrossFailover(t *testing.T) {
	const dataPW, sentinelPW = "e2e-data-pw", "e2e-sentinel-pw"
	for _, tt := range testredis.MasterMoves() {
		t.Run(tt.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s := testredis.StartSentinel(t, testredis.WithDataPassword(dataPW), testredis.WithSentinelPassword(sentinelPW))
			in := newInstallOn(t, store.RedisConfig{
				SentinelMaster:   s.MasterName(),
				SentinelAddrs:    s.SentinelAddrs(),
				SentinelPassword: sentinelPW,
				Password:         dataPW,
			}, []string{
				"REDIS_SENTINEL_MASTER=" + s.MasterName(),
				"REDIS_SENTINEL_ADDRS=" + strings.Join(s.SentinelAddrs(), ","),
				"REDIS_SENTINEL_PASSWORD=" + sentinelPW,
				"REDIS_PASSWORD=" + dataPW,
			})
			p := in.startSidecar("sidecar")
			client := &http.Client{Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()

			if got := redisHealth(client, p); got != "ok" {
				t.Fatalf("/health redis before the move: got %q, want ok", got)
			}
			if ok, _, err := send(client, p, in.key); !ok {
				t.Fatalf("request before the move: %v", err)
			}
			// Let the first request's usage reach the replica before the master moves.
			waitForTotals(t, in.st, in.keyID, 1)
			mc := s.DataClient(s.Master())
			defer mc.Close()
			if n, err := mc.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
				t.Fatalf("WAIT 1: got (%d, %v), want (1, nil)", n, err)
			}

			begin := time.Now()
			newMaster := tt.Do(ctx, s)
			promoted := time.Since(begin)

			const window = 15 * time.Second
			testutil.Eventually(t, window, "a relayed request succeeding after the move", func() bool {
				ok, _, err := send(client, p, in.key)
				if !ok {
					t.Logf("request after the move: %v", err)
					time.Sleep(200 * time.Millisecond)
				}
				return ok
			})
			relayed := time.Since(begin)
			var health string
			testutil.Eventually(t, window, "/health redis ok after the move", func() bool {
				health = redisHealth(client, p)
				return health == "ok"
			})
			t.Logf("new master %s promoted in %s; a relayed request succeeded %s and /health was ok %s after the move began",
				newMaster, promoted.Round(time.Millisecond), relayed.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))

			// Every request the upstream completed is counted, in Redis on the new master.
			var completed int64
			for _, r := range in.up.Requests() {
				if r.Path == "/v1/messages" && r.Completed {
					completed++
				}
			}
			nc := s.DataClient(newMaster)
			defer nc.Close()
			if info, err := nc.Info(ctx, "replication").Result(); err != nil || !strings.Contains(info, "role:master") {
				t.Fatalf("INFO replication on %s: got (%q, %v), want role:master", newMaster, info, err)
			}
			direct := storetest.Open(t, nc, store.Options{})
			waitForTotals(t, direct, in.keyID, completed)
		})
	}
}

// redisHealth returns the sidecar's /health "redis" component ("ok" or "error"), or why
// it could not be read.
func redisHealth(client *http.Client, p *proc) string {
	resp, err := client.Get(p.url() + "/health")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var body struct {
		Components map[string]string `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "decode /health: " + err.Error()
	}
	return body.Components["redis"]
}

// waitForTotals waits until st counts want requests for the key (usage is recorded after the
// response, not before the client sees its end).
func waitForTotals(t *testing.T, st *store.Store, keyID string, want int64) {
	t.Helper()
	var got int64
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		var tot store.Usage
		if tot, err = st.KeyTotals(context.Background(), keyID); err == nil {
			got = tot.Requests
			if got == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage in Redis: got %d requests (err %v), want %d", got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
