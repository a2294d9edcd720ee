package sidecar_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/store"
)

// TestSidecarReportsItsRequestsInFlightAndStreamsToRedisWithinSeconds: a stream held open by
// the upstream shows in the sidecar's load in Redis (and its metric) while it lasts, and the
// load drops back to zero once it ends.
func TestSidecarReportsItsRequestsInFlightAndStreamsToRedisWithinSeconds(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.srv.ReportLoad(ctx, h.st, 20*time.Millisecond)
	waitLoad := func(inFlight, streams int64) {
		t.Helper()
		var got store.SidecarLoad
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			loads, err := h.st.SidecarLoads(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got = loads["sc-test:1"]; got.InFlight == inFlight && got.Streams == streams && !got.At.IsZero() {
				return
			}
		}
		t.Fatalf("sidecar load in Redis: got %+v, want %d in flight and %d streams", got, inFlight, streams)
	}
	waitLoad(0, 0)

	done := make(chan *http.Response, 1)
	go func() {
		done <- h.post("/v1/messages", h.key, streamBody, map[string]string{fakeupstream.ScriptHeader: fakeupstream.Script{BodyDelay: 2 * time.Second}.HeaderValue()})
	}()
	waitLoad(1, 1)
	if m := h.metrics(); !strings.Contains(m, "claude_relay_in_flight_requests 1") || !strings.Contains(m, "claude_relay_active_streams 1") {
		t.Errorf("metrics while the stream is open lack 1 in flight and 1 stream:\n%s", m)
	}
	resp := <-done
	readAll(t, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the held stream: got %d, want 200", resp.StatusCode)
	}
	waitLoad(0, 0)
}
