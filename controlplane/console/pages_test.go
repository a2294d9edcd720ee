package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/fakeupstream"
)

var secretPattern = regexp.MustCompile(`cr_[0-9a-f]{64}`)

func TestConsoleCreatesAKeyShowingItsSecretOnce(t *testing.T) {
	s := newSite(t, 0)
	b := s.browser()
	keys := b.login()
	keys = b.get("/ui/keys")
	p := b.post("/ui/keys", url.Values{"csrf": {keys.csrf(t)}, "name": {"alice laptop"}, "owner": {"alice"}, "tags": {"team-a, laptop"}, "expires_at": {"2099-01-31"}})
	secret := secretPattern.FindString(p.body)
	if p.status != http.StatusOK || secret == "" || p.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create: got %d, Cache-Control %q\n%s", p.status, p.header.Get("Cache-Control"), p.body)
	}
	list, err := s.admin.ListKeys(context.Background())
	if err != nil || len(list) != 1 {
		t.Fatalf("keys after create: %v %+v", err, list)
	}
	k := list[0]
	if k.Owner != "alice" || strings.Join(k.Tags, ",") != "laptop,team-a" || k.ExpiresAt == nil || k.ExpiresAt.Format("2006-01-02") != "2099-01-31" {
		t.Errorf("created key: %+v", k)
	}
	for _, path := range []string{"/ui/keys", "/ui/keys/" + k.ID, "/ui/"} {
		if pg := b.get(path); strings.Contains(pg.body, secret) || pg.status != http.StatusOK {
			t.Errorf("%s: got %d, secret shown again: %v", path, pg.status, strings.Contains(pg.body, secret))
		}
	}
	bad := b.post("/ui/keys", url.Values{"csrf": {keys.csrf(t)}, "name": {"x"}, "expires_at": {"tomorrow"}})
	if bad.status != http.StatusBadRequest || !strings.Contains(bad.body, "The key was not created: expires at:") || !strings.Contains(bad.body, `value="x"`) {
		t.Errorf("refused create: got %d\n%s", bad.status, bad.body)
	}
}

func TestConsoleKeyChangeAtAStaleRevisionShowsTheConflict(t *testing.T) {
	s := newSite(t, 0)
	ctx := context.Background()
	created := s.newKey(t, adminapi.CreateKeyRequest{Name: "shared"})
	id := created.Key.ID
	b := s.loggedIn()
	pg := b.get("/ui/keys/" + id)
	if !strings.Contains(pg.body, `name="revision" value="1"`) {
		t.Fatalf("key page lacks the revision:\n%s", pg.body)
	}
	// Another operator changes the key meanwhile.
	if _, err := s.admin.DisableKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	p := b.post("/ui/keys/"+id+"/revoke", url.Values{"csrf": {pg.csrf(t)}, "revision": {"1"}})
	if p.status != http.StatusPreconditionFailed || !strings.Contains(p.body, "someone else changed this key since you opened the page") {
		t.Fatalf("stale revoke: got %d\n%s", p.status, p.body)
	}
	if !strings.Contains(p.body, `name="revision" value="2"`) || !strings.Contains(p.body, ">disabled<") {
		t.Errorf("the conflict page does not show the key as it is now:\n%s", p.body)
	}
	edit := b.post("/ui/keys/"+id, url.Values{"csrf": {pg.csrf(t)}, "revision": {"1"}, "name": {"renamed"}})
	if edit.status != http.StatusPreconditionFailed || !strings.Contains(edit.body, `value="renamed"`) {
		t.Errorf("stale edit: got %d; the typed values must stay in the form\n%s", edit.status, edit.body)
	}
	if k, _ := s.admin.GetKey(ctx, id); k.Status != adminapi.KeyDisabled || k.Name != "shared" {
		t.Errorf("stale changes went through: %+v", k)
	}
	ok := b.post("/ui/keys/"+id+"/revoke", url.Values{"csrf": {pg.csrf(t)}, "revision": {"2"}})
	if ok.status != http.StatusSeeOther || ok.header.Get("Location") != "/ui/keys/"+id+"?done=revoked" {
		t.Fatalf("revoke at the current revision: got %d %q", ok.status, ok.header.Get("Location"))
	}
	if after := b.get(ok.header.Get("Location")); !strings.Contains(after.body, "The key is revoked") || !strings.Contains(after.body, ">revoked<") {
		t.Errorf("after revoke:\n%s", after.body)
	}
}

func TestConsoleEditsAKeysSettings(t *testing.T) {
	s := newSite(t, 0)
	ctx := context.Background()
	created := s.newKey(t, adminapi.CreateKeyRequest{Name: "ci", Tags: []string{"old"}})
	id := created.Key.ID
	b := s.loggedIn()
	pg := b.get("/ui/keys/" + id)
	form := url.Values{"csrf": {pg.csrf(t)}, "revision": {"1"}, "name": {"ci runner"}, "owner": {"build team"}, "tags": {""},
		"allowed_models": {"claude-sonnet-*"}, "allowed_cidrs": {"10.0.0.0/8, 192.168.0.0/16"}, "expires_after": {"30d"},
		"limit_requests_per_minute": {"1,200"}, "limit_cost_per_day_usd": {"$12.50"}, "bind_group": {"eu"}}
	p := b.post("/ui/keys/"+id, form)
	if p.status != http.StatusSeeOther {
		t.Fatalf("edit: got %d\n%s", p.status, p.body)
	}
	k, err := s.admin.GetKey(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != "ci runner" || k.Owner != "build team" || len(k.Tags) != 0 || strings.Join(k.AllowedModels, ",") != "claude-sonnet-*" ||
		len(k.AllowedCIDRs) != 2 || k.ExpiresAfter == "" {
		t.Errorf("after edit: %+v", k)
	}
	if k.Limits == nil || k.Limits.RequestsPerMinute == nil || *k.Limits.RequestsPerMinute != 1200 ||
		k.Limits.CostPerDayUSD == nil || *k.Limits.CostPerDayUSD != 12.5 || k.Limits.TokensPerDay != nil {
		t.Errorf("limit overrides after edit: %+v", k.Limits)
	}
	if k.Binding == nil || k.Binding.Group != "eu" {
		t.Errorf("binding after edit: %+v", k.Binding)
	}
	shown := b.get("/ui/keys/" + id)
	if !strings.Contains(shown.body, `name="limit_requests_per_minute" inputmode="numeric" value="1200"`) || !strings.Contains(shown.body, `value="12.5"`) {
		t.Errorf("the key page does not show the overrides")
	}
	form.Set("revision", "2")
	form.Set("limit_concurrency", "many")
	if nan := b.post("/ui/keys/"+id, form); nan.status != http.StatusBadRequest || !strings.Contains(nan.body, "concurrent requests: &#34;many&#34; is not a whole number") {
		t.Errorf("a limit that is not a number: got %d\n%s", nan.status, nan.body)
	}
	form.Del("limit_concurrency")
	form.Set("revision", "2")
	form.Set("allowed_cidrs", "not-a-cidr")
	bad := b.post("/ui/keys/"+id, form)
	if bad.status != http.StatusBadRequest || !strings.Contains(bad.body, "allowed cidrs") {
		t.Errorf("refused edit: got %d\n%s", bad.status, bad.body)
	}
}

func TestConsoleListsKeysWithFiltersAndPages(t *testing.T) {
	s := newSite(t, 0)
	ctx := context.Background()
	req := adminapi.BulkCreateKeysRequest{}
	for i := range 60 {
		tag := "even"
		if i%2 == 1 {
			tag = "odd"
		}
		req.Keys = append(req.Keys, adminapi.CreateKeyRequest{Name: "key-" + string(rune('a'+i%26)) + "-" + strings.Repeat("x", i/26), Tags: []string{tag}})
	}
	if _, err := s.admin.BulkCreateKeys(ctx, req); err != nil {
		t.Fatal(err)
	}
	b := s.loggedIn()
	first := b.get("/ui/keys")
	if n := strings.Count(first.body, `<a href="/ui/keys/`); n != 50 {
		t.Errorf("first page: %d keys, want 50", n)
	}
	if len(first.body) > 200<<10 {
		t.Errorf("a page of 50 keys is %d bytes, over 200 KB", len(first.body))
	}
	next := regexp.MustCompile(`href="/ui/keys\?([^"]+)" rel="next"`).FindStringSubmatch(first.body)
	if next == nil {
		t.Fatalf("first page has no next link")
	}
	second := b.get("/ui/keys?" + strings.ReplaceAll(next[1], "&amp;", "&"))
	if n := strings.Count(second.body, `<a href="/ui/keys/`); n != 10 || strings.Contains(second.body, `rel="next"`) {
		t.Errorf("second page: %d keys, want the last 10", n)
	}
	odd := b.get("/ui/keys?tag=odd")
	if n := strings.Count(odd.body, `<a href="/ui/keys/`); n != 30 || strings.Contains(odd.body, ">even<") {
		t.Errorf("tag filter: %d keys, want 30 odd ones", n)
	}
}

func TestConsoleAddsTestsAndSchedulesAnAccount(t *testing.T) {
	up := fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{"sk-compatible-upstream"}})
	s := newSite(t, 0)
	b := s.loggedIn()
	pg := b.get("/ui/accounts")
	csrf := pg.csrf(t)
	bad := b.post("/ui/accounts", url.Values{"csrf": {csrf}, "name": {"nokey"}, "type": {"anthropic_compatible"}, "base_url": {up.URL()}, "priority": {"500"}})
	if bad.status != http.StatusBadRequest || !strings.Contains(bad.body, "The account was not added") {
		t.Errorf("refused add: got %d\n%s", bad.status, bad.body)
	}
	add := b.post("/ui/accounts", url.Values{"csrf": {csrf}, "name": {"fake"}, "type": {"anthropic_compatible"}, "base_url": {up.URL()}, "api_key": {"sk-compatible-upstream"}, "priority": {"10"}, "group": {"eu"}})
	if add.status != http.StatusSeeOther {
		t.Fatalf("add: got %d\n%s", add.status, add.body)
	}
	accts, err := s.admin.ListAccounts(context.Background())
	if err != nil || len(accts) != 1 {
		t.Fatalf("accounts: %v %+v", err, accts)
	}
	a := accts[0]
	list := b.get("/ui/accounts?done=added")
	if strings.Contains(list.body, "sk-compatible-upstream") || !strings.Contains(list.body, "The account is added.") || !strings.Contains(list.body, "anthropic_compatible") {
		t.Errorf("accounts page after add:\n%s", list.body)
	}
	test := b.post("/ui/accounts/"+a.ID+"/test", url.Values{"csrf": {csrf}})
	if test.status != http.StatusOK || !strings.Contains(test.body, "Test passed") {
		t.Errorf("test: got %d\n%s", test.status, test.body)
	}
	off := b.post("/ui/accounts/"+a.ID+"/schedulable", url.Values{"csrf": {csrf}, "schedulable": {"false"}})
	if off.status != http.StatusSeeOther {
		t.Fatalf("stop scheduling: got %d\n%s", off.status, off.body)
	}
	if got, _ := s.admin.GetAccount(context.Background(), a.ID); got.Schedulable {
		t.Errorf("the account is still schedulable")
	}
	if dash := b.get("/ui/"); !strings.Contains(dash.body, "not scheduled") {
		t.Errorf("the dashboard does not show the unscheduled account:\n%s", dash.body)
	}
	missing := b.post("/ui/accounts/nope/unpark", url.Values{"csrf": {csrf}})
	if missing.status != http.StatusNotFound {
		t.Errorf("unpark of an unknown account: got %d, want 404", missing.status)
	}
}

func TestConsolePagesAnswerWhatTheAdminAPIHas(t *testing.T) {
	s := newSite(t, 0)
	b := s.browser()
	dash := b.login()
	b.post("/ui/keys", url.Values{"csrf": {dash.csrf(t)}, "name": {"audited"}})
	for path, want := range map[string]string{
		"/ui/": "<h1>Dashboard</h1>",
		// The audit log names the browser's address: the console passes it to the admin API.
		"/ui/audit":   `<td data-label="Action">key.create</td>`,
		"/ui/config":  "does not distribute a configuration",
		"/ui/nowhere": "There is no console page /ui/nowhere.",
	} {
		p := b.get(path)
		if !strings.Contains(p.body, want) {
			t.Errorf("%s: got %d without %q\n%s", path, p.status, want, p.body)
		}
	}
	if a := b.get("/ui/audit"); !strings.Contains(a.body, "127.0.0.1") {
		t.Errorf("the audit entry does not name the browser's address:\n%s", a.body)
	}
}

func TestConsoleShowsARefusedConfigurationEditWithItsLocation(t *testing.T) {
	dir := t.TempDir()
	hcl := filepath.Join(dir, "relay.hcl")
	if err := os.WriteFile(hcl, []byte("# relay\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSiteWithConfig(t, 0, dir)
	b := s.loggedIn()
	if p := b.get("/ui/config"); !strings.Contains(p.body, `<dd id="config-version">1</dd>`) || strings.Contains(p.body, "was refused") {
		t.Fatalf("config page with a good configuration:\n%s", p.body)
	}
	if err := os.WriteFile(hcl, []byte("# relay\n\nno_such_block {\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := s.config.Source.Reload(context.Background()); err == nil || res != "refused" {
		t.Fatalf("reload of a broken file: got %q %v, want refused with an error", res, err)
	}
	p := b.get("/ui/config")
	p.shows(t, "config page after a refused edit", "The last edit was refused", "relay.hcl:3:1", `<dd id="config-version">1</dd>`, ">refused<")
	if dash := b.get("/ui/"); !strings.Contains(dash.body, "the last edit was refused") {
		t.Errorf("the dashboard does not point at the refused edit")
	}
}

func TestConsoleRegeneratesDeletesAndRestoresAKey(t *testing.T) {
	s := newSite(t, 0)
	ctx := context.Background()
	created := s.newKey(t, adminapi.CreateKeyRequest{Name: "rotating"})
	id := created.Key.ID
	b := s.loggedIn()
	csrf := b.get("/ui/keys/" + id).csrf(t)
	regen := b.post("/ui/keys/"+id+"/regenerate", url.Values{"csrf": {csrf}, "revision": {"1"}})
	secret := secretPattern.FindString(regen.body)
	if regen.status != http.StatusOK || secret == "" || secret == created.Secret {
		t.Fatalf("regenerate: got %d, a new secret: %v", regen.status, secret != created.Secret)
	}
	k, err := s.admin.GetKey(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	del := b.post("/ui/keys/"+id+"/delete", url.Values{"csrf": {csrf}, "revision": {fmt.Sprint(k.Revision)}})
	if del.status != http.StatusSeeOther {
		t.Fatalf("delete: got %d\n%s", del.status, del.body)
	}
	gone := b.get(del.header.Get("Location"))
	if !strings.Contains(gone.body, ">deleted<") || !strings.Contains(gone.body, `action="/ui/keys/`+id+`/restore"`) || strings.Contains(gone.body, `id="edit-key"`) {
		t.Errorf("a deleted key's page should offer restore only:\n%s", gone.body)
	}
	k, _ = s.admin.GetKey(ctx, id)
	back := b.post("/ui/keys/"+id+"/restore", url.Values{"csrf": {csrf}, "revision": {fmt.Sprint(k.Revision)}})
	if back.status != http.StatusSeeOther {
		t.Fatalf("restore: got %d\n%s", back.status, back.body)
	}
	if k, _ := s.admin.GetKey(ctx, id); k.Status == adminapi.KeyDeleted {
		t.Errorf("the key is still deleted: %+v", k)
	}
	if p := b.post("/ui/keys/"+id+"/explode", url.Values{"csrf": {csrf}}); p.status != http.StatusNotFound {
		t.Errorf("an unknown action: got %d, want 404", p.status)
	}
}
