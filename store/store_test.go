package store

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/devredis"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/redis/go-redis/v9"
)

const (
	testEncKey  = "0123456789abcdef0123456789abcdef"
	otherEncKey = "fedcba9876543210fedcba9876543210"
)

// The default crypto provider satisfies the store's Sealer.
var _ Sealer = (*aesgcm.Sealer)(nil)

// newClock is a test clock at a fixed time with nanoseconds (which the store must round).
func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.UTC))
}

func sealer(t testing.TB, key string) *aesgcm.Sealer {
	t.Helper()
	s, err := aesgcm.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newStore opens a store on the test Redis under a fresh prefix.
func newStore(t *testing.T) (*Store, *testutil.Clock, redis.UniversalClient, string) {
	t.Helper()
	rdb, prefix := testredis.New(t)
	clk := newClock()
	s, err := Open(context.Background(), rdb, Options{Prefix: prefix, Sealer: sealer(t, testEncKey), Now: clk.Now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, clk, rdb, prefix
}

// countHook counts commands and pipelines sent to Redis, ignoring the handshake go-redis
// runs on each new connection (HELLO, CLIENT SETINFO, AUTH, SELECT), which also passes
// through hooks.
type countHook struct {
	process, pipeline atomic.Int64
}

func isHandshake(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "auth", "select":
		return true
	}
	return false
}

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isHandshake(cmd) {
			h.process.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !isHandshake(cmds[0]) {
			h.pipeline.Add(1)
		}
		return next(ctx, cmds)
	}
}

func (h *countHook) reset() { h.process.Store(0); h.pipeline.Store(0) }

func (h *countHook) roundTrips() int64 { return h.process.Load() + h.pipeline.Load() }

func TestOpenFromManyGoroutinesAgreesOnOnePepper(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testredis.New(t)
	const n = 8
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = Open(ctx, rdb, Options{Prefix: prefix, Sealer: sealer(t, testEncKey)})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open #%d: %v", i, err)
		}
	}
	for i := 1; i < n; i++ {
		if !bytes.Equal(stores[i].pepper, stores[0].pepper) {
			t.Fatalf("store #%d has a different pepper than store #0, want one pepper", i)
		}
	}
	// A key created through one store is found through another.
	_, secret, err := stores[0].CreateKey(ctx, KeySpec{Name: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stores[n-1].LookupKey(ctx, secret); err != nil {
		t.Errorf("got %v looking up through another store, want nil", err)
	}
	// A later Open reads the same pepper.
	again, err := Open(ctx, rdb, Options{Prefix: prefix, Sealer: sealer(t, testEncKey)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.pepper, stores[0].pepper) {
		t.Errorf("got a new pepper on reopen, want the stored one")
	}
}

func TestOpenWithAnotherEncryptionKeyFailsClearly(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testredis.New(t)
	if _, err := Open(ctx, rdb, Options{Prefix: prefix, Sealer: sealer(t, testEncKey)}); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, rdb, Options{Prefix: prefix, Sealer: sealer(t, otherEncKey)})
	if err == nil || !strings.Contains(err.Error(), "CRS_SECURITY__ENCRYPTION_KEY") || !errors.Is(err, aesgcm.ErrUnknownKey) {
		t.Errorf("got %v, want an ErrUnknownKey error naming CRS_SECURITY__ENCRYPTION_KEY", err)
	}
	// With the old key kept for decryption, it opens.
	rotated, err := aesgcm.New(otherEncKey, testEncKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, rdb, Options{Prefix: prefix, Sealer: rotated}); err != nil {
		t.Errorf("got %v, want nil with the old key as a previous key", err)
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	rdb, prefix := testredis.New(t)
	tests := []struct {
		name string
		rdb  redis.UniversalClient
		opts Options
		want string
	}{
		{"no sealer", rdb, Options{Prefix: prefix}, "Sealer"},
		{"nil client", nil, Options{Prefix: prefix, Sealer: sealer(t, testEncKey)}, "nil redis client"},
		{"prefix with hash tag", rdb, Options{Prefix: "crs:{x}:", Sealer: sealer(t, testEncKey)}, "braces"},
		{"prefix with glob", rdb, Options{Prefix: "crs*", Sealer: sealer(t, testEncKey)}, "glob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), tt.rdb, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestDefaultPrefixIsCRS(t *testing.T) {
	if got := NewSchema("").KeyIndex(); got != "crs:{keys}:index" {
		t.Errorf("got %q, want %q", got, "crs:{keys}:index")
	}
}

func TestConnectErrorNamesAddressNotPassword(t *testing.T) {
	const pw = "hunter2-very-secret"
	addr := testutil.FreeAddr(t)
	tests := []struct {
		name string
		cfg  RedisConfig
		want string
	}{
		{"addr", RedisConfig{Addr: addr, Password: pw, DialTimeout: time.Second}, "failed to connect to Redis at " + addr + ": "},
		{"url", RedisConfig{URL: "redis://user:" + pw + "@" + addr + "/2", DialTimeout: time.Second}, "failed to connect to Redis at " + addr + ": "},
		{"url with separate password", RedisConfig{URL: "redis://" + addr, Password: pw}, "failed to connect to Redis at " + addr},
		{"bad url", RedisConfig{URL: "redis://:" + pw + "@host:notaport"}, "invalid Redis URL"},
		{"bad scheme", RedisConfig{URL: "http://:" + pw + "@" + addr}, "invalid Redis URL"},
		{"sentinel without addrs", RedisConfig{SentinelMaster: "mymaster", Password: pw}, "without sentinel addresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each refused connect takes ~1.7s of go-redis retries
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rdb, err := Connect(ctx, tt.cfg)
			if err == nil {
				rdb.Close()
				t.Fatalf("got nil error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("got %q, want no password in the error", err)
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestConnectRefusedIsRecognisable(t *testing.T) {
	addr := testutil.FreeAddr(t)
	_, err := Connect(context.Background(), RedisConfig{Addr: addr, DialTimeout: time.Second})
	var opErr *net.OpError
	if !errors.As(err, &opErr) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("got %v, want a wrapped *net.OpError saying connection refused", err)
	}
}

func TestConnectAuthenticatesAndSelectsDB(t *testing.T) {
	ctx := context.Background()
	const pw = "s3cret-pass"
	srv := testredis.StartServer(t, "--requirepass", pw)

	if _, err := Connect(ctx, RedisConfig{Addr: srv.Addr(), Password: "wrong-pass"}); err == nil || strings.Contains(err.Error(), "wrong-pass") {
		t.Errorf("got %v, want an auth error without the password", err)
	}
	tests := []struct {
		name string
		cfg  RedisConfig
	}{
		{"addr", RedisConfig{Addr: srv.Addr(), Password: pw, DB: 3}},
		{"url", RedisConfig{URL: "redis://:" + pw + "@" + srv.Addr() + "/3"}},
		{"url plus password", RedisConfig{URL: "redis://" + srv.Addr() + "/3", Password: pw, PoolSize: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb, err := Connect(ctx, tt.cfg)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer rdb.Close()
			if err := rdb.Set(ctx, "db-probe", tt.name, 0).Err(); err != nil {
				t.Fatal(err)
			}
			direct := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: pw, DB: 3})
			defer direct.Close()
			if got, _ := direct.Get(ctx, "db-probe").Result(); got != tt.name {
				t.Errorf("got %q in DB 3, want %q", got, tt.name)
			}
		})
	}
}

// TestStoreWorksOnDevRedis runs the main flows on the in-memory dev store, which dev mode uses.
func TestStoreWorksOnDevRedis(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dev, err := devredis.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	s, err := Open(ctx, dev.Client(), Options{Sealer: sealer(t, testEncKey)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	k, secret, err := s.CreateKey(ctx, KeySpec{Name: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.LookupKey(ctx, secret); err != nil || got.ID != k.ID {
		t.Fatalf("got (%v, %v), want key %s", got.ID, err, k.ID)
	}
	sub := s.SubscribeRevocations(ctx)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if msg, err := sub.ReceiveMessage(ctx); err != nil || msg.Payload != k.ID {
		t.Errorf("got (%v, %v), want payload %s", msg, err, k.ID)
	}
	if _, err := s.LookupKey(ctx, secret); !errors.Is(err, ErrKeyRevoked) {
		t.Errorf("got %v, want %v", err, ErrKeyRevoked)
	}
	a, err := s.AddAccount(ctx, AccountSpec{Name: "a", Credential: "sk-ant-dev-credential-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	if cred, err := s.AccountCredential(ctx, a.ID); err != nil || cred != "sk-ant-dev-credential-0123456789" {
		t.Errorf("got (%q, %v), want the credential", cred, err)
	}
	if err := s.DeleteAccount(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage(ctx, UsageRecord{KeyID: k.ID, Model: "m", Usage: Usage{Requests: 1, InputTokens: 5}}); err != nil {
		t.Fatal(err)
	}
	if tot, err := s.KeyTotals(ctx, k.ID); err != nil || tot.InputTokens != 5 {
		t.Errorf("got (%+v, %v), want 5 input tokens", tot, err)
	}
}
