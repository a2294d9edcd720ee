package e2e

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/migrate/crs/crstest"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/store"
)

const crsEncryptionKey = "CRS-ENCRYPTION-KEY-32-CHARACTERS"

var plugins struct {
	once sync.Once
	dir  string
	err  error
}

// pluginDir builds the two provider plugins once for this test binary.
func pluginDir(t *testing.T) string {
	t.Helper()
	plugins.once.Do(func() {
		plugins.dir = filepath.Join(filepath.Dir(relayBin), "plugins")
		for _, p := range []string{"auth-apikey", "crypto-aesgcm"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(plugins.dir, p), "github.com/claude-relay/claude-relay/plugins/"+p)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				plugins.err = errors.New(string(out))
				return
			}
		}
	})
	if plugins.err != nil {
		t.Fatalf("build plugins: %v", plugins.err)
	}
	return plugins.dir
}

// dumpAll returns every key of a Redis in a canonical form.
func dumpAll(t *testing.T, rdb redis.UniversalClient) map[string]string {
	t.Helper()
	return testredis.Dump(t, rdb, "")
}

// crsKeys are the CRS API keys of the move-in test, by name.
type crsKeys map[string]struct{ id, secret string }

func TestCRSInstallationMovesInAndItsKeysKeepWorkingThroughARealSidecar(t *testing.T) {
	ctx := context.Background()
	in := newInstall(t) // the claude-relay side: its own Redis, a fake upstream
	crsSrv := testredis.StartServer(t)
	crsRDB := redis.NewClient(&redis.Options{Addr: crsSrv.Addr()})
	t.Cleanup(func() { crsRDB.Close() })
	// The fake upstream accepts the CRS accounts' credentials too.
	const keyA, keyB, oauthToken = "sk-ant-api03-crs-console-A-0123456789", "sk-ant-api03-crs-console-B-0123456789", "sk-ant-oat01-crs-oauth-0123456789"
	up := fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{keyA, keyB, oauthToken}})
	// Only the imported accounts serve: the install's own account goes.
	existing, _ := in.st.ListAccounts(ctx)
	for _, a := range existing {
		if err := in.st.DeleteAccount(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
	}
	w := &crstest.Writer{RDB: crsRDB, EncryptionKey: crsEncryptionKey}
	must := func(id string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// Accounts: console A given as a full /v1/messages URL, console B as a base URL, an OAuth
	// account behind a SOCKS proxy taken out of rotation, and other platforms.
	acctA := must(w.AddConsoleAccount(ctx, "Console A", up.URL()+"/v1/messages", keyA, nil, map[string]string{"priority": "10"}))
	acctB := must(w.AddConsoleAccount(ctx, "Console B", up.URL()+"/", keyB, nil, map[string]string{"priority": "20"}))
	oauth := must(w.AddOAuthAccount(ctx, "Max plan", oauthToken, "sk-ant-ort01-refresh", time.Now().Add(6*time.Hour),
		&crstest.Proxy{Type: "socks5", Host: "127.0.0.1", Port: 1080, Username: "u", Password: "p@ss"}, map[string]string{"schedulable": "false"}))
	alpha := must(w.AddGroup(ctx, "Team Alpha", "claude", acctA, oauth))
	must(w.AddGroup(ctx, "Codex", "openai", "x"))
	must(w.AddOther(ctx, "gemini_account:", "Gemini Pro"))
	must(w.AddOther(ctx, "bedrock_account:", "Bedrock"))
	past := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339Nano)
	keys := crsKeys{}
	for name, fields := range map[string]map[string]string{
		"active":     {"tags": `["team a","ops"]`},
		"bound-b":    {"claudeConsoleAccountId": acctB},
		"alpha":      {"claudeAccountId": "group:" + alpha},
		"disabled":   {"isActive": "false"},
		"expired":    {"expiresAt": past},
		"deleted":    {"isDeleted": "true", "deletedAt": past, "isActive": "false"},
		"rpm":        {"rateLimitWindow": "1", "rateLimitRequests": "1"},
		"spent":      {"totalCostLimit": "5"},
		"no-opus":    {"enableModelRestriction": "true", "restrictedModels": `["claude-opus-4-1"]`},
		"cc-only":    {"enableClientRestriction": "true", "allowedClients": `["claude_code"]`},
		"activation": {"expirationMode": "activation", "isActivated": "false", "activationDays": "30", "activatedAt": ""},
	} {
		fields["name"] = name
		id, secret, err := w.AddKey(ctx, fields)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = struct{ id, secret string }{id, secret}
	}
	// CRS's delete removes the hash from its map.
	crsRDB.HDel(ctx, "apikey:hash_map", w.Hash(keys["deleted"].secret))
	// History: "active" used 3 and 40 days ago (the latter only in CRS's all-time counters,
	// its daily hash has expired); "spent" used its whole $5 budget.
	u := crstest.Usage{Input: 1000, Output: 200, CacheCreate: 300, CacheRead: 400, Ephemeral1h: 100, RealCost: 0.25, RatedCost: 0.25}
	for _, at := range []time.Time{time.Now().Add(-72 * time.Hour), time.Now().Add(-72 * time.Hour), time.Now().Add(-40 * 24 * time.Hour)} {
		if err := w.Record(ctx, keys["active"].id, acctA, "claude-sonnet-4-5", at, u); err != nil {
			t.Fatal(err)
		}
	}
	old := "usage:" + keys["active"].id + ":model:daily:claude-sonnet-4-5:" + w.LocalDate(time.Now().Add(-40*24*time.Hour))
	crsRDB.Del(ctx, old, "account_usage:daily:"+acctA+":"+w.LocalDate(time.Now().Add(-40*24*time.Hour)))
	if err := w.Record(ctx, keys["spent"].id, acctB, "claude-opus-4-1", time.Now().Add(-time.Hour), crstest.Usage{Input: 10, RealCost: 5, RatedCost: 5}); err != nil {
		t.Fatal(err)
	}
	crsBefore := dumpAll(t, crsRDB)

	keyFile := filepath.Join(t.TempDir(), "crs.key")
	if err := os.WriteFile(keyFile, []byte(crsEncryptionKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plugDir := pluginDir(t)
	importCRS := func(extra ...string) string {
		t.Helper()
		args := append([]string{"import", "crs", "--from", "redis://" + crsSrv.Addr() + "/0", "--crs-encryption-key-file", keyFile, "--plugin-dir", plugDir}, extra...)
		cmd := exec.Command(relayBin, args...)
		cmd.Dir = t.TempDir()
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "CRS_SECURITY__ENCRYPTION_KEY=" + testEncryptionKey}, in.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("claude-relay %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	relayBefore := dumpAll(t, in.rdb)
	dry := importCRS("--dry-run")
	for _, want := range []string{"Gemini accounts", "AWS Bedrock accounts", "Not imported:", "openai account group", "dry run: nothing was written", "verified"} {
		if !strings.Contains(dry, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, dry)
		}
	}
	if !maps.Equal(relayBefore, dumpAll(t, in.rdb)) {
		t.Errorf("the dry run wrote to claude-relay's store")
	}
	out := importCRS()
	for _, want := range []string{"progress: ", "(100%)", "keys: 11 created", "accounts: 3 added", "restart the sidecars"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	if !maps.Equal(crsBefore, dumpAll(t, crsRDB)) {
		t.Errorf("the import changed the CRS Redis")
	}
	st := in.st
	imported, err := st.ImportedKeyIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := func(name string) string { return imported["crs:"+keys[name].id] }

	// The OAuth account came with its secrets, re-sealed.
	accts, _ := st.ImportedAccountIDs(ctx)
	sec, err := st.AccountSecrets(ctx, accts["crs:claude:"+oauth])
	if err != nil {
		t.Fatal(err)
	}
	if sec.Credential != oauthToken || sec.RefreshToken != "sk-ant-ort01-refresh" || sec.ProxyURL != "socks5h://u:p%40ss@127.0.0.1:1080" {
		t.Errorf("OAuth account secrets: got %+v", sec)
	}
	if a, _ := st.GetAccount(ctx, accts["crs:claude-console:"+acctA]); a.BaseURL != up.URL() || a.Group != "Team-Alpha" || a.Priority != 10 {
		t.Errorf("console A: got base %q group %q priority %d, want %q, Team-Alpha, 10", a.BaseURL, a.Group, a.Priority, up.URL())
	}
	// Usage totals match CRS's all-time counters; the days CRS still had are on UTC days.
	total, _ := st.KeyTotals(ctx, id("active"))
	want := store.Usage{Requests: 3, InputTokens: 3000, OutputTokens: 600, CacheWrite5m: 600, CacheWrite1h: 300, CacheRead: 1200, CostMicroUSD: 750_000}
	if total != want {
		t.Errorf("active key all-time usage: got %+v, want %+v", total, want)
	}
	day, _ := st.KeyUsage(ctx, id("active"), time.Now().Add(-72*time.Hour))
	if got := day["claude-sonnet-4-5"]; got.Requests != 2 || got.CostMicroUSD != 500_000 {
		t.Errorf("active key usage 3 days ago: got %+v, want 2 requests, $0.50", got)
	}

	// A real sidecar with the real plugin processes.
	sc := in.startSidecar("sidecar", "-plugin-dir", plugDir)
	client := func(name string, opts ...option.RequestOption) anthropic.Client {
		return anthropic.NewClient(append([]option.RequestOption{option.WithBaseURL(sc.url()), option.WithAPIKey(keys[name].secret), option.WithMaxRetries(0)}, opts...)...)
	}
	send := func(name, model string, opts ...option.RequestOption) (*http.Header, error) {
		up.Reset()
		c := client(name, opts...)
		_, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: 16,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
		if err != nil {
			return nil, err
		}
		reqs := up.Requests()
		if len(reqs) == 0 {
			return nil, errors.New("the upstream saw no request")
		}
		return &reqs[len(reqs)-1].Header, nil
	}
	status := func(err error) int {
		var ae *anthropic.Error
		if errors.As(err, &ae) {
			return ae.StatusCode
		}
		return 0
	}
	for _, name := range []string{"active", "bound-b", "alpha", "rpm", "no-opus", "activation"} {
		if _, err := send(name, "claude-sonnet-4-5"); err != nil {
			t.Errorf("%s: %v\n%s", name, err, sc.out.String())
		}
	}
	upstreamKey := func(name string) string {
		h, err := send(name, "claude-sonnet-4-5")
		if err != nil {
			return err.Error()
		}
		return h.Get("X-Api-Key")
	}
	if got := upstreamKey("bound-b"); got != keyB {
		t.Errorf("bound-b reached the upstream with %q, want console B's key", got)
	}
	if got := upstreamKey("alpha"); got != keyA {
		t.Errorf("alpha reached the upstream with %q, want console A's key (the group's schedulable member)", got)
	}
	for name, want := range map[string]int{"disabled": 401, "expired": 401, "deleted": 401} {
		if _, err := send(name, "claude-sonnet-4-5"); status(err) != want {
			t.Errorf("%s: got %v, want %d", name, err, want)
		}
	}
	if _, err := send("rpm", "claude-sonnet-4-5"); status(err) != 429 {
		t.Errorf("rpm second request in the minute: got %v, want 429", err)
	}
	if _, err := send("spent", "claude-sonnet-4-5"); err == nil || status(err) != 429 || !strings.Contains(err.Error(), "cost_total_usd") {
		t.Errorf("spent: got %v, want 429 cost_total_usd (the $5 spent in CRS)", err)
	}
	if _, err := send("no-opus", "claude-opus-4-1"); status(err) != 403 {
		t.Errorf("no-opus with opus: got %v, want 403", err)
	}
	if _, err := send("cc-only", "claude-sonnet-4-5"); status(err) != 403 {
		t.Errorf("cc-only from the SDK: got %v, want 403", err)
	}
	if _, err := send("cc-only", "claude-sonnet-4-5", option.WithHeader("User-Agent", "claude-cli/2.0.1 (external, cli)")); err != nil {
		t.Errorf("cc-only from Claude Code: %v", err)
	}
	// First use moved the used keys to the HMAC index; the unused ones keep their CRS hash.
	for name, legacy := range map[string]bool{"active": false, "alpha": false, "disabled": true, "expired": true} {
		k, err := st.GetKey(ctx, id(name))
		if err != nil || k.Legacy != legacy {
			t.Errorf("%s: legacy=%v (%v), want %v", name, k.Legacy, err, legacy)
		}
	}
	if k, _ := st.GetKey(ctx, id("activation")); k.ExpiresAt == nil || k.ExpiresAt.Before(time.Now().Add(29*24*time.Hour)) {
		t.Errorf("activation key: expires %v, want 30 days after its first use", k.ExpiresAt)
	}

	// A second run changes nothing (the sidecar stopped, so nothing else writes).
	sc.signal(syscall.SIGTERM)
	sc.wait(40 * time.Second)
	settled := dumpAll(t, in.rdb)
	again := importCRS()
	if !strings.Contains(again, "keys: 0 created, 11 imported before") || !strings.Contains(again, "accounts: 0 added, 3 imported before") {
		t.Errorf("second run output:\n%s", again)
	}
	if after := dumpAll(t, in.rdb); !maps.Equal(settled, after) {
		for k := range after {
			if settled[k] != after[k] {
				t.Errorf("the second import changed %s", k)
			}
		}
	}
}
