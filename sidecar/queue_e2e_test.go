package sidecar_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

// queueHarness is a harness with one more sidecar sharing its Redis and a counting proxy in
// front of the fake upstream; every sidecar has seen the proxied account.
func queueHarness(t *testing.T, policy string) (*harness, *countingProxy, []string) {
	t.Helper()
	hcl := policyHCL(policy)
	h := newHarness(t, harnessOptions{hcl: hcl})
	cp := countingServer(t, h.up) // the fake upstream's handler itself, no proxy between
	h.replaceAccounts(1, cp.srv.URL)
	urls := h.sidecars(1, hcl, nil)
	for _, u := range urls {
		testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
			before := cp.total.Load()
			resp, err := postTo(context.Background(), u, h.key, fakeupstream.Script{})
			if err != nil {
				return false
			}
			readAll(t, resp.Body)
			return cp.total.Load() > before
		})
	}
	cp.peak.Store(0)
	return h, cp, urls
}

func postTo(ctx context.Context, url, key string, sc fakeupstream.Script) (*http.Response, error) {
	return http.DefaultClient.Do(relayRequest(ctx, url+"/v1/messages", key, streamBody, map[string]string{fakeupstream.ScriptHeader: sc.HeaderValue()}))
}

func TestQueuedBurstAcrossTwoSidecarsAllSucceedInArrivalOrderWithinConcurrency(t *testing.T) {
	const n, conc = 20, 4
	h, cp, urls := queueHarness(t, `
  concurrency   = 4
  queue_timeout = "30s"
`)
	second := fakeupstream.Script{Deltas: 4, Pace: 110 * time.Millisecond} // nine events: about a second each
	type result struct {
		i     int
		first time.Time // the first stream event
		err   error
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := h.sdk(option.WithBaseURL(urls[i%2]), option.WithHeader(fakeupstream.ScriptHeader, second.HeaderValue()))
			stream := client.Messages.NewStreaming(context.Background(), sdkParams())
			var msg anthropic.Message
			r := result{i: i}
			for stream.Next() {
				if r.first.IsZero() {
					r.first = time.Now()
				}
				if err := msg.Accumulate(stream.Current()); err != nil {
					r.err = err
				}
			}
			if err := stream.Err(); err != nil {
				r.err = err
			}
			results <- r
		}()
		time.Sleep(15 * time.Millisecond) // a known arrival order
	}
	wg.Wait()
	close(results)
	var got []result
	for r := range results {
		if r.err != nil {
			t.Errorf("request %d: %v", r.i, r.err)
		}
		got = append(got, r)
	}
	if t.Failed() {
		t.Log(grepLines(h.logs.String(), "broke"))
		t.FailNow()
	}
	if peak := cp.peak.Load(); peak > conc {
		t.Errorf("upstream in flight: peak %d, want at most %d", peak, conc)
	}
	// First come, first served: sorted by when their stream started, requests keep their
	// arrival order but for slots freed together (at most conc apart).
	slices.SortFunc(got, func(a, b result) int { return a.first.Compare(b.first) })
	order := make([]int, n)
	for rank, r := range got {
		order[rank] = r.i
		if d := rank - r.i; d > conc || d < -conc {
			t.Errorf("request %d started %dth", r.i, rank)
		}
	}
	if t.Failed() {
		t.Logf("start order: %v", order)
	}
	m := h.metrics()
	for _, want := range []string{`claude_relay_queue_wait_seconds_count{outcome="admitted"}`, "claude_relay_queue_waiting 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics: want %s", want)
		}
	}
}

func TestQueueTimeoutAnswersTheExcess429WithRetryAfter(t *testing.T) {
	h, _, urls := queueHarness(t, `
  concurrency   = 2
  queue_timeout = "300ms"
`)
	slow := fakeupstream.Script{FirstByteDelay: time.Second}
	type result struct {
		status int
		retry  string
		msg    string
		took   time.Duration
	}
	results := make(chan result, 5)
	for i := range 5 {
		go func() {
			start := time.Now()
			resp, err := postTo(context.Background(), urls[i%2], h.key, slow)
			if err != nil {
				t.Error(err)
				results <- result{}
				return
			}
			body := readAll(t, resp.Body)
			r := result{status: resp.StatusCode, retry: resp.Header.Get("Retry-After"), took: time.Since(start)}
			if r.status == 429 {
				_, r.msg = anthropicError(t, body)
			}
			results <- r
		}()
		time.Sleep(10 * time.Millisecond)
	}
	ok, refused := 0, 0
	for range 5 {
		r := <-results
		switch r.status {
		case 200:
			ok++
		case 429:
			refused++
			if ra, err := strconv.Atoi(r.retry); err != nil || ra < 1 {
				t.Errorf("retry-after: got %q, want a positive number of seconds", r.retry)
			}
			if !strings.Contains(r.msg, "queue_timeout") || r.took < 300*time.Millisecond || r.took > 900*time.Millisecond {
				t.Errorf("refusal after %v: %q; want it after the 300ms queue_timeout, naming it", r.took, r.msg)
			}
		default:
			t.Errorf("got status %d", r.status)
		}
	}
	if ok != 2 || refused != 3 {
		t.Errorf("got %d admitted and %d refused, want 2 and 3", ok, refused)
	}
	m := h.metrics() + sidecarMetrics(t, urls[1])
	if !strings.Contains(m, "claude_relay_queue_timeouts_total 2") || !strings.Contains(m, "claude_relay_queue_timeouts_total 1") {
		t.Errorf("metrics: want timeouts 2 on one sidecar and 1 on the other:\n%s", grepLines(m, "queue"))
	}
}

func TestAClientThatDisconnectsWhileQueuedFreesItsPlace(t *testing.T) {
	h, _, urls := queueHarness(t, `
  concurrency   = 1
  queue_timeout = "30s"
`)
	ctx := context.Background()
	slow := fakeupstream.Script{FirstByteDelay: 500 * time.Millisecond}
	first := make(chan int, 1)
	go func() {
		resp, err := postTo(ctx, urls[0], h.key, slow)
		if err != nil {
			first <- 0
			return
		}
		readAll(t, resp.Body)
		first <- resp.StatusCode
	}()
	queueKey := h.st.Schema().KeyQueue(h.keyID)
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { n, _ := h.rdb.ZCard(ctx, h.st.Schema().KeyConcurrency(h.keyID)).Result(); return n == 1 })
	leaving, leave := context.WithCancel(ctx)
	gone := make(chan error, 1)
	go func() {
		resp, err := postTo(leaving, urls[1], h.key, fakeupstream.Script{})
		if err == nil {
			resp.Body.Close()
		}
		gone <- err
	}()
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { n, _ := h.rdb.ZCard(ctx, queueKey).Result(); return n == 1 })
	next := make(chan int, 1)
	go func() {
		resp, err := postTo(ctx, urls[0], h.key, fakeupstream.Script{})
		if err != nil {
			next <- 0
			return
		}
		readAll(t, resp.Body)
		next <- resp.StatusCode
	}()
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { n, _ := h.rdb.ZCard(ctx, queueKey).Result(); return n == 2 })
	leave()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("leaving client: got %v, want context.Canceled", err)
	}
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool { n, _ := h.rdb.ZCard(ctx, queueKey).Result(); return n == 1 })
	if got := <-first; got != 200 {
		t.Fatalf("first request: got %d, want 200", got)
	}
	select {
	case got := <-next:
		if got != 200 {
			t.Fatalf("the waiter behind the one who left: got %d, want 200", got)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the waiter behind the one who left was not admitted after the slot freed")
	}
	if m := sidecarMetrics(t, urls[1]); !strings.Contains(m, `claude_relay_queue_wait_seconds_count{outcome="gone"} 1`) {
		t.Errorf("metrics of the sidecar the client left: want one gone wait:\n%s", grepLines(m, "queue"))
	}
}

// sidecarMetrics returns the /metrics text of the sidecar at url.
func sidecarMetrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return readAll(t, resp.Body)
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
