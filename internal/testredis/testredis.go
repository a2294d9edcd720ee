// Package testredis gives tests a real Redis: a shared server with a per-test key prefix, or a dedicated one.
package testredis

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvAddr names the environment variable that points tests at an existing Redis (host:port).
const EnvAddr = "REDIS_TEST_ADDR"

// EnvServer optionally names the redis-server binary to start; default: redis-server on PATH.
const EnvServer = "REDIS_SERVER_BIN"

const defaultAddr = "127.0.0.1:6379"

// shared is the Redis that New hands out, found or started once per test binary.
var shared struct {
	once sync.Once
	addr string
	srv  *Server
	err  error
}

// EnvMode names the environment variable that picks the kind of Redis New hands out: "single"
// (the default) or "cluster", a three-master Redis Cluster started once per test binary
// (StartCluster), so a whole suite can be run against Cluster.
const EnvMode = "CLAUDE_RELAY_TEST_REDIS"

// New returns a client on a Redis for tests plus a unique key prefix, so tests share one server
// safely. The Redis is REDIS_TEST_ADDR if set; else 127.0.0.1:6379 if it answers PING; else one
// redis-server per test binary started on a free port (it dies with the test binary). With
// CLAUDE_RELAY_TEST_REDIS=cluster it is instead a cluster client on a three-master Redis
// Cluster shared by the test binary. If no Redis can be had, New fails the test with a message
// that says how to provide one.
// Keys under the prefix are deleted and the client is closed when the test ends.
func New(tb testing.TB) (redis.UniversalClient, string) {
	tb.Helper()
	var rdb redis.UniversalClient
	switch mode := os.Getenv(EnvMode); mode {
	case "", "single":
		shared.once.Do(func() {
			shared.addr, shared.srv, shared.err = findShared()
		})
		if shared.err != nil {
			tb.Fatalf("testredis: %v", shared.err)
		}
		rdb = redis.NewClient(&redis.Options{Addr: shared.addr})
	case "cluster":
		rdb = sharedClusterClient(tb)
	default:
		tb.Fatalf("testredis: %s=%q: want single or cluster", EnvMode, mode)
	}
	prefix := "crstest:" + randomHex(tb, 6) + ":"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := DeletePrefix(ctx, rdb, prefix); err != nil {
			tb.Errorf("testredis: clean up keys %s*: %v", prefix, err)
		}
		_ = rdb.Close()
	})
	return rdb, prefix
}

// DeletePrefix deletes every key that starts with prefix, using SCAN (test use only). On a
// cluster client it scans every master and deletes key by key (keys of different slots cannot
// share one UNLINK).
func DeletePrefix(ctx context.Context, rdb redis.UniversalClient, prefix string) error {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return deletePrefixOneByOne(ctx, node, prefix)
		})
	}
	iter := rdb.Scan(ctx, 0, escapeGlob(prefix)+"*", 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
				return fmt.Errorf("unlink: %w", err)
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	if len(batch) > 0 {
		if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
			return fmt.Errorf("unlink: %w", err)
		}
	}
	return nil
}

// deletePrefixOneByOne unlinks the keys under prefix on one cluster node, one key per command.
func deletePrefixOneByOne(ctx context.Context, node *redis.Client, prefix string) error {
	iter := node.Scan(ctx, 0, escapeGlob(prefix)+"*", 500).Iterator()
	pipe := node.Pipeline()
	for iter.Next(ctx) {
		pipe.Unlink(ctx, iter.Val())
		if pipe.Len() == 500 {
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("unlink on %s: %w", node.Options().Addr, err)
			}
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("scan %s: %w", node.Options().Addr, err)
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("unlink on %s: %w", node.Options().Addr, err)
		}
	}
	return nil
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func findShared() (string, *Server, error) {
	if addr := os.Getenv(EnvAddr); addr != "" {
		if err := ping(addr, 2*time.Second); err != nil {
			return "", nil, fmt.Errorf("%s=%s does not answer PING: %w", EnvAddr, addr, err)
		}
		return addr, nil, nil
	}
	if ping(defaultAddr, 300*time.Millisecond) == nil {
		return defaultAddr, nil, nil
	}
	srv, err := startServer(nil)
	if err != nil {
		return "", nil, fmt.Errorf("no Redis for tests: %s is unset, nothing answers PING on %s, and starting redis-server failed: %w", EnvAddr, defaultAddr, err)
	}
	return srv.Addr(), srv, nil
}

// Server is a dedicated redis-server process owned by one test.
type Server struct {
	tb   testing.TB // nil for the shared server
	bin  string
	dir  string
	port int
	args []string
	// exact, when set, is the whole argument list instead of the defaults and args (a
	// Sentinel's config file must come first).
	exact []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// StartServer always starts a dedicated redis-server on a free port, for tests that stop,
// restart or break Redis. It is stopped when the test ends.
func StartServer(tb testing.TB, args ...string) *Server {
	tb.Helper()
	s, err := startServer(args)
	if err != nil {
		tb.Fatalf("testredis: %v", err)
	}
	s.tb = tb
	tb.Cleanup(func() {
		s.Stop()
		_ = os.RemoveAll(s.dir)
	})
	return s
}

func startServer(args []string) (*Server, error) {
	bin := os.Getenv(EnvServer)
	if bin == "" {
		bin = "redis-server"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (install it, e.g. apt-get install redis-server, or set %s or %s): %w", EnvAddr, EnvServer, err)
	}
	dir, err := os.MkdirTemp("", "testredis-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: path, dir: dir, port: port, args: args}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Stop kills the server and waits for it to exit; the port stays reserved for Start.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Start restarts a stopped server on the same port, with an empty dataset, and waits until it
// answers PING. Call it from the test goroutine: a failure to start fails the test.
// Starting a running server does nothing.
func (s *Server) Start() {
	if err := s.start(); err != nil && s.tb != nil {
		s.tb.Fatalf("testredis: restart %s: %v", s.Addr(), err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	argv := s.exact
	if argv == nil {
		argv = []string{
			"--port", strconv.Itoa(s.port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--protected-mode", "no",
			"--dir", s.dir,
			"--loglevel", "warning",
		}
		argv = append(argv, s.args...)
	}
	cmd := exec.Command(s.bin, argv...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = dieWithParent()
	var stderr strings.Builder
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server on port %d exited at start: %s", s.port, strings.TrimSpace(stderr.String()))
		default:
		}
		if answers(s.Addr(), 200*time.Millisecond) {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on port %d did not answer PING within 10s", s.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd = cmd
	s.exited = exited
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends a raw PING and expects +PONG, without a client library.
func ping(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return replyError(strings.TrimSpace(line))
	}
	return nil
}

// answers reports whether a Redis server replies to PING at all (an error reply such as
// NOAUTH counts: the server is up, it just wants a password).
func answers(addr string, timeout time.Duration) bool {
	err := ping(addr, timeout)
	var re replyError
	return err == nil || errors.As(err, &re)
}

// replyError is a RESP reply other than +PONG.
type replyError string

func (e replyError) Error() string { return "unexpected reply " + strconv.Quote(string(e)) }

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("testredis: random: %v", err)
	}
	return hex.EncodeToString(b)
}

// Dump returns every key under prefix ("" for all) with its type, TTL state and content in a
// canonical form (sorted fields and members: DUMP's bytes follow Redis's internal order,
// which reads may change), so a test can tell whether an operation changed anything. Test
// use only: it SCANs.
func Dump(tb testing.TB, rdb redis.UniversalClient, prefix string) map[string]string {
	tb.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, key := range Keys(tb, rdb, prefix) {
		v, err := canonical(ctx, rdb, key)
		if err != nil {
			tb.Fatalf("testredis: read %s: %v", key, err)
		}
		out[key] = v
	}
	return out
}

// Keys returns every key that starts with prefix, sorted. On a cluster client it scans every
// master: a plain SCAN there reaches one node only.
func Keys(tb testing.TB, rdb redis.UniversalClient, prefix string) []string {
	tb.Helper()
	ctx := context.Background()
	var (
		mu   sync.Mutex
		keys []string
	)
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, escapeGlob(prefix)+"*", 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	} else {
		err = scan(ctx, rdb)
	}
	if err != nil {
		tb.Fatalf("testredis: scan %s*: %v", prefix, err)
	}
	slices.Sort(keys)
	return keys
}

func canonical(ctx context.Context, rdb redis.UniversalClient, key string) (string, error) {
	typ, err := rdb.Type(ctx, key).Result()
	if err != nil {
		return "", err
	}
	ttl, err := rdb.TTL(ctx, key).Result()
	if err != nil {
		return "", err
	}
	var items []string
	switch typ {
	case "string":
		v, err := rdb.Get(ctx, key).Result()
		if err != nil {
			return "", err
		}
		items = []string{v}
	case "hash":
		m, err := rdb.HGetAll(ctx, key).Result()
		if err != nil {
			return "", err
		}
		for f, v := range m {
			items = append(items, f+"="+v)
		}
	case "set":
		if items, err = rdb.SMembers(ctx, key).Result(); err != nil {
			return "", err
		}
	case "zset":
		zs, err := rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
		if err != nil {
			return "", err
		}
		for _, z := range zs {
			items = append(items, fmt.Sprintf("%v@%v", z.Member, z.Score))
		}
	case "list":
		if items, err = rdb.LRange(ctx, key, 0, -1).Result(); err != nil {
			return "", err
		}
	case "stream":
		msgs, err := rdb.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			return "", err
		}
		for _, m := range msgs {
			items = append(items, fmt.Sprintf("%s %v", m.ID, m.Values))
		}
	}
	if typ != "list" && typ != "stream" {
		sort.Strings(items)
	}
	return fmt.Sprintf("%s ttl=%t %q", typ, ttl >= 0, items), nil
}
