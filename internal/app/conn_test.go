package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

// Short client timeouts for these tests, set through the environment as an operator would.
const (
	testBodyTimeout   = time.Second
	testHeaderTimeout = time.Second
	// closeSlack is what a loaded two-core machine may add to a bound before a stalled
	// connection is seen closed (the code before the bounds never closed them).
	closeSlack = 10 * time.Second
	// headerSlack is smaller: the headers had a fixed 10 s bound before they had a
	// configurable one.
	headerSlack = 5 * time.Second
)

// envWith is devEnv with the given variables set.
func envWith(t *testing.T, vars map[string]string) *config.Env {
	t.Helper()
	env, err := config.LoadEnv(func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, nil)
	if err != nil {
		t.Fatal(err)
	}
	env.LogDir = t.TempDir()
	env.ConfigDir = ""
	return env
}

// stalledConn is a client connection that sent a request's headers declaring a body, and
// never sends the body.
type stalledConn struct {
	opened   time.Time
	done     chan struct{}
	answer   string    // everything the server sent before closing
	closedAt time.Time // when the server closed (or reset) the connection
}

func openStalled(t *testing.T, addr, head string) *stalledConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &stalledConn{opened: time.Now(), done: make(chan struct{})}
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		b, _ := io.ReadAll(c)
		s.answer, s.closedAt = string(b), time.Now()
	}()
	return s
}

// waitClosed checks that every stalled connection was answered with wantStatus and closed
// by the server within bound of its opening.
func waitClosed(t *testing.T, conns []*stalledConn, bound time.Duration, wantStatus string) {
	t.Helper()
	deadline := time.After(bound + closeSlack)
	late := 0
	for i, s := range conns {
		select {
		case <-s.done:
		case <-deadline:
			t.Fatalf("%d of %d stalled connections still open %s after they were opened (the bound is %s)", len(conns)-i, len(conns), bound+closeSlack, bound)
		}
		if !strings.HasPrefix(s.answer, "HTTP/1.1 "+wantStatus) {
			t.Fatalf("stalled connection %d: got answer %q, want HTTP/1.1 %s", i, firstLine(s.answer), wantStatus)
		}
		if !strings.Contains(s.answer, "Connection: close") {
			t.Errorf("stalled connection %d: answer lacks Connection: close:\n%s", i, s.answer)
		}
		if s.closedAt.Sub(s.opened) > bound+closeSlack {
			late++
		}
	}
	if late > 0 {
		t.Errorf("%d stalled connections closed later than %s", late, bound+closeSlack)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// messagesHead is a POST /v1/messages declaring a JSON body of n bytes.
func messagesHead(key string, n int) string {
	h := fmt.Sprintf("POST /v1/messages HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nAnthropic-Version: 2023-06-01\r\nContent-Length: %d\r\n", n)
	if key != "" {
		h += "X-Api-Key: " + key + "\r\n"
	}
	return h + "\r\n"
}

// realTraffic sends one relayed request through the official SDK and one GET /health, and
// fails the test unless both are answered within d.
func realTraffic(t *testing.T, addr, key string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	var sdkErr, healthErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		client := anthropic.NewClient(option.WithBaseURL("http://"+addr), option.WithAPIKey(key), option.WithMaxRetries(0))
		_, sdkErr = client.Messages.New(ctx, anthropic.MessageNewParams{
			Model: "claude-sonnet-4-5-20250929", MaxTokens: 16,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
		})
	}()
	go func() {
		defer wg.Done()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			healthErr = err
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			healthErr = fmt.Errorf("status %d", resp.StatusCode)
		}
	}()
	wg.Wait()
	if sdkErr != nil {
		t.Errorf("a real request while stalled connections fill MAX_CONNECTIONS: %v", sdkErr)
	}
	if healthErr != nil {
		t.Errorf("GET /health while stalled connections fill MAX_CONNECTIONS: %v", healthErr)
	}
}

// devWithUpstream starts dev mode in front of a fake upstream with the given environment
// and returns it with its relay key.
func devWithUpstream(t *testing.T, vars map[string]string) (*devProcess, string) {
	t.Helper()
	up := fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{"sk-ant-api03-conn-upstream"}})
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-api03-conn-upstream")
	t.Setenv("CLAUDE_RELAY_UPSTREAM_URL", up.URL())
	t.Setenv("CLAUDE_RELAY_ADMIN_FILE", t.TempDir()+"/admin.json")
	p := startDev(t, envWith(t, vars), t.TempDir())
	m := exportKey.FindStringSubmatch(p.stdout.String())
	if m == nil {
		t.Fatalf("no relay key in the banner:\n%s", p.stdout.String())
	}
	return p, m[1]
}

// TestDevListenerBoundsSlowClients runs every client-timeout case against one dev-mode
// listener (the sidecar's and the control plane's go through the same serve), with
// MAX_CONNECTIONS at 200 and one-second header and body timeouts.
func TestDevListenerBoundsSlowClients(t *testing.T) {
	const maxConns = 200
	p, key := devWithUpstream(t, map[string]string{
		"MAX_CONNECTIONS":                    fmt.Sprint(maxConns),
		"CLAUDE_RELAY_CLIENT_BODY_TIMEOUT":   testBodyTimeout.String(),
		"CLAUDE_RELAY_CLIENT_HEADER_TIMEOUT": testHeaderTimeout.String(),
	})
	t.Run("StalledBodiesUpToMaxConnectionsAreCutAndRealRequestsStillServed", func(t *testing.T) {
		stalledBodiesAreCut(t, p.addr, key, maxConns)
	})
	t.Run("SlowButMoving10MBUploadIsRelayed", func(t *testing.T) { slowUploadIsRelayed(t, p.addr, key) })
	t.Run("BodyTrickledByteByByteIsCut", func(t *testing.T) { trickledBodyIsCut(t, p.addr, key) })
	t.Run("HeadersTrickledByteByByteAreCut", func(t *testing.T) { trickledHeadersAreCut(t, p.addr) })
}

func stalledBodiesAreCut(t *testing.T, addr, key string, maxConns int) {
	cases := []struct {
		name, key string
		want      string        // the status each stalled request is answered with
		bound     time.Duration // by when each is closed
	}{
		// Refused before the body is read: answered at once; the unread body is drained
		// for at most RefusalDrain, then the connection closes.
		{"without a key", "", "401", time.Second},
		{"with a wrong key", "cr_" + strings.Repeat("0", 64), "401", time.Second},
		// Authenticated, so the relay waits for the body: no byte for the body timeout.
		{"with a key", key, "408", testBodyTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conns := make([]*stalledConn, maxConns)
			for i := range conns {
				conns[i] = openStalled(t, addr, messagesHead(tc.key, 1000))
			}
			realTraffic(t, addr, key, tc.bound+closeSlack)
			waitClosed(t, conns, tc.bound, tc.want)
			if tc.want == "408" && !strings.Contains(conns[0].answer, `"timeout_error"`) {
				t.Errorf("408 answer is not an Anthropic timeout_error:\n%s", conns[0].answer)
			}
		})
	}
}

func slowUploadIsRelayed(t *testing.T, addr, key string) {
	text := strings.Repeat("a", 10_000_000)
	body := `{"model":"claude-sonnet-4-5-20250929","max_tokens":16,"messages":[{"role":"user","content":"` + text + `"}]}`
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	go func() {
		io.WriteString(c, messagesHead(key, len(body)))
		// 64 KiB every 15 ms: about 4 MB/s, so the upload takes several body timeouts
		// but never pauses for one.
		for rest := body; rest != ""; {
			n := min(64<<10, len(rest))
			if _, err := io.WriteString(c, rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
			time.Sleep(15 * time.Millisecond)
		}
	}()
	c.SetReadDeadline(time.Now().Add(2 * time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d %s, want 200", resp.StatusCode, b)
	}
	if took := time.Since(start); took < 2*testBodyTimeout {
		t.Errorf("the upload took %s; the test needs it to outlast the body timeout (%s) several times", took, testBodyTimeout)
	}
}

func trickledBodyIsCut(t *testing.T, addr, key string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, messagesHead(key, 1000))
	// A byte every 300 ms never pauses for the body timeout, but averages far below
	// MinBodyRate.
	defer testutil.Trickle(c, " ", 300*time.Millisecond)()
	c.SetReadDeadline(time.Now().Add(testBodyTimeout + closeSlack))
	b, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("a trickled body was not cut within %s: %v", testBodyTimeout+closeSlack, err)
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 408") || !strings.Contains(string(b), "slower than 1024 bytes/s") {
		t.Fatalf("got %q, want a 408 saying the body arrived too slowly", b)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func trickledHeadersAreCut(t *testing.T, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	closed := make(chan time.Time, 1)
	go func() {
		io.Copy(io.Discard, c)
		closed <- time.Now()
	}()
	head := "POST /v1/messages HTTP/1.1\r\nHost: relay\r\n" + strings.Repeat("X-Slow: loris\r\n", 1000)
	for i := 0; i < len(head); i++ {
		select {
		case at := <-closed:
			if took := at.Sub(start); took > testHeaderTimeout+headerSlack {
				t.Fatalf("headers trickled for %s before the connection closed; the bound is %s", took, testHeaderTimeout)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := c.Write([]byte{head[i]}); err != nil {
			return // closed by the server
		}
		if time.Since(start) > testHeaderTimeout+headerSlack {
			t.Fatalf("headers still being accepted after %s; the bound is %s", time.Since(start).Round(time.Millisecond), testHeaderTimeout)
		}
	}
	t.Fatal("the whole trickled head was accepted")
}

// startControl runs RunControl in the test process and returns its address.
func startControl(t *testing.T, env *config.Env) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var out testutil.Buffer
	go func() {
		done <- RunControl(ctx, env, Options{
			Listen: "127.0.0.1:0", DataDir: t.TempDir(), Stdout: &out, Stderr: &out, Grace: 2 * time.Second,
			Ready: func(a net.Addr) { ready <- a.String() },
		})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("control plane exited at start: %v\n%s", err, out.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("control plane did not start within 60s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("control plane did not stop within 15s")
		}
	})
	return addr
}

func TestControlPlaneCapsConnectionsAndCutsStalledLogins(t *testing.T) {
	const maxConns = 20
	srv := testredis.StartServer(t)
	env := envWith(t, map[string]string{
		"REDIS_URL":                            "redis://" + srv.Addr(),
		"CRS_SECURITY__JWT_SECRET":             strings.Repeat("j", 48),
		"CRS_SECURITY__ENCRYPTION_KEY":         strings.Repeat("k", 32),
		"CLAUDE_RELAY_CONTROL_MAX_CONNECTIONS": fmt.Sprint(maxConns),
		"CLAUDE_RELAY_CLIENT_BODY_TIMEOUT":     testBodyTimeout.String(),
	})
	addr := startControl(t, env)

	conns := make([]*stalledConn, maxConns)
	for i := range conns {
		conns[i] = openStalled(t, addr, "POST /admin/login HTTP/1.1\r\nHost: control\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
	}
	// The admin API still answers (a login would too, but bcrypt at the production cost
	// takes seconds under the race detector).
	start := time.Now()
	for _, path := range []string{"/admin/openapi.json", "/health"} {
		client := &http.Client{Timeout: testBodyTimeout + closeSlack}
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s while stalled logins fill the cap: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: got %d, want 200", path, resp.StatusCode)
		}
	}
	t.Logf("admin API answered after %s", time.Since(start).Round(10*time.Millisecond))
	waitClosed(t, conns, testBodyTimeout, "408")

	m := scrape(t, http.DefaultClient, "http://"+addr+"/metrics")
	if got := m["claude_relay_max_connections"]; got != maxConns {
		t.Errorf("claude_relay_max_connections: got %v, want %d", got, maxConns)
	}
}
