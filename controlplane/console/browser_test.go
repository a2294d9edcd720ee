package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/app"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/store"
)

// browserEnv makes the browser tests a failure instead of a skip when Chromium is missing.
const browserEnv = "CLAUDE_RELAY_TEST_BROWSER"

// screenshotsEnv names a directory to write every page's screenshots to (make screenshots).
const screenshotsEnv = "CLAUDE_RELAY_SCREENSHOTS"

const upstreamKey = "sk-ant-api03-console-upstream"

// relay is dev mode (control plane, console and sidecar in this process) in front of the fake
// upstream.
type relay struct {
	base     string
	password string
	upstream *fakeupstream.Server
}

func startRelay(t *testing.T) *relay {
	t.Helper()
	up := fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{upstreamKey}})
	t.Setenv("ANTHROPIC_API_KEY", upstreamKey)
	t.Setenv("CLAUDE_RELAY_UPSTREAM_URL", up.URL())
	session := filepath.Join(t.TempDir(), "admin.json")
	t.Setenv("CLAUDE_RELAY_ADMIN_FILE", session)
	env, err := config.LoadEnv(func(string) (string, bool) { return "", false }, nil)
	if err != nil {
		t.Fatal(err)
	}
	env.LogDir, env.ConfigDir = t.TempDir(), ledgerConfigDir(t)
	// A Redis of its own, holding the admin with bcrypt's lowest cost: dev mode keeps an
	// existing admin, and each login then takes microseconds instead of a second or more.
	rds := testredis.StartServer(t)
	env.RedisURL, env.AdminPassword = "redis://"+rds.Addr(), "browser-test-password"
	seedAdmin(t, rds.Addr(), env.AdminPassword)
	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	stderr := &testutil.Buffer{}
	go func() {
		done <- app.RunDev(ctx, env, app.Options{
			Listen: "127.0.0.1:0", DataDir: dataDir, Stdout: &testutil.Buffer{}, Stderr: stderr, Grace: time.Second,
			Ready: func(a net.Addr) { ready <- a.String() },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("dev mode did not stop within 10s")
		}
	})
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("dev mode exited: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("dev mode did not start within 30s")
	}
	// Dev mode logs its CLI in at start; a login from the same address meanwhile is told to wait.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(session); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev mode did not log its CLI in within 30s\n%s", stderr.String())
		}
	}
	return &relay{base: "http://" + addr, password: env.AdminPassword, upstream: up}
}

// ledgerConfigDir is a configuration directory holding the embedded default configuration
// with the request ledger turned on.
func ledgerConfigDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	def, err := os.ReadFile(filepath.Join("..", "..", "config", config.DefaultFileName))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{config.DefaultFileName: def, "ledger.hcl": []byte("usage {\n  ledger = true\n}\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// seedAdmin stores the admin user "admin" with password at bcrypt's lowest cost, where the
// store keeps it (store.Open would also create the relay-key pepper, sealed under a key
// dev mode has not generated yet).
func seedAdmin(t *testing.T, addr, password string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(context.Background(), store.NewSchema("").AdminPassword("admin"), hash, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// chrome is a headless Chromium tab that records what the page wrote to its console.
type chrome struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
}

func startChrome(t *testing.T) *chrome {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv(browserEnv) == "required" {
			t.Fatalf("%s=required but chromium is not installed: %v", browserEnv, err)
		}
		t.Skipf("skipping the browser tests: chromium is not installed (apt-get install chromium); set %s=required to fail instead", browserEnv)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.WindowSize(1280, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	c := &chrome{t: t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // starts the browser and opens the tab
		t.Fatalf("start chromium: %v", err)
	}
	go c.watchConsole()
	go c.acceptDialogs()
	return c
}

// expectedStatus matches the browser's report of a console page answered with a status the
// test asked for (a wrong password's 401), which is not a fault of the page.
var expectedStatus = regexp.MustCompile(`status of (401|412)`)

func (c *chrome) watchConsole() {
	for m, err := range chromedp.Console(c.ctx) {
		if err != nil {
			return
		}
		if m.Type != chromedp.ConsoleError && !m.IsException() && m.Source != "security" {
			continue
		}
		if m.Source == "network" && expectedStatus.MatchString(m.Text) {
			continue
		}
		c.mu.Lock()
		c.problems = append(c.problems, fmt.Sprintf("%s (%s %s:%d)", m.String(), m.Source, m.URL, m.Line))
		c.mu.Unlock()
	}
}

// acceptDialogs answers OK to the console's confirmations (revoke, delete).
func (c *chrome) acceptDialogs() {
	for _, err := range chromedp.Events(c.ctx, page.JavascriptDialogOpening) {
		if err != nil {
			return
		}
		go chromedp.Call(c.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
	}
}

// checkConsole fails the test for every error, exception or CSP violation the pages logged.
func (c *chrome) checkConsole() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.problems {
		c.t.Errorf("browser console: %s", p)
	}
	c.problems = nil
}

func (c *chrome) do(steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		c.t.Fatalf("browser: %v", err)
	}
}

func (c *chrome) text(sel string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		loc, _ := chromedp.Run(c.ctx, chromedp.Location())
		html, _ := chromedp.Run(c.ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		c.t.Fatalf("browser: text of %s at %s: %v\n%s", sel, loc, err, html)
	}
	return strings.TrimSpace(s)
}

// waitText reloads url until sel's text is want.
func (c *chrome) waitText(url, sel, want string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	got := ""
	for time.Now().Before(deadline) {
		c.do(chromedp.Navigate(url))
		if got = c.text(sel); got == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("%s on %s: got %q, want %q", sel, url, got, want)
}

// relayRequest sends one message with key through the relay as the Go SDK does.
func relayRequest(base, key string) error {
	client := anthropic.NewClient(option.WithBaseURL(base), option.WithAPIKey(key), option.WithMaxRetries(0))
	_, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "claude-sonnet-4-5-20250929", MaxTokens: 32,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))},
	})
	return err
}

func TestConsoleInAHeadlessBrowser(t *testing.T) {
	start := time.Now()
	b := startChrome(t)
	r := startRelay(t)
	t.Logf("chromium and dev mode started in %s", time.Since(start).Round(time.Millisecond))
	defer func() { t.Logf("browser test took %s", time.Since(start).Round(time.Millisecond)) }()
	ui := r.base + "/ui/"

	// A wrong password is shown; the right one opens the dashboard.
	b.do(chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SendKeys(chromedp.CSS("#username"), "admin"), chromedp.SendKeys(chromedp.CSS("#password"), "not the password"),
		chromedp.Submit(chromedp.CSS("#login-form")), chromedp.WaitVisible(chromedp.CSS("#page-error")))
	if got := b.text("#page-error"); !strings.Contains(got, "Wrong username or password") {
		t.Fatalf("wrong password: the page says %q", got)
	}
	b.do(chromedp.SendKeys(chromedp.CSS("#password"), r.password), // the refused page keeps the username only
		chromedp.Submit(chromedp.CSS("#login-form")), chromedp.WaitVisible(chromedp.CSS("nav")))
	if got := b.text("h1"); got != "Dashboard" {
		t.Fatalf("after login: heading %q, want Dashboard", got)
	}

	// A new key's secret is shown once.
	b.do(chromedp.Click(chromedp.CSS(`nav a[href="/ui/keys"]`)), chromedp.WaitVisible(chromedp.CSS("#create-key")),
		chromedp.SendKeys(chromedp.CSS("#k-name"), "browser key"), chromedp.SendKeys(chromedp.CSS("#k-owner"), "qa"),
		chromedp.Submit(chromedp.CSS("#create-key")), chromedp.WaitVisible(chromedp.CSS("#secret")))
	secret := b.text("#secret")
	if !secretPattern.MatchString(secret) {
		t.Fatalf("create: the page shows %q, not a secret", secret)
	}
	b.do(chromedp.Click(chromedp.CSS("button[data-copy]")))
	b.do(chromedp.Click(chromedp.CSS("#key-link")), chromedp.WaitVisible(chromedp.CSS("#key-status")))
	keyURL, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("html"))); strings.Contains(html, secret) {
		t.Fatal("the key's page shows its secret again")
	}

	// A request relayed with it is counted on the key's page and the dashboard.
	if err := relayRequest(r.base, secret); err != nil {
		t.Fatalf("relay with the new key: %v", err)
	}
	b.waitText(keyURL, "#key-requests", "1")
	if n := b.count("#key-chart-requests rect"); n != 1 {
		t.Errorf("the key's request chart has %d bars, want 1", n)
	}
	b.waitText(ui, "#total-requests", "1")
	if n := b.count("#chart-requests rect"); n != 1 {
		t.Errorf("the dashboard's request chart has %d bars, want 1", n)
	}
	b.waitText(ui+"usage", "#usage-requests", "1")

	// The request is in the ledger, on the usage page's Requests tab.
	b.do(chromedp.Click(chromedp.CSS(`nav.tabs a[href="/ui/usage/requests"]`)), chromedp.WaitVisible(chromedp.CSS("#requests")))
	if n := b.count(`#requests td[data-label="When"]`); n != 1 || b.count("#ledger-off") != 0 {
		t.Errorf("the Requests tab lists %d records (want 1), ledger-off notes: %d", n, b.count("#ledger-off"))
	}
	if got := b.text(`#requests td[data-label="Model"]`); got != "claude-sonnet-4-5-20250929" {
		t.Errorf("the ledger's record names model %q", got)
	}

	// A stream held open by the upstream shows on the dashboard as an active stream.
	streamDone := holdStream(t, r, secret, 4*time.Second)
	b.waitText(ui, "#active-streams", "1")
	defer func() { // the stream ends while the test goes on
		if err := <-streamDone; err != nil {
			t.Errorf("the held stream: %v", err)
		}
	}()

	// The key holder's page shows the key's own spend, the key kept in the tab.
	b.showMe(ui+"me", secret)
	if got := b.text("#me-name"); got != "browser key" {
		t.Fatalf("/ui/me names %q, want the key's name", got)
	}
	if got := b.text("#me-spend"); !strings.Contains(got, "claude-sonnet-4-5-20250929") {
		t.Fatalf("/ui/me spend lacks the model used:\n%s", got)
	}

	// Revoked, the next request is refused.
	b.do(chromedp.Navigate(keyURL), chromedp.Click(chromedp.CSS("#revoke")), chromedp.WaitVisible(chromedp.CSS(".notice")))
	if got := b.text("#key-status"); got != "revoked" {
		t.Fatalf("after revoke: status %q", got)
	}
	var apiErr *anthropic.Error
	if err := relayRequest(r.base, secret); !errors.As(err, &apiErr) || apiErr.StatusCode != 401 {
		t.Fatalf("a request with the revoked key: got %v, want a 401", err)
	}
	// The dashboard counts it: 1 refused of 3 requests (the first, the held stream, this one).
	b.waitText(ui, "#refusal-rate", "33.3 %")
	if got := b.text("#refusals"); !strings.Contains(got, "refused (1 of 3)") {
		t.Errorf("the dashboard's refusals read %q, want 1 of 3", got)
	}
	if got := b.text("#errors"); !strings.Contains(got, "0 %") || !strings.Contains(got, "failed (0 of 2 relayed)") {
		t.Errorf("the dashboard's errors read %q, want none of 2 relayed", got)
	}
	if a, r := b.count("#chart-outcomes rect.s0"), b.count("#chart-outcomes rect.s2"); a != 1 || r != 1 {
		t.Errorf("the outcome chart has %d answered and %d refused bars, want 1 and 1", a, r)
	}

	// An account is added.
	b.do(chromedp.Navigate(ui+"accounts"), chromedp.WaitVisible(chromedp.CSS("#add-account")),
		chromedp.SendKeys(chromedp.CSS("#a-name"), "second upstream"),
		chromedp.SetValue(chromedp.CSS("#a-type"), "anthropic_compatible"),
		chromedp.SendKeys(chromedp.CSS("#a-key"), upstreamKey), chromedp.SendKeys(chromedp.CSS("#a-url"), r.upstream.URL()),
		chromedp.Submit(chromedp.CSS("#add-account")), chromedp.WaitVisible(chromedp.CSS(".notice")))
	if got := b.text("#accounts-table"); !strings.Contains(got, "second upstream") || !strings.Contains(got, "anthropic_compatible") {
		t.Fatalf("accounts after adding one:\n%s", got)
	}

	for _, path := range []string{"config", "audit", "keys", "alerts", "usage?granularity=hour&group_by=key"} {
		b.do(chromedp.Navigate(ui+path), chromedp.WaitVisible(chromedp.CSS("h1")))
	}
	b.checkConsole()
	if dir := os.Getenv(screenshotsEnv); dir != "" {
		b.screenshots(dir, r.base, keyURL)
	}
}

// holdStream starts a streamed request with key whose upstream stalls for hold after its
// headers; the channel answers when the stream has ended.
func holdStream(t *testing.T, r *relay, key string, hold time.Duration) <-chan error {
	t.Helper()
	r.upstream.Enqueue(fakeupstream.Script{BodyDelay: hold})
	done := make(chan error, 1)
	go func() {
		body := `{"model":"claude-sonnet-4-5-20250929","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"hold on"}]}`
		req, err := http.NewRequest(http.MethodPost, r.base+"/v1/messages", strings.NewReader(body))
		if err != nil {
			done <- err
			return
		}
		req.Header.Set("x-api-key", key)
		req.Header.Set("anthropic-version", "2023-06-01")
		req.Header.Set("content-type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			done <- err
			return
		}
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("status %d", resp.StatusCode)
			return
		}
		done <- nil
	}()
	return done
}

// showMe opens the key holder's page and pastes key.
func (c *chrome) showMe(url, key string) {
	c.t.Helper()
	c.do(chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#me-form")), chromedp.SendKeys(chromedp.CSS("#me-key"), key),
		chromedp.Click(chromedp.CSS("#me-show")), chromedp.WaitVisible(chromedp.CSS("#me-out")))
}

// count is how many elements match sel.
func (c *chrome) count(sel string) int {
	c.t.Helper()
	n, err := chromedp.Run(c.ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	if err != nil {
		c.t.Fatalf("browser: count %s: %v", sel, err)
	}
	return n
}

// screenshots writes every page at 1280 and 390 px wide to dir as PNG files.
func (c *chrome) screenshots(dir, base, keyURL string) {
	c.t.Helper()
	ui := base + "/ui/"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	shots := []struct{ name, url string }{
		{"dashboard", ui}, {"keys", ui + "keys"}, {"key", keyURL}, {"accounts", ui + "accounts"},
		{"config", ui + "config"}, {"audit", ui + "audit"}, {"usage", ui + "usage"}, {"requests", ui + "usage/requests"}, {"alerts", ui + "alerts"},
	}
	for _, w := range []int64{1280, 390} {
		c.do(chromedp.EmulateViewport(w, 900))
		for _, s := range shots {
			c.do(chromedp.Navigate(s.url), chromedp.WaitVisible(chromedp.CSS("h1")))
			c.shoot(filepath.Join(dir, fmt.Sprintf("%s-%d.png", s.name, w)))
		}
		c.do(chromedp.Navigate(ui+"keys"), chromedp.SendKeys(chromedp.CSS("#k-name"), fmt.Sprintf("screenshot %d", w)),
			chromedp.Submit(chromedp.CSS("#create-key")), chromedp.WaitVisible(chromedp.CSS("#secret")))
		c.shoot(filepath.Join(dir, fmt.Sprintf("key-created-%d.png", w)))
		secret := c.text("#secret")
		if err := relayRequest(base, secret); err != nil {
			c.t.Fatalf("relay with the screenshot key: %v", err)
		}
		c.showMe(ui+"me", secret)
		c.shoot(filepath.Join(dir, fmt.Sprintf("me-%d.png", w)))
	}
	c.do(chromedp.Navigate(ui), chromedp.Click(chromedp.CSS(".logout button")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	for _, w := range []int64{1280, 390} {
		c.do(chromedp.EmulateViewport(w, 900), chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#login-form")))
		c.shoot(filepath.Join(dir, fmt.Sprintf("login-%d.png", w)))
	}
	c.checkConsole()
}

func (c *chrome) shoot(path string) {
	c.t.Helper()
	png, err := chromedp.Run(c.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Fatalf("screenshot %s: %v", path, err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		c.t.Fatal(err)
	}
}
