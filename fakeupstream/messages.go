package fakeupstream

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultToolInput is the input of a generated tool_use block.
const DefaultToolInput = `{"location": "San Francisco, CA", "unit": "celsius"}`

// DefaultToolName names a generated tool_use block when the request declares no tools.
const DefaultToolName = "get_weather"

var errNotObject = errors.New("the request body must be a JSON object")

// messagesRequest is the part of a Messages API request body the fake reads.
type messagesRequest struct {
	Model     string            `json:"model"`
	MaxTokens *int64            `json:"max_tokens"`
	Messages  []json.RawMessage `json:"messages"`
	Stream    bool              `json:"stream"`
	Tools     []struct {
		Name string `json:"name"`
	} `json:"tools"`
	hasMessages bool
}

// decodeRequest decodes a JSON object body into req.
func decodeRequest(body []byte, req *messagesRequest) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return errNotObject
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &probe); err != nil {
		return fmt.Errorf("the request body is not valid JSON: %w", err)
	}
	if err := json.Unmarshal(trimmed, req); err != nil {
		return fmt.Errorf("invalid request body: %w", err)
	}
	_, req.hasMessages = probe["messages"]
	return nil
}

// missing names the first required field that is absent, as the API does.
func (req *messagesRequest) missing(needMaxTokens bool) string {
	switch {
	case req.Model == "":
		return "model: Field required"
	case needMaxTokens && req.MaxTokens == nil:
		return "max_tokens: Field required"
	case !req.hasMessages:
		return "messages: Field required"
	case len(req.Messages) == 0:
		return "messages: List should have at least 1 item after validation, not 0"
	}
	return ""
}

// messages answers POST /v1/messages.
func (x *exchange) messages() {
	var req messagesRequest
	if err := decodeRequest(x.rec.Body, &req); err != nil {
		x.fail(http.StatusBadRequest, ErrInvalidRequest, err.Error())
		return
	}
	if msg := req.missing(true); msg != "" {
		x.fail(http.StatusBadRequest, ErrInvalidRequest, msg)
		return
	}
	var sc Script
	if h := x.r.Header.Get(ScriptHeader); h != "" {
		if err := json.Unmarshal([]byte(h), &sc); err != nil {
			x.fail(http.StatusBadRequest, ErrInvalidRequest, fmt.Sprintf("%s: %v", ScriptHeader, err))
			return
		}
	} else {
		sc = x.s.nextScript()
	}
	x.rec.Script = sc
	if err := sc.validate(); err != nil {
		x.s.log.Warn("invalid script", "error", err)
		x.fail(http.StatusBadRequest, ErrInvalidRequest, fmt.Sprintf("fake script: %v", err))
		return
	}
	if !x.sleep(sc.FirstByteDelay) {
		return
	}
	if sc.Unified != nil {
		sc.Unified.setHeaders(x.w.Header())
	}
	for k, v := range sc.Header {
		x.w.Header().Set(k, v)
	}
	if sc.isError() {
		x.scriptedError(sc)
		return
	}
	p := newPlan(sc, &req, x.rec.Body)
	if sc.ResetAfterEvents > 0 && !req.Stream {
		x.abort()
		return
	}
	if req.Stream {
		x.stream(sc, p)
		return
	}
	x.writeJSONAfter(http.StatusOK, p.message(true), sc.BodyDelay)
	if x.rec.Completed {
		x.rec.Usage = p.usage
	}
}

// scriptedError answers with the error status of sc.
func (x *exchange) scriptedError(sc Script) {
	errType := sc.ErrorType
	if errType == "" {
		errType = errorTypeFor(sc.Status)
	}
	msg := sc.ErrorMessage
	if msg == "" {
		msg = messageFor(errType)
	}
	retry := sc.RetryAfter
	switch sc.Status {
	case http.StatusTooManyRequests:
		if retry <= 0 {
			retry = defaultRetryAfter
		}
	case 529:
	default:
		retry = 0
	}
	x.failRetry(sc.Status, errType, msg, retry)
}

// block is one planned content block.
type block struct {
	kind      string
	deltas    []string // text, thinking or partial_json pieces
	signature string   // thinking only
	toolID    string   // tool_use only
	toolName  string   // tool_use only
}

// plan is the whole answer a script produces for a request.
type plan struct {
	id     string
	model  string
	blocks []block
	usage  Usage // final usage; message_start reports OutputTokens 1
	stop   string
}

func newPlan(sc Script, req *messagesRequest, body []byte) *plan {
	n := sc.Deltas
	if n == 0 {
		n = DefaultDeltas
	}
	kinds := sc.Blocks
	if len(kinds) == 0 {
		kinds = []string{BlockText}
	}
	p := &plan{id: newID("msg_"), model: req.Model, stop: "end_turn"}
	var deltaCount int64
	for _, k := range kinds {
		b := block{kind: k}
		switch k {
		case BlockText:
			if sc.Text != "" {
				b.deltas = splitRunes(sc.Text, n)
			} else {
				b.deltas = generate(textWords(), n)
			}
		case BlockThinking:
			b.deltas = generate(thinkingWords(), n)
			sum := sha256.Sum256([]byte(strings.Join(b.deltas, "")))
			b.signature = "EqQB" + base64.StdEncoding.EncodeToString(sum[:])
			deltaCount++ // signature_delta
		case BlockToolUse:
			b.deltas = splitRunes(DefaultToolInput, n)
			b.toolID = newID("toolu_")
			b.toolName = DefaultToolName
			if len(req.Tools) > 0 && req.Tools[0].Name != "" {
				b.toolName = req.Tools[0].Name
			}
			p.stop = "tool_use"
		}
		deltaCount += int64(len(b.deltas))
		p.blocks = append(p.blocks, b)
	}
	p.usage = Usage{InputTokens: inputTokens(body), OutputTokens: deltaCount}
	if u := sc.Usage; u != nil {
		if u.InputTokens != 0 {
			p.usage.InputTokens = u.InputTokens
		}
		if u.OutputTokens != 0 {
			p.usage.OutputTokens = u.OutputTokens
		}
		p.usage.CacheReadInputTokens = u.CacheReadInputTokens
		p.usage.Ephemeral5mInputTokens = u.Ephemeral5mInputTokens
		p.usage.Ephemeral1hInputTokens = u.Ephemeral1hInputTokens
		p.usage.CacheCreationInputTokens = u.CacheCreationInputTokens
		if p.usage.CacheCreationInputTokens == 0 {
			p.usage.CacheCreationInputTokens = u.Ephemeral5mInputTokens + u.Ephemeral1hInputTokens
		}
	}
	return p
}

// message returns the message object: whole (JSON answer) or as
// message_start carries it (no content, output_tokens 1, no stop reason).
func (p *plan) message(whole bool) wireMessage {
	m := wireMessage{ID: p.id, Type: "message", Role: "assistant", Model: p.model, Content: []any{}}
	if !whole {
		u := p.usage
		u.OutputTokens = 1
		m.Usage = toWireUsage(u)
		return m
	}
	for _, b := range p.blocks {
		m.Content = append(m.Content, b.whole())
	}
	stop := p.stop
	m.StopReason = &stop
	m.Usage = toWireUsage(p.usage)
	return m
}

// start returns the content_block of a block's content_block_start.
func (b *block) start() any {
	switch b.kind {
	case BlockThinking:
		return thinkingBlock{Type: BlockThinking}
	case BlockToolUse:
		return toolUseBlock{Type: BlockToolUse, ID: b.toolID, Name: b.toolName, Input: json.RawMessage(`{}`)}
	}
	return textBlock{Type: BlockText}
}

// whole returns the finished block as a JSON answer carries it.
func (b *block) whole() any {
	joined := strings.Join(b.deltas, "")
	switch b.kind {
	case BlockThinking:
		return thinkingBlock{Type: BlockThinking, Thinking: joined, Signature: b.signature}
	case BlockToolUse:
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(joined)); err != nil {
			compact.Reset()
			compact.WriteString("{}")
		}
		return toolUseBlock{Type: BlockToolUse, ID: b.toolID, Name: b.toolName, Input: compact.Bytes()}
	}
	return textBlock{Type: BlockText, Text: joined}
}

// delta returns the delta object of a block's i-th piece.
func (b *block) delta(i int) any {
	switch b.kind {
	case BlockThinking:
		return thinkingDelta{Type: "thinking_delta", Thinking: b.deltas[i]}
	case BlockToolUse:
		return inputJSONDelta{Type: "input_json_delta", PartialJSON: b.deltas[i]}
	}
	return textDelta{Type: "text_delta", Text: b.deltas[i]}
}

// sseEvent is one planned server-sent event.
type sseEvent struct {
	name    string
	payload any
	usage   *Usage // the usage this event reports, if any
}

// events returns the full event sequence of a streamed answer.
func (p *plan) events(cumulative bool) []sseEvent {
	start := p.usage
	start.OutputTokens = 1
	evs := []sseEvent{{name: "message_start", payload: messageStartEvent{Type: "message_start", Message: p.message(false)}, usage: &start}}
	for i := range p.blocks {
		b := &p.blocks[i]
		evs = append(evs, sseEvent{name: "content_block_start", payload: blockStartEvent{Type: "content_block_start", Index: i, ContentBlock: b.start()}})
		if i == 0 {
			evs = append(evs, sseEvent{name: "ping", payload: typeOnly{Type: "ping"}})
		}
		for j := range b.deltas {
			evs = append(evs, sseEvent{name: "content_block_delta", payload: blockDeltaEvent{Type: "content_block_delta", Index: i, Delta: b.delta(j)}})
		}
		if b.kind == BlockThinking {
			evs = append(evs, sseEvent{name: "content_block_delta", payload: blockDeltaEvent{Type: "content_block_delta", Index: i, Delta: signatureDelta{Type: "signature_delta", Signature: b.signature}}})
		}
		evs = append(evs, sseEvent{name: "content_block_stop", payload: blockStopEvent{Type: "content_block_stop", Index: i}})
	}
	final := p.usage
	du := wireDeltaUsage{OutputTokens: final.OutputTokens}
	if cumulative {
		du.InputTokens = &final.InputTokens
		du.CacheCreationInputTokens = &final.CacheCreationInputTokens
		du.CacheReadInputTokens = &final.CacheReadInputTokens
	}
	evs = append(evs,
		sseEvent{name: "message_delta", payload: messageDeltaEvent{Type: "message_delta", Delta: messageDeltaDelta{StopReason: p.stop}, Usage: du}, usage: &final},
		sseEvent{name: "message_stop", payload: typeOnly{Type: "message_stop"}},
	)
	return evs
}

// overloadedEvent returns the payload of a mid-stream error event.
func overloadedEvent() errorBody {
	return errorBody{Type: "error", Error: errorDetail{Type: ErrOverloaded, Message: "Overloaded"}}
}

// stream writes p as server-sent events, following sc's pacing and faults.
func (x *exchange) stream(sc Script, p *plan) {
	h := x.w.Header()
	setCommonHeaders(h, x.reqID)
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	x.w.WriteHeader(http.StatusOK)
	x.rec.Status = http.StatusOK
	rc := http.NewResponseController(x.w)
	if err := rc.Flush(); err != nil || !x.sleep(sc.BodyDelay) {
		return
	}
	written := 0
	for i, ev := range p.events(sc.CumulativeDeltaUsage) {
		if i > 0 && !x.sleep(sc.Pace) {
			return
		}
		if !x.writeEvent(rc, ev.name, ev.payload) {
			return
		}
		if ev.usage != nil {
			x.rec.Usage = *ev.usage
		}
		written++
		if sc.ResetAfterEvents > 0 && written == sc.ResetAfterEvents {
			x.abort()
			return
		}
		if sc.ErrorEventAfter > 0 && written == sc.ErrorEventAfter {
			if !x.sleep(sc.Pace) || !x.writeEvent(rc, "error", overloadedEvent()) {
				return
			}
			x.rec.Completed = true
			return
		}
	}
	x.rec.Completed = true
}

// writeEvent writes and flushes one event and records it; false means the
// client is gone.
func (x *exchange) writeEvent(rc *http.ResponseController, name string, payload any) bool {
	if x.ctx.Err() != nil {
		return false
	}
	data := marshal(payload)
	buf := make([]byte, 0, len(name)+len(data)+16)
	buf = append(buf, "event: "...)
	buf = append(buf, name...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := x.w.Write(buf); err != nil {
		x.rec.Canceled = true
		return false
	}
	if err := rc.Flush(); err != nil {
		x.rec.Canceled = true
		return false
	}
	x.rec.Events = append(x.rec.Events, string(buf))
	return true
}

// abort drops the connection abruptly: a TCP RST where the connection can
// be hijacked, else an aborted handler.
func (x *exchange) abort() {
	x.aborted = true
	conn, _, err := http.NewResponseController(x.w).Hijack()
	if err != nil {
		x.s.log.Debug("hijack failed, aborting handler", "error", err)
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// defaultRetryAfter is the retry-after of a scripted 429 without RetryAfter.
const defaultRetryAfter = time.Second

func textWords() []string {
	return []string{"Hello", " there", "!", " This", " is", " a", " reply", " from", " the", " fake", " Anthropic", " upstream", "."}
}

func thinkingWords() []string {
	return []string{"Let", " me", " think", " about", " this", " step", " by", " step", "."}
}

// generate returns n pieces cycling through words.
func generate(words []string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = words[i%len(words)]
	}
	return out
}

// splitRunes splits s into min(n, runes in s) pieces of nearly equal rune
// counts, never cutting a UTF-8 sequence.
func splitRunes(s string, n int) []string {
	total := utf8.RuneCountInString(s)
	n = max(1, min(n, total))
	out := make([]string, 0, n)
	for i := range n {
		size := total / n
		if i < total%n {
			size++
		}
		end := 0
		for range size {
			_, w := utf8.DecodeRuneInString(s[end:])
			end += w
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out
}
