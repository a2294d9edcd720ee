package sidecar_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawGet sends a GET with the request target exactly as given (no client-side
// normalisation, as curl --path-as-is does) and returns the response.
func (h *harness) rawGet(target string) (*http.Response, string) {
	h.t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(h.http.URL, "http://"), 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: relay\r\nX-Api-Key: %s\r\nAnthropic-Version: 2023-06-01\r\nConnection: close\r\n\r\n", target, h.key)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		h.t.Fatalf("GET %s: %v", target, err)
	}
	return resp, readAll(h.t, resp.Body)
}

func TestPathWithDotSegmentsRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	targets := []string{
		"/v1/models/%2e%2e/files",
		"/v1/models/%2E%2E/files",
		"/v1/models/..%2ffiles",
		"/v1/models/..%2Ffiles",
		"/v1/models/%2e%2e%2ffiles",
		"/v1/models/.%2e/.%2e/v1/files",
		"/api/v1/models/%2e%2e/files",
		"/claude/v1/models/%2e%2e/messages/batches",
		"/v1/models/../files",
		"/v1/models/./claude-sonnet-4-5",
		"/v1/models/x%2f..%2f..%2ffiles",
		"/v1/models/%252e%252e/files",
		"/v1/models/..%5cfiles",
		"/v1/models/..;/files",
		"/v1/models/claude%00",
	}
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			resp, body := h.rawGet(target)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("got %d %s, want 400", resp.StatusCode, body)
			}
			if typ, msg := anthropicError(t, body); typ != "invalid_request_error" || !strings.Contains(msg, "request path") {
				t.Errorf("error: got %s %q, want an invalid_request_error about the request path", typ, msg)
			}
		})
	}
	// Nothing reached the upstream, under any path.
	if reqs := h.up.Requests(); len(reqs) != 0 {
		paths := make([]string, len(reqs))
		for i, r := range reqs {
			paths[i] = r.Path
		}
		t.Errorf("the upstream received %d requests, want none: %q", len(reqs), paths)
	}
}

func TestPlainModelPathsStillRelayed(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for target, want := range map[string]string{
		"/v1/models/claude-sonnet-4-5-20250929":          "/v1/models/claude-sonnet-4-5-20250929",
		"/api/v1/models/claude-sonnet-4-5-20250929":      "/v1/models/claude-sonnet-4-5-20250929",
		"/claude/v1/models/claude-sonnet-4-5-20250929":   "/v1/models/claude-sonnet-4-5-20250929",
		"/v1/models/claude-sonnet-4-5-20250929?x=%2e%2e": "/v1/models/claude-sonnet-4-5-20250929",
	} {
		h.up.Reset()
		resp, body := h.rawGet(target)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: got %d %s, want 200", target, resp.StatusCode, body)
		}
		reqs := h.up.Requests()
		if len(reqs) != 1 || reqs[0].Path != want {
			t.Errorf("GET %s: upstream got %v, want one request for %s", target, reqs, want)
		}
	}
}

func TestRootProbeIsAnsweredAndNotCountedAsUnmatched(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		req, _ := http.NewRequest(method, h.http.URL+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s /: got %d %s, want 200", method, resp.StatusCode, body)
		}
		if method == http.MethodGet && !strings.Contains(body, "/v1/messages") {
			t.Errorf("GET /: got %q, want a pointer to the API", body)
		}
	}
	if m := h.metrics(); strings.Contains(m, `route="unmatched"`) {
		t.Errorf("the probe was counted as an unmatched request:\n%s", m)
	}
	if logs := h.logs.String(); strings.Contains(logs, "no route") {
		t.Errorf("the probe was logged as unmatched:\n%s", logs)
	}
	if n := len(h.up.Requests()); n != 0 {
		t.Errorf("the upstream received %d requests, want none", n)
	}
}
