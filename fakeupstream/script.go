package fakeupstream

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ScriptHeader is the request header that carries a per-request [Script] as
// JSON. A script in this header wins over the queue, which it leaves untouched.
const ScriptHeader = "X-Fake-Script"

// Block names accepted in [Script.Blocks].
const (
	BlockText     = "text"
	BlockThinking = "thinking"
	BlockToolUse  = "tool_use"
)

// DefaultDeltas is the number of deltas per content block when Script.Deltas is 0.
const DefaultDeltas = 5

// Usage is a token count as the Messages API reports it.
type Usage struct {
	InputTokens              int64 `json:"input_tokens,omitempty"`
	OutputTokens             int64 `json:"output_tokens,omitempty"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens,omitempty"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens,omitempty"`
	// Ephemeral5mInputTokens is usage.cache_creation.ephemeral_5m_input_tokens.
	Ephemeral5mInputTokens int64 `json:"ephemeral_5m_input_tokens,omitempty"`
	// Ephemeral1hInputTokens is usage.cache_creation.ephemeral_1h_input_tokens.
	Ephemeral1hInputTokens int64 `json:"ephemeral_1h_input_tokens,omitempty"`
}

// Script controls how one /v1/messages request is answered. Zero value = a normal answer.
//
// In JSON (the [ScriptHeader] header) durations are Go duration strings such
// as "250ms" or "1.5s"; a plain JSON number is also accepted and read as
// nanoseconds. [Script.MarshalJSON] always writes strings.
type Script struct {
	// Status, when neither 0 nor 200, answers with an Anthropic error of this
	// status before any byte of a message.
	Status int `json:"status,omitempty"`
	// ErrorType overrides the error type derived from Status.
	ErrorType string `json:"error_type,omitempty"`
	// ErrorMessage overrides the error message derived from the error type.
	ErrorMessage string `json:"error_message,omitempty"`
	// RetryAfter sets, for 429 and 529, the retry-after header (seconds,
	// rounded up) and anthropic-ratelimit-unified-reset (unix seconds of
	// now+RetryAfter). A 429 without RetryAfter uses one second.
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	// FirstByteDelay is waited before the response headers are written.
	FirstByteDelay time.Duration `json:"first_byte_delay,omitempty"`
	// BodyDelay is waited after the response headers of an answer are sent (flushed)
	// and before the first byte of its body: a JSON answer, or the first event of a
	// stream, that stalls after its headers.
	BodyDelay time.Duration `json:"body_delay,omitempty"`
	// Header adds response headers to the answer, as a gateway in front of the API
	// may (cookies, debug headers); a value may be long.
	Header map[string]string `json:"header,omitempty"`
	// Pace is waited between SSE events (streaming only).
	Pace time.Duration `json:"pace,omitempty"`
	// Deltas is the number of deltas per content block (default
	// [DefaultDeltas]); it is capped by the length of the block's content so
	// that no delta is empty. A thinking block adds one signature_delta.
	Deltas int `json:"deltas,omitempty"`
	// Text is split over the deltas of every text block (default generated).
	Text string `json:"text,omitempty"`
	// Blocks lists the content blocks in order: "text", "thinking",
	// "tool_use" (default ["text"]).
	Blocks []string `json:"blocks,omitempty"`
	// ResetAfterEvents, when > 0, aborts the TCP connection abruptly (RST)
	// after that many SSE events, without message_stop. For a non-streaming
	// request the connection is aborted before any byte.
	ResetAfterEvents int `json:"reset_after_events,omitempty"`
	// ErrorEventAfter, when > 0, sends an overloaded_error `event: error`
	// after that many SSE events and ends the stream (streaming only).
	ErrorEventAfter int `json:"error_event_after,omitempty"`
	// Usage overrides the usage reported. A zero InputTokens or OutputTokens
	// keeps the default (max(1, len(body)/4) and the number of deltas); cache
	// fields are taken as given, and CacheCreationInputTokens defaults to
	// Ephemeral5m+Ephemeral1h when only the breakdown is set.
	Usage *Usage `json:"usage,omitempty"`
	// CumulativeDeltaUsage makes message_delta repeat the input and cache
	// fields (as the newer API does), not only output_tokens.
	CumulativeDeltaUsage bool `json:"cumulative_delta_usage,omitempty"`
	// Unified makes the answer, whatever its status, carry the
	// anthropic-ratelimit-unified-* headers a Claude subscription account's
	// answers carry (as observed: Anthropic does not document them).
	Unified *Unified `json:"unified,omitempty"`
}

// Unified is a subscription account's window reading, sent as
// anthropic-ratelimit-unified-* headers.
type Unified struct {
	// Status is -status (default "allowed").
	Status string `json:"status,omitempty"`
	// Claim is -representative-claim (default "five_hour").
	Claim string `json:"claim,omitempty"`
	// FiveHour and SevenDay are the -5h-* and -7d-* headers; nil sends none.
	FiveHour *UnifiedWindow `json:"5h,omitempty"`
	SevenDay *UnifiedWindow `json:"7d,omitempty"`
}

// UnifiedWindow is one window: -utilization (a fraction, 0..1), -reset (unix
// seconds) and -status (default "allowed", "allowed_warning" from 0.75).
type UnifiedWindow struct {
	Utilization float64   `json:"utilization"`
	Reset       time.Time `json:"reset"`
	Status      string    `json:"status,omitempty"`
}

// setHeaders writes u as response headers.
func (u *Unified) setHeaders(h http.Header) {
	h.Set("anthropic-ratelimit-unified-status", cmp.Or(u.Status, "allowed"))
	h.Set("anthropic-ratelimit-unified-representative-claim", cmp.Or(u.Claim, "five_hour"))
	for _, w := range []struct {
		name string
		w    *UnifiedWindow
	}{{"5h", u.FiveHour}, {"7d", u.SevenDay}} {
		if w.w == nil {
			continue
		}
		status := w.w.Status
		if status == "" {
			status = "allowed"
			if w.w.Utilization >= 0.75 {
				status = "allowed_warning"
			}
		}
		p := "anthropic-ratelimit-unified-" + w.name + "-"
		h.Set(p+"utilization", strconv.FormatFloat(w.w.Utilization, 'f', -1, 64))
		h.Set(p+"reset", strconv.FormatInt(w.w.Reset.Unix(), 10))
		h.Set(p+"status", status)
	}
}

// scriptFields is Script without its JSON methods.
type scriptFields Script

// MarshalJSON encodes s with durations as Go duration strings.
func (s Script) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		scriptFields
		RetryAfter     jsonDuration `json:"retry_after,omitempty"`
		FirstByteDelay jsonDuration `json:"first_byte_delay,omitempty"`
		BodyDelay      jsonDuration `json:"body_delay,omitempty"`
		Pace           jsonDuration `json:"pace,omitempty"`
	}{scriptFields(s), jsonDuration(s.RetryAfter), jsonDuration(s.FirstByteDelay), jsonDuration(s.BodyDelay), jsonDuration(s.Pace)})
}

// UnmarshalJSON decodes s, reading durations as Go duration strings or as
// numbers of nanoseconds.
func (s *Script) UnmarshalJSON(data []byte) error {
	var v struct {
		scriptFields
		RetryAfter     jsonDuration `json:"retry_after,omitempty"`
		FirstByteDelay jsonDuration `json:"first_byte_delay,omitempty"`
		BodyDelay      jsonDuration `json:"body_delay,omitempty"`
		Pace           jsonDuration `json:"pace,omitempty"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("decode script: %w", err)
	}
	*s = Script(v.scriptFields)
	s.RetryAfter = time.Duration(v.RetryAfter)
	s.FirstByteDelay = time.Duration(v.FirstByteDelay)
	s.BodyDelay = time.Duration(v.BodyDelay)
	s.Pace = time.Duration(v.Pace)
	return nil
}

// HeaderValue returns s encoded for the [ScriptHeader] request header.
func (s Script) HeaderValue() string {
	b, err := s.MarshalJSON()
	if err != nil {
		// Unreachable: every field of Script has a JSON encoding.
		return "{}"
	}
	return string(b)
}

// validate reports the first problem that would keep s from being played.
func (s Script) validate() error {
	if s.Deltas < 0 {
		return fmt.Errorf("deltas must not be negative, got %d", s.Deltas)
	}
	for _, b := range s.Blocks {
		switch b {
		case BlockText, BlockThinking, BlockToolUse:
		default:
			return fmt.Errorf("unknown block %q (want %q, %q or %q)", b, BlockText, BlockThinking, BlockToolUse)
		}
	}
	if s.Status < 0 || s.Status > 999 {
		return fmt.Errorf("status %d out of range", s.Status)
	}
	if s.Status != 0 && s.Status != 200 && s.Status < 400 {
		return fmt.Errorf("status %d is not an error status", s.Status)
	}
	return nil
}

// isError reports whether s answers with an error status.
func (s Script) isError() bool { return s.Status != 0 && s.Status != 200 }

// jsonDuration is a time.Duration that encodes as a Go duration string and
// decodes from one or from a number of nanoseconds.
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(time.Duration(d).String())), nil
}

func (d *jsonDuration) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("decode duration: %w", err)
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("decode duration: %w", err)
		}
		*d = jsonDuration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("decode duration %s: want a duration string or nanoseconds: %w", data, err)
	}
	*d = jsonDuration(n)
	return nil
}
