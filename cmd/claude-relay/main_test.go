package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	for _, d := range []string{good, bad} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(good, "relay.hcl"), []byte(`
pool "p" {}
route "messages" {
  paths = ["/v1/messages"]
  pool  = "p"
}
`), 0o644)
	os.WriteFile(filepath.Join(bad, "relay.hcl"), []byte(`
allowlist "office" { cidrs = ["10.0.0.0/33"] }
route "messages" {
  paths = ["/v1/messages"]
  pool  = "nope"
}
`), 0o644)
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderrIn []string
	}{
		{"valid directory", []string{"config", "check", good}, 0, "configuration OK (1 routes", nil},
		{"every error with file:line:col", []string{"config", "check", bad}, 1, "", []string{
			filepath.Join(bad, "relay.hcl") + ":2:", "10.0.0.0/33",
			filepath.Join(bad, "relay.hcl") + ":5:", `"nope"`, "2 error(s); configuration refused",
		}},
		{"the embedded default is valid", []string{"config", "check", "../../config/default.hcl"}, 0, "configuration OK", nil},
		{"missing path", []string{"config", "check"}, 2, "", []string{"usage: claude-relay config check [--prices] PATH"}},
		{"no such path", []string{"config", "check", filepath.Join(dir, "missing")}, 1, "", []string{"missing"}},
		{"unknown command", []string{"frobnicate"}, 2, "", []string{`unknown command "frobnicate"`}},
		{"version", []string{"version"}, 0, "claude-relay ", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit code: got %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout: got %q, want it to contain %q", stdout.String(), tt.stdout)
			}
			for _, w := range tt.stderrIn {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr: got %q, want it to contain %q", stderr.String(), w)
				}
			}
		})
	}
}
