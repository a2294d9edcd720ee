package admincli

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

func TestAdminFlagsMayComeBeforeTheCommand(t *testing.T) {
	e := loggedInCLI(t)
	e.must("", "keys", "create", "--name", "first")
	for _, args := range [][]string{
		{"--json", "keys", "list"},
		{"-json", "keys", "list", "--limit", "5"},
		{"--addr", e.addr, "--json", "keys", "list"},
		{"--addr=" + e.addr, "--json=true", "keys", "list"},
	} {
		out := e.must("", args...)
		list := decodeJSON[adminapi.KeyList](t, out)
		if len(list.Keys) != 1 || list.Keys[0].Name != "first" {
			t.Errorf("admin %v: got %+v, want the one key", args, list)
		}
	}
	// Flags of a command with positional arguments, before it.
	id := decodeJSON[adminapi.KeyList](t, e.must("", "--json", "keys", "list")).Keys[0].ID
	if k := decodeJSON[adminapi.KeyResponse](t, e.must("", "--json", "keys", "get", id)); k.Key.ID != id {
		t.Errorf("admin --json keys get: got key %q, want %q", k.Key.ID, id)
	}

	code, out, errOut := e.run("", "--json")
	if code != 2 || out != "" || !strings.Contains(errOut, "need a command") || !strings.Contains(errOut, "Commands:") {
		t.Errorf("flags without a command: got exit %d stdout %q stderr %q, want 2 with the usage", code, out, errOut)
	}
	code, out, _ = e.run("", "--json", "--help")
	if code != 0 || !strings.Contains(out, "Commands:") {
		t.Errorf("flags then --help: got exit %d stdout %q, want 0 and the usage", code, out)
	}
	code, _, errOut = e.run("", "--verbose", "keys", "list")
	if code != 2 || !strings.Contains(errOut, "flag provided but not defined: -verbose") {
		t.Errorf("unknown leading flag: got exit %d stderr %q, want 2 naming it", code, errOut)
	}
}

func TestAdminUsageShowsEachDefaultOnceAndNoZeroDefaults(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runAdminIO(context.Background(), []string{"-h"}, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("got exit %d, want 0", code)
	}
	help := stdout.String()
	for _, line := range strings.Split(help, "\n") {
		if strings.Count(line, "(default ") > 1 {
			t.Errorf("a flag shows two defaults: %q", line)
		}
		if strings.Contains(line, `(default "0")`) || strings.Contains(line, `(default 0)`) {
			t.Errorf("a flag shows a zero default: %q", line)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`--limit keys +keys per page \(default 100\)\n`),
		regexp.MustCompile(`--limit entries +entries per page \(default 50\)\n`),
		regexp.MustCompile(`--username name +admin name \(default "admin"\)\n`),
	} {
		if !want.MatchString(help) {
			t.Errorf("admin -h: no line matching %s", want)
		}
	}
}

func TestAdminKeysCreateWithAnUnknownPolicySaysWherePoliciesComeFrom(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "relay.hcl"), []byte("pool \"claude\" {}\nroute \"messages\" {\n  paths = [\"/v1/messages\"]\n  pool  = \"claude\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newCLIEnv(t, func(o *controlplane.Options) {
		cfg, err := controlplane.NewDistribution(t.Context(), controlplane.DistributionOptions{Dir: dir, Store: o.Store, Recheck: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		o.Config = cfg
	})
	e.login()
	code, _, errOut := e.run("", "keys", "create", "--name", "k", "--policy", "x")
	if code != 1 {
		t.Fatalf("got exit %d, want 1", code)
	}
	for _, want := range []string{`no policy "x"`, "defines no policies", `policy "x" { … }`, dir} {
		if !strings.Contains(errOut, want) {
			t.Errorf("got stderr %q, want it to contain %q", errOut, want)
		}
	}
	if strings.Contains(errOut, "defined: \n") || strings.Contains(errOut, "defined: ;") {
		t.Errorf("got stderr %q, an empty list of defined policies", errOut)
	}
}

func TestAdminLoginFindsTheControlPlaneFromDotEnv(t *testing.T) {
	e := newCLIEnv(t)
	t.Chdir(t.TempDir())
	writeDotEnv(t, config.EnvControlAddr+"="+strings.TrimPrefix(e.addr, "http://")+"\n")
	var stdout, stderr bytes.Buffer
	env := withDotEnv(func(k string) string { return e.vars[k] }, ".env")
	code := runAdminIO(context.Background(), []string{"login", "--password-stdin"}, env, strings.NewReader(cliPassword+"\n"), &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "Logged in to "+e.addr) {
		t.Fatalf("login with the address in .env: got exit %d stdout %q stderr %q, want it logged in to %s", code, stdout.String(), stderr.String(), e.addr)
	}
	// The process environment wins over .env.
	if got := withDotEnv(func(k string) string { return map[string]string{config.EnvControlAddr: "10.0.0.1:1"}[k] }, ".env")(config.EnvControlAddr); got != "10.0.0.1:1" {
		t.Errorf("got %q, want the process environment's value", got)
	}
}

func TestAdminLoginToAnUnreachableControlPlaneSaysWhereTheAddressCameFrom(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	t.Chdir(t.TempDir())
	writeDotEnv(t, config.EnvControlAddr+"="+closed+"\n")
	env := withDotEnv(func(k string) string {
		if k == envAdminFile {
			return filepath.Join(t.TempDir(), "admin.json")
		}
		return ""
	}, ".env")
	var stdout, stderr bytes.Buffer
	code := runAdminIO(context.Background(), []string{"login", "--password-stdin"}, env, strings.NewReader("pw\n"), &stdout, &stderr)
	msg := stderr.String()
	if code != 1 {
		t.Fatalf("got exit %d (stderr %q), want 1", code, msg)
	}
	for _, want := range []string{"http://" + closed, config.EnvControlAddr + "=" + closed, "claude-relay control", "--addr http://HOST:PORT"} {
		if !strings.Contains(msg, want) {
			t.Errorf("got %q, want it to contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "run claude-relay admin login") {
		t.Errorf("got %q: it tells the operator to run the command that just failed", msg)
	}
}

func TestDialableTurnsAListenAddressIntoOneToDial(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:3100": "127.0.0.1:3100",
		"0.0.0.0:3100":   "127.0.0.1:3100",
		":3100":          "127.0.0.1:3100",
		"[::]:3100":      "127.0.0.1:3100",
		"10.0.0.2:3100":  "10.0.0.2:3100",
		"[::1]:3100":     "[::1]:3100",
		"cp.internal:80": "cp.internal:80",
	} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q): got %q, want %q", in, got, want)
		}
	}
}

func writeDotEnv(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(".env", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
