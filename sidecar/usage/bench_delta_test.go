package usage

import (
	"bytes"
	"strings"
	"testing"
)

// deltaStream is a Claude Code-like answer: 400 small text deltas and 200 tool-input
// deltas between message_start and message_delta.
func deltaStream() []byte {
	var b strings.Builder
	b.WriteString("event: message_start\n" + `data: {"type":"message_start","message":{"model":"claude-opus-4-8","usage":{"input_tokens":25,"output_tokens":1}}}` + "\n\n")
	for range 400 {
		b.WriteString("event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" relayed words"}}` + "\n\n")
	}
	for range 200 {
		b.WriteString("event: content_block_delta\n" + `data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"pa"}}` + "\n\n")
	}
	b.WriteString("event: message_delta\n" + `data: {"type":"message_delta","usage":{"output_tokens":900}}` + "\n\n")
	return []byte(b.String())
}

// BenchmarkStreamParserDeltas measures the parser on a delta-heavy stream fed in 8 KiB
// reads (the relay's SSE buffer) against the floor any line parser pays: finding the
// newlines of the same bytes. Compare the two ns/op: parser ÷ line_scan is the ratio.
func BenchmarkStreamParserDeltas(b *testing.B) {
	s := deltaStream()
	const read = 8 << 10
	b.Run("line_scan", func(b *testing.B) {
		b.SetBytes(int64(len(s)))
		lines := 0
		for b.Loop() {
			for i := 0; i < len(s); i += read {
				chunk := s[i:min(len(s), i+read)]
				for j := bytes.IndexByte(chunk, '\n'); j >= 0; j = bytes.IndexByte(chunk, '\n') {
					lines++
					chunk = chunk[j+1:]
				}
			}
		}
		_ = lines
	})
	b.Run("parser", func(b *testing.B) {
		b.SetBytes(int64(len(s)))
		b.ReportAllocs()
		for b.Loop() {
			var p StreamParser
			for i := 0; i < len(s); i += read {
				p.Write(s[i:min(len(s), i+read)])
			}
		}
	})
}
