package fakeupstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStreamDefaultSequenceAndHeaders(t *testing.T) {
	s := Start(t, Options{})
	body := messageBody(true)
	resp, raw, err := do(t, newRequest(t, context.Background(), http.MethodPost, s.URL()+"/v1/messages", body, nil))
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200 (body %s)", resp.StatusCode, raw)
	}
	for name, want := range map[string]string{
		"Content-Type":              "text/event-stream; charset=utf-8",
		"Cache-Control":             "no-cache",
		"anthropic-organization-id": OrganizationID,
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("header %s: got %q, want %q", name, got, want)
		}
	}
	if got := resp.Header.Get("request-id"); !strings.HasPrefix(got, "req_") {
		t.Errorf("request-id: got %q, want req_ prefix", got)
	}

	evs, err := readEvents(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("parse events: %v", err)
	}
	want := slices.Concat([]string{"message_start", "content_block_start", "ping"}, repeatDelta(DefaultDeltas),
		[]string{"content_block_stop", "message_delta", "message_stop"})
	if diff := cmp.Diff(want, eventNames(evs)); diff != "" {
		t.Fatalf("event names (-want +got):\n%s", diff)
	}

	start := decodeMap(t, evs[0].Data)
	msg := start["message"].(map[string]any)
	if id, _ := msg["id"].(string); !strings.HasPrefix(id, "msg_") {
		t.Errorf("message id: got %q, want msg_ prefix", id)
	}
	wantInput := float64(len(body) / 4)
	wantStart := map[string]any{
		"type": "message", "role": "assistant", "model": testModel, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil,
		"usage": map[string]any{
			"input_tokens": wantInput, "cache_creation_input_tokens": 0.0, "cache_read_input_tokens": 0.0,
			"cache_creation": map[string]any{"ephemeral_5m_input_tokens": 0.0, "ephemeral_1h_input_tokens": 0.0},
			"output_tokens":  1.0, "service_tier": "standard",
		},
	}
	delete(msg, "id")
	if diff := cmp.Diff(wantStart, msg); diff != "" {
		t.Errorf("message_start message (-want +got):\n%s", diff)
	}
	wantDelta := map[string]any{
		"type":  "message_delta",
		"delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil},
		"usage": map[string]any{"output_tokens": float64(DefaultDeltas)},
	}
	if diff := cmp.Diff(wantDelta, decodeMap(t, evs[len(evs)-2].Data)); diff != "" {
		t.Errorf("message_delta (-want +got):\n%s", diff)
	}
	if got, want := evs[len(evs)-1].Data, `{"type":"message_stop"}`; got != want {
		t.Errorf("message_stop: got %s, want %s", got, want)
	}

	rec := waitOne(t, s, 1)
	if got, want := strings.Join(rec.Events, ""), string(raw); got != want {
		t.Errorf("recorded events differ from the bytes sent:\ngot  %q\nwant %q", got, want)
	}
	wantUsage := Usage{InputTokens: int64(len(body) / 4), OutputTokens: DefaultDeltas}
	if rec.Usage != wantUsage {
		t.Errorf("recorded usage: got %+v, want %+v", rec.Usage, wantUsage)
	}
	if !rec.Completed || rec.Canceled {
		t.Errorf("completed/canceled: got %v/%v, want true/false", rec.Completed, rec.Canceled)
	}
}

func TestStreamDeltaUsageShape(t *testing.T) {
	tests := []struct {
		name   string
		script Script
		want   map[string]any
	}{
		{
			name:   "output only by default",
			script: Script{Deltas: 2, Usage: &Usage{InputTokens: 10, CacheReadInputTokens: 5}},
			want:   map[string]any{"output_tokens": 2.0},
		},
		{
			name:   "cumulative repeats input and cache",
			script: Script{Deltas: 2, CumulativeDeltaUsage: true, Usage: &Usage{InputTokens: 10, CacheReadInputTokens: 5, CacheCreationInputTokens: 7}},
			want: map[string]any{
				"output_tokens": 2.0, "input_tokens": 10.0,
				"cache_creation_input_tokens": 7.0, "cache_read_input_tokens": 5.0,
			},
		},
	}
	s := Start(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := streamEvents(t, s, map[string]string{ScriptHeader: tt.script.HeaderValue()})
			delta := decodeMap(t, evs[len(evs)-2].Data)
			if diff := cmp.Diff(tt.want, delta["usage"]); diff != "" {
				t.Errorf("message_delta usage (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUsageDefaultsAndOverrides(t *testing.T) {
	body := messageBody(false)
	def := int64(len(body) / 4)
	tests := []struct {
		name   string
		script Script
		want   Usage
	}{
		{"defaults from body and deltas", Script{Deltas: 3}, Usage{InputTokens: def, OutputTokens: 3}},
		{"deltas counted over all blocks", Script{Deltas: 2, Blocks: []string{"thinking", "text", "tool_use"}},
			Usage{InputTokens: def, OutputTokens: 2 + 1 + 2 + 2}},
		{"explicit input and output", Script{Usage: &Usage{InputTokens: 100, OutputTokens: 42}}, Usage{InputTokens: 100, OutputTokens: 42}},
		{"cache breakdown sums into creation", Script{Deltas: 1, Usage: &Usage{Ephemeral5mInputTokens: 30, Ephemeral1hInputTokens: 12, CacheReadInputTokens: 9}},
			Usage{InputTokens: def, OutputTokens: 1, CacheCreationInputTokens: 42, CacheReadInputTokens: 9, Ephemeral5mInputTokens: 30, Ephemeral1hInputTokens: 12}},
		{"creation alone leaves breakdown zero", Script{Deltas: 1, Usage: &Usage{CacheCreationInputTokens: 50}},
			Usage{InputTokens: def, OutputTokens: 1, CacheCreationInputTokens: 50}},
	}
	s := Start(t, Options{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, context.Background(), http.MethodPost, s.URL()+"/v1/messages", body,
				map[string]string{ScriptHeader: tt.script.HeaderValue()})
			resp, raw, err := do(t, req)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("got status %d err %v body %s, want 200", resp.StatusCode, err, raw)
			}
			u := decodeMap(t, string(raw))["usage"].(map[string]any)
			cc := u["cache_creation"].(map[string]any)
			got := Usage{
				InputTokens: int64(u["input_tokens"].(float64)), OutputTokens: int64(u["output_tokens"].(float64)),
				CacheCreationInputTokens: int64(u["cache_creation_input_tokens"].(float64)),
				CacheReadInputTokens:     int64(u["cache_read_input_tokens"].(float64)),
				Ephemeral5mInputTokens:   int64(cc["ephemeral_5m_input_tokens"].(float64)),
				Ephemeral1hInputTokens:   int64(cc["ephemeral_1h_input_tokens"].(float64)),
			}
			if got != tt.want {
				t.Errorf("reported usage: got %+v, want %+v", got, tt.want)
			}
			if rec := waitOne(t, s, i+1); rec.Usage != tt.want {
				t.Errorf("recorded usage: got %+v, want %+v", rec.Usage, tt.want)
			}
		})
	}
}

func TestStreamResetAfterNEvents(t *testing.T) {
	tests := []struct {
		name string
		n    int
	}{
		{"after message_start", 1},
		{"after ping", 3},
		{"mid deltas", 5},
	}
	s := Start(t, Options{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, context.Background(), http.MethodPost, s.URL()+"/v1/messages", messageBody(true),
				map[string]string{ScriptHeader: Script{ResetAfterEvents: tt.n}.HeaderValue()})
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("do: %v", err)
			}
			defer resp.Body.Close()
			evs, err := readEvents(resp.Body)
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("read error: got %v, want unexpected EOF or connection reset", err)
			}
			t.Logf("client saw: %v", err)
			if len(evs) != tt.n {
				t.Errorf("events before the reset: got %d, want %d", len(evs), tt.n)
			}
			rec := waitOne(t, s, i+1)
			if len(rec.Events) != tt.n || rec.Completed || rec.Canceled {
				t.Errorf("record: got %d events completed=%v canceled=%v, want %d events, false, false",
					len(rec.Events), rec.Completed, rec.Canceled, tt.n)
			}
		})
	}
}

func TestResetBeforeAnyByteForJSON(t *testing.T) {
	s := Start(t, Options{})
	s.Enqueue(Script{ResetAfterEvents: 1})
	req := newRequest(t, context.Background(), http.MethodPost, s.URL()+"/v1/messages", messageBody(false), nil)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d, want a transport error", resp.StatusCode)
	}
	if rec := waitOne(t, s, 1); rec.Status != 0 || rec.Completed {
		t.Errorf("record: got status %d completed %v, want 0 false", rec.Status, rec.Completed)
	}
}

func TestStreamErrorEventAfterN(t *testing.T) {
	s := Start(t, Options{})
	s.Enqueue(Script{ErrorEventAfter: 4})
	evs := streamEvents(t, s, nil)
	want := []string{"message_start", "content_block_start", "ping", "content_block_delta", "error"}
	if diff := cmp.Diff(want, eventNames(evs)); diff != "" {
		t.Fatalf("event names (-want +got):\n%s", diff)
	}
	if got, want := evs[4].Data, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`; got != want {
		t.Errorf("error event data: got %s, want %s", got, want)
	}
	rec := waitOne(t, s, 1)
	if len(rec.Events) != 5 || !rec.Completed {
		t.Errorf("record: got %d events completed=%v, want 5 true", len(rec.Events), rec.Completed)
	}
	if rec.Usage.OutputTokens != 1 {
		t.Errorf("recorded output tokens: got %d, want 1 (only message_start was reported)", rec.Usage.OutputTokens)
	}
}

func TestStreamPacingKeepsOrderAndSpacing(t *testing.T) {
	const pace = 25 * time.Millisecond
	s := Start(t, Options{})
	s.Enqueue(Script{Pace: pace, Deltas: 4, Text: "abcd"})
	started := time.Now()
	req := newRequest(t, context.Background(), http.MethodPost, s.URL()+"/v1/messages", messageBody(true), nil)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatalf("do: %v", err)
	}
	defer resp.Body.Close()
	evs, err := readEvents(resp.Body)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	if got, want := len(evs), 3+4+3; got != want {
		t.Fatalf("events: got %d, want %d", got, want)
	}
	var text strings.Builder
	for _, e := range evs {
		if e.Name == "content_block_delta" {
			text.WriteString(decodeMap(t, e.Data)["delta"].(map[string]any)["text"].(string))
		}
	}
	if got, want := text.String(), "abcd"; got != want {
		t.Errorf("deltas in order: got %q, want %q", got, want)
	}
	minTotal := time.Duration(len(evs)-1) * pace
	if got := evs[len(evs)-1].At.Sub(started); got < minTotal {
		t.Errorf("stream duration: got %v, want at least %v", got, minTotal)
	}
	if got := evs[len(evs)-1].At.Sub(evs[0].At); got < minTotal/2 {
		t.Errorf("first to last event: got %v, want at least %v (events must not be buffered)", got, minTotal/2)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].At.Before(evs[i-1].At) {
			t.Errorf("event %d read before event %d", i, i-1)
		}
	}
}

func TestFirstByteDelayHoldsHeaders(t *testing.T) {
	const delay = 80 * time.Millisecond
	s := Start(t, Options{Default: Script{FirstByteDelay: delay}})
	for _, stream := range []bool{false, true} {
		started := time.Now()
		resp, _, err := do(t, newRequest(t, context.Background(), http.MethodPost, s.URL()+"/v1/messages", messageBody(stream), nil))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream=%v: got status %d err %v, want 200", stream, resp.StatusCode, err)
		}
		if got := time.Since(started); got < delay {
			t.Errorf("stream=%v: response after %v, want at least %v", stream, got, delay)
		}
	}
}

func TestBodyDelaySendsHeadersThenWaits(t *testing.T) {
	const delay = 150 * time.Millisecond
	s := Start(t, Options{Default: Script{BodyDelay: delay, Header: map[string]string{"Set-Cookie": "gw=1"}}})
	for _, stream := range []bool{false, true} {
		started := time.Now()
		req := newRequest(t, context.Background(), http.MethodPost, s.URL()+"/v1/messages", messageBody(stream), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream=%v: got %v %v, want 200", stream, resp, err)
		}
		headersAt := time.Since(started)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(body) == 0 {
			t.Fatalf("stream=%v: body %q, %v", stream, body, err)
		}
		if headersAt >= delay || time.Since(started) < delay {
			t.Errorf("stream=%v: headers after %v, body complete after %v; want headers at once and the body after %v", stream, headersAt, time.Since(started), delay)
		}
		if got := resp.Header.Get("Set-Cookie"); got != "gw=1" {
			t.Errorf("stream=%v: Set-Cookie: got %q, want the scripted header", stream, got)
		}
	}
}

func TestLongLineSingleDelta(t *testing.T) {
	text := strings.Repeat("0123456789abcdef", 200*1024/16)
	s := Start(t, Options{})
	s.Enqueue(Script{Deltas: 1, Text: text})
	evs := streamEvents(t, s, nil)
	var deltas []string
	for _, e := range evs {
		if e.Name == "content_block_delta" {
			deltas = append(deltas, e.Data)
		}
	}
	if len(deltas) != 1 {
		t.Fatalf("deltas: got %d, want 1", len(deltas))
	}
	if got := len(deltas[0]); got < len(text) {
		t.Errorf("data line length: got %d, want at least %d", got, len(text))
	}
	if got := decodeMap(t, deltas[0])["delta"].(map[string]any)["text"]; got != text {
		t.Errorf("delta text differs from the script text (len %d)", len(text))
	}
}

func TestCanceledRequestIsRecorded(t *testing.T) {
	s := Start(t, Options{})
	s.Enqueue(Script{Pace: 20 * time.Millisecond, Deltas: 200})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := newRequest(t, ctx, http.MethodPost, s.URL()+"/v1/messages", messageBody(true), nil)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatalf("do: %v", err)
	}
	buf := make([]byte, 1)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatalf("read first byte: %v", err)
	}
	cancel()
	resp.Body.Close()
	rec := waitOne(t, s, 1)
	if !rec.Canceled || rec.Completed {
		t.Errorf("canceled/completed: got %v/%v, want true/false", rec.Canceled, rec.Completed)
	}
	if len(rec.Events) >= 200 {
		t.Errorf("events written: got %d, want fewer than the 200 deltas", len(rec.Events))
	}
}

func TestCanceledDuringFirstByteDelay(t *testing.T) {
	s := Start(t, Options{})
	s.Enqueue(Script{FirstByteDelay: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := newRequest(t, ctx, http.MethodPost, s.URL()+"/v1/messages", messageBody(true), nil)
	if resp, err := (&http.Client{}).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d, want a context error", resp.StatusCode)
	}
	rec := waitOne(t, s, 1)
	if !rec.Canceled || rec.Status != 0 {
		t.Errorf("canceled/status: got %v/%d, want true/0", rec.Canceled, rec.Status)
	}
}

func TestConcurrentStreamsAllComplete(t *testing.T) {
	const n = 16
	s := Start(t, Options{Default: Script{Deltas: 20, Pace: time.Millisecond}})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest(http.MethodPost, s.URL()+"/v1/messages", strings.NewReader(messageBody(true)))
			if err != nil {
				errs <- err
				return
			}
			req.Header.Set("x-api-key", testKey)
			req.Header.Set("anthropic-version", "2023-06-01")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			evs, err := readEvents(resp.Body)
			if err != nil {
				errs <- err
				return
			}
			if last := evs[len(evs)-1].Name; last != "message_stop" {
				errs <- errors.New("last event " + last)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("stream: %v", err)
	}
	waitOne(t, s, n)
	for i, r := range s.Requests() {
		if !r.Completed {
			t.Errorf("request %d: got completed=false, want true", i)
		}
	}
}
