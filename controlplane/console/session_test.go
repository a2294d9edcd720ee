package console_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

var scriptTag = regexp.MustCompile(`(?s)<script([^>]*)>(.*?)</script>`)

func TestUnauthenticatedConsoleAnswersTheLoginPageWithSecurityHeaders(t *testing.T) {
	s := newSite(t, 0)
	p := s.browser().get("/ui/")
	if p.status != http.StatusOK {
		t.Fatalf("GET /ui/: got %d, want 200", p.status)
	}
	if !strings.Contains(p.body, `action="/ui/login"`) || !strings.Contains(p.body, `type="password"`) {
		t.Errorf("GET /ui/ is not the login page:\n%s", p.body)
	}
	want := map[string]string{
		"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
		"Cache-Control": "no-store",
	}
	for h, v := range want {
		if got := p.header.Get(h); got != v {
			t.Errorf("%s: got %q, want %q", h, got, v)
		}
	}
	csp := p.header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("CSP %q lacks %q", csp, d)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q allows something unsafe", csp)
	}
	for _, m := range scriptTag.FindAllStringSubmatch(p.body, -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("inline script: %s", m[0])
		}
	}
	if strings.Contains(p.body, " style=") || strings.Contains(p.body, "<style") || strings.Contains(p.body, " on") && regexp.MustCompile(` on[a-z]+=`).MatchString(p.body) {
		t.Errorf("inline style or event handler in the page:\n%s", p.body)
	}
	js := s.browser().get("/ui/static/console.js")
	if js.status != http.StatusOK || !strings.Contains(js.header.Get("Content-Type"), "javascript") || js.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("console.js: got %d %q", js.status, js.header.Get("Content-Type"))
	}
}

func TestConsoleLoginSetsAStrictHttpOnlyCookieAndLogoutEndsTheSession(t *testing.T) {
	s := newSite(t, 0)
	b := s.browser()
	p := b.post("/ui/login", url.Values{"username": {testUser}, "password": {testPassword}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/ui/" {
		t.Fatalf("login: got %d to %q, want 303 to /ui/", p.status, p.header.Get("Location"))
	}
	ck := p.header.Get("Set-Cookie")
	for _, attr := range []string{cookieName + "=", "HttpOnly", "SameSite=Strict", "Path=/ui/", "Expires="} {
		if !strings.Contains(ck, attr) {
			t.Errorf("Set-Cookie %q lacks %s", ck, attr)
		}
	}
	if strings.Contains(ck, "Secure") {
		t.Errorf("Set-Cookie %q is Secure over plain HTTP: the browser would drop it", ck)
	}
	dash := b.get("/ui/")
	if dash.status != http.StatusOK || !strings.Contains(dash.body, "<h1>Dashboard</h1>") {
		t.Fatalf("dashboard after login: got %d\n%s", dash.status, dash.body)
	}
	token := strings.TrimPrefix(strings.SplitN(ck, ";", 2)[0], cookieName+"=")

	out := b.post("/ui/logout", url.Values{"csrf": {dash.csrf(t)}})
	if out.status != http.StatusSeeOther || !strings.Contains(out.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: got %d, Set-Cookie %q; want 303 clearing the cookie", out.status, out.header.Get("Set-Cookie"))
	}
	if home := b.get("/ui/?done=logged-out"); !strings.Contains(home.body, "You are logged out.") {
		t.Errorf("after logout the login page does not say so:\n%s", home.body)
	}
	// The token itself is revoked: a copy of the cookie no longer works.
	api, _ := adminclient.New(s.http.URL, token, nil)
	if _, err := api.WhoAmI(context.Background()); !adminclient.IsUnauthorized(err) {
		t.Errorf("the console's token after logout: got %v, want 401", err)
	}
	stolen := s.browser()
	stolen.hc.Jar.SetCookies(mustURL(t, s.http.URL+"/ui/"), []*http.Cookie{{Name: cookieName, Value: token, Path: "/ui/"}})
	again := stolen.get("/ui/keys")
	if again.status != http.StatusUnauthorized || !strings.Contains(again.body, "Your session ended: session was logged out") {
		t.Errorf("a logged-out token: got %d\n%s", again.status, again.body)
	}
}

func TestConsoleSecureCookieWhenTheBrowserCameOverHTTPS(t *testing.T) {
	s := newSite(t, 0)
	req, _ := http.NewRequest(http.MethodPost, s.http.URL+"/ui/login", strings.NewReader(url.Values{"username": {testUser}, "password": {testPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ck := resp.Header.Get("Set-Cookie"); !strings.Contains(ck, "; Secure") {
		t.Errorf("behind HTTPS: Set-Cookie %q is not Secure", ck)
	}
}

func TestConsoleWrongPasswordIsShownAndThrottledLikeTheAdminAPI(t *testing.T) {
	s := newSite(t, 0)
	b := s.browser()
	p := b.post("/ui/login", url.Values{"username": {testUser}, "password": {"wrong"}})
	if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "Wrong username or password") {
		t.Fatalf("wrong password: got %d\n%s", p.status, p.body)
	}
	if p.header.Get("Set-Cookie") != "" {
		t.Errorf("a failed login set a cookie: %q", p.header.Get("Set-Cookie"))
	}
	if !strings.Contains(p.body, `value="admin"`) {
		t.Errorf("the username is not kept in the form after a failure")
	}
	empty := b.post("/ui/login", url.Values{"username": {testUser}})
	if empty.status != http.StatusBadRequest || !strings.Contains(empty.body, "Enter a username and a password.") {
		t.Errorf("no password: got %d\n%s", empty.status, empty.body)
	}
	var last answer
	for range 6 {
		last = b.post("/ui/login", url.Values{"username": {testUser}, "password": {"wrong"}})
	}
	if last.status != http.StatusTooManyRequests || !strings.Contains(last.body, "Too many failed logins from this address; retry in") {
		t.Errorf("after repeated failures: got %d, want 429 saying when to retry\n%s", last.status, last.body)
	}
	// The right password is refused too while the address is locked out.
	if ok := b.post("/ui/login", url.Values{"username": {testUser}, "password": {testPassword}}); ok.status != http.StatusTooManyRequests {
		t.Errorf("right password during the lockout: got %d, want 429", ok.status)
	}
}

func TestConsoleRefusesFormsFromAnotherOriginOrWithoutTheCSRFToken(t *testing.T) {
	s := newSite(t, 0)
	b := s.browser()
	dash := b.login()
	csrf := dash.csrf(t)

	b.origin = "http://evil.example"
	if p := b.post("/ui/keys", url.Values{"csrf": {csrf}, "name": {"from-evil"}}); p.status != http.StatusForbidden || !strings.Contains(p.body, "came from another site") {
		t.Errorf("cross-origin create: got %d\n%s", p.status, p.body)
	}
	if p := b.post("/ui/login", url.Values{"username": {testUser}, "password": {testPassword}}); p.status != http.StatusForbidden {
		t.Errorf("cross-origin login: got %d, want 403", p.status)
	}
	b.origin = s.http.URL
	if p := b.post("/ui/keys", url.Values{"name": {"no-token"}}); p.status != http.StatusForbidden || !strings.Contains(p.body, "security token is missing or stale") {
		t.Errorf("create without CSRF token: got %d\n%s", p.status, p.body)
	}
	if p := b.post("/ui/keys", url.Values{"csrf": {strings.Repeat("0", len(csrf))}, "name": {"bad-token"}}); p.status != http.StatusForbidden {
		t.Errorf("create with a wrong CSRF token: got %d, want 403", p.status)
	}
	keys, err := s.admin.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("refused forms created keys: %+v", keys)
	}
	if p := b.post("/ui/keys", url.Values{"csrf": {csrf}, "name": {"ok"}}); p.status != http.StatusOK || !strings.Contains(p.body, "shown only this once") {
		t.Errorf("same-origin create with the token: got %d\n%s", p.status, p.body)
	}
}

func TestConsoleSessionExpiryShowsTheLoginPageAndReturnsThereAfterLogin(t *testing.T) {
	s := newSite(t, time.Hour)
	b := s.loggedIn()
	s.clock.Advance(time.Hour + time.Minute)
	p := b.get("/ui/keys?status=active")
	if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "Your session ended") || !strings.Contains(p.body, `action="/ui/login"`) {
		t.Fatalf("expired session: got %d\n%s", p.status, p.body)
	}
	if !strings.Contains(p.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("expired session: the cookie is not cleared: %q", p.header.Get("Set-Cookie"))
	}
	if !strings.Contains(p.body, `name="next" value="/ui/keys?status=active"`) {
		t.Errorf("the login form does not return to the page asked for:\n%s", p.body)
	}
	in := b.post("/ui/login", url.Values{"username": {testUser}, "password": {testPassword}, "next": {"/ui/keys?status=active"}})
	if in.header.Get("Location") != "/ui/keys?status=active" {
		t.Errorf("login with next: Location %q", in.header.Get("Location"))
	}
	off := b.post("/ui/login", url.Values{"username": {testUser}, "password": {testPassword}, "next": {"//evil.example/ui/"}})
	if off.header.Get("Location") != "/ui/" {
		t.Errorf("login with an off-site next: Location %q, want /ui/", off.header.Get("Location"))
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
