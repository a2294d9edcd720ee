package configdisttest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/configclient"
)

const (
	jwtSecret     = "test-jwt-secret-0123456789abcdef0123456789abcdef"
	encryptionKey = "0123456789abcdef0123456789abcdef"
	adminPassword = "correct-horse-battery-staple"
	upstreamKey   = "sk-ant-api03-configdist-test-key"
	waitFor       = 15 * time.Second
)

// binary is cmd/claude-relay, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	// relaytest compiles in the NACK hook (CLAUDE_RELAY_TEST_REFUSE_CONFIG).
	os.Exit(testutil.RunWithBinaries(m, testutil.Binary{Path: &binary, Package: "github.com/claude-relay/claude-relay/cmd/claude-relay", Tags: "relaytest"}))
}

// cluster is one deployment under test: a Redis, a config directory, a control plane and
// sidecars, all as real processes.
type cluster struct {
	t         *testing.T
	redis     *testredis.Server
	configDir string
	ctlAddr   string
	ctlData   string // the control plane's data dir, kept across its restarts (its admin signing key)
	ctl       *proc
	up        *fakeupstream.Server
	admin     *adminclient.Client
	token     string
	// pluginDir, when set, holds the provider plugin binaries every process runs.
	pluginDir string
}

// proc is a running claude-relay subprocess.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testutil.Buffer
	done chan struct{}
}

func newCluster(t *testing.T, hcl string) *cluster {
	t.Helper()
	c := &cluster{t: t, redis: testredis.StartServer(t), configDir: t.TempDir(), ctlAddr: testutil.FreeAddr(t), ctlData: t.TempDir()}
	c.writeFile("relay.hcl", hcl)
	c.up = fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{upstreamKey}})
	return c
}

// env is the environment every process gets; each runs in its own working directory so
// no .env of the repository is read.
func (c *cluster) env(extra ...string) []string {
	home := c.t.TempDir()
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + home,
		"REDIS_URL=redis://" + c.redis.Addr() + "/0",
		"CRS_SECURITY__JWT_SECRET=" + jwtSecret,
		"CRS_SECURITY__ENCRYPTION_KEY=" + encryptionKey,
		"ADMIN_PASSWORD=" + adminPassword,
		"LOG_DIR=" + filepath.Join(home, "logs"),
		"LOG_LEVEL=debug",
		"CLAUDE_RELAY_PLUGIN_DIR=" + c.pluginDir,
	}, extra...)
}

func (c *cluster) start(name string, args []string, env []string) *proc {
	c.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = c.t.TempDir()
	cmd.Env = env
	p := &proc{name: name, cmd: cmd, out: &testutil.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.t.Cleanup(func() {
		p.stop()
		if c.t.Failed() {
			c.t.Logf("--- %s output ---\n%s", name, tail(p.out.String(), 6000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// stop sends SIGTERM and waits; kill skips the goodbye.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// startControl starts the control plane and logs the admin in.
func (c *cluster) startControl() {
	c.t.Helper()
	c.ctl = c.start("control", []string{"control", "-listen", c.ctlAddr, "-config-dir", c.configDir, "-data-dir", c.ctlData}, c.env())
	waitHTTP(c.t, "http://"+c.ctlAddr+"/health")
	if c.admin != nil {
		return
	}
	cl, err := adminclient.New("http://"+c.ctlAddr, "", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	res, err := cl.Login(c.t.Context(), "admin", adminPassword)
	if err != nil {
		c.t.Fatalf("admin login: %v", err)
	}
	c.token = res.Token
	if c.admin, err = adminclient.New("http://"+c.ctlAddr, res.Token, nil); err != nil {
		c.t.Fatal(err)
	}
}

// sidecarProc is a running sidecar process.
type sidecarProc struct {
	*proc
	c       *cluster
	addr    string
	dataDir string
}

func (s *sidecarProc) url() string { return "http://" + s.addr }

func (c *cluster) startSidecar(name, addr, dataDir string, extraEnv ...string) *sidecarProc {
	c.t.Helper()
	if addr == "" {
		addr = testutil.FreeAddr(c.t)
	}
	if dataDir == "" {
		dataDir = c.t.TempDir()
	}
	p := c.start(name, []string{"sidecar", "-listen", addr, "-data-dir", dataDir, "-control-plane", "http://" + c.ctlAddr}, c.env(extraEnv...))
	s := &sidecarProc{proc: p, c: c, addr: addr, dataDir: dataDir}
	waitHTTP(c.t, s.url()+"/metrics")
	return s
}

func (c *cluster) writeFile(name, content string) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.configDir, name), []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// status is the control plane's /admin/config/status.
func (c *cluster) status() configapi.ConfigStatus {
	c.t.Helper()
	st, err := c.admin.ConfigStatus(c.t.Context())
	if err != nil {
		c.t.Fatalf("config status: %v", err)
	}
	return st
}

// waitStatus waits until the control plane's status satisfies ok.
func (c *cluster) waitStatus(what string, ok func(configapi.ConfigStatus) bool) configapi.ConfigStatus {
	c.t.Helper()
	var st configapi.ConfigStatus
	testutil.Eventually(c.t, waitFor, what, func() bool {
		st = c.status()
		return ok(st)
	})
	return st
}

// health is a public /health answer: status code and body, whose keys are only those of
// the deployment contract.
type health struct {
	Code       int
	Raw        string
	Status     string            `json:"status"`
	Components map[string]string `json:"components"`
}

func getHealth(t *testing.T, url string) health {
	t.Helper()
	resp, err := http.Get(url + "/health")
	if err != nil {
		t.Fatalf("%s/health: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s/health: %v", url, err)
	}
	var h health
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("%s/health: %v: %s", url, err, b)
	}
	h.Code, h.Raw = resp.StatusCode, string(b)
	return h
}

func (s *sidecarProc) health(t *testing.T) health { return getHealth(t, s.url()) }

// reported is the sidecar's entry in the control plane's registry (GET /admin/sidecars),
// as the sidecar last reported itself with a poll.
func (s *sidecarProc) reported(t *testing.T) (configapi.Sidecar, bool) {
	t.Helper()
	list, err := s.c.admin.Sidecars(t.Context())
	if err != nil {
		return configapi.Sidecar{}, false
	}
	for _, sc := range list.Sidecars {
		if sc.Addr == s.addr {
			return sc, true
		}
	}
	return configapi.Sidecar{}, false
}

// channel is the sidecar's configuration channel (applied version, source, reachability,
// NACK) as it reported it: the details of its control_plane component.
func (s *sidecarProc) channel(t *testing.T) configclient.Status {
	t.Helper()
	var st configclient.Status
	if sc, ok := s.reported(t); ok && sc.Health != nil {
		_ = json.Unmarshal(sc.Health.Components["control_plane"].Details, &st)
	}
	return st
}

// waitVersion waits until the sidecar reports running version v.
func (s *sidecarProc) waitVersion(t *testing.T, v int64) {
	t.Helper()
	testutil.Eventually(t, waitFor, fmt.Sprintf("%s runs version %d", s.name, v), func() bool {
		return s.channel(t).Version == v
	})
}

// get sends a request to the sidecar and returns the status.
func (s *sidecarProc) do(t *testing.T, method, path string, header http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.url()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	testutil.Eventually(t, waitFor, url+" answers", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
}

// relayKey creates an upstream account on the fake and a relay key with policy.
func (c *cluster) relayKey(policy string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.admin.AddAccount(ctx, adminapi.AddAccountRequest{Name: "fake", BaseURL: c.up.URL(), APIKey: upstreamKey}); err != nil {
		c.t.Fatalf("add account: %v", err)
	}
	res, err := c.admin.CreateKey(ctx, adminapi.CreateKeyRequest{Name: "tester", Policy: policy})
	if err != nil {
		c.t.Fatalf("create key: %v", err)
	}
	return res.Secret
}

// runCLI runs "claude-relay admin ARGS" against the control plane.
func (c *cluster) runCLI(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(binary, append([]string{"admin"}, args...)...)
	cmd.Dir = c.t.TempDir()
	cmd.Env = c.env("CLAUDE_RELAY_ADDR=http://"+c.ctlAddr, "CLAUDE_RELAY_TOKEN="+c.token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("claude-relay admin %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
