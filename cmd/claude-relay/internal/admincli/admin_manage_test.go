package admincli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

func TestAdminKeysManageEveryOperationAsJSON(t *testing.T) {
	e := loggedInCLI(t)
	created := decodeJSON[adminapi.CreateKeyResponse](t, e.must("", "keys", "create", "--json", "--name", "ci",
		"--tags", "eng,ci", "--owner", "platform", "--description", "build farm", "--expires-after", "7d",
		"--models", "claude-sonnet-*", "--deny-models", "claude-opus-*", "--clients", "claude_code",
		"--allow-ip", "10.0.0.0/8", "--bind-group", "eu", "--rpm", "30", "--cost-day", "2.5"))
	k := created.Key
	if k.Owner != "platform" || !slices.Equal(k.Tags, []string{"ci", "eng"}) || k.ExpiresAfter != "168h0m0s" ||
		k.Limits == nil || *k.Limits.RequestsPerMinute != 30 || *k.Limits.CostPerDayUSD != 2.5 || k.Binding == nil || k.Binding.Group != "eu" ||
		!slices.Equal(k.AllowedCIDRs, []string{"10.0.0.0/8"}) || !slices.Equal(k.AllowedClients, []string{"claude_code"}) {
		t.Errorf("created key: got %+v", k)
	}

	up := decodeJSON[adminapi.KeyResponse](t, e.must("", "keys", "update", k.ID, "--json", "--name", "ci-2", "--tags", "-", "--models", "-", "--policy", "gold"))
	if up.Key.Name != "ci-2" || up.Key.Tags != nil || up.Key.AllowedModels != nil || up.Key.Policy != "gold" {
		t.Errorf("updated key: got %+v, want renamed, tags and models cleared, policy gold", up.Key)
	}
	for _, tc := range []struct{ cmd, status string }{
		{"disable", "disabled"}, {"enable", "active"}, {"delete", "deleted"}, {"restore", "active"},
	} {
		got := decodeJSON[adminapi.KeyResponse](t, e.must("", "keys", tc.cmd, k.ID, "--json"))
		if got.Key.Status != tc.status {
			t.Errorf("keys %s: got status %q, want %q", tc.cmd, got.Key.Status, tc.status)
		}
	}
	regen := decodeJSON[adminapi.CreateKeyResponse](t, e.must("", "keys", "regenerate", k.ID, "--json"))
	if regen.Secret == "" || regen.Secret == created.Secret {
		t.Errorf("regenerate: got secret %q, want a new one", regen.Secret)
	}
	bulk := decodeJSON[adminapi.BulkCreateKeysResponse](t, e.must("", "keys", "bulk-create", "--json", "--count", "3", "--name-prefix", "intern", "--tags", "interns"))
	if len(bulk.Keys) != 3 || bulk.Keys[2].Key.Name != "intern-3" || bulk.Keys[0].Secret == "" {
		t.Fatalf("bulk create: got %+v, want three keys intern-1..3 with secrets", bulk)
	}
	file := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(file, []byte(`{"keys":[{"name":"from-file","tags":["interns"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	e.must("", "keys", "bulk-create", "--file", file)

	page := decodeJSON[adminapi.KeyList](t, e.must("", "keys", "list", "--json", "--tag", "interns", "--limit", "2"))
	if len(page.Keys) != 2 || page.NextCursor == "" {
		t.Fatalf("first page by tag: got %d keys cursor %q, want 2 and a cursor", len(page.Keys), page.NextCursor)
	}
	rest := decodeJSON[adminapi.KeyList](t, e.must("", "keys", "list", "--json", "--tag", "interns", "--limit", "2", "--cursor", page.NextCursor))
	if len(rest.Keys) != 2 || rest.NextCursor != "" {
		t.Errorf("second page: got %d keys cursor %q, want the last 2 and no cursor", len(rest.Keys), rest.NextCursor)
	}
	all := decodeJSON[adminapi.KeyList](t, e.must("", "keys", "list", "--json", "--all", "--limit", "1"))
	if len(all.Keys) != 5 {
		t.Errorf("--all: got %d keys, want 5", len(all.Keys))
	}
	if byName := decodeJSON[adminapi.KeyList](t, e.must("", "keys", "list", "--json", "--name", "CI-")); len(byName.Keys) != 1 {
		t.Errorf("--name: got %d keys, want 1", len(byName.Keys))
	}

	table := e.must("", "keys", "list", "--tag", "interns", "--limit", "2")
	if !strings.Contains(table, "intern-") || !strings.Contains(table, "--cursor "+page.NextCursor) {
		t.Errorf("table output: got\n%s\nwant the keys and how to get the next page", table)
	}
	if detail := e.must("", "keys", "get", k.ID); !strings.Contains(detail, "bound to group") || !strings.Contains(detail, "allowed IPs") {
		t.Errorf("keys get table: got\n%s\nwant the key's rules", detail)
	}
	if code, _, stderr := e.run("", "keys", "update", k.ID); code != 2 || !strings.Contains(stderr, "at least one field") {
		t.Errorf("update without fields: got exit %d stderr %q, want 2 and a usage message", code, stderr)
	}
	if code, _, stderr := e.run("", "keys", "restore", k.ID); code != 1 || !strings.Contains(stderr, "not deleted: conflict") {
		t.Errorf("restore a live key: got exit %d stderr %q, want 1 and the conflict", code, stderr)
	}
}

func TestAdminAccountsManageEveryOperation(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Request-Id", "req_test")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"type":"message","content":[],"usage":{"input_tokens":1,"output_tokens":1}}`)
	}))
	t.Cleanup(up.Close)
	e := loggedInCLI(t)

	oauth := decodeJSON[adminapi.AccountResponse](t, e.must("sk-ant-oat01-access-0123456789abcdef\nsk-ant-ort01-refresh-0123456789abcdef\n",
		"accounts", "add", "--json", "--name", "mine", "--access-token-stdin", "--refresh-token-stdin",
		"--token-expires", "2099-01-01T00:00:00Z", "--group", "me", "--proxy-url", "socks5://u:pw@127.0.0.1:1", "--base-url", up.URL)).Account
	if oauth.Type != "claude_oauth" || oauth.OAuth == nil || !oauth.OAuth.HasRefreshToken || oauth.Proxy != "socks5://***@127.0.0.1:1" || oauth.Group != "me" {
		t.Errorf("oauth account: got %+v", oauth)
	}
	compat := decodeJSON[adminapi.AccountResponse](t, e.must(cliAPIKey+"\n", "accounts", "add", "--json", "--name", "gw",
		"--type", "anthropic_compatible", "--base-url", up.URL, "--api-key-stdin", "--model-map", "claude-sonnet-4-5=sonnet", "--unschedulable")).Account
	if compat.ModelMap["claude-sonnet-4-5"] != "sonnet" || compat.Schedulable {
		t.Errorf("compatible account: got %+v", compat)
	}

	got := decodeJSON[adminapi.AccountResponse](t, e.must("", "accounts", "get", compat.ID, "--json")).Account
	if got.ID != compat.ID {
		t.Errorf("accounts get: got %s, want %s", got.ID, compat.ID)
	}
	upd := decodeJSON[adminapi.AccountResponse](t, e.must("sk-ant-api03-rotated-0123456789abcdef\n", "accounts", "update", compat.ID, "--json",
		"--priority", "5", "--schedulable=true", "--proxy-url", "", "--api-key-stdin")).Account
	if upd.Priority != 5 || !upd.Schedulable || upd.CredentialHint != "sk-ant-…cdef" {
		t.Errorf("accounts update: got %+v", upd)
	}
	res := decodeJSON[adminapi.TestAccountResult](t, e.must("", "accounts", "test", compat.ID, "--json", "--model", "claude-x"))
	if !res.OK || res.RequestID != "req_test" || res.Model != "claude-x" {
		t.Errorf("accounts test: got %+v", res)
	}
	if out := e.must("", "accounts", "test", compat.ID); !strings.Contains(out, "OK") {
		t.Errorf("accounts test table: got\n%s", out)
	}
	// The OAuth account goes through its (unreachable) proxy: the test fails, exit 1, with the reason.
	code, out, _ := e.run("", "accounts", "test", oauth.ID)
	if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "connection refused") || strings.Contains(out, "pw") {
		t.Errorf("test through a dead proxy: got exit %d\n%s\nwant 1, FAILED and the proxy error without its password", code, out)
	}
	un := decodeJSON[adminapi.AccountResponse](t, e.must("", "accounts", "unpark", compat.ID, "--json")).Account
	if un.Status.State != "active" {
		t.Errorf("unpark: got %+v", un.Status)
	}
	if code, _, stderr := e.run("", "accounts", "refresh", compat.ID); code != 1 || !strings.Contains(stderr, "no refresh token: conflict") {
		t.Errorf("refresh an API-key account: got exit %d stderr %q, want 1 and a conflict", code, stderr)
	}
	list := e.must("", "accounts", "list")
	if !strings.Contains(list, "STATUS") || !strings.Contains(list, "active") || strings.Contains(list, "pw@") {
		t.Errorf("accounts list: got\n%s\nwant a status column and no proxy password", list)
	}
}

func TestAdminOAuthStartAndFinishThroughTheCLI(t *testing.T) {
	var verifier string
	token := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]string
		_ = json.NewDecoder(r.Body).Decode(&req)
		verifier = req["code_verifier"]
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"sk-ant-oat01-from-code-0123456789","refresh_token":"sk-ant-ort01-r-0123456789","expires_in":3600}`)
	}))
	t.Cleanup(token.Close)
	e := newCLIEnv(t, func(o *controlplane.Options) {
		o.OAuth = controlplane.OAuthConfig{TokenURL: token.URL + "/v1/oauth/token"}
	})
	e.login()
	start := decodeJSON[adminapi.OAuthStartResponse](t, e.must("", "accounts", "oauth", "start", "--json", "--name", "sub"))
	u, err := url.Parse(start.AuthorizeURL)
	if err != nil || u.Query().Get("code_challenge_method") != "S256" || u.Query().Get("client_id") != controlplane.DefaultOAuthClientID {
		t.Fatalf("authorize URL %q: want S256 and the default client id", start.AuthorizeURL)
	}
	text := e.must("", "accounts", "oauth", "start", "--name", "again")
	if !strings.Contains(text, "https://claude.ai/oauth/authorize?") || !strings.Contains(text, "Anthropic's terms") {
		t.Errorf("oauth start table: got\n%s\nwant the URL and the terms note", text)
	}
	a := decodeJSON[adminapi.AccountResponse](t, e.must("thecode#"+start.State+"\n", "accounts", "oauth", "finish", "--json", "--code", "-")).Account
	if a.Type != "claude_oauth" || a.Name != "sub" || verifier == "" {
		t.Errorf("oauth finish: got %+v verifier sent %q", a, verifier)
	}
	if code, _, stderr := e.run("", "accounts", "oauth", "finish", "--code", "x#"+start.State); code != 1 || !strings.Contains(stderr, "state") {
		t.Errorf("reused state: got exit %d stderr %q, want 1 naming state", code, stderr)
	}
}

func TestAdminAuditAndPasswordChange(t *testing.T) {
	e := loggedInCLI(t)
	e.must("", "keys", "create", "--name", "audited")
	audit := decodeJSON[adminapi.AuditList](t, e.must("", "audit", "--json", "--limit", "5"))
	if len(audit.Entries) == 0 || audit.Entries[0].Action != "key.create" || audit.Entries[0].Who != cliUser {
		t.Errorf("audit: got %+v, want key.create by %s first", audit.Entries, cliUser)
	}
	if out := e.must("", "audit"); !strings.Contains(out, "key.create") || !strings.Contains(out, "name=audited") {
		t.Errorf("audit table: got\n%s", out)
	}
	const next = "the new admin passphrase"
	e.must(cliPassword+"\n"+next+"\n", "password")
	// The saved session was updated with the fresh token and keeps working.
	e.must("", "whoami")
	if code, _, _ := e.run(cliPassword+"\n", "login", "--addr", e.addr, "--password-stdin"); code == 0 {
		t.Error("login with the old password succeeded")
	}
	e.must(next+"\n", "login", "--addr", e.addr, "--password-stdin")
	if code, _, stderr := e.run("wrong\nwhatever-long-enough\n", "password"); code != 1 || !strings.Contains(stderr, "current_password") {
		t.Errorf("wrong current password: got exit %d stderr %q, want 1 naming current_password", code, stderr)
	}
}

func TestAdminAccountsShowSubscriptionWindows(t *testing.T) {
	e := loggedInCLI(t)
	st := e.st
	a := decodeJSON[adminapi.AccountResponse](t, e.must(cliAPIKey+"\n", "accounts", "add", "--json", "--name", "max", "--api-key-stdin")).Account
	reset := time.Date(2031, 5, 1, 15, 10, 0, 0, time.UTC)
	w := store.Windows{Status: "allowed_warning", Claim: "five_hour", ObservedAt: time.Now(),
		FiveHour: &store.Window{Utilization: 0.93, Reset: reset, Status: "allowed_warning"},
		SevenDay: &store.Window{Utilization: 0.4, Reset: reset.Add(96 * time.Hour)}}
	if err := st.Client().HSet(context.Background(), st.Schema().AccountWindows(), a.ID, w.Encode()).Err(); err != nil {
		t.Fatal(err)
	}
	if list := e.must("", "accounts", "list"); !strings.Contains(list, "5H WINDOW") || !strings.Contains(list, "93% to 2031-05-01 15:10Z") || !strings.Contains(list, "40% to 2031-05-05 15:10Z") {
		t.Errorf("accounts list: got\n%s\nwant both windows' use and reset", list)
	}
	if got := e.must("", "accounts", "get", a.ID); !strings.Contains(got, "93% used (allowed_warning), resets 2031-05-01 15:10Z") || !strings.Contains(got, "binding: five_hour") {
		t.Errorf("accounts get: got\n%s\nwant the 5-hour window with its status and reset, and the binding window", got)
	}
	got := decodeJSON[adminapi.AccountResponse](t, e.must("", "accounts", "get", a.ID, "--json")).Account
	if got.Utilization5h == nil || *got.Utilization5h != 0.93 || got.Utilization7d == nil || *got.Utilization7d != 0.4 {
		t.Errorf("accounts get --json: got %+v", got.SubscriptionWindows)
	}
}

func TestAdminAccountsCapsAreSetMergedShownAndRemoved(t *testing.T) {
	e := loggedInCLI(t)
	a := decodeJSON[adminapi.AccountResponse](t, e.must(cliAPIKey+"\n", "accounts", "add", "--json", "--name", "capped", "--api-key-stdin",
		"--max-concurrency", "2", "--tokens-day", "1000")).Account
	if a.Caps == nil || *a.Caps != (adminapi.AccountCaps{MaxConcurrency: 2, TokensPerDay: 1000}) {
		t.Fatalf("added caps: got %+v", a.Caps)
	}
	u := decodeJSON[adminapi.AccountResponse](t, e.must("", "accounts", "update", a.ID, "--json", "--cost-5h", "5")).Account
	if u.Caps == nil || *u.Caps != (adminapi.AccountCaps{MaxConcurrency: 2, TokensPerDay: 1000, CostPer5hUSD: 5}) {
		t.Errorf("updated caps: got %+v, want the new one merged with the others", u.Caps)
	}
	if got := e.must("", "accounts", "get", a.ID); !strings.Contains(got, "max 2 in flight, 1000 tokens/day, $5.00/5h") {
		t.Errorf("accounts get: got\n%s\nwant the caps", got)
	}
	if code, _, stderr := e.run("", "accounts", "update", a.ID, "--max-concurrency", "-1"); code != 1 || !strings.Contains(stderr, "max_concurrency must be 0 (unbounded) or positive") {
		t.Errorf("negative cap: got exit %d stderr %q, want 1 and the field's problem", code, stderr)
	}
	none := decodeJSON[adminapi.AccountResponse](t, e.must("", "accounts", "update", a.ID, "--json", "--no-caps")).Account
	if none.Caps != nil {
		t.Errorf("after --no-caps: got %+v, want none", none.Caps)
	}
}

func TestAdminSessionsClearAndAccountsUnbind(t *testing.T) {
	e := loggedInCLI(t)
	st := e.st
	ctx := context.Background()
	rdb, keys := st.Client(), st.Schema()
	rdb.Set(ctx, keys.StickySession("claude", store.StickySessionHash("4f1c-session")), "acct-a", time.Hour)
	rdb.Set(ctx, keys.StickySession("backup", store.StickySessionHash("4f1c-session")), "acct-b", time.Hour)
	rdb.Set(ctx, keys.StickySession("claude", store.StickySessionHash("other-1")), "acct-a", time.Hour)
	rdb.Set(ctx, keys.StickySession("claude", store.StickySessionHash("other-2")), "acct-b", time.Hour)

	if out := e.must("", "sessions", "clear", "4f1c-session"); !strings.Contains(out, "Cleared 2 sticky binding(s) of conversation 4f1c-session") {
		t.Errorf("sessions clear: got %q", out)
	}
	if out := e.must("", "sessions", "clear", "4f1c-session"); !strings.Contains(out, "No sticky binding of conversation 4f1c-session was found") {
		t.Errorf("sessions clear again: got %q", out)
	}
	got := decodeJSON[adminapi.BindingsCleared](t, e.must("", "accounts", "unbind", "acct-a", "--json"))
	if got.Cleared != 1 {
		t.Errorf("accounts unbind: got %+v, want 1 cleared", got)
	}
	if n, _ := rdb.Exists(ctx, keys.StickySession("claude", store.StickySessionHash("other-2"))).Result(); n != 1 {
		t.Error("accounts unbind deleted another account's binding")
	}
}
