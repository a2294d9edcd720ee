package app

import (
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

// scrape returns the unlabelled samples of a /metrics page.
func scrape(t *testing.T, c *http.Client, url string) map[string]float64 {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out
}

func TestMetricsShowConnectionsRedisPoolAndProcess(t *testing.T) {
	srv := testredis.StartServer(t)
	t.Setenv("CLAUDE_RELAY_ADMIN_FILE", filepath.Join(t.TempDir(), "admin.json"))
	env := devEnv(t)
	env.RedisURL = "redis://" + srv.Addr()
	env.MaxConnections = 123
	p := startDev(t, env, t.TempDir())

	// Two clients, each holding a keep-alive connection open.
	a, b := &http.Client{Transport: &http.Transport{}}, &http.Client{Transport: &http.Transport{}}
	defer a.CloseIdleConnections()
	scrape(t, a, "http://"+p.addr+"/metrics")
	m := scrape(t, b, "http://"+p.addr+"/metrics")
	checks := []struct {
		name     string
		min, max float64
	}{
		{"claude_relay_open_connections", 2, 50},
		{"claude_relay_max_connections", 123, 123},
		{"claude_relay_redis_pool_size", 100, 100},
		{"claude_relay_redis_pool_connections", 1, 100},
		{"claude_relay_redis_pool_timeouts_total", 0, 0},
		{"process_open_fds", 5, 1 << 20},
		{"process_resident_memory_bytes", 1 << 20, 1 << 40},
		{"go_goroutines", 5, 1e6},
	}
	for _, c := range checks {
		v, ok := m[c.name]
		if !ok || v < c.min || v > c.max {
			t.Errorf("%s: got %v (present %v), want within [%v, %v]", c.name, v, ok, c.min, c.max)
		}
	}
	// Closing one client's connection brings the gauge down.
	b.CloseIdleConnections()
	testutil.Eventually(t, 5*time.Second, "the open connections gauge to drop", func() bool {
		return scrape(t, a, "http://"+p.addr+"/metrics")["claude_relay_open_connections"] < m["claude_relay_open_connections"]
	})
}
