package configdisttest

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testutil"
)

var (
	pluginsOnce sync.Once
	pluginsDir  string
	pluginsErr  error
)

// plugins builds the provider plugins once, beside the binary TestMain built.
func plugins(t *testing.T) string {
	t.Helper()
	pluginsOnce.Do(func() {
		pluginsDir = filepath.Join(filepath.Dir(binary), "plugins")
		for _, name := range []string{"auth-apikey", "crypto-aesgcm"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(pluginsDir, name), "./plugins/"+name)
			cmd.Dir = filepath.Join("..", "..")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				pluginsErr = err
				pluginsDir = string(out)
				return
			}
		}
	})
	if pluginsErr != nil {
		t.Fatalf("build plugins: %v\n%s", pluginsErr, pluginsDir)
	}
	return pluginsDir
}

// publicKeys are the only keys of the deployment contract's /health.
var publicKeys = []string{"components", "status", "uptime", "version"}

func checkPublicHealth(t *testing.T, who string, h health, internals ...string) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(h.Raw), &top); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range top {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, publicKeys) {
		t.Errorf("%s /health keys: got %v, want %v", who, keys, publicKeys)
	}
	for _, s := range append(internals, "pid", "sha256", "path", "last_error", "http://") {
		if strings.Contains(h.Raw, s) {
			t.Errorf("%s /health shows %q: %s", who, s, h.Raw)
		}
	}
	if h.Code != http.StatusOK || h.Status != "ok" {
		t.Errorf("%s /health: got %d %s, want 200 ok", who, h.Code, h.Raw)
	}
}

func TestPublicHealthShowsStatusesOnlyAndTheAdminAPIShowsDetails(t *testing.T) {
	c := newCluster(t, baseHCL())
	c.pluginDir = plugins(t)
	c.startControl()
	s := c.startSidecar("sidecar", "", "")
	s.waitVersion(t, c.status().Version)

	sh := s.health(t)
	checkPublicHealth(t, "sidecar", sh, c.pluginDir, c.ctlAddr, s.dataDir)
	for _, name := range []string{"redis", "logger", "config", "control_plane", "plugin.auth", "plugin.crypto"} {
		if sh.Components[name] != "ok" {
			t.Errorf("sidecar component %s: got %q, want ok", name, sh.Components[name])
		}
	}
	ch := getHealth(t, "http://"+c.ctlAddr)
	checkPublicHealth(t, "control plane", ch, c.pluginDir)
	if ch.Components["plugin.crypto"] != "ok" {
		t.Errorf("control plane plugin.crypto: got %q, want ok", ch.Components["plugin.crypto"])
	}

	t.Run("the sidecar's details reach GET /admin/sidecars with its poll", func(t *testing.T) {
		sc, ok := s.reported(t)
		if !ok || sc.Health == nil {
			t.Fatalf("registry entry: got %+v, want one with health", sc)
		}
		auth := string(sc.Health.Components["plugin.auth"].Details)
		for _, want := range []string{filepath.Join(c.pluginDir, "auth-apikey"), `"pid":`, `"sha256":`} {
			if !strings.Contains(auth, want) {
				t.Errorf("plugin.auth details: got %s, want %q", auth, want)
			}
		}
		if st := s.channel(t); st.ControlPlane != "http://"+c.ctlAddr || !st.Reachable {
			t.Errorf("control_plane details: got %+v, want the control plane's URL, reachable", st)
		}
		table := c.runCLI("sidecars")
		if !strings.Contains(table, "HEALTH") || !strings.Contains(table, " ok ") {
			t.Errorf("admin sidecars: want a HEALTH column saying ok in\n%s", table)
		}
	})

	t.Run("the control plane's own details are at GET /admin/health", func(t *testing.T) {
		h, err := c.admin.Health(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		crypto := string(h.Components["plugin.crypto"].Details)
		if !strings.Contains(crypto, filepath.Join(c.pluginDir, "crypto-aesgcm")) || !strings.Contains(crypto, `"pid":`) {
			t.Errorf("plugin.crypto details: got %s, want its path and PID", crypto)
		}
		if out := c.runCLI("health"); !strings.Contains(out, "plugin.crypto") || !strings.Contains(out, c.pluginDir) {
			t.Errorf("admin health: want plugin.crypto and its path in\n%s", out)
		}
	})

	t.Run("a failing plugin: the public answer says error, the admin API says why", func(t *testing.T) {
		bad := filepath.Join(c.pluginDir, "auth-apikey")
		good, err := os.ReadFile(bad)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.WriteFile(bad, good, 0o755) })
		tmp := bad + ".tmp"
		if err := os.WriteFile(tmp, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, bad); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, waitFor, "the sidecar's public health shows plugin.auth failing", func() bool {
			return s.health(t).Components["plugin.auth"] == "error"
		})
		h := s.health(t)
		if h.Code != http.StatusServiceUnavailable || h.Status != "degraded" {
			t.Errorf("got %d %s, want 503 degraded", h.Code, h.Raw)
		}
		if strings.Contains(h.Raw, "refused") || strings.Contains(h.Raw, c.pluginDir) {
			t.Errorf("public health says why: %s", h.Raw)
		}
		testutil.Eventually(t, waitFor, "the registry shows why (the sidecar reports at once, not at its next long-poll)", func() bool {
			sc, ok := s.reported(t)
			return ok && sc.Health != nil && sc.Health.Components["plugin.auth"].Status == "error" &&
				sc.Health.Components["plugin.auth"].Error != ""
		})
		if err := os.WriteFile(tmp, good, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, bad); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, waitFor, "the good binary is swapped back in", func() bool { return s.health(t).Components["plugin.auth"] == "ok" })
	})
}

func TestSidecarSeesTheControlPlaneBackWithinSeconds(t *testing.T) {
	c := newCluster(t, baseHCL())
	c.startControl()
	s := c.startSidecar("sidecar", "", "")
	s.waitVersion(t, c.status().Version)

	c.ctl.kill()
	start := time.Now()
	testutil.Eventually(t, waitFor, "the sidecar's public health says the control plane is unreachable", func() bool {
		return s.health(t).Components["control_plane"] == "unreachable"
	})
	t.Logf("unreachable %s after the kill", time.Since(start).Round(time.Millisecond))
	time.Sleep(6 * time.Second) // the poll backoff reaches its 5 s cap

	c.startControl() // returns once the control plane answers /health
	start = time.Now()
	testutil.Eventually(t, waitFor, "the sidecar's public health says the control plane is back", func() bool {
		return s.health(t).Components["control_plane"] == "ok"
	})
	took := time.Since(start)
	t.Logf("ok %s after the control plane answered", took.Round(time.Millisecond))
	if took > 6*time.Second {
		t.Errorf("control plane back: the sidecar saw it after %s, want within the backoff cap (5 s) and one poll", took)
	}
}
