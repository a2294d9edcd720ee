package fakeupstream

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	testModel = "claude-sonnet-4-5-20250929"
	testKey   = "sk-ant-test-key"
)

// messageBody returns a valid Messages API request body.
func messageBody(stream bool) string {
	b, _ := json.Marshal(map[string]any{
		"model":      testModel,
		"max_tokens": 1024,
		"stream":     stream,
		"messages":   []any{map[string]any{"role": "user", "content": "Hello, fake Claude"}},
	})
	return string(b)
}

// newRequest builds a request with a valid credential and anthropic-version;
// hdr adds or, with an empty value, removes headers.
func newRequest(t *testing.T, ctx context.Context, method, url, body string, hdr map[string]string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("x-api-key", testKey)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("content-type", "application/json")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	return req
}

// do sends req with a client that never reuses connections and returns the
// response with its body read; readErr is the error that ended the body.
func do(t *testing.T, req *http.Request) (resp *http.Response, body []byte, readErr error) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, readErr = io.ReadAll(resp.Body)
	return resp, body, readErr
}

// event is one parsed server-sent event.
type event struct {
	Name string
	Data string
	Raw  string
	At   time.Time // when it was read
}

// readEvents parses server-sent events from r until it ends; the error is
// nil on a clean end of stream.
func readEvents(r io.Reader) ([]event, error) {
	br := bufio.NewReader(r)
	var (
		evs []event
		cur event
		raw strings.Builder
	)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				if line != "" || raw.Len() > 0 {
					return evs, io.ErrUnexpectedEOF
				}
				return evs, nil
			}
			return evs, err
		}
		raw.WriteString(line)
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			cur.Raw = raw.String()
			cur.At = time.Now()
			evs = append(evs, cur)
			cur = event{}
			raw.Reset()
		case strings.HasPrefix(line, "event: "):
			cur.Name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.Data = strings.TrimPrefix(line, "data: ")
		}
	}
}

// streamEvents sends a streaming message request with hdr to s and returns the events of its
// answer.
func streamEvents(t *testing.T, s *Server, hdr map[string]string) []event {
	t.Helper()
	_, raw, err := do(t, newRequest(t, context.Background(), http.MethodPost, s.URL()+"/v1/messages", messageBody(true), hdr))
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	evs, err := readEvents(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("parse events: %v", err)
	}
	return evs
}

func eventNames(evs []event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Name)
	}
	return out
}

// decodeMap decodes a JSON object into a generic map.
func decodeMap(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return m
}

// waitOne waits for the n-th finalised request and returns it.
func waitOne(t *testing.T, s *Server, n int) Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reqs, err := s.WaitRequests(ctx, n)
	if err != nil {
		t.Fatalf("wait requests: %v", err)
	}
	return reqs[n-1]
}

// repeatDelta returns n copies of the content_block_delta event name.
func repeatDelta(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "content_block_delta"
	}
	return out
}
