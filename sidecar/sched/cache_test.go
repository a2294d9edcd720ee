package sched_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/sched"
	"github.com/claude-relay/claude-relay/store"
)

// commands counts the Redis commands a client sends, by name.
type commands struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *commands) add(cmds ...redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range cmds {
		switch cmd.Name() {
		case "hello", "client", "auth", "select", "ping", "cluster":
			// A new connection's handshake, not the scheduler's work.
		default:
			c.n[cmd.Name()]++
		}
	}
}

func (c *commands) get(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

func (c *commands) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.n {
		n += v
	}
	return n
}

func (c *commands) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = map[string]int{}
}

func (c *commands) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add(cmd)
		return next(ctx, cmd)
	}
}

func (c *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.add(cmds...)
		return next(ctx, cmds)
	}
}

var _ redis.Hook = (*commands)(nil)

// counting returns a client of its own on rdb's server that counts its commands.
func counting(t *testing.T, rdb redis.UniversalClient) (redis.UniversalClient, *commands) {
	t.Helper()
	var c redis.UniversalClient
	switch r := rdb.(type) {
	case *redis.Client:
		c = redis.NewClient(&redis.Options{Addr: r.Options().Addr})
	case *redis.ClusterClient:
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: r.Options().Addrs})
	default:
		t.Fatalf("unexpected client %T", rdb)
	}
	t.Cleanup(func() { c.Close() })
	cmds := &commands{n: map[string]int{}}
	c.AddHook(cmds)
	return c, cmds
}

func stickyPool() *config.PoolRT {
	return &config.PoolRT{Name: "p", Strategy: config.StrategyStickyLeastLoaded, StickyTTL: time.Hour, FailoverOn: config.DefaultFailoverOn()}
}

func run(t *testing.T, s *sched.Scheduler) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestPlanMakesNoRedisCommandInSteadyState(t *testing.T) {
	base, prefix := testredis.New(t)
	rdb, cmds := counting(t, base)
	c := testutil.NewClock(time.Date(2025, 6, 18, 10, 0, 0, 0, time.UTC))
	// An interval long enough that Run reads the parking state once, at its start.
	s := sched.New(rdb, store.NewSchema(prefix), sched.Options{Now: c.Now, RefreshInterval: time.Hour})
	run(t, s)
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { return cmds.get("hgetall") == 1 })
	ctx := context.Background()
	pool := stickyPool()
	accts := []sched.Account{{ID: "a", Priority: 1}, {ID: "b", Priority: 1}, {ID: "c", Priority: 2}}
	req := sched.Request{Pool: pool, Model: "claude-sonnet-4-5", Session: "conv-1"}

	// A new session: one GET (+EXPIRE) to learn it is new, one SET to bind it.
	plan, err := s.Plan(ctx, req, accts)
	if err != nil {
		t.Fatal(err)
	}
	s.Bind(ctx, req, plan.Order[0])
	if got := cmds.total(); got != 4 {
		t.Errorf("new session: got %d commands %v, want 4 (hgetall at start, get, expire, set)", got, cmds.n)
	}
	cmds.reset()

	for i := range 1000 {
		got, err := s.Plan(ctx, req, accts)
		if err != nil || got.Sticky != plan.Order[0] {
			t.Fatalf("plan %d: got %+v %v, want sticky %s", i, got, err, plan.Order[0])
		}
		if _, err := s.Plan(ctx, sched.Request{Pool: pool, Model: "claude-sonnet-4-5"}, accts); err != nil {
			t.Fatal(err)
		}
	}
	if got := cmds.total(); got != 0 {
		t.Errorf("steady state: got %d Redis commands %v over 2,000 plans, want 0", got, cmds.n)
	}

	t.Run("a binding in use has its Redis TTL refreshed once per quarter TTL, off the request path", func(t *testing.T) {
		cmds.reset()
		short := &config.PoolRT{Name: "short", Strategy: config.StrategyStickyLeastLoaded, StickyTTL: 20 * time.Second}
		r := sched.Request{Pool: short, Session: "conv-2"}
		s.Bind(ctx, r, "b")
		c.Advance(5 * time.Second) // a quarter of the TTL
		for range 10 {
			if got, _ := s.Plan(ctx, r, accts); got.Sticky != "b" {
				t.Fatalf("got sticky %q, want b", got.Sticky)
			}
		}
		testutil.Eventually(t, 5*time.Second, "the condition", func() bool { return cmds.get("expire") == 1 })
		ttl, err := base.PTTL(ctx, store.NewSchema(prefix).StickySession("short", "conv-2")).Result()
		if err != nil || ttl < 15*time.Second {
			t.Errorf("Redis TTL: got %s %v, want refreshed to about 20s", ttl, err)
		}
		if got := cmds.total(); got != 2 {
			t.Errorf("got %d commands %v, want 2 (the bind's set, one expire)", got, cmds.n)
		}
	})
}

func TestParkByAnotherSidecarIsHonouredWithinTheRefreshInterval(t *testing.T) {
	rdb, prefix := testredis.New(t)
	const interval = 50 * time.Millisecond
	s := sched.New(rdb, store.NewSchema(prefix), sched.Options{RefreshInterval: interval})
	other := sched.New(rdb, store.NewSchema(prefix), sched.Options{})
	run(t, s)
	ctx := context.Background()
	accts := []sched.Account{{ID: "a", Priority: 1}, {ID: "b", Priority: 2}}
	first := func() string {
		t.Helper()
		plan, err := s.Plan(ctx, sched.Request{}, accts)
		if err != nil {
			t.Fatal(err)
		}
		return plan.Order[0]
	}
	if got := first(); got != "a" {
		t.Fatalf("before the park: got %s, want a", got)
	}
	tests := []struct {
		name   string
		change func() error
		want   string
	}{
		{"park", func() error {
			return other.ParkAccount(ctx, sched.Park{Account: "a", State: sched.RateLimited, Status: 429, Until: time.Now().Add(time.Hour)})
		}, "b"},
		{"unpark", func() error { return other.Unpark(ctx, "a") }, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			if err := tt.change(); err != nil {
				t.Fatal(err)
			}
			// Generous for a loaded machine; the interval is what it takes when idle.
			testutil.Eventually(t, 20*interval, "the condition", func() bool { return first() == tt.want })
			t.Logf("seen after %s (refresh interval %s)", time.Since(start), interval)
		})
	}
}

func TestOwnParkAndUnparkChangeThePlanAtOnce(t *testing.T) {
	rdb, prefix := testredis.New(t)
	s := sched.New(rdb, store.NewSchema(prefix), sched.Options{RefreshInterval: time.Hour})
	run(t, s)
	ctx := context.Background()
	accts := []sched.Account{{ID: "a", Priority: 1}, {ID: "b", Priority: 2}}
	for i := range 20 {
		if err := s.ParkAccount(ctx, sched.Park{Account: "a", State: sched.Overloaded, Status: 529, Until: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if plan, err := s.Plan(ctx, sched.Request{}, accts); err != nil || plan.Order[0] != "b" {
			t.Fatalf("round %d after park: got %v %v, want b first", i, plan, err)
		}
		if err := s.Unpark(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if plan, err := s.Plan(ctx, sched.Request{}, accts); err != nil || plan.Order[0] != "a" {
			t.Fatalf("round %d after unpark: got %v %v, want a first", i, plan, err)
		}
	}
}

func TestStickyBindingByAnotherSidecarIsHonoured(t *testing.T) {
	rdb, prefix := testredis.New(t)
	c := testutil.NewClock(time.Date(2025, 6, 18, 10, 0, 0, 0, time.UTC))
	const interval = 20 * time.Millisecond
	s := sched.New(rdb, store.NewSchema(prefix), sched.Options{Now: c.Now, RefreshInterval: interval})
	other := sched.New(rdb, store.NewSchema(prefix), sched.Options{Now: c.Now})
	run(t, s)
	ctx := context.Background()
	accts := []sched.Account{{ID: "a", Priority: 1}, {ID: "b", Priority: 1}, {ID: "c", Priority: 1}}
	sticky := func(session string) string {
		t.Helper()
		plan, err := s.Plan(ctx, sched.Request{Pool: stickyPool(), Session: session}, accts)
		if err != nil {
			t.Fatal(err)
		}
		return plan.Sticky
	}
	bind := func(sc *sched.Scheduler, session, account string) {
		sc.Bind(ctx, sched.Request{Pool: stickyPool(), Session: session}, account)
	}

	t.Run("after the local copy expires", func(t *testing.T) {
		bind(s, "conv-1", "a")
		bind(other, "conv-1", "b") // another sidecar moved the conversation
		if got := sticky("conv-1"); got != "a" {
			t.Fatalf("while the local copy is fresh: got %q, want a", got)
		}
		c.Advance(30 * time.Second) // the default local expiry, below the pool's hour
		if got := sticky("conv-1"); got != "b" {
			t.Errorf("after the local copy expired: got %q, want b", got)
		}
	})
	t.Run("at once when the cached account is parked", func(t *testing.T) {
		bind(s, "conv-2", "a")
		bind(other, "conv-2", "c")
		if err := other.ParkAccount(ctx, sched.Park{Account: "a", State: sched.RateLimited, Status: 429, Until: c.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, "the condition", func() bool { return len(s.View()) == 1 })
		if got := sticky("conv-2"); got != "c" {
			t.Errorf("got %q, want c (Redis read again, not a new account)", got)
		}
	})
	t.Run("a session this sidecar never saw", func(t *testing.T) {
		bind(other, "conv-3", "b")
		if got := sticky("conv-3"); got != "b" {
			t.Errorf("got %q, want b", got)
		}
	})
}

func TestStickyCacheIsBounded(t *testing.T) {
	rdb, prefix := testredis.New(t)
	const size = 100
	s := sched.New(rdb, store.NewSchema(prefix), sched.Options{StickyCacheSize: size})
	ctx := context.Background()
	accts := []sched.Account{{ID: "a"}, {ID: "b"}}
	pool := stickyPool()
	for i := range 10 * size {
		s.Bind(ctx, sched.Request{Pool: pool, Session: "conv-" + strconv.Itoa(i)}, accts[i%2].ID)
		if n := s.StickyCached(); n > size {
			t.Fatalf("after %d bindings: got %d cached, want at most %d", i+1, n, size)
		}
	}
	// Evicted sessions still stick: Redis holds them.
	for _, i := range []int{0, 1, 501, 10*size - 1} {
		plan, err := s.Plan(ctx, sched.Request{Pool: pool, Session: "conv-" + strconv.Itoa(i)}, accts)
		if want := accts[i%2].ID; err != nil || plan.Sticky != want {
			t.Errorf("session %d: got %q %v, want %s", i, plan.Sticky, err, want)
		}
	}
}

func TestSchedulerRunStopsWithItsContext(t *testing.T) {
	rdb, prefix := testredis.New(t)
	tests := []struct {
		name string
		rdb  redis.UniversalClient
	}{{"with Redis", rdb}, {"without Redis", nil}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sched.New(tt.rdb, store.NewSchema(prefix), sched.Options{RefreshInterval: time.Millisecond})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); s.Run(ctx) }()
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return within 5s of its context ending")
			}
		})
	}
}
