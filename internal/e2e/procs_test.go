package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

const (
	testJWTSecret     = "e2e-jwt-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
	testEncryptionKey = "0123456789abcdef0123456789abcdef"
	upstreamKey       = "sk-ant-api03-e2e-upstream-key"
)

// relayBin is the claude-relay binary TestMain builds for this package.
var relayBin string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithBinaries(m, testutil.Binary{Path: &relayBin, Package: "github.com/claude-relay/claude-relay/cmd/claude-relay"}))
}

// install is what a deployment shares: one Redis (single or Cluster), a fake upstream
// account and a relay key, and an environment for the sidecar processes.
type install struct {
	t      *testing.T
	rdb    redis.UniversalClient
	st     *store.Store
	up     *fakeupstream.Server
	key    string
	keyID  string
	env    []string // REDIS_* for the processes
	config string   // CLAUDE_RELAY_CONFIG_DIR
}

// newInstall starts a dedicated Redis — a three-master Cluster under
// CLAUDE_RELAY_TEST_REDIS=cluster — because the processes use the default key prefix.
func newInstall(t *testing.T) *install {
	t.Helper()
	var cfg store.RedisConfig
	var env []string
	if os.Getenv(testredis.EnvMode) == "cluster" {
		c := testredis.StartCluster(t)
		cfg.ClusterAddrs = c.Addrs()
		env = []string{"REDIS_CLUSTER_NODES=" + strings.Join(c.Addrs(), ",")}
	} else {
		srv := testredis.StartServer(t)
		host, port, _ := strings.Cut(srv.Addr(), ":")
		cfg.Addr = srv.Addr()
		env = []string{"REDIS_HOST=" + host, "REDIS_PORT=" + port}
	}
	return newInstallOn(t, cfg, env)
}

// newInstallOn is newInstall on a Redis the caller started: the test reaches it with cfg,
// the processes with env (REDIS_*).
func newInstallOn(t *testing.T, cfg store.RedisConfig, env []string) *install {
	t.Helper()
	ctx := context.Background()
	in := &install{t: t, env: env}
	rdb, err := store.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	st := storetest.Open(t, rdb, store.Options{})
	in.rdb, in.st = rdb, st
	in.up = fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{upstreamKey}})
	if _, err := st.AddAccount(ctx, store.AccountSpec{Name: "acct", BaseURL: in.up.URL(), Credential: upstreamKey}); err != nil {
		t.Fatal(err)
	}
	k, secret, err := st.CreateKey(ctx, store.KeySpec{Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	in.key, in.keyID = secret, k.ID
	in.config = t.TempDir()
	def, err := os.ReadFile("../../config/default.hcl")
	if err != nil {
		t.Fatal(err)
	}
	in.writeConfig(string(def))
	return in
}

func (in *install) writeConfig(hcl string) {
	in.t.Helper()
	if err := os.WriteFile(filepath.Join(in.config, "relay.hcl"), []byte(hcl), 0o644); err != nil {
		in.t.Fatal(err)
	}
}

// proc is one running `claude-relay sidecar`.
type proc struct {
	t      *testing.T
	name   string
	addr   string
	cmd    *exec.Cmd
	out    *testutil.Buffer
	exited chan struct{}
	err    error // Wait's result, valid after exited is closed
}

// startSidecar runs `claude-relay sidecar` on a free port and waits until /health is ok.
func (in *install) startSidecar(name string, args ...string) *proc {
	return in.start(name, "sidecar", args...)
}

// start runs `claude-relay MODE` on a free port with the install's configuration directory
// and waits until /health is ok.
func (in *install) start(name, mode string, args ...string) *proc {
	t := in.t
	t.Helper()
	addr := testutil.FreeAddr(t)
	dir := t.TempDir()
	argv := append([]string{mode, "-listen", addr, "-data-dir", filepath.Join(dir, "data"), "-config-dir", in.config}, args...)
	cmd := exec.Command(relayBin, argv...)
	cmd.Dir = dir // no stray .env
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"CRS_SECURITY__JWT_SECRET=" + testJWTSecret,
		"CRS_SECURITY__ENCRYPTION_KEY=" + testEncryptionKey,
		"LOG_DIR=" + filepath.Join(dir, "logs"),
		"LOG_LEVEL=debug",
	}, in.env...)
	p := &proc{t: t, name: name, addr: addr, cmd: cmd, out: &testutil.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.url() + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited at start (%v):\n%s", name, p.err, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /health not ok within 20s:\n%s", name, p.out.String())
		}
	}
}

func (p *proc) url() string { return "http://" + p.addr }

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %s", p.name, d)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatalf("%s: %v", p.name, p.err)
	}
	return 0
}

// scriptHeader paces a fake upstream stream: events every pace, deltas text deltas.
func scriptHeader(pace time.Duration, deltas int) string {
	return `{"pace":"` + pace.String() + `","deltas":` + strconv.Itoa(deltas) + `}`
}
