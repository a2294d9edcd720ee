package host_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/plugins/host"
)

// load authenticates continuously from many goroutines through the host and counts what
// fails, until stop is called.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []error
	stop       func()
}

func startLoad(t *testing.T, a *host.Auth, secrets []string, workers int) *load {
	t.Helper()
	l := &load{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				secret := secrets[(w+i)%len(secrets)]
				cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
				res, err := a.Authenticate(cctx, contract.AuthRequest{Credential: secret, ClientIP: "127.0.0.1", Route: "messages"})
				ccancel()
				if err == nil && !res.Accepted() {
					err = fmt.Errorf("refused: %s", res.Refusal)
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err)
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	l.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(l.stop)
	return l
}

// waitCalls waits until the load has made n more successful calls.
func (l *load) waitCalls(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d more successful calls", n), func() bool { return l.ok.Load() >= target })
}

func (l *load) check(t *testing.T) {
	t.Helper()
	l.stop()
	if f := l.failed.Load(); f != 0 {
		t.Errorf("got %d failed calls out of %d (first: %v), want 0", f, f+l.ok.Load(), l.errs)
	}
	if l.ok.Load() == 0 {
		t.Error("the load made no successful call")
	}
}

func startAuth(t *testing.T, src string, f *keyFixture) (*host.Auth, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth-apikey")
	install(t, src, path)
	a, err := host.StartAuth(context.Background(), hostConfig(t, path, f.settings, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, path
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestSIGKILLOfThePluginUnderLoadFailsNoCall(t *testing.T) {
	f := newKeyFixture(t, 8)
	a, _ := startAuth(t, bins.authV1, f)
	l := startLoad(t, a, f.secrets, 16)
	l.waitCalls(t, 200)

	for round := range 2 {
		before := a.Status()
		if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 20*time.Second, "the restarted plugin", func() bool {
			s := a.Status()
			return s.Healthy && s.PID != before.PID
		})
		l.waitCalls(t, 200)
		if got, want := a.Status().Restarts, round+1; got != want {
			t.Errorf("round %d: got %d restarts, want %d", round, got, want)
		}
	}
	l.check(t)
}

func TestReplacedBinaryIsSwappedInUnderLoadWithoutFailures(t *testing.T) {
	f := newKeyFixture(t, 8)
	a, path := startAuth(t, bins.authV1, f)
	if got := a.Status().Version; got != "v1" {
		t.Fatalf("got version %q, want v1", got)
	}
	l := startLoad(t, a, f.secrets, 16)
	l.waitCalls(t, 200)
	oldPID := a.Status().PID

	install(t, bins.authV2, path)
	testutil.Eventually(t, 20*time.Second, "version v2 to serve", func() bool { return a.Status().Version == "v2" })
	l.waitCalls(t, 200)
	info, err := a.Info(context.Background())
	if err != nil || info.Version != "v2" {
		t.Errorf("got Info %+v, %v; want version v2", info, err)
	}
	testutil.Eventually(t, 10*time.Second, "the old process to stop after draining", func() bool { return !alive(oldPID) })
	if s := a.Status(); s.Swaps != 1 || s.Restarts != 0 {
		t.Errorf("got %d swaps and %d restarts, want 1 and 0", s.Swaps, s.Restarts)
	}
	l.check(t)
}

func TestCorruptBinaryIsRefusedAndTheOldOneKeepsServing(t *testing.T) {
	f := newKeyFixture(t, 4)
	a, path := startAuth(t, bins.authV1, f)
	pid := a.Status().PID
	l := startLoad(t, a, f.secrets, 8)
	l.waitCalls(t, 100)

	cases := []struct {
		name string
		data []byte
	}{
		{"random bytes", []byte("\x7fELF this is not a program")},
		{"a program that is not a plugin", []byte("#!/bin/sh\necho hello\nexit 0\n")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			installBytes(t, tc.data, path)
			testutil.Eventually(t, 20*time.Second, "the new binary to be refused", func() bool { return a.Status().Refused != "" })
			l.waitCalls(t, 100)
			s := a.Status()
			if s.Version != "v1" || s.PID != pid || !s.Healthy {
				t.Errorf("got version %q pid %d healthy %t, want v1 pid %d healthy", s.Version, s.PID, s.Healthy, pid)
			}
			err := a.Check(context.Background())
			if err == nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("got health %v, want an error that says the binary was refused", err)
			}
			// Reset for the next case: a good binary clears the refusal.
			install(t, bins.authV1, path)
			testutil.Eventually(t, 20*time.Second, "the refusal to clear", func() bool { return a.Status().Refused == "" })
		})
	}
	if err := a.Check(context.Background()); err != nil {
		t.Errorf("got health %v after reinstalling the good binary, want nil", err)
	}
	l.check(t)
}

func TestNoHealthyInstanceFailsClosed(t *testing.T) {
	f := newKeyFixture(t, 1)
	a, path := startAuth(t, bins.authV1, f)
	installBytes(t, []byte("not a plugin"), path)
	testutil.Eventually(t, 20*time.Second, "the corrupt binary to be refused", func() bool { return a.Status().Refused != "" })
	if err := syscall.Kill(a.Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "the plugin to be reported unhealthy", func() bool { return !a.Status().Healthy })

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := a.Authenticate(ctx, contract.AuthRequest{Credential: f.secrets[0]})
	if err == nil {
		t.Fatal("got a result with no healthy plugin instance, want an error (fail closed)")
	}
	if hc := a.Check(context.Background()); hc == nil {
		t.Error("got a passing health check with no healthy instance, want an error")
	}
	// Installing a good binary brings it back.
	install(t, bins.authV1, path)
	testutil.Eventually(t, 20*time.Second, "recovery", func() bool { return a.Status().Healthy })
	res, err := a.Authenticate(context.Background(), contract.AuthRequest{Credential: f.secrets[0]})
	if err != nil || !res.Accepted() {
		t.Errorf("got %+v, %v after recovery; want accepted", res, err)
	}
}

func TestPluginSeesOnlyTheEnvironmentTheHostPasses(t *testing.T) {
	t.Setenv("REDIS_PASSWORD", "host-redis-password")
	t.Setenv("CRS_SECURITY__ENCRYPTION_KEY", oldKey)
	cases := []struct {
		name    string
		env     []string
		wantVar map[string]string // name → value, "" means must be absent
	}{
		{"nothing passed", nil, map[string]string{"REDIS_PASSWORD": "", "CRS_SECURITY__ENCRYPTION_KEY": ""}},
		{"passed deliberately", []string{"REDIS_PASSWORD=given-on-purpose"}, map[string]string{"REDIS_PASSWORD": "given-on-purpose", "CRS_SECURITY__ENCRYPTION_KEY": ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			buf := &testutil.Buffer{}
			log := hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Debug})
			path := filepath.Join(t.TempDir(), "envauth")
			install(t, bins.env, path)
			cfg := hostConfig(t, path, nil, log)
			cfg.Env = tc.env
			a, err := host.StartAuth(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			res, err := a.Authenticate(context.Background(), contract.AuthRequest{Credential: "env"})
			if err != nil || !res.Accepted() {
				t.Fatalf("got %+v, %v; want the env plugin to answer", res, err)
			}
			for name, want := range tc.wantVar {
				got, ok := res.Principal.Attributes[name]
				if want == "" && ok {
					t.Errorf("plugin can read %s from its environment, want it absent", name)
				}
				if want != "" && got != want {
					t.Errorf("got %s=%q in the plugin, want %q", name, got, want)
				}
			}
			for name := range res.Principal.Attributes {
				if !strings.HasPrefix(name, "PLUGIN_") && name != "CLAUDE_RELAY_PLUGIN" && name != "REDIS_PASSWORD" {
					t.Errorf("plugin environment has %s, which the host did not pass", name)
				}
			}
			testutil.Eventually(t, 5*time.Second, "the plugin's stderr log re-logged by the host", func() bool {
				out := buf.String()
				return strings.Contains(out, "envauth plugin starting") && strings.Contains(out, "stderr-relogged")
			})
		})
	}
}

func TestCryptoPluginRoundTripsAndRejectsForeignEnvelopes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crypto-aesgcm")
	install(t, bins.crypto, path)
	c, err := host.StartCrypto(context.Background(), hostConfig(t, path, map[string]string{"encryption_key": newKey, "previous_encryption_keys": oldKey}, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	env, err := c.Encrypt(ctx, []byte("sk-ant-secret"), []byte("acct-1"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		env     []byte
		aad     string
		want    string
		wantErr error
	}{
		{"same context", env, "acct-1", "sk-ant-secret", nil},
		{"other record", env, "acct-2", "", contract.ErrRejected},
		{"garbage", []byte("v1.zz.nope"), "acct-1", "", contract.ErrRejected},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Decrypt(ctx, tc.env, []byte(tc.aad))
			if !errors.Is(err, tc.wantErr) || string(got) != tc.want {
				t.Errorf("got %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	ki, err := c.KeyInfo(ctx)
	if err != nil || len(ki.KeyIDs) != 2 || !strings.Contains(string(env), "."+ki.PrimaryKeyID+".") {
		t.Errorf("got key info %+v, %v for envelope %q; want 2 keys and the envelope under the primary", ki, err, env)
	}
}

func TestStartRefusesAPluginThatFailsItsSelfTest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crypto-aesgcm")
	install(t, bins.crypto, path)
	_, err := host.StartCrypto(context.Background(), hostConfig(t, path, map[string]string{"encryption_key": "too-short"}, nil))
	if err == nil || !strings.Contains(err.Error(), "configure") {
		t.Errorf("got %v, want a configure error", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}
