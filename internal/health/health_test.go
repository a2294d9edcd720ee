package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/internal/health"
)

// secret is what a check's full error carries (an address): operators see it, the public
// /health never does.
const secret = "10.1.2.3:6379"

func checks() []health.Check {
	return []health.Check{
		{Name: "redis", Check: func(context.Context) error { return nil }, Info: func() any { return map[string]int{"pool": 4} }},
		{Name: "control_plane", Check: func(context.Context) error {
			return &health.Problem{Public: "unreachable", Warning: true, Err: errors.New("dial " + secret + ": refused")}
		}},
	}
}

func getHealth(t *testing.T, cs []health.Check) (int, map[string]any, string) {
	t.Helper()
	ts := httptest.NewServer(health.Handler("v1", time.Now(), cs))
	defer ts.Close()
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("body %q: %v", raw, err)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control: got %q, want no-store", got)
	}
	return resp.StatusCode, body, string(raw)
}

func TestPublicHealthShowsAWarningAsOKWithItsPublicTextOnly(t *testing.T) {
	status, body, raw := getHealth(t, checks())
	if status != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("got %d %v, want 200 ok", status, body["status"])
	}
	want := map[string]any{"redis": "ok", "control_plane": "unreachable"}
	if d := cmp.Diff(want, body["components"]); d != "" {
		t.Errorf("components (-want +got):\n%s", d)
	}
	if strings.Contains(raw, secret) || strings.Contains(raw, "pool") {
		t.Errorf("the public /health shows an error's text or a detail: %s", raw)
	}
}

func TestPublicHealthFailsWith503AndNamesNothingInternal(t *testing.T) {
	cs := append(checks(),
		health.Check{Name: "store", Check: func(context.Context) error {
			return &health.Problem{Public: "unreachable", Err: errors.New("dial " + secret)}
		}},
		health.Check{Name: "logger", Check: func(context.Context) error { return errors.New("open " + secret) }},
	)
	status, body, raw := getHealth(t, cs)
	if status != http.StatusServiceUnavailable || body["status"] != "degraded" {
		t.Fatalf("got %d %v, want 503 degraded", status, body["status"])
	}
	want := map[string]any{"redis": "ok", "control_plane": "unreachable", "store": "error: unreachable", "logger": "error"}
	if d := cmp.Diff(want, body["components"]); d != "" {
		t.Errorf("components (-want +got):\n%s", d)
	}
	if strings.Contains(raw, secret) {
		t.Errorf("the public /health shows an error's text: %s", raw)
	}
}

func TestReportGivesOperatorsErrorsAndDetails(t *testing.T) {
	h := health.Report(t.Context(), "v1", time.Now(), checks())
	if h.Status != "ok" || h.Version != "v1" {
		t.Fatalf("got %s %s, want ok v1", h.Status, h.Version)
	}
	if c := h.Components["control_plane"]; c.Status != "unreachable" || !strings.Contains(c.Error, secret) {
		t.Errorf("control_plane: got %+v, want the public status and the full error", c)
	}
	if c := h.Components["redis"]; string(c.Details) != `{"pool":4}` {
		t.Errorf("redis details: got %s, want {\"pool\":4}", c.Details)
	}
}

func TestACheckThatHangsFailsAtTheDeadline(t *testing.T) {
	cs := []health.Check{{Name: "slow", Check: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}}
	start := time.Now()
	h := health.Report(t.Context(), "v1", time.Now(), cs)
	if h.Status != "degraded" || !strings.Contains(h.Components["slow"].Error, "deadline") {
		t.Errorf("got %s %+v, want degraded with a deadline error", h.Status, h.Components["slow"])
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the report took %s; every check is bounded by 2s", d)
	}
}
