package admincli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

const (
	cliUser     = "admin"
	cliPassword = "cli-test-password"
	cliAPIKey   = "sk-ant-api03-CLITEST-secret-0123456789"
)

// cliEnv is a control plane on a real Redis plus an environment for Run.
type cliEnv struct {
	t           *testing.T
	addr        string
	sessionFile string
	vars        map[string]string
	// st is the control plane's store, for what a test sets up behind the admin API.
	st *store.Store
}

func newCLIEnv(t *testing.T, tweak ...func(*controlplane.Options)) *cliEnv {
	t.Helper()
	ctx := context.Background()
	rdb, prefix := testredis.New(t)
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix})
	// A low-cost hash keeps the test fast; the server compares at the hash's own cost.
	hash, err := bcrypt.GenerateFromPassword([]byte(cliPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetAdminPassword(ctx, cliUser, hash); err != nil {
		t.Fatalf("SetAdminPassword: %v", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	opts := controlplane.Options{Store: st, SigningKey: key}
	for _, f := range tweak {
		f(&opts)
	}
	cp, err := controlplane.New(opts)
	if err != nil {
		t.Fatalf("controlplane.New: %v", err)
	}
	if err := cp.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	srv := httptest.NewServer(cp.Handler())
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), "cfg", "admin.json")
	return &cliEnv{t: t, addr: srv.URL, sessionFile: file, vars: map[string]string{envAdminFile: file}, st: st}
}

// run runs "claude-relay admin ARGS" with stdin and returns the exit code, stdout and stderr.
func (e *cliEnv) run(stdin string, args ...string) (int, string, string) {
	e.t.Helper()
	var stdout, stderr bytes.Buffer
	code := runAdminIO(context.Background(), args, func(k string) string { return e.vars[k] }, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// must runs a command that must succeed and returns its stdout.
func (e *cliEnv) must(stdin string, args ...string) string {
	e.t.Helper()
	code, out, errOut := e.run(stdin, args...)
	if code != 0 {
		e.t.Fatalf("admin %v: got exit %d (stderr %q), want 0", args, code, errOut)
	}
	return out
}

// recordUsage writes recs to the store as one recorder batch would.
func (e *cliEnv) recordUsage(recs ...store.UsageRecord) {
	e.t.Helper()
	if err := e.st.RecordUsageBatch(context.Background(), store.BatchID{Writer: "cli", Seq: 1}, recs...); err != nil {
		e.t.Fatal(err)
	}
}

// loggedInCLI is a CLI environment already logged in to its control plane.
func loggedInCLI(t *testing.T) *cliEnv {
	t.Helper()
	e := newCLIEnv(t)
	e.login()
	return e
}

func (e *cliEnv) login() {
	e.t.Helper()
	e.must(cliPassword+"\n", "login", "--addr", e.addr, "--password-stdin")
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, s)
	}
	return v
}

func TestAdminLoginSavesSessionWithMode0600(t *testing.T) {
	e := newCLIEnv(t)
	out := e.must(cliPassword+"\n", "login", "--addr", e.addr, "--username", cliUser, "--password-stdin")
	if !strings.Contains(out, "Logged in to "+e.addr) {
		t.Errorf("got stdout %q, want a confirmation naming the address", out)
	}
	fi, err := os.Stat(e.sessionFile)
	if err != nil {
		t.Fatalf("session file: %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("got session file mode %v, want 0600", got)
	}
	sess, err := adminclient.LoadSession(e.sessionFile)
	if err != nil || sess.Addr != e.addr || sess.Token == "" {
		t.Errorf("got session %+v (%v), want addr %s and a token", sess, err, e.addr)
	}
	if strings.Contains(out, sess.Token) {
		t.Errorf("login printed the session token")
	}
}

func TestAdminLoginWithWrongPasswordFails(t *testing.T) {
	e := newCLIEnv(t)
	code, _, errOut := e.run("wrong\n", "login", "--addr", e.addr, "--password-stdin")
	if code != 1 || !strings.Contains(errOut, "login failed") {
		t.Errorf("got exit %d stderr %q, want 1 and \"login failed\"", code, errOut)
	}
	if _, err := os.Stat(e.sessionFile); !os.IsNotExist(err) {
		t.Errorf("got session file (%v), want none after a failed login", err)
	}
}

func TestAdminKeysCreateListRevokeFlow(t *testing.T) {
	e := loggedInCLI(t)

	out := e.must("", "keys", "create", "--name", "ci runner", "--policy", "team")
	if !strings.Contains(out, "shown only this once") {
		t.Errorf("got stdout %q, want a warning that the secret is shown once", out)
	}
	var secret string
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "cr_") && !strings.Contains(f, "…") {
			secret = f
		}
	}
	if secret == "" {
		t.Fatalf("got stdout %q, want the cr_ secret", out)
	}

	created := decodeJSON[adminapi.CreateKeyResponse](t, e.must("", "keys", "create", "--name", "second", "--json"))
	if !strings.HasPrefix(created.Secret, "cr_") || created.Key.Status != adminapi.KeyActive {
		t.Errorf("got %+v, want an active key with a cr_ secret", created)
	}

	out = e.must("", "keys", "list")
	for _, want := range []string{"ID", "STATUS", "ci runner", "second", created.Key.ID, "active", "team"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys list: got %q, want it to contain %q", out, want)
		}
	}
	if strings.Contains(out, secret) || strings.Contains(out, created.Secret) {
		t.Errorf("keys list printed a secret: %q", out)
	}

	// Flags may follow the positional ID.
	out = e.must("", "keys", "revoke", created.Key.ID)
	if !strings.Contains(out, "Revoked key "+created.Key.ID) {
		t.Errorf("keys revoke: got %q, want a confirmation", out)
	}
	got := decodeJSON[adminapi.KeyResponse](t, e.must("", "keys", "get", created.Key.ID, "--json"))
	if got.Key.Status != adminapi.KeyRevoked {
		t.Errorf("keys get after revoke: got status %q, want %q", got.Key.Status, adminapi.KeyRevoked)
	}
	list := decodeJSON[adminapi.KeyList](t, e.must("", "keys", "list", "--json"))
	if len(list.Keys) != 2 {
		t.Fatalf("keys list --json: got %d keys, want 2", len(list.Keys))
	}
	statuses := map[string]string{}
	for _, k := range list.Keys {
		statuses[k.Name] = k.Status
	}
	if statuses["ci runner"] != adminapi.KeyActive || statuses["second"] != adminapi.KeyRevoked {
		t.Errorf("keys list --json: got statuses %v, want ci runner active and second revoked", statuses)
	}

	out = e.must("", "keys", "usage", created.Key.ID)
	for _, want := range []string{"REQUESTS", "COST USD", "all time"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys usage: got %q, want it to contain %q", out, want)
		}
	}

	code, _, errOut := e.run("", "keys", "get", "0000000000000000")
	if code != 1 || !strings.Contains(errOut, "not found") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("keys get unknown: got exit %d stderr %q, want 1 and one line saying not found", code, errOut)
	}
}

func TestAdminJSONOutputParses(t *testing.T) {
	e := loggedInCLI(t)
	key := decodeJSON[adminapi.CreateKeyResponse](t, e.must("", "keys", "create", "--name", "k", "--json"))
	acct := decodeJSON[adminapi.AccountResponse](t, e.must(cliAPIKey+"\n", "accounts", "add", "--name", "a", "--api-key-stdin", "--json"))

	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"whoami", []string{"whoami", "--json"}, func(t *testing.T, out string) {
			if w := decodeJSON[adminapi.WhoAmI](t, out); w.Username != cliUser {
				t.Errorf("got username %q, want %q", w.Username, cliUser)
			}
		}},
		{"keys get", []string{"keys", "get", "--json", key.Key.ID}, func(t *testing.T, out string) {
			if k := decodeJSON[adminapi.KeyResponse](t, out); k.Key.ID != key.Key.ID {
				t.Errorf("got id %q, want %q", k.Key.ID, key.Key.ID)
			}
		}},
		{"keys usage", []string{"keys", "usage", key.Key.ID, "--day", "2025-01-31", "--json"}, func(t *testing.T, out string) {
			if u := decodeJSON[adminapi.KeyUsage](t, out); u.Day != "2025-01-31" || u.Models == nil {
				t.Errorf("got %+v, want day 2025-01-31 and a models object", u)
			}
		}},
		{"accounts list", []string{"accounts", "list", "--json"}, func(t *testing.T, out string) {
			l := decodeJSON[adminapi.AccountList](t, out)
			if len(l.Accounts) != 1 || l.Accounts[0].ID != acct.Account.ID {
				t.Errorf("got %+v, want the one account %s", l.Accounts, acct.Account.ID)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, e.must("", tt.args...))
		})
	}
}

func TestAdminAccountsAddListDeleteKeepsKeyOffScreen(t *testing.T) {
	e := loggedInCLI(t)
	out := e.must(cliAPIKey+"\n", "accounts", "add", "--name", "console", "--api-key-stdin", "--priority", "10", "--base-url", "https://llm.example.com")
	if strings.Contains(out, cliAPIKey) {
		t.Errorf("accounts add printed the API key: %q", out)
	}
	acct := decodeJSON[adminapi.AccountList](t, e.must("", "accounts", "list", "--json")).Accounts
	if len(acct) != 1 || acct[0].Priority != 10 || acct[0].BaseURL != "https://llm.example.com" {
		t.Fatalf("got accounts %+v, want one with priority 10 and the given base URL", acct)
	}
	out = e.must("", "accounts", "list")
	if !strings.Contains(out, "console") || strings.Contains(out, cliAPIKey) {
		t.Errorf("accounts list: got %q, want the account without its key", out)
	}
	e.must("", "accounts", "delete", acct[0].ID)
	if l := decodeJSON[adminapi.AccountList](t, e.must("", "accounts", "list", "--json")); len(l.Accounts) != 0 {
		t.Errorf("got %d accounts after delete, want 0", len(l.Accounts))
	}
}

func TestAdminWithoutSessionSaysLogIn(t *testing.T) {
	e := newCLIEnv(t)
	for _, args := range [][]string{{"keys", "list"}, {"accounts", "list"}, {"whoami"}, {"logout"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := e.run("", args...)
			if code != 1 || !strings.Contains(errOut, "not logged in: run claude-relay admin login") || out != "" {
				t.Errorf("got exit %d stdout %q stderr %q, want 1 and the login hint", code, out, errOut)
			}
			if strings.Count(errOut, "\n") != 1 {
				t.Errorf("got stderr %q, want one line", errOut)
			}
		})
	}
}

func TestAdminSavedTokenIsNotSentToAnotherAddress(t *testing.T) {
	e := loggedInCLI(t)
	code, _, errOut := e.run("", "keys", "list", "--addr", "http://127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, "not logged in to http://127.0.0.1:1") {
		t.Errorf("got exit %d stderr %q, want 1 and a login hint for that address", code, errOut)
	}
}

func TestAdminTokenResolutionFlagBeforeEnvBeforeFile(t *testing.T) {
	e := loggedInCLI(t)
	sess, err := adminclient.LoadSession(e.sessionFile)
	if err != nil {
		t.Fatal(err)
	}
	e.vars[envAdminToken] = "bogus-from-env"
	code, _, errOut := e.run("", "whoami")
	if code != 1 || !strings.Contains(errOut, "run claude-relay admin login") {
		t.Errorf("env token over file: got exit %d stderr %q, want 1 (env token used and refused)", code, errOut)
	}
	e.must("", "whoami", "--token", sess.Token)

	e.vars[envAdminAddr] = "http://127.0.0.1:1"
	code, _, errOut = e.run("", "whoami", "--token", sess.Token)
	if code != 1 || !strings.Contains(errOut, "cannot reach the control plane at http://127.0.0.1:1") {
		t.Errorf("env address: got exit %d stderr %q, want 1 naming the unreachable address", code, errOut)
	}
	e.must("", "whoami", "--token", sess.Token, "--addr", e.addr)
}

func TestAdminLogoutRevokesTokenAndForgetsSession(t *testing.T) {
	e := loggedInCLI(t)
	sess, err := adminclient.LoadSession(e.sessionFile)
	if err != nil {
		t.Fatal(err)
	}
	e.must("", "logout")
	if _, err := os.Stat(e.sessionFile); !os.IsNotExist(err) {
		t.Errorf("got session file (%v), want it removed", err)
	}
	code, _, errOut := e.run("", "whoami", "--addr", e.addr, "--token", sess.Token)
	if code != 1 || !strings.Contains(errOut, "session expired, logged out or invalid") {
		t.Errorf("old token after logout: got exit %d stderr %q, want 1 and a login hint", code, errOut)
	}
}

func TestAdminUsageErrorsExit2WithUsage(t *testing.T) {
	e := loggedInCLI(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "Commands:"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown keys command", []string{"keys", "rotate"}, `unknown command "rotate"`},
		{"group without command", []string{"keys"}, "keys create"},
		{"missing ID", []string{"keys", "get"}, "keys get ID"},
		{"extra argument", []string{"keys", "list", "x"}, `unexpected argument "x"`},
		{"unknown flag", []string{"keys", "list", "--verbose"}, "flag provided but not defined"},
		{"create without name", []string{"keys", "create"}, "--name is required"},
		{"bad day", []string{"keys", "usage", "abc", "--day", "yesterday"}, "--day"},
		{"account without key", []string{"accounts", "add", "--name", "a"}, "--api-key or --api-key-stdin is required"},
		{"account with both keys", []string{"accounts", "add", "--name", "a", "--api-key", "k", "--api-key-stdin"}, "not both"},
		{"priority not a number", []string{"accounts", "add", "--name", "a", "--api-key", "k", "--priority", "high"}, "must be an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := e.run("", tt.args...)
			if code != 2 {
				t.Errorf("got exit %d, want 2", code)
			}
			if !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "Usage") {
				t.Errorf("got stderr %q, want %q and the usage", errOut, tt.want)
			}
			if out != "" {
				t.Errorf("got stdout %q, want nothing", out)
			}
		})
	}
}

func TestAdminServerValidationErrorExits1NamingField(t *testing.T) {
	e := loggedInCLI(t)
	code, _, errOut := e.run("", "keys", "create", "--name", "k", "--expires", "next week")
	if code != 1 || !strings.Contains(errOut, "expires_at") {
		t.Errorf("got exit %d stderr %q, want 1 naming expires_at", code, errOut)
	}
}

func TestAdminHelpListsEverySubcommandAndFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := runAdminIO(context.Background(), []string{"-h"}, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("got exit %d, want 0", code)
	}
	help := stdout.String()
	for _, want := range []string{
		"login", "--username", "--password-stdin", "logout", "whoami",
		"keys create", "--name", "--policy", "--expires", "keys list", "keys get ID", "keys revoke ID", "keys usage ID", "--day",
		"accounts add", "--api-key", "--api-key-stdin", "--base-url", "--priority", "accounts list", "accounts delete ID",
		"--addr", "--token", "--json", envAdminAddr, envAdminToken, envAdminFile,
	} {
		if !strings.Contains(help, want) {
			t.Errorf("admin -h does not mention %q", want)
		}
	}

	stdout.Reset()
	code = runAdminIO(context.Background(), []string{"keys", "create", "-h"}, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "--expires") || strings.Contains(stdout.String(), "accounts add") {
		t.Errorf("keys create -h: got exit %d stdout %q, want 0 and only that command's usage", code, stdout.String())
	}
}

func TestAdminAccountsAddRefusesARelayKeyForAnthropicsAPI(t *testing.T) {
	e := loggedInCLI(t)
	relayKey := "cr_" + strings.Repeat("0f", 32)
	code, out, errOut := e.run(relayKey+"\n", "accounts", "add", "--name", "pasted", "--api-key-stdin")
	if code == 0 {
		t.Fatalf("accounts add with a relay key for api.anthropic.com: got exit 0 (%q), want a refusal", out)
	}
	for _, want := range []string{"api_key", "claude-relay key (cr_…)", "api.anthropic.com can never accept it"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q does not say %q", errOut, want)
		}
	}
	if strings.Contains(out+errOut, relayKey) {
		t.Error("the CLI printed the key")
	}
	// The same key for another relay's base URL is accepted.
	e.must(relayKey+"\n", "accounts", "add", "--name", "upstream relay", "--type", "anthropic_compatible", "--base-url", "https://relay.example.com", "--api-key-stdin")
}
