package app

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

// devProcess is RunDev running in the test process.
type devProcess struct {
	addr   string
	stdout *testutil.Buffer
	stderr *testutil.Buffer
	stop   func() error
}

func startDev(t *testing.T, env *config.Env, dataDir string) *devProcess {
	t.Helper()
	return startDevOn(t, env, dataDir, "127.0.0.1:0")
}

// startDevOn is startDev listening on listen ("" for what the environment says).
func startDevOn(t *testing.T, env *config.Env, dataDir, listen string) *devProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &devProcess{stdout: &testutil.Buffer{}, stderr: &testutil.Buffer{}}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- RunDev(ctx, env, Options{
			Listen: listen, DataDir: dataDir, Stdout: p.stdout, Stderr: p.stderr, Grace: 2 * time.Second,
			Ready: func(a net.Addr) { ready <- a.String() },
		})
	}()
	select {
	case p.addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("dev mode exited at start: %v\nstderr:\n%s", err, p.stderr.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("dev mode did not start within 60s (bcrypt at the production cost is slow under the race detector)\nstderr:\n%s", p.stderr.String())
	}
	var once sync.Once
	var stopErr error
	p.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(15 * time.Second):
				stopErr = errors.New("dev mode did not stop within 15s")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { p.stop() })
	return p
}

var exportKey = regexp.MustCompile(`export ANTHROPIC_API_KEY=(cr_[0-9a-f]{64})`)

func devEnv(t *testing.T) *config.Env {
	t.Helper()
	env, err := config.LoadEnv(func(string) (string, bool) { return "", false }, nil)
	if err != nil {
		t.Fatal(err)
	}
	env.LogDir = t.TempDir()
	env.ConfigDir = ""
	return env
}

func TestDevModeServesClaudeCodeOutOfTheBox(t *testing.T) {
	up := fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{"sk-ant-api03-dev-upstream"}})
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-api03-dev-upstream")
	t.Setenv("CLAUDE_RELAY_UPSTREAM_URL", up.URL())
	session := filepath.Join(t.TempDir(), "admin.json")
	t.Setenv("CLAUDE_RELAY_ADMIN_FILE", session)
	dataDir := t.TempDir()
	p := startDev(t, devEnv(t), dataDir)

	out := p.stdout.String()
	m := exportKey.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "export ANTHROPIC_BASE_URL=http://"+p.addr) {
		t.Fatalf("banner lacks the two export lines:\n%s", out)
	}
	if !strings.Contains(out, "IN-MEMORY") {
		t.Errorf("banner does not label the in-memory store:\n%s", out)
	}
	relayKey := m[1]

	// Claude Code's way: x-api-key with the relay key, streaming.
	client := anthropic.NewClient(option.WithBaseURL("http://"+p.addr), option.WithAPIKey(relayKey), option.WithMaxRetries(0))
	stream := client.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{
		Model: "claude-sonnet-4-5-20250929", MaxTokens: 64,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	})
	var msg anthropic.Message
	for stream.Next() {
		msg.Accumulate(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream through dev mode: %v\nlogs:\n%s", err, p.stderr.String())
	}
	if len(msg.Content) == 0 {
		t.Fatal("got an empty message")
	}
	reqs, _ := up.WaitRequests(context.Background(), 1)
	if got := reqs[0].Header.Get("X-Api-Key"); got != "sk-ant-api03-dev-upstream" {
		t.Errorf("upstream saw key %q, want the ANTHROPIC_API_KEY account", got)
	}

	// The CLI works at once: dev mode saved an admin session.
	keys, err := sessionClient(t, session).ListKeys(context.Background())
	if err != nil || len(keys) != 1 {
		t.Fatalf("admin keys list: got %v, %v; want the one dev key", keys, err)
	}

	// /health answers in the contract's shape.
	resp, err := http.Get("http://" + p.addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("health: got %d, want 200", resp.StatusCode)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("dev mode stop: %v", err)
	}
	// Generated secrets persist, readable by the owner only.
	for _, name := range []string{"secrets.env", "admin-password", "dev-relay-key"} {
		fi, err := os.Stat(filepath.Join(dataDir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want no group/other access", name, fi.Mode().Perm())
		}
	}
	if strings.Contains(p.stderr.String(), relayKey) || strings.Contains(p.stderr.String(), "sk-ant-api03-dev-upstream") {
		t.Error("a secret reached the logs")
	}
}

func TestDevModeWithRedisKeepsItsKeyAcrossRestarts(t *testing.T) {
	srv := testredis.StartServer(t)
	t.Setenv("CLAUDE_RELAY_ADMIN_FILE", filepath.Join(t.TempDir(), "admin.json"))
	dataDir := t.TempDir()
	env := devEnv(t)
	env.RedisURL = "redis://" + srv.Addr()
	first := startDev(t, env, dataDir)
	k1 := exportKey.FindStringSubmatch(first.stdout.String())
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(first.stdout.String(), "Redis at") {
		t.Errorf("banner does not name the Redis store:\n%s", first.stdout.String())
	}
	second := startDev(t, env, dataDir)
	k2 := exportKey.FindStringSubmatch(second.stdout.String())
	if k1 == nil || k2 == nil || k1[1] != k2[1] {
		t.Fatalf("relay key changed across restarts with a persistent store: %v vs %v", k1, k2)
	}
}

func TestDevModeInMemoryKeepsItsRelayKeyWorkingAcrossRestarts(t *testing.T) {
	up := fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{"sk-ant-api03-dev-upstream"}})
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-api03-dev-upstream")
	t.Setenv("CLAUDE_RELAY_UPSTREAM_URL", up.URL())
	t.Setenv("CLAUDE_RELAY_ADMIN_FILE", filepath.Join(t.TempDir(), "admin.json"))
	dataDir := t.TempDir()
	first := startDev(t, devEnv(t), dataDir)
	k1 := exportKey.FindStringSubmatch(first.stdout.String())
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	second := startDev(t, devEnv(t), dataDir)
	k2 := exportKey.FindStringSubmatch(second.stdout.String())
	if k1 == nil || k2 == nil || k1[1] != k2[1] {
		t.Fatalf("the in-memory store's relay key changed across restarts of one data dir: %v vs %v", k1, k2)
	}
	// The key exported before the restart works against the restarted relay.
	client := anthropic.NewClient(option.WithBaseURL("http://"+second.addr), option.WithAPIKey(k1[1]), option.WithMaxRetries(0))
	if _, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "claude-sonnet-4-5-20250929", MaxTokens: 16,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	}); err != nil {
		t.Fatalf("the key exported before the restart: %v", err)
	}
}

// sessionClient is an admin client on the session dev mode saved at path, once it is there.
func sessionClient(t *testing.T, path string) *adminclient.Client {
	t.Helper()
	var sess adminclient.Session
	// The login behind it hashes at bcrypt's production cost, which takes seconds under the
	// race detector on a busy machine.
	testutil.Eventually(t, 60*time.Second, "dev mode's admin session", func() bool {
		var err error
		sess, err = adminclient.LoadSession(path)
		return err == nil && sess.Token != ""
	})
	ac, err := adminclient.New(sess.Addr, sess.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ac
}

func TestStartRefusals(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()
	host, port, _ := net.SplitHostPort(deadAddr)
	good := func() *config.Env {
		env := devEnv(t)
		env.JWTSecret = strings.Repeat("j", 48)
		env.EncryptionKey = strings.Repeat("k", 32)
		env.RedisHost, env.RedisPassword = host, "hunter2hunter2"
		env.RedisPort, _ = strconv.Atoi(port)
		return env
	}
	tests := []struct {
		name   string
		mutate func(*config.Env)
		want   []string
	}{
		{"short jwt secret", func(e *config.Env) { e.JWTSecret = "short" }, []string{"CRS_SECURITY__JWT_SECRET", "openssl rand -base64 64"}},
		{"wrong encryption key length", func(e *config.Env) { e.EncryptionKey = strings.Repeat("k", 31) }, []string{"CRS_SECURITY__ENCRYPTION_KEY", "openssl rand -hex 16"}},
		{"both secrets at once", func(e *config.Env) { e.JWTSecret, e.EncryptionKey = "", "" }, []string{"CRS_SECURITY__JWT_SECRET", "CRS_SECURITY__ENCRYPTION_KEY"}},
		{"redis unreachable", func(*config.Env) {}, []string{"failed to connect to Redis at " + deadAddr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := good()
			tt.mutate(env)
			var stderr bytes.Buffer
			err := RunSidecar(context.Background(), env, Options{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Stdout: &stderr, Stderr: &stderr})
			if err == nil {
				t.Fatal("got nil error, want a refusal")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2hunter2") {
				t.Error("the error shows the Redis password")
			}
		})
	}
}

// freePort returns a TCP port nothing listens on right now.
func freePort(t *testing.T) string {
	_, port, _ := net.SplitHostPort(testutil.FreeAddr(t))
	return port
}

func TestDevModeBindsLoopbackUnlessHOSTSaysOtherwise(t *testing.T) {
	t.Setenv("CLAUDE_RELAY_ADMIN_FILE", filepath.Join(t.TempDir(), "admin.json"))
	tests := []struct {
		name     string
		host     string // HOST; "" unset
		loopback bool   // whether dev mode listens on 127.0.0.1 (else on every address)
		banner   string
	}{
		{"HOST unset", "", true, "(this machine only; set HOST to listen beyond it)"},
		{"HOST=0.0.0.0", "0.0.0.0", false, "REACHABLE FROM THE NETWORK (HOST), THE ADMIN API TOO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := freePort(t)
			vars := map[string]string{"PORT": port}
			if tt.host != "" {
				vars["HOST"] = tt.host
			}
			dataDir := t.TempDir()
			p := startDevOn(t, envWith(t, vars), dataDir, "")
			host, gotPort, _ := net.SplitHostPort(p.addr)
			ip := net.ParseIP(host)
			if ip == nil || gotPort != port || (tt.loopback && !ip.Equal(net.IPv4(127, 0, 0, 1))) || (!tt.loopback && !ip.IsUnspecified()) {
				t.Errorf("listening on %s, want port %s on %s", p.addr, port, map[bool]string{true: "127.0.0.1", false: "every address"}[tt.loopback])
			}
			out := p.stdout.String()
			if !strings.Contains(out, tt.banner) {
				t.Errorf("banner does not say %q:\n%s", tt.banner, out)
			}
			if !strings.Contains(out, "export ANTHROPIC_BASE_URL=http://127.0.0.1:"+port) {
				t.Errorf("banner does not give a base URL this machine can dial:\n%s", out)
			}
			pw, err := os.ReadFile(filepath.Join(dataDir, "admin-password"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, strings.TrimSpace(string(pw))) {
				t.Errorf("the banner shows the admin password:\n%s", out)
			}
			if !strings.Contains(out, filepath.Join(dataDir, "admin-password")) {
				t.Errorf("the banner does not say where the admin password is:\n%s", out)
			}
		})
	}
}

// devAccounts lists dev mode's upstream accounts through the admin session it saved.
func devAccounts(t *testing.T, session string) []string {
	t.Helper()
	list, err := sessionClient(t, session).ListAccounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range list {
		out = append(out, a.BaseURL)
	}
	return out
}

func TestDevModeRefusesARelayKeyAsItsAnthropicUpstream(t *testing.T) {
	relayKey := "cr_" + strings.Repeat("5a", 32)
	t.Run("for api.anthropic.com", func(t *testing.T) {
		session := filepath.Join(t.TempDir(), "admin.json")
		t.Setenv("CLAUDE_RELAY_ADMIN_FILE", session)
		t.Setenv("ANTHROPIC_API_KEY", relayKey)
		t.Setenv("CLAUDE_RELAY_UPSTREAM_URL", "")
		p := startDev(t, devEnv(t), t.TempDir())
		out := p.stdout.String()
		for _, want := range []string{"ANTHROPIC_API_KEY in this shell is a claude-relay key (cr_…)", "not added or sent to https://api.anthropic.com", "unset ANTHROPIC_API_KEY"} {
			if !strings.Contains(out, want) {
				t.Errorf("banner does not say %q:\n%s", want, out)
			}
		}
		if accts := devAccounts(t, session); len(accts) != 0 {
			t.Errorf("got upstream accounts %v, want none", accts)
		}
		if strings.Contains(out+p.stderr.String(), relayKey) {
			t.Error("the refused key was printed")
		}
	})
	t.Run("for another relay", func(t *testing.T) {
		up := fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{relayKey}})
		session := filepath.Join(t.TempDir(), "admin.json")
		t.Setenv("CLAUDE_RELAY_ADMIN_FILE", session)
		t.Setenv("ANTHROPIC_API_KEY", relayKey)
		t.Setenv("CLAUDE_RELAY_UPSTREAM_URL", up.URL())
		p := startDev(t, devEnv(t), t.TempDir())
		if accts := devAccounts(t, session); len(accts) != 1 || accts[0] != up.URL() {
			t.Errorf("got upstream accounts %v, want the other relay %s", accts, up.URL())
		}
		if strings.Contains(p.stdout.String(), "claude-relay key (cr_…)") {
			t.Errorf("banner refuses a relay key meant for another relay:\n%s", p.stdout.String())
		}
	})
}
