// Package usage extracts token usage from Anthropic Messages API responses as they stream past,
// clamping counts an upstream reports out of range (see MaxTokens).
package usage

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/jsonscan"
)

// MaxTokens bounds every token count of one response: ten times the largest context window
// (1 M tokens). The upstream reports each count once per response, so a count above it, or
// below zero, is not usage but a fault (a broken or hostile upstream); it is clamped into
// [0, MaxTokens] and named in Counts.Invalid, so that it can neither refund a key's limits
// nor wedge the usage store, which refuses negative counts.
const MaxTokens = 10_000_000

// Counts is the token usage of one response, as the upstream reported it, each count within
// [0, MaxTokens]: config.TokenCounts (what a price applies to) and the counts clamped.
type Counts struct {
	config.TokenCounts
	// Invalid names the counts the upstream reported out of range (negative, above
	// MaxTokens, or too large for an integer), which were clamped.
	Invalid Fields
}

// IsZero reports whether nothing was counted (and nothing was clamped).
func (c Counts) IsZero() bool { return c == Counts{} }

// Fields is a set of usage counts, by the names the wire uses for them.
type Fields uint8

// The usage counts a Fields set can name.
const (
	FieldInput Fields = 1 << iota
	FieldOutput
	FieldCacheWrite5m
	FieldCacheWrite1h
	FieldCacheRead
)

// fieldNames are the metric label values of the fields, in bit order.
var fieldNames = [...]string{"input_tokens", "output_tokens", "cache_write_5m", "cache_write_1h", "cache_read"}

// Each calls f with the name of every field in the set ("input_tokens", "output_tokens",
// "cache_write_5m", "cache_write_1h", "cache_read").
func (f Fields) Each(fn func(name string)) {
	for i, name := range fieldNames {
		if f&(1<<i) != 0 {
			fn(name)
		}
	}
}

// clamp puts *v into [0, MaxTokens] and adds bit to *invalid when it was outside.
func clamp(v *int64, bit Fields, invalid *Fields) {
	switch {
	case *v < 0:
		*v = 0
	case *v > MaxTokens:
		*v = MaxTokens
	default:
		return
	}
	*invalid |= bit
}

// wireUsage is the usage object of message_start, message_delta and JSON messages. has
// tells "absent" from zero: message_delta carries only the fields that changed.
type wireUsage struct {
	input, output, cacheCreation, cacheRead, e5m, e1h int64
	has                                               uint8 // hasInput | hasOutput | …
}

const (
	hasInput uint8 = 1 << iota
	hasOutput
	hasCacheCreation
	hasCacheRead
	hasE5m
	hasE1h
)

// scanUsage reads the usage object at the cursor (anything else is skipped and yields an
// empty usage). Values that are not integers are treated as absent; integers too large for
// int64 read as ±MaxInt64, which counts clamps.
func scanUsage(sc *jsonscan.Scanner) (wireUsage, bool) {
	var u wireUsage
	if sc.Peek() != '{' {
		return u, sc.Skip()
	}
	num := func(dst *int64, bit uint8) bool {
		raw, ok := sc.Value()
		if !ok {
			return false
		}
		v, err := strconv.ParseInt(string(raw), 10, 64)
		var ne *strconv.NumError
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Err == strconv.ErrRange:
			// v is ±MaxInt64: out of range, so clamped and named in counts.
		default:
			return true
		}
		*dst = v
		u.has |= bit
		return true
	}
	ok := sc.Object(func(key []byte) bool {
		switch string(key) {
		case "input_tokens":
			return num(&u.input, hasInput)
		case "output_tokens":
			return num(&u.output, hasOutput)
		case "cache_creation_input_tokens":
			return num(&u.cacheCreation, hasCacheCreation)
		case "cache_read_input_tokens":
			return num(&u.cacheRead, hasCacheRead)
		case "cache_creation":
			if sc.Peek() != '{' {
				return sc.Skip()
			}
			return sc.Object(func(key []byte) bool {
				switch string(key) {
				case "ephemeral_5m_input_tokens":
					return num(&u.e5m, hasE5m)
				case "ephemeral_1h_input_tokens":
					return num(&u.e1h, hasE1h)
				}
				return sc.Skip()
			})
		}
		return sc.Skip()
	})
	return u, ok
}

// state accumulates usage; the fields mirror the wire so that partial updates replace
// only what they name (all usage values on the wire are cumulative).
type state struct {
	input, output, cacheCreation, cacheRead, e5m, e1h int64
	breakdown                                         bool
}

func (s *state) apply(u wireUsage) {
	set := func(dst *int64, v int64, bit uint8) {
		if u.has&bit != 0 {
			*dst = v
		}
	}
	set(&s.input, u.input, hasInput)
	set(&s.output, u.output, hasOutput)
	set(&s.cacheCreation, u.cacheCreation, hasCacheCreation)
	set(&s.cacheRead, u.cacheRead, hasCacheRead)
	if u.has&(hasE5m|hasE1h) != 0 {
		s.breakdown = true
		set(&s.e5m, u.e5m, hasE5m)
		set(&s.e1h, u.e1h, hasE1h)
	}
}

// counts resolves cache writes: with a 5m/1h breakdown it is used as given (any remainder
// of cache_creation_input_tokens is charged as 5m); without one, all cache writes are 5m.
// Every wire value is first clamped into [0, MaxTokens]; what was out of range is named in
// Invalid.
func (s *state) counts() Counts {
	var bad Fields
	input, output, cacheRead := s.input, s.output, s.cacheRead
	creation, e5m, e1h := s.cacheCreation, s.e5m, s.e1h
	clamp(&input, FieldInput, &bad)
	clamp(&output, FieldOutput, &bad)
	clamp(&cacheRead, FieldCacheRead, &bad)
	clamp(&creation, FieldCacheWrite5m, &bad)
	clamp(&e5m, FieldCacheWrite5m, &bad)
	clamp(&e1h, FieldCacheWrite1h, &bad)
	c := Counts{TokenCounts: config.TokenCounts{Input: input, Output: output, CacheRead: cacheRead}}
	if s.breakdown {
		c.CacheWrite5m, c.CacheWrite1h = e5m, e1h
		if rest := creation - e5m - e1h; rest > 0 {
			c.CacheWrite5m = min(c.CacheWrite5m+rest, MaxTokens)
		}
	} else {
		c.CacheWrite5m = creation
	}
	c.Invalid = bad
	return c
}

// maxLine bounds how much of one interesting SSE line is buffered. message_start and
// message_delta lines are small; a larger one is skipped rather than buffered.
const maxLine = 1 << 20

// StreamParser reads an SSE byte stream incrementally and keeps the usage and model
// reported by message_start and message_delta. It buffers only the lines it needs:
// content deltas, however long, pass through without being copied.
// The zero value is ready to use; it is not safe for concurrent use.
type StreamParser struct {
	st    state
	model string

	event    []byte // name of the current event ("event:" line), reused
	line     []byte // the current data line being kept, reused
	inLine   bool   // inside a line (no newline seen yet)
	lineLen  int    // bytes of the current line so far
	first    byte   // first byte of the current line
	keep     bool   // the current line is being kept
	decided  bool   // keep/skip decided for the current line
	skipping bool   // the current line is being discarded
	events   int

	// What an estimate of the output needs when the stream ends before message_delta.
	delta      int   // > 0: the current line is a counted content_block_delta's data, this its framing
	deltaBytes int64 // bytes of counted content_block_delta data lines, less their framing
	final      bool  // a message_delta was seen: its output count is the upstream's own
}

// BytesPerToken is the conservative ratio Estimate turns relayed delta text into output
// tokens with: 2 bytes of (JSON-escaped) text a token, where English prose takes about 4
// and code or CJK text about 3, so the estimate stays at or above what the upstream counts.
const BytesPerToken = 2

// Framings are the shortest content_block_delta data lines of each counted delta type (no
// whitespace, index 0, empty text): what is subtracted from a line's length to leave its
// text's bytes, so that the count never falls below the text. Other delta types (a
// citation, a type yet unknown) get the shortest, the text delta's.
var (
	textFraming     = len(`data:{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}`)
	thinkingFraming = len(`data:{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":""}}`)
	toolFraming     = len(`data:{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}`)
)

// deltaProbe is how much of a content_block_delta data line is read to tell a signature
// (not output text) from text, thinking or tool input.
const deltaProbe = 96

// Write feeds bytes from the stream. It never fails; it implements io.Writer so it can
// sit behind an io.MultiWriter.
func (p *StreamParser) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.feed(b)
			break
		}
		p.feed(b[:i])
		p.endLine()
		b = b[i+1:]
	}
	return n, nil
}

// feed adds a fragment of the current line.
func (p *StreamParser) feed(b []byte) {
	if len(b) == 0 {
		return
	}
	if !p.inLine {
		p.first = b[0]
	}
	p.inLine = true
	p.lineLen += len(b)
	if p.skipping {
		return
	}
	if !p.decided {
		// Collect up to a prefix long enough to decide what this line is.
		p.line = append(p.line, b...)
		p.decide(false)
		return
	}
	if len(p.line)+len(b) > maxLine {
		p.skipping, p.keep, p.line = true, false, p.line[:0]
		return
	}
	p.line = append(p.line, b...)
}

// decide classifies the current line from its beginning. final means the line is complete.
func (p *StreamParser) decide(final bool) {
	l := p.line
	switch {
	case bytes.HasPrefix(l, []byte("event:")), bytes.HasPrefix(l, []byte("data:")):
	case len(l) < len("event:") && !final && (bytes.HasPrefix([]byte("event:"), l) || bytes.HasPrefix([]byte("data:"), l)):
		return // not enough bytes yet
	default:
		p.skip()
		return
	}
	if bytes.HasPrefix(l, []byte("event:")) {
		p.decided, p.keep = true, true
		return
	}
	// A data line: keep it if the event it belongs to carries usage. Without an event
	// line, look at the JSON "type" near the start of the payload.
	if len(p.event) > 0 {
		switch {
		case isUsageEvent(p.event):
			p.decided, p.keep = true, true
		case bytes.Equal(p.event, []byte("content_block_delta")):
			p.decideDelta(final)
		default:
			p.skip()
		}
		return
	}
	const probe = 64
	if len(l) < probe && !final {
		return
	}
	head := l[:min(len(l), probe)]
	switch {
	case bytes.Contains(head, []byte("message_start")) || bytes.Contains(head, []byte("message_delta")):
		p.decided, p.keep = true, true
	case bytes.Contains(head, []byte("content_block_delta")):
		p.decideDelta(final)
	default:
		p.skip()
	}
}

// decideDelta classifies a content_block_delta data line from its first deltaProbe bytes:
// text, thinking and tool input are counted toward Estimate, a signature is not. The line
// itself is never buffered beyond the probe.
func (p *StreamParser) decideDelta(final bool) {
	if len(p.line) < deltaProbe && !final {
		return
	}
	framing := textFraming
	switch string(deltaKind(p.line)) {
	case "signature_delta":
		framing = 0
	case "thinking_delta":
		framing = thinkingFraming
	case "input_json_delta":
		framing = toolFraming
	}
	if framing > 0 && bytes.HasPrefix(p.line, []byte("data: ")) {
		framing++
	}
	p.skip()
	p.delta = framing
}

// deltaKind returns the delta type a content_block_delta line's head names ("text_delta",
// "signature_delta", …), or nil. It looks only at the few underscores of the head: a
// quoted word ending in "_delta" other than the event's own type.
func deltaKind(l []byte) []byte {
	for i := 0; i < len(l); i++ {
		j := bytes.IndexByte(l[i:], '_')
		if j < 0 {
			return nil
		}
		i += j
		if !bytes.HasPrefix(l[i:], []byte(`_delta"`)) {
			continue
		}
		q := bytes.LastIndexByte(l[:i], '"')
		if kind := l[q+1 : i+len("_delta")]; q >= 0 && string(kind) != "content_block_delta" {
			return kind
		}
	}
	return nil
}

func (p *StreamParser) skip() {
	p.decided, p.keep, p.skipping = true, false, true
	p.line = p.line[:0]
}

func isUsageEvent(name []byte) bool {
	return bytes.Equal(name, []byte("message_start")) || bytes.Equal(name, []byte("message_delta"))
}

// endLine handles a complete line.
func (p *StreamParser) endLine() {
	if !p.inLine || (p.lineLen == 1 && p.first == '\r') {
		// An empty line ends an event.
		p.event = p.event[:0]
		p.events++
		p.reset()
		return
	}
	if !p.decided {
		p.decide(true)
	}
	if p.delta > 0 {
		p.deltaBytes += int64(max(0, p.lineLen-p.delta))
	}
	if p.keep {
		l := bytes.TrimSuffix(p.line, []byte("\r"))
		switch {
		case bytes.HasPrefix(l, []byte("event:")):
			p.event = append(p.event[:0], bytes.TrimSpace(l[len("event:"):])...)
		case bytes.HasPrefix(l, []byte("data:")):
			p.data(bytes.TrimSpace(l[len("data:"):]))
		}
	}
	p.reset()
}

func (p *StreamParser) reset() {
	p.line = p.line[:0]
	p.inLine, p.keep, p.decided, p.skipping, p.delta = false, false, false, false, 0
	p.lineLen = 0
}

// data reads a message_start or message_delta event: its type, message.model and the
// usage (message.usage or usage), without decoding anything else.
func (p *StreamParser) data(b []byte) {
	var (
		typ         []byte
		top         wireUsage
		msg         message
		haveMessage bool
	)
	sc := jsonscan.New(b)
	if !sc.Object(func(key []byte) bool {
		switch string(key) {
		case "type":
			raw, ok := sc.RawString()
			typ = raw
			return ok
		case "usage":
			u, ok := scanUsage(sc)
			top = u
			return ok
		case "message":
			if sc.Peek() != '{' {
				return sc.Skip()
			}
			var ok bool
			msg, ok = scanMessage(sc)
			haveMessage = true
			return ok
		}
		return sc.Skip()
	}) {
		return // malformed: nothing is taken from it
	}
	switch string(typ) {
	case "message_start":
		if haveMessage {
			if msg.model != "" {
				p.model = msg.model
			}
			p.st.apply(msg.usage)
		}
	case "message_delta":
		p.st.apply(top)
		p.final = true
	}
}

// message is what a Messages API message object says about usage.
type message struct {
	model    string
	usage    wireUsage
	hasUsage bool // "usage" was an object
}

// scanMessage reads "model" and the "usage" object of the message object at the cursor.
func scanMessage(sc *jsonscan.Scanner) (message, bool) {
	var m message
	ok := sc.Object(func(key []byte) bool {
		switch string(key) {
		case "model":
			if v, ok := sc.String(); ok {
				m.model = v
				return true
			}
		case "usage":
			if sc.Peek() == '{' {
				u, ok := scanUsage(sc)
				m.usage, m.hasUsage = u, ok
				return ok
			}
		}
		return sc.Skip()
	})
	return m, ok
}

// Counts returns the usage seen so far.
func (p *StreamParser) Counts() Counts { return p.st.counts() }

// Estimate returns the usage seen so far for a stream that may have ended early (the client
// left, the upstream broke). Once a message_delta was seen it is Counts, the upstream's own
// figures. Before that, the upstream has reported only message_start's output count (1),
// though it generated, and bills, every delta relayed since: the output count is then at
// least the relayed text, thinking and tool input, at BytesPerToken, and estimated is true
// when that raised it.
func (p *StreamParser) Estimate() (c Counts, estimated bool) {
	c = p.Counts()
	if p.final {
		return c, false
	}
	est := min((p.deltaBytes+BytesPerToken-1)/BytesPerToken, MaxTokens)
	if est <= c.Output {
		return c, false
	}
	c.Output = est
	return c, true
}

// Model returns the model named by message_start, if seen.
func (p *StreamParser) Model() string { return p.model }

// Events returns how many complete SSE events have passed.
func (p *StreamParser) Events() int { return p.events }

// FromJSON extracts usage and model from a complete JSON message body. It walks the
// top-level keys and reads only "model" and the "usage" object, so a long answer's content
// costs a byte scan, not a decode.
func FromJSON(body []byte) (Counts, string, bool) {
	m, _ := scanMessage(jsonscan.New(body))
	if !m.hasUsage {
		return Counts{}, "", false
	}
	var s state
	s.apply(m.usage)
	return s.counts(), m.model, true
}
