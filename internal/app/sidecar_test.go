package app

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

// TestStandaloneSidecarAppliesItsHCLThroughTheConfigClient runs a sidecar without a control
// plane: its HCL reaches the data plane through the config client (the route it declares is
// served), /health shows no control plane channel, and a broken directory stops the start
// with the diagnostics.
func TestStandaloneSidecarAppliesItsHCLThroughTheConfigClient(t *testing.T) {
	srv := testredis.StartServer(t)
	dir := t.TempDir()
	env := envWith(t, map[string]string{
		"REDIS_URL":                    "redis://" + srv.Addr(),
		"CRS_SECURITY__JWT_SECRET":     strings.Repeat("j", 48),
		"CRS_SECURITY__ENCRYPTION_KEY": strings.Repeat("k", 32),
	})

	if err := os.WriteFile(filepath.Join(dir, "relay.hcl"), []byte("route \"messages\" {\n  paths = [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out testutil.Buffer
	err := RunSidecar(t.Context(), env, Options{Listen: "127.0.0.1:0", ConfigDir: dir, DataDir: t.TempDir(), Stdout: &out, Stderr: &out})
	if err == nil || !strings.Contains(err.Error(), "relay.hcl:") {
		t.Fatalf("broken directory: got %v, want a refusal pointing at relay.hcl", err)
	}

	hcl := "pool \"claude\" {}\nroute \"messages\" {\n  paths = [\"/custom/v1/messages\"]\n  pool  = \"claude\"\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "relay.hcl"), []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- RunSidecar(ctx, env, Options{
			Listen: "127.0.0.1:0", ConfigDir: dir, DataDir: t.TempDir(), Stdout: &out, Stderr: &out, Grace: 2 * time.Second,
			Ready: func(a net.Addr) { ready <- a.String() },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("sidecar did not stop within 15s")
		}
	})
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("sidecar exited at start: %v\n%s", err, out.String())
	case <-time.After(60 * time.Second):
		t.Fatal("sidecar did not start within 60s")
	}

	status := func(method, path string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(http.MethodPost, "/custom/v1/messages"); got != http.StatusUnauthorized {
		t.Errorf("the HCL's route without a key: got %d, want 401 (routed, then refused by auth)", got)
	}
	if got := status(http.MethodPost, "/v1/messages"); got != http.StatusNotFound {
		t.Errorf("a path the HCL does not route: got %d, want 404", got)
	}

	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		Status     string            `json:"status"`
		Components map[string]string `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.Components["config"] != "ok" {
		t.Errorf("health: got %+v, want ok with the configuration applied", h)
	}
	if _, ok := h.Components["control_plane"]; ok {
		t.Errorf("health: got a control_plane component %+v, want none for a sidecar without a control plane", h.Components)
	}
}
