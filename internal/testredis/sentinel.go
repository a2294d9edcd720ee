package testredis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMasterName is the master set name StartSentinel's Sentinels monitor.
const SentinelMasterName = "relaymaster"

// SentinelOption configures StartSentinel.
type SentinelOption func(*sentinelOptions)

type sentinelOptions struct {
	password         string
	sentinelPassword string
	sentinels        int
}

// WithDataPassword protects the master and the replica with requirepass (and masterauth, so
// either can replicate from the other after a failover) and gives it to the Sentinels with
// `sentinel auth-pass`. Clients pass it as REDIS_PASSWORD.
func WithDataPassword(pw string) SentinelOption {
	return func(o *sentinelOptions) { o.password = pw }
}

// WithSentinelPassword protects the Sentinels themselves with requirepass. Clients pass it as
// REDIS_SENTINEL_PASSWORD.
func WithSentinelPassword(pw string) SentinelOption {
	return func(o *sentinelOptions) { o.sentinelPassword = pw }
}

// WithSentinels sets how many Sentinels run (default 3, quorum 2; with 1 the quorum is 1).
func WithSentinels(n int) SentinelOption {
	return func(o *sentinelOptions) { o.sentinels = max(n, 1) }
}

// Sentinel is a Redis Sentinel deployment on loopback ports: one master, one replica and
// (by default) three Sentinels monitoring SentinelMasterName, tuned to fail over within a few
// seconds (down-after-milliseconds 1000).
type Sentinel struct {
	tb        testing.TB
	opts      sentinelOptions
	master    *Server // the node the harness believes is master (swapped by a failover)
	replica   *Server
	sentinels []*Server
	logs      []string // each Sentinel's log file
}

// StartSentinel starts a master, a replica (--replicaof) and the Sentinels, and waits until
// the replica is in sync and every Sentinel reports the master, knows the replica and sees
// the other Sentinels, so a failover can start at once. Everything is stopped when the test
// ends; if the test failed, the Sentinels' logs are written to the test log.
func StartSentinel(tb testing.TB, opts ...SentinelOption) *Sentinel {
	tb.Helper()
	s := &Sentinel{tb: tb, opts: sentinelOptions{sentinels: 3}}
	for _, o := range opts {
		o(&s.opts)
	}
	dir := tb.TempDir() // registered before stop, so removed after the processes are gone
	tb.Cleanup(s.stop)
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.start(ctx, dir); err != nil {
		tb.Fatalf("testredis: sentinel: %v", err)
	}
	tb.Logf("testredis: sentinel: master %s, replica %s, sentinels %s ready in %s",
		s.master.Addr(), s.replica.Addr(), strings.Join(s.SentinelAddrs(), ","), time.Since(begin).Round(time.Millisecond))
	return s
}

// MasterName returns the master set name the Sentinels monitor.
func (s *Sentinel) MasterName() string { return SentinelMasterName }

// SentinelAddrs returns the host:port of every Sentinel.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, n := range s.sentinels {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Master returns the host:port of the current master as far as the harness knows: the
// initial master, or the promoted replica after Failover or AwaitPromotion.
func (s *Sentinel) Master() string { return s.master.Addr() }

// Replica returns the host:port of the node that is not Master.
func (s *Sentinel) Replica() string { return s.replica.Addr() }

// DataClient returns a plain client on one data node (master or replica) with the data
// password; the caller closes it.
func (s *Sentinel) DataClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Password: s.opts.password, MaxRetries: -1, DialTimeout: time.Second})
}

// Failover runs SENTINEL FAILOVER on the first Sentinel and waits until every Sentinel
// reports the replica as the master and the replica says role:master; it returns the new
// master's address. The old master keeps running (the Sentinels turn it into a replica later).
func (s *Sentinel) Failover(ctx context.Context) string {
	s.tb.Helper()
	sc := s.sentinelClient(s.sentinels[0])
	defer sc.Close()
	for {
		err := sc.Failover(ctx, SentinelMasterName).Err()
		if err == nil {
			break
		}
		// A Sentinel refuses while it has no fresh INFO from the replica; that passes.
		if !strings.Contains(err.Error(), "NOGOODSLAVE") {
			s.tb.Fatalf("testredis: SENTINEL FAILOVER %s: %v", SentinelMasterName, err)
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			s.tb.Fatalf("testredis: SENTINEL FAILOVER %s: %v", SentinelMasterName, err)
		}
	}
	return s.AwaitPromotion(ctx)
}

// StopMaster kills the master process without warning, as a crash would. The Sentinels see
// it down after a second and promote the replica; AwaitPromotion waits for that.
func (s *Sentinel) StopMaster() { s.master.Stop() }

// AwaitPromotion waits until every Sentinel reports the replica as the master and the replica
// says role:master, then swaps Master and Replica and returns the new master's address. It
// fails the test if that does not happen before ctx ends.
func (s *Sentinel) AwaitPromotion(ctx context.Context) string {
	s.tb.Helper()
	want := s.replica.Addr()
	if err := s.awaitMaster(ctx, want); err != nil {
		s.tb.Fatalf("testredis: sentinel: replica %s not promoted: %v", want, err)
	}
	s.master, s.replica = s.replica, s.master
	return want
}

func (s *Sentinel) start(ctx context.Context, dir string) error {
	// Full syncs start at once rather than after the default 5 s wait for more replicas.
	args := []string{"--repl-diskless-sync-delay", "0"}
	if pw := s.opts.password; pw != "" {
		args = append(args, "--requirepass", pw, "--masterauth", pw)
	}
	var err error
	if s.master, err = startServer(args); err != nil {
		return fmt.Errorf("start master: %w", err)
	}
	if s.replica, err = startServer(append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(s.master.port)}, args...)); err != nil {
		return fmt.Errorf("start replica: %w", err)
	}
	// The replica must be in the master's INFO before the Sentinels first ask for it: they ask
	// again only every 10 s.
	if err := s.awaitSync(ctx); err != nil {
		return err
	}
	quorum := 1
	if s.opts.sentinels > 1 {
		quorum = s.opts.sentinels/2 + 1
	}
	for i := range s.opts.sentinels {
		n, logFile, err := s.startSentinel(filepath.Join(dir, fmt.Sprintf("sentinel-%d", i)), quorum)
		if err != nil {
			return err
		}
		s.sentinels = append(s.sentinels, n)
		s.logs = append(s.logs, logFile)
	}
	return s.awaitSentinels(ctx)
}

// startSentinel writes a sentinel.conf into dir (Sentinel rewrites it, so it must be
// writable) and runs `redis-server sentinel.conf --sentinel` on a free port.
func (s *Sentinel) startSentinel(dir string, quorum int) (*Server, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("sentinel dir: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	logFile := filepath.Join(dir, "sentinel.log")
	name := SentinelMasterName
	var conf strings.Builder
	fmt.Fprintf(&conf, "port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nlogfile %s\nloglevel notice\n", port, dir, logFile)
	fmt.Fprintf(&conf, "sentinel monitor %s 127.0.0.1 %d %d\n", name, s.master.port, quorum)
	fmt.Fprintf(&conf, "sentinel down-after-milliseconds %s 1000\n", name)
	fmt.Fprintf(&conf, "sentinel failover-timeout %s 5000\n", name)
	fmt.Fprintf(&conf, "sentinel parallel-syncs %s 1\n", name)
	if pw := s.opts.password; pw != "" {
		fmt.Fprintf(&conf, "sentinel auth-pass %s %s\n", name, pw)
	}
	if pw := s.opts.sentinelPassword; pw != "" {
		// Sentinels also use requirepass to authenticate to each other.
		fmt.Fprintf(&conf, "requirepass %s\n", pw)
	}
	confFile := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(confFile, []byte(conf.String()), 0o644); err != nil {
		return nil, "", fmt.Errorf("write sentinel.conf: %w", err)
	}
	n := &Server{bin: s.master.bin, dir: dir, port: port, exact: []string{confFile, "--sentinel"}}
	if err := n.start(); err != nil {
		return nil, "", fmt.Errorf("sentinel: %w (log: %s)", err, tail(logFile, 2000))
	}
	return n, logFile, nil
}

// awaitSync waits until the replica reports master_link_status:up and the master lists it online.
func (s *Sentinel) awaitSync(ctx context.Context) error {
	mc, rc := s.DataClient(s.master.Addr()), s.DataClient(s.replica.Addr())
	defer mc.Close()
	defer rc.Close()
	online := fmt.Sprintf("port=%d,state=online", s.replica.port)
	return poll(ctx, "replica "+s.replica.Addr()+" in sync", func() (bool, string) {
		ri, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return false, err.Error()
		}
		if !strings.Contains(ri, "master_link_status:up") {
			return false, ri
		}
		mi, err := mc.Info(ctx, "replication").Result()
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(mi, online), mi
	})
}

// awaitSentinels waits until every Sentinel reports the master, knows the replica with a
// working link, and sees all the other Sentinels (needed to agree on a crashed master).
func (s *Sentinel) awaitSentinels(ctx context.Context) error {
	for _, n := range s.sentinels {
		sc := s.sentinelClient(n)
		err := poll(ctx, "sentinel "+n.Addr()+" ready", func() (bool, string) {
			m, err := sc.Master(ctx, SentinelMasterName).Result()
			if err != nil {
				return false, err.Error()
			}
			if m["flags"] != "master" || net.JoinHostPort(m["ip"], m["port"]) != s.master.Addr() ||
				m["num-other-sentinels"] != strconv.Itoa(len(s.sentinels)-1) {
				return false, fmt.Sprintf("SENTINEL MASTER: %v", m)
			}
			reps, err := sc.Replicas(ctx, SentinelMasterName).Result()
			if err != nil {
				return false, err.Error()
			}
			if len(reps) != 1 || net.JoinHostPort(reps[0]["ip"], reps[0]["port"]) != s.replica.Addr() ||
				reps[0]["flags"] != "slave" || reps[0]["master-link-status"] != "ok" {
				return false, fmt.Sprintf("SENTINEL REPLICAS: %v", reps)
			}
			return true, ""
		})
		sc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// awaitMaster waits until every running Sentinel reports want as the master's address and
// want itself says role:master.
func (s *Sentinel) awaitMaster(ctx context.Context, want string) error {
	dc := s.DataClient(want)
	defer dc.Close()
	clients := make([]*redis.SentinelClient, len(s.sentinels))
	for i, n := range s.sentinels {
		clients[i] = s.sentinelClient(n)
		defer clients[i].Close()
	}
	return poll(ctx, "sentinels report master "+want, func() (bool, string) {
		for i, sc := range clients {
			addr, err := sc.GetMasterAddrByName(ctx, SentinelMasterName).Result()
			if err != nil {
				return false, err.Error()
			}
			if len(addr) != 2 || net.JoinHostPort(addr[0], addr[1]) != want {
				return false, fmt.Sprintf("sentinel %s reports %v", s.sentinels[i].Addr(), addr)
			}
		}
		info, err := dc.Info(ctx, "replication").Result()
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(info, "role:master"), info
	})
}

func (s *Sentinel) sentinelClient(n *Server) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: n.Addr(), Password: s.opts.sentinelPassword, MaxRetries: -1, DialTimeout: time.Second})
}

func (s *Sentinel) stop() {
	for _, n := range s.sentinels {
		n.Stop()
	}
	for _, n := range []*Server{s.master, s.replica} {
		if n != nil {
			n.Stop()
			_ = os.RemoveAll(n.dir)
		}
	}
	if s.tb.Failed() {
		for i, f := range s.logs {
			s.tb.Logf("testredis: sentinel %s log:\n%s", s.sentinels[i].Addr(), tail(f, 4000))
		}
	}
}

// poll calls check every 50 ms until it reports done or ctx ends; the error carries what
// check last saw.
func poll(ctx context.Context, what string, check func() (done bool, last string)) error {
	for {
		done, last := check()
		if done {
			return nil
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return fmt.Errorf("%s: %w; last seen: %s", what, ctx.Err(), strings.TrimSpace(last))
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// tail returns at most the last n bytes of a file, or why it could not be read.
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "(no log)"
		}
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// MasterMove is one way the master moves to the replica; Do returns the new master's address.
type MasterMove struct {
	Name string
	Do   func(ctx context.Context, s *Sentinel) string
}

// MasterMoves are the moves a client must survive: a planned SENTINEL FAILOVER, and the
// master process killed.
func MasterMoves() []MasterMove {
	return []MasterMove{
		{"SENTINEL FAILOVER", func(ctx context.Context, s *Sentinel) string { return s.Failover(ctx) }},
		{"master killed", func(ctx context.Context, s *Sentinel) string {
			s.StopMaster()
			return s.AwaitPromotion(ctx)
		}},
	}
}
