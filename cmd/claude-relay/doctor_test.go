package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testredis"
)

const (
	doctorJWT = "jwt-secret-0123456789abcdef0123456789abcdef0123456789abcdef01234"
	doctorKey = "0123456789abcdef0123456789abcdef"
)

func TestDoctorSecretLengths(t *testing.T) {
	tests := []struct {
		name            string
		jwt, key        string
		wantJWT, wantEK doctorStatus
	}{
		{"good secrets", doctorJWT, doctorKey, statusOK, statusOK},
		{"missing secrets", "", "", statusFail, statusFail},
		{"short jwt secret", strings.Repeat("j", 31), doctorKey, statusFail, statusOK},
		{"jwt secret under the recommended 64", strings.Repeat("j", 40), doctorKey, statusWarn, statusOK},
		{"encryption key one short", doctorJWT, doctorKey[:31], statusOK, statusFail},
		{"encryption key one long", doctorJWT, doctorKey + "0", statusOK, statusFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := checkSecrets(&config.Env{JWTSecret: tt.jwt, EncryptionKey: tt.key})
			if rs[0].Status != tt.wantJWT || rs[1].Status != tt.wantEK {
				t.Fatalf("got %s/%s, want %s/%s (%+v)", rs[0].Status, rs[1].Status, tt.wantJWT, tt.wantEK, rs)
			}
			for _, r := range rs {
				if r.Status != statusOK && !strings.Contains(r.Fix, "openssl rand") {
					t.Errorf("%s: fix %q, want the command that makes a good value", r.Name, r.Fix)
				}
				if strings.Contains(r.Detail, doctorJWT) || strings.Contains(r.Detail, doctorKey) {
					t.Errorf("%s: detail %q shows the secret", r.Name, r.Detail)
				}
			}
		})
	}
}

func TestDoctorRedisChecks(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		args      []string // redis-server flags
		password  string   // REDIS_PASSWORD given to the doctor
		wantPass  doctorStatus
		wantPers  doctorStatus
		persMatch string
	}{
		{"open redis without persistence", nil, "", statusFail, statusFail, "no persistence"},
		{"password and AOF", []string{"--requirepass", "s3cret-pw", "--appendonly", "yes"}, "s3cret-pw", statusOK, statusOK, "appendonly yes"},
		{"RDB snapshots only", []string{"--requirepass", "s3cret-pw", "--save", "900 1"}, "s3cret-pw", statusOK, statusWarn, "RDB snapshots only"},
		{"CONFIG disabled falls back to INFO", []string{"--requirepass", "s3cret-pw", "--appendonly", "yes", "--rename-command", "CONFIG", ""}, "s3cret-pw", statusOK, statusOK, "CONFIG is disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testredis.StartServer(t, tt.args...)
			host, port, _ := strings.Cut(srv.Addr(), ":")
			env := loadTestEnv(t, map[string]string{"REDIS_HOST": host, "REDIS_PORT": port, "REDIS_PASSWORD": tt.password})
			rs := checkRedis(ctx, env, 3*time.Second)
			if len(rs) != 3 {
				t.Fatalf("got %d results, want reachable, password, persistence: %+v", len(rs), rs)
			}
			if rs[0].Status != statusOK {
				t.Errorf("reachable: got %s %q, want ok", rs[0].Status, rs[0].Detail)
			}
			if rs[1].Status != tt.wantPass {
				t.Errorf("password: got %s %q, want %s", rs[1].Status, rs[1].Detail, tt.wantPass)
			}
			if rs[2].Status != tt.wantPers || !strings.Contains(rs[2].Detail, tt.persMatch) {
				t.Errorf("persistence: got %s %q, want %s mentioning %q", rs[2].Status, rs[2].Detail, tt.wantPers, tt.persMatch)
			}
			for _, r := range rs {
				if strings.Contains(r.Detail+r.Fix, "s3cret-pw") {
					t.Errorf("%s shows the password: %q", r.Name, r.Detail)
				}
			}
		})
	}
	t.Run("unreachable redis fails and names the address", func(t *testing.T) {
		srv := testredis.StartServer(t)
		addr := srv.Addr()
		srv.Stop()
		host, port, _ := strings.Cut(addr, ":")
		rs := checkRedis(ctx, loadTestEnv(t, map[string]string{"REDIS_HOST": host, "REDIS_PORT": port}), time.Second)
		if len(rs) != 1 || rs[0].Status != statusFail || !strings.Contains(rs[0].Detail, addr) {
			t.Fatalf("got %+v, want one FAIL naming %s", rs, addr)
		}
	})
	t.Run("wrong password fails", func(t *testing.T) {
		srv := testredis.StartServer(t, "--requirepass", "right-pw")
		host, port, _ := strings.Cut(srv.Addr(), ":")
		rs := checkRedis(ctx, loadTestEnv(t, map[string]string{"REDIS_HOST": host, "REDIS_PORT": port, "REDIS_PASSWORD": "wrong-pw"}), time.Second)
		if len(rs) != 1 || rs[0].Status != statusFail {
			t.Fatalf("got %+v, want one FAIL", rs)
		}
	})
	t.Run("every master of a cluster is checked", func(t *testing.T) {
		c := testredis.StartCluster(t)
		env := loadTestEnv(t, map[string]string{"REDIS_CLUSTER_NODES": strings.Join(c.Addrs(), ",")})
		rs := checkRedis(ctx, env, 3*time.Second)
		if len(rs) != 3 || rs[0].Status != statusOK {
			t.Fatalf("got %+v, want reachable", rs)
		}
		for _, addr := range c.Addrs() {
			if !strings.Contains(rs[2].Detail, addr) {
				t.Errorf("persistence detail %q does not mention master %s", rs[2].Detail, addr)
			}
		}
		if rs[2].Status != statusFail {
			t.Errorf("persistence: got %s, want FAIL (test cluster runs without persistence)", rs[2].Status)
		}
	})
}

func TestDoctorConfigDir(t *testing.T) {
	good := t.TempDir()
	def, err := os.ReadFile("../../config/default.hcl")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(good, "relay.hcl"), string(def), 0o644)
	bad := t.TempDir()
	writeFile(t, filepath.Join(bad, "relay.hcl"), "route \"x\" {\n  paths = [\n}\n", 0o644)
	tests := []struct {
		name, dir string
		want      doctorStatus
		match     string
	}{
		{"unset uses the built-in default", "", statusOK, "built-in default"},
		{"valid directory", good, statusOK, "is valid"},
		{"broken file is reported with its position", bad, statusFail, "relay.hcl:"},
		{"missing directory", filepath.Join(good, "nope"), statusFail, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkConfigDir(tt.dir)
			if r.Status != tt.want || !strings.Contains(r.Detail, tt.match) {
				t.Fatalf("got %s %q, want %s mentioning %q", r.Status, r.Detail, tt.want, tt.match)
			}
		})
	}
}

func TestDoctorEnvFilePermissions(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		mode os.FileMode // 0: no file
		want doctorStatus
	}{
		{"absent", 0, statusOK},
		{"owner and group only", 0o640, statusOK},
		{"world-readable", 0o644, statusFail},
		{"world-writable", 0o602, statusFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".env")
			if tt.mode != 0 {
				writeFile(t, path, "CRS_SECURITY__JWT_SECRET="+doctorJWT+"\n", tt.mode)
			}
			r := checkEnvFile(path)
			if r.Status != tt.want {
				t.Fatalf("got %s %q, want %s", r.Status, r.Detail, tt.want)
			}
			if r.Status == statusFail && !strings.Contains(r.Fix, "chmod 0640") {
				t.Errorf("fix %q, want chmod 0640", r.Fix)
			}
		})
	}
}

func TestDoctorWritableDirs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, "", 0o600)
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir string
		want      doctorStatus
		skip      bool
	}{
		{"writable directory", dir, statusOK, false},
		{"missing directory", filepath.Join(dir, "missing"), statusFail, false},
		{"a file, not a directory", file, statusFail, false},
		{"read-only directory", readOnly, statusFail, os.Geteuid() == 0}, // root writes anyway
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip {
				t.Skip("running as root: permissions do not stop writes")
			}
			r := checkWritableDir("data dir", tt.dir)
			if r.Status != tt.want {
				t.Fatalf("got %s %q, want %s", r.Status, r.Detail, tt.want)
			}
			if r.Status == statusFail && !strings.Contains(r.Fix, "install -d") {
				t.Errorf("fix %q, want an install -d command", r.Fix)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".doctor-") {
					t.Errorf("left %s behind", e.Name())
				}
			}
		})
	}
}

func TestDoctorHealth(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"status":"ok","version":"1.2.3","components":{"redis":"ok"}}`))
	}))
	defer ok.Close()
	degraded := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		w.Write([]byte(`{"status":"degraded","components":{"redis":"error: connection refused","logger":"ok"}}`))
	}))
	defer degraded.Close()
	warning := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"ok","version":"1.2.3","components":{"redis":"ok","control_plane":"unreachable"}}`))
	}))
	defer warning.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name, url string
		want      doctorStatus
		match     string
	}{
		{"healthy", ok.URL, statusOK, "1.2.3"},
		{"healthy with explicit path", ok.URL + "/health", statusOK, "1.2.3"},
		{"degraded names the component", degraded.URL, statusFail, "redis: error: connection refused"},
		{"a warning component is a warning", warning.URL, statusWarn, "control_plane: unreachable"},
		{"not listening", closed.URL, statusFail, "connect"},
		{"not a URL", "127.0.0.1:3000", statusFail, "not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkHealth(context.Background(), tt.url, 2*time.Second)
			if r.Status != tt.want || !strings.Contains(r.Detail, tt.match) {
				t.Fatalf("got %s %q, want %s mentioning %q", r.Status, r.Detail, tt.want, tt.match)
			}
		})
	}
}

func TestDoctorCommandExitsOneOnAnyFailure(t *testing.T) {
	srv := testredis.StartServer(t, "--requirepass", "s3cret-pw", "--appendonly", "yes")
	host, port, _ := strings.Cut(srv.Addr(), ":")
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"ok","version":"t"}`))
	}))
	defer health.Close()
	dir := t.TempDir()
	for _, d := range []string{"data", "logs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	envFile := filepath.Join(dir, ".env")
	writeFile(t, envFile, "CRS_SECURITY__JWT_SECRET="+doctorJWT+"\nREDIS_PASSWORD=s3cret-pw\n", 0o640)
	vars := map[string]string{
		"CRS_SECURITY__ENCRYPTION_KEY": doctorKey, "REDIS_HOST": host, "REDIS_PORT": port,
		"CLAUDE_RELAY_DATA_DIR": filepath.Join(dir, "data"), "LOG_DIR": filepath.Join(dir, "logs"),
	}
	run := func(vars map[string]string) (int, string) {
		var out, errb bytes.Buffer
		code := doctor(context.Background(), mapLookup(vars), []string{"-env-file", envFile, "-health", health.URL, "-timeout", "3s"}, &out, &errb)
		return code, out.String() + errb.String()
	}
	t.Run("healthy installation", func(t *testing.T) {
		code, out := run(vars)
		if code != 0 || !strings.Contains(out, "All checks passed.") || strings.Contains(out, "FAIL") {
			t.Fatalf("got exit %d, want 0:\n%s", code, out)
		}
		if strings.Contains(out, "s3cret-pw") || strings.Contains(out, doctorKey) {
			t.Errorf("report shows a secret:\n%s", out)
		}
	})
	t.Run("one failure", func(t *testing.T) {
		bad := map[string]string{}
		for k, v := range vars {
			bad[k] = v
		}
		bad["LOG_DIR"] = filepath.Join(dir, "no-such-logs")
		code, out := run(bad)
		if code != 1 || !strings.Contains(out, "FAIL  log dir") || !strings.Contains(out, "fix: install -d") || !strings.Contains(out, "1 check(s) failed.") {
			t.Fatalf("got exit %d, want 1 with the failing check and its fix:\n%s", code, out)
		}
	})
	t.Run("invalid environment", func(t *testing.T) {
		bad := map[string]string{"PORT": "seventy"}
		code, out := run(bad)
		if code != 1 || !strings.Contains(out, "FAIL  environment") || !strings.Contains(out, "PORT") {
			t.Fatalf("got exit %d, want 1 naming PORT:\n%s", code, out)
		}
	})
}

func loadTestEnv(t *testing.T, vars map[string]string) *config.Env {
	t.Helper()
	env, err := config.LoadEnv(mapLookup(vars), nil)
	if err != nil {
		t.Fatalf("LoadEnv: %v", err)
	}
	return env
}

func mapLookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is filtered by the umask
		t.Fatal(err)
	}
}
