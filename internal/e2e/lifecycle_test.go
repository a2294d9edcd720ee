package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testutil"
)

const streamBody = `{"model":"claude-sonnet-4-5-20250929","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"Hello, relay"}]}`

// outcome is what a client saw of one request.
type outcome struct {
	sidecar        int
	start, end     time.Time
	ok             bool
	retryable      bool // failed before any response byte: safe to send again elsewhere
	err            string
	spannedSIGTERM bool
}

// send posts one paced stream to p and reads it to the end.
func send(client *http.Client, p *proc, key string) (ok, retryable bool, err error) {
	return sendScripted(client, p, key, scriptHeader(40*time.Millisecond, 10))
}

// sendScripted is send with the fake upstream's script (X-Fake-Script) given.
func sendScripted(client *http.Client, p *proc, key, script string) (ok, retryable bool, err error) {
	req, err := http.NewRequest(http.MethodPost, p.url()+"/v1/messages", strings.NewReader(streamBody))
	if err != nil {
		return false, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("X-Fake-Script", script)
	resp, err := client.Do(req)
	if err != nil {
		return false, true, err // no response: the relay did not take the request
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("X-Relay-Error") == "1" {
		return false, true, fmt.Errorf("503 from the relay: %s", body)
	}
	if resp.StatusCode != 200 {
		return false, false, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	if rerr != nil {
		return false, false, fmt.Errorf("stream cut: %w after %d bytes", rerr, len(body))
	}
	if !strings.Contains(string(body), "event: message_stop") {
		return false, false, fmt.Errorf("stream ended without message_stop: %q", body)
	}
	return true, false, nil
}

// TestRestartOfOneOfTwoSidecarsUnderLoadLosesNothing runs two sidecar processes on one Redis,
// alternates a steady load of streaming clients between them (a client resends a request
// that got no response to the other sidecar, as a load balancer would), sends SIGTERM to
// one mid-load and proves: it exits 0 after its in-flight streams finish, no client sees a
// broken or refused-after-accept request, and Redis holds exactly the usage the upstream
// reported for every request.
func TestRestartOfOneOfTwoSidecarsUnderLoadLosesNothing(t *testing.T) {
	in := newInstall(t)
	sidecars := []*proc{in.startSidecar("sidecar-a"), in.startSidecar("sidecar-b")}

	var (
		mu        sync.Mutex
		outcomes  []outcome
		retries   atomic.Int64
		inflight  [2]atomic.Int64
		sigtermAt atomic.Pointer[time.Time]
		next      atomic.Int64
	)
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	var wg sync.WaitGroup
	const clients = 12
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			defer client.CloseIdleConnections()
			for ctx.Err() == nil {
				i := int(next.Add(1) % 2)
				for attempt := 0; ; attempt++ {
					o := outcome{sidecar: i, start: time.Now()}
					inflight[i].Add(1)
					ok, retryable, err := send(client, sidecars[i], in.key)
					inflight[i].Add(-1)
					o.end, o.ok, o.retryable = time.Now(), ok, retryable
					if err != nil {
						o.err = err.Error()
					}
					if at := sigtermAt.Load(); at != nil && o.start.Before(*at) && o.end.After(*at) {
						o.spannedSIGTERM = true
					}
					mu.Lock()
					outcomes = append(outcomes, o)
					mu.Unlock()
					if ok || !retryable || attempt == 5 {
						break
					}
					retries.Add(1)
					i = 1 - i
				}
			}
		}()
	}

	// SIGTERM sidecar A while it relays streams.
	testutil.Eventually(t, 10*time.Second, "streams in flight on sidecar-a", func() bool { return inflight[0].Load() >= 3 })
	now := time.Now()
	sigtermAt.Store(&now)
	sidecars[0].signal(syscall.SIGTERM)
	if code := sidecars[0].wait(20 * time.Second); code != 0 {
		t.Fatalf("sidecar-a exited %d after SIGTERM, want 0:\n%s", code, sidecars[0].out.String())
	}
	exitedAfter := time.Since(now)
	// Keep the load on sidecar B for a moment: requests meant for A are refused and resent.
	time.Sleep(500 * time.Millisecond)
	stopLoad()
	wg.Wait()
	sidecars[1].signal(syscall.SIGTERM)
	if code := sidecars[1].wait(20 * time.Second); code != 0 {
		t.Fatalf("sidecar-b exited %d after SIGTERM, want 0", code)
	}

	var succeeded, spanned, refused int
	for _, o := range outcomes {
		switch {
		case o.ok:
			succeeded++
			if o.spannedSIGTERM && o.sidecar == 0 {
				spanned++
			}
		case o.retryable:
			refused++
		default:
			t.Errorf("request to sidecar %d lost (a client could not retry it): %s", o.sidecar, o.err)
		}
	}
	t.Logf("%d requests succeeded, %d streams on sidecar-a finished across its SIGTERM, %d refused and resent (%d retries); sidecar-a exited %s after SIGTERM",
		succeeded, spanned, refused, retries.Load(), exitedAfter.Round(time.Millisecond))
	if spanned == 0 {
		t.Error("no stream on sidecar-a spanned its SIGTERM: the drain was not exercised")
	}
	if !strings.Contains(sidecars[0].out.String(), "shutting down") {
		t.Errorf("sidecar-a did not log its drain:\n%s", sidecars[0].out.String())
	}

	// Every request the upstream answered is a client success, and its usage is in Redis.
	var upstreamReqs int64
	var wantIn, wantOut int64
	for _, r := range in.up.Requests() {
		if r.Path != "/v1/messages" || !r.Completed {
			continue
		}
		upstreamReqs++
		wantIn += r.Usage.InputTokens
		wantOut += r.Usage.OutputTokens
	}
	if upstreamReqs != int64(succeeded) {
		t.Errorf("upstream completed %d requests, clients saw %d succeed", upstreamReqs, succeeded)
	}
	got, err := in.st.KeyTotals(context.Background(), in.keyID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Requests != upstreamReqs || got.InputTokens != wantIn || got.OutputTokens != wantOut {
		t.Errorf("Redis totals: got %d requests, %d in, %d out; want %d, %d, %d (what the upstream reported)",
			got.Requests, got.InputTokens, got.OutputTokens, upstreamReqs, wantIn, wantOut)
	}
}

// TestSIGHUPReloadsConfigAndKeepsItOnABrokenEdit edits the HCL under a running sidecar:
// SIGHUP applies a valid edit, and a broken edit is refused with its diagnostics while
// the running configuration stays.
func TestSIGHUPReloadsConfigAndKeepsItOnABrokenEdit(t *testing.T) {
	in := newInstall(t)
	p := in.startSidecar("sidecar")
	client := &http.Client{}
	status := func() int {
		t.Helper()
		ok, _, err := send(client, p, in.key)
		if ok {
			return 200
		}
		var code int
		if _, serr := fmt.Sscanf(err.Error(), "status %d", &code); serr != nil {
			t.Fatalf("request: %v", err)
		}
		return code
	}
	if got := status(); got != 200 {
		t.Fatalf("before reload: got %d, want 200", got)
	}
	in.writeConfig(`
allowlist "elsewhere" { cidrs = ["10.0.0.0/8"] }
pool "default" {}
route "messages" {
  paths     = ["/v1/messages"]
  pool      = "default"
  allowlist = "elsewhere"
}
`)
	p.signal(syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, "the reloaded allowlist refusing 127.0.0.1", func() bool { return status() == 403 })

	in.writeConfig("route \"messages\" {\n  paths = [\n")
	p.signal(syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, "the broken edit being refused", func() bool {
		return strings.Contains(p.out.String(), "configuration reload refused")
	})
	if out := p.out.String(); !strings.Contains(out, "relay.hcl:") {
		t.Errorf("refusal does not point at the file: %s", out)
	}
	if got := status(); got != 403 {
		t.Errorf("after a broken edit: got %d, want 403 (the running configuration stays)", got)
	}
	select {
	case <-p.exited:
		t.Fatalf("sidecar exited on SIGHUP: %v", p.err)
	default:
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
}
