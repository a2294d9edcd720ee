package sidecar_test

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

// keepaliveHarness is a queueHarness whose one slot is held by a request the upstream
// answers after hold; it returns once that request is in flight.
func keepaliveHarness(t *testing.T, policy string, hold time.Duration) (*harness, []string, chan int) {
	t.Helper()
	h, _, urls := queueHarness(t, policy)
	held := make(chan int, 1)
	go func() {
		resp, err := postTo(context.Background(), urls[0], h.key, fakeupstream.Script{FirstByteDelay: hold})
		if err != nil {
			held <- 0
			return
		}
		readAll(t, resp.Body)
		held <- resp.StatusCode
	}()
	ctx := context.Background()
	testutil.Eventually(t, 5*time.Second, "the first request holding the concurrency slot", func() bool {
		n, _ := h.rdb.ZCard(ctx, h.st.Schema().KeyConcurrency(h.keyID)).Result()
		return n == 1
	})
	return h, urls, held
}

// sseEvents reads a stream's events: their names in order, and each one's data.
type sseEvent struct {
	name, data string
	at         time.Duration // since the request was sent
}

func readEvents(t *testing.T, resp *http.Response, sent time.Time) []sseEvent {
	t.Helper()
	var evs []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur = sseEvent{name: strings.TrimPrefix(line, "event: "), at: time.Since(sent)}
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		case line == "" && cur.name != "":
			evs = append(evs, cur)
			cur = sseEvent{}
		}
	}
	return evs
}

func eventNames(evs []sseEvent) []string {
	names := make([]string, len(evs))
	for i, e := range evs {
		names[i] = e.name
	}
	return names
}

func TestQueueKeepalivePingsAStreamedWaiterThenRelaysItsStream(t *testing.T) {
	const hold = 1200 * time.Millisecond
	h, urls, held := keepaliveHarness(t, `
  concurrency     = 1
  queue_timeout   = "20s"
  queue_keepalive = "200ms"
`, hold)

	// A streamed waiter on the other sidecar: the stream opens after one keep-alive
	// interval, long before the slot frees, with ping events until it does.
	sent := time.Now()
	resp, err := postTo(context.Background(), urls[1], h.key, fakeupstream.Script{})
	if err != nil {
		t.Fatal(err)
	}
	headers := time.Since(sent)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("got %d %q, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if headers > hold-300*time.Millisecond {
		t.Errorf("the waiter's stream opened after %v: want it open after one 200ms keep-alive, before the slot frees (%v)", headers, hold)
	}
	evs := readEvents(t, resp, sent)
	names := eventNames(evs)
	pings := 0
	for pings < len(names) && names[pings] == "ping" {
		if evs[pings].data != `{"type": "ping"}` {
			t.Errorf("ping data %q", evs[pings].data)
		}
		pings++
	}
	if pings < 2 {
		t.Errorf("events %v: want at least two pings while waiting about a second", names)
	}
	if rest := names[pings:]; len(rest) < 3 || rest[0] != "message_start" || rest[len(rest)-1] != "message_stop" {
		t.Errorf("after the pings: %v, want the upstream's stream from message_start to message_stop", rest)
	}
	if got := <-held; got != 200 {
		t.Fatalf("the request holding the slot: %d", got)
	}
	if m := sidecarMetrics(t, urls[1]); !strings.Contains(m, "claude_relay_queue_pings_total") || strings.Contains(m, "claude_relay_queue_pings_total 0\n") {
		t.Errorf("metrics: want claude_relay_queue_pings_total above 0:\n%s", grepLines(m, "queue"))
	}
}

func TestQueueKeepaliveAcceptedByTheSDKAndNeverSentToAJSONRequest(t *testing.T) {
	const hold = time.Second
	h, urls, held := keepaliveHarness(t, `
  concurrency     = 1
  queue_timeout   = "20s"
  queue_keepalive = "150ms"
`, hold)

	streamed := make(chan error, 1)
	go func() {
		msg, err := streamMessage(h.sdk(option.WithBaseURL(urls[1])), sdkParams())
		if err != nil {
			streamed <- err
			return
		}
		if len(msg.Content) == 0 || msg.Usage.OutputTokens == 0 {
			streamed <- errors.New("the SDK accumulated an empty message")
			return
		}
		streamed <- nil
	}()
	time.Sleep(50 * time.Millisecond) // the stream queues first

	// A JSON request waits silently: its answer is the upstream's JSON, nothing before it.
	sent := time.Now()
	resp, body, err := sendMessage(urls[0], h.key, jsonBody, "")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !strings.HasPrefix(body, "{") {
		t.Errorf("JSON waiter: got %d %q %.60q, want the upstream's JSON answer", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if took := time.Since(sent); took < hold/2 {
		t.Errorf("JSON waiter answered after %v: it should have waited for the slot", took)
	}
	if err := <-streamed; err != nil {
		t.Errorf("SDK stream through the keep-alive: %v", err)
	}
	if got := <-held; got != 200 {
		t.Fatalf("the request holding the slot: %d", got)
	}
}

func TestQueueKeepaliveTimeoutAndUpstreamErrorsAreStreamErrorEvents(t *testing.T) {
	h, urls, held := keepaliveHarness(t, `
  concurrency     = 1
  queue_timeout   = "700ms"
  queue_keepalive = "200ms"
`, 2*time.Second)

	// The queue times out after the stream opened: a rate_limit_error event, not a 429.
	sent := time.Now()
	resp, err := postTo(context.Background(), urls[1], h.key, fakeupstream.Script{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200 (the keep-alive opened the stream)", resp.StatusCode)
	}
	evs := readEvents(t, resp, sent)
	last := evs[len(evs)-1]
	if len(evs) < 3 || evs[0].name != "ping" || last.name != "error" ||
		!strings.Contains(last.data, `"rate_limit_error"`) || !strings.Contains(last.data, "queue_timeout") {
		t.Errorf("events %v, last %q: want pings then a rate_limit_error event naming queue_timeout", eventNames(evs), last.data)
	}
	if last.at < 700*time.Millisecond {
		t.Errorf("the error event came after %v, before the 700ms queue_timeout", last.at)
	}
	if m := sidecarMetrics(t, urls[1]); !strings.Contains(m, `status="429"`) {
		t.Errorf("metrics: want the timed-out request counted as 429:\n%s", grepLines(m, "requests_total"))
	}

	// The SDK sees that event as an error of the stream.
	client := h.sdk(option.WithBaseURL(urls[1]), option.WithMaxRetries(0))
	stream := client.Messages.NewStreaming(context.Background(), sdkParams())
	for stream.Next() {
	}
	if err := stream.Err(); err == nil || !strings.Contains(err.Error(), "queue_timeout") {
		t.Errorf("SDK: got %v, want the stream's error naming queue_timeout", err)
	}
	if got := <-held; got != 200 {
		t.Fatalf("the request holding the slot: %d", got)
	}

	// An upstream error after the stream opened goes out as the stream's error event, with
	// the upstream's own error object.
	h2, urls2, held2 := keepaliveHarness(t, `
  concurrency     = 1
  queue_timeout   = "20s"
  queue_keepalive = "200ms"
`, 700*time.Millisecond)
	sent = time.Now()
	resp, err = postTo(context.Background(), urls2[1], h2.key, fakeupstream.Script{Status: 400, ErrorMessage: "max_tokens: too large"})
	if err != nil {
		t.Fatal(err)
	}
	evs = readEvents(t, resp, sent)
	last = evs[len(evs)-1]
	if resp.StatusCode != 200 || evs[0].name != "ping" || last.name != "error" ||
		!strings.Contains(last.data, `"invalid_request_error"`) || !strings.Contains(last.data, "max_tokens: too large") {
		t.Errorf("got %d, events %v, last %q: want pings then the upstream's invalid_request_error", resp.StatusCode, eventNames(evs), last.data)
	}
	if got := <-held2; got != 200 {
		t.Fatalf("the request holding the slot: %d", got)
	}
}
