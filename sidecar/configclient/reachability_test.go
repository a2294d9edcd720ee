package configclient

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/internal/health"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

const testSecret = "test-jwt-secret-0123456789abcdef0123456789abcdef"

// controlPlane is a real control plane's long-poll endpoint on a fixed loopback address that
// can be stopped (every connection closed) and started again.
type controlPlane struct {
	t    *testing.T
	addr string
	cfg  *controlplane.Distribution

	mu  sync.Mutex
	srv *http.Server
}

// runInBackground runs c until the test ends.
func runInBackground(t *testing.T, c *Client) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	rdb, prefix := testredis.New(t)
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix})
	cfg, err := controlplane.NewDistribution(t.Context(), controlplane.DistributionOptions{Store: st, SidecarSecrets: [][]byte{[]byte(testSecret)}})
	if err != nil {
		t.Fatal(err)
	}
	go cfg.Run(t.Context())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{t: t, addr: ln.Addr().String(), cfg: cfg}
	cp.serve(ln)
	t.Cleanup(cp.stop)
	return cp
}

func (cp *controlPlane) serve(ln net.Listener) {
	srv := &http.Server{Handler: cp.cfg.Server.Handler()}
	cp.mu.Lock()
	cp.srv = srv
	cp.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// stop closes the listener and every connection, held long-polls included.
func (cp *controlPlane) stop() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.srv != nil {
		cp.srv.Close()
		cp.srv = nil
	}
}

func (cp *controlPlane) restart() {
	ln, err := net.Listen("tcp", cp.addr)
	if err != nil {
		cp.t.Fatalf("listen again on %s: %v", cp.addr, err)
	}
	cp.serve(ln)
}

func TestReachableWithinSecondsOfTheControlPlaneReturning(t *testing.T) {
	cp := startControlPlane(t)
	fetch, err := NewHTTPFetcher("http://"+cp.addr, []byte(testSecret), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The default wait (30 s) and backoff cap (5 s), as a sidecar runs them.
	c, err := New(Options{Fetcher: fetch, Apply: (&applier{}).apply, ID: "s1", ControlPlane: "http://" + cp.addr})
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, c)

	testutil.Eventually(t, 10*time.Second, "the configuration is applied", func() bool { st := c.Status(); return st.Version > 0 && st.Reachable })
	time.Sleep(200 * time.Millisecond) // a long-poll is now held

	cp.stop()
	took := testutil.Eventually(t, 3*time.Second, "the sidecar sees the control plane gone", func() bool { return !c.Status().Reachable })
	t.Logf("unreachable %s after the control plane stopped", took.Round(time.Millisecond))

	time.Sleep(2 * time.Second) // a few failed polls: the backoff grows
	cp.restart()
	took = testutil.Eventually(t, 7*time.Second, "the sidecar sees the control plane back (backoff at most 5 s, then one poll)", func() bool { return c.Status().Reachable })
	t.Logf("reachable %s after the control plane came back", took.Round(time.Millisecond))
}

func TestControlPlaneComponentFollowsReachability(t *testing.T) {
	var mu sync.Mutex
	down := false
	fetch := FetcherFunc(func(ctx context.Context, req configapi.PollRequest) (*configapi.Envelope, error) {
		mu.Lock()
		d := down
		mu.Unlock()
		if d {
			return nil, errors.New("dial tcp 10.255.255.53:3100: connect: connection refused")
		}
		if req.Version == 0 {
			return envelope(t, "e1", 1, "/v1"), nil
		}
		return nil, nil
	})
	c, err := New(Options{Fetcher: fetch, Apply: (&applier{}).apply, ID: "s1", ControlPlane: "http://10.255.255.53:3100"})
	if err != nil {
		t.Fatal(err)
	}
	hc := c.HealthCheck()
	status := func() (string, string) {
		h := health.Report(t.Context(), "test", time.Now(), []health.Check{hc})
		comp := h.Components["control_plane"]
		return comp.Status, comp.Error
	}
	if err := c.PollOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, _ := status(); got != "ok" {
		t.Errorf("reachable with a configuration: got %q, want ok", got)
	}
	mu.Lock()
	down = true
	mu.Unlock()
	_ = c.PollOnce(t.Context())
	got, detail := status()
	if got != "unreachable" {
		t.Errorf("unreachable with a configuration: got %q, want unreachable (a warning)", got)
	}
	for _, want := range []string{"http://10.255.255.53:3100", "connection refused", "serving version 1"} {
		if !strings.Contains(detail, want) {
			t.Errorf("operators' error: got %q, want it to contain %q", detail, want)
		}
	}
	if h := health.Report(t.Context(), "test", time.Now(), []health.Check{hc}); h.Status != "ok" {
		t.Errorf("service status while serving the applied configuration: got %q, want ok", h.Status)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	_ = c.PollOnce(t.Context())
	if got, _ := status(); got != "ok" {
		t.Errorf("back: got %q, want ok", got)
	}
}

func TestHealthChangeReachesTheControlPlaneWithoutWaitingForTheLongPoll(t *testing.T) {
	cp := startControlPlane(t)
	fetch, err := NewHTTPFetcher("http://"+cp.addr, []byte(testSecret), nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	redisErr := error(nil)
	checks := []health.Check{{Name: "redis", Check: func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return redisErr
	}}}
	c, err := New(Options{
		Fetcher: fetch, Apply: (&applier{}).apply, ID: "s1", ControlPlane: "http://" + cp.addr,
		Health: func(ctx context.Context) configapi.Health {
			return health.Report(ctx, "test", time.Now(), checks)
		},
		HealthEvery: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, c)

	reported := func() configapi.Component {
		list, err := cp.cfg.Registry.List(t.Context())
		if err != nil || len(list) != 1 || list[0].Health == nil {
			return configapi.Component{}
		}
		return list[0].Health.Components["redis"]
	}
	testutil.Eventually(t, 10*time.Second, "the sidecar reports redis ok", func() bool { return reported().Status == "ok" && c.Status().Reachable })
	time.Sleep(300 * time.Millisecond) // a long-poll (30 s) is now held

	mu.Lock()
	redisErr = errors.New("dial tcp 10.0.0.7:6379: connect: connection refused")
	mu.Unlock()
	took := testutil.Eventually(t, 2*time.Second, "the control plane hears of the redis error", func() bool {
		r := reported()
		return r.Status == "error" && strings.Contains(r.Error, "10.0.0.7:6379")
	})
	t.Logf("reported %s after the change", took.Round(time.Millisecond))
	if !c.Status().Reachable {
		t.Error("the interrupted poll marked the control plane unreachable")
	}
}
