package console_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
	"github.com/claude-relay/claude-relay/controlplane/alerts"
	"github.com/claude-relay/claude-relay/controlplane/console"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

const (
	testUser     = "admin"
	testPassword = "correct horse battery staple"
	cookieName   = "claude_relay_console"
)

// site is a control plane serving the admin API and the console over loopback HTTP.
type site struct {
	t     testing.TB
	st    *store.Store
	http  *httptest.Server
	clock *testutil.Clock
	admin *adminclient.Client // logged in through the admin API, as another operator
	// config distributes the configuration (nil without a directory).
	config *controlplane.Distribution
}

// newSite starts a control plane on a real Redis whose admin's password hash has bcrypt's
// lowest cost (the control plane keeps an existing admin), so logins are fast.
func newSite(t testing.TB, ttl time.Duration) *site {
	t.Helper()
	return newSiteWithConfig(t, ttl, "")
}

// newSiteWithConfig is newSite distributing the HCL configuration in dir ("" for none).
func newSiteWithConfig(t testing.TB, ttl time.Duration, dir string) *site {
	t.Helper()
	return newSiteWith(t, siteOptions{ttl: ttl, configDir: dir})
}

// siteOptions vary a site: the session lifetime, a configuration directory, OAuth endpoints.
type siteOptions struct {
	ttl       time.Duration
	configDir string
	oauth     controlplane.OAuthConfig
	// alerts, when set, builds the alerts the control plane runs on its store.
	alerts func(*store.Store) *alerts.Service
}

func newSiteWith(t testing.TB, o siteOptions) *site {
	t.Helper()
	ttl, dir := o.ttl, o.configDir
	ctx := context.Background()
	rdb, prefix := testredis.New(t)
	clk := testutil.NewClock(time.Now().UTC().Truncate(time.Second))
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix})
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateAdminIfAbsent(ctx, testUser, hash); err != nil {
		t.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var cfg *controlplane.Distribution
	if dir != "" {
		cfg, err = controlplane.NewDistribution(ctx, controlplane.DistributionOptions{Dir: dir, Store: st, SidecarSecrets: [][]byte{[]byte("console-test-sidecar-secret-0123456789abcdef")}, Recheck: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
	}
	var alerter *alerts.Service
	if o.alerts != nil {
		alerter = o.alerts(st)
	}
	cp, err := controlplane.New(controlplane.Options{Store: st, SigningKey: key, Admin: controlplane.AdminBootstrap{Username: testUser}, Now: clk.Now, TokenTTL: ttl, Config: cfg, OAuth: o.oauth, Alerts: alerter})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	ui, err := console.New(console.Options{Admin: cp.Handler(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", cp.Handler())
	mux.Handle("/ui/", ui.Handler())
	mux.Handle("GET /v1/relay/usage", cp.KeyUsageHandler())
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	s := &site{t: t, st: st, http: hs, clock: clk, config: cfg}
	anon, err := adminclient.New(hs.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := anon.Login(ctx, testUser, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if s.admin, err = adminclient.New(hs.URL, res.Token, nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// browser is a cookie-keeping HTTP client that does not follow redirects, sending Origin with
// every POST as browsers do.
type browser struct {
	t      testing.TB
	s      *site
	hc     *http.Client
	origin string
}

func (s *site) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		s.t.Fatal(err)
	}
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{t: s.t, s: s, hc: hc, origin: s.http.URL}
}

// answer is an answer: status, headers and body.
type answer struct {
	status int
	header http.Header
	body   string
}

// shows checks that the answer's body contains every one of wants; what names the page in
// the errors, and the body is logged once when any is missing.
func (p answer) shows(t *testing.T, what string, wants ...string) {
	t.Helper()
	missing := false
	for _, want := range wants {
		if !strings.Contains(p.body, want) {
			t.Errorf("%s lacks %q", what, want)
			missing = true
		}
	}
	if missing {
		t.Logf("%s:\n%s", what, p.body)
	}
}

// newKey creates a key through the admin API.
func (s *site) newKey(t *testing.T, req adminapi.CreateKeyRequest) adminapi.CreateKeyResponse {
	t.Helper()
	k, err := s.admin.CreateKey(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (b *browser) get(path string) answer {
	b.t.Helper()
	return b.do(http.MethodGet, path, nil)
}

func (b *browser) post(path string, form url.Values) answer {
	b.t.Helper()
	return b.do(http.MethodPost, path, form)
}

func (b *browser) do(method, path string, form url.Values) answer {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.s.http.URL+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if b.origin != "" {
			req.Header.Set("Origin", b.origin)
		}
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(data)}
}

// login logs in through the console's form and returns the dashboard.
// loggedIn is a browser already logged in to the console.
func (s *site) loggedIn() *browser {
	b := s.browser()
	b.t.Helper()
	b.login()
	return b
}

func (b *browser) login() answer {
	b.t.Helper()
	p := b.post("/ui/login", url.Values{"username": {testUser}, "password": {testPassword}})
	if p.status != http.StatusSeeOther {
		b.t.Fatalf("login: got %d, want 303\n%s", p.status, p.body)
	}
	return b.get("/ui/")
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrf is the CSRF token a page's forms carry.
func (p answer) csrf(t *testing.T) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("page has no CSRF field:\n%s", p.body)
	}
	return m[1]
}
