package usage

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/claude-relay/claude-relay/config"
)

const stream = "event: message_start\n" +
	`data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":120,"cache_creation_input_tokens":50,"cache_read_input_tokens":700,"cache_creation":{"ephemeral_5m_input_tokens":20,"ephemeral_1h_input_tokens":30},"output_tokens":1,"service_tier":"standard"}}}` + "\n\n" +
	"event: content_block_start\n" +
	`data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
	"event: ping\ndata: {\"type\": \"ping\"}\n\n" +
	"event: content_block_delta\n" +
	`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"message_delta usage 999"}}` + "\n\n" +
	"event: content_block_stop\n" +
	`data: {"type":"content_block_stop","index":0}` + "\n\n" +
	"event: message_delta\n" +
	`data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":42}}` + "\n\n" +
	"event: message_stop\n" +
	`data: {"type":"message_stop"}` + "\n\n"

var wantStream = Counts{TokenCounts: config.TokenCounts{Input: 120, Output: 42, CacheWrite5m: 20, CacheWrite1h: 30, CacheRead: 700}}

func TestStreamUsageSurvivesAnySplit(t *testing.T) {
	for _, name := range []string{"lf", "crlf"} {
		s := stream
		if name == "crlf" {
			s = strings.ReplaceAll(s, "\n", "\r\n")
		}
		for size := 1; size <= len(s); size += max(1, size/3) {
			var p StreamParser
			for i := 0; i < len(s); i += size {
				p.Write([]byte(s[i:min(len(s), i+size)]))
			}
			if got := p.Counts(); got != wantStream {
				t.Fatalf("%s chunk %d: got %+v, want %+v", name, size, got, wantStream)
			}
			if got, want := p.Model(), "claude-sonnet-4-5-20250929"; got != want {
				t.Fatalf("%s chunk %d: model got %q, want %q", name, size, got, want)
			}
			if got, want := p.Events(), 7; got != want {
				t.Fatalf("%s chunk %d: events got %d, want %d", name, size, got, want)
			}
		}
	}
}

func TestStreamUsageCases(t *testing.T) {
	long := strings.Repeat("x", 3<<20)
	tests := []struct {
		name string
		in   string
		want Counts
	}{
		{
			name: "keys in any order, whitespace, nulls and a usage nested in a tool input",
			in: "event: message_start\ndata: { \"message\" : {\"usage\": {\"input_tokens\": 8, \"cache_creation\": null}, \"content\": [{\"input\": {\"usage\": {\"input_tokens\": 999}}}], \"model\": \"m\"}, \"type\" : \"message_start\" }\n\n" +
				"event: message_delta\ndata: {\"usage\":null,\"type\":\"message_delta\"}\n\n" +
				"event: message_delta\ndata: {\"usage\":{\"output_tokens\":4},\"type\":\"message_delta\"}\n\n",
			want: Counts{TokenCounts: config.TokenCounts{Input: 8, Output: 4}},
		},
		{
			name: "cache writes without breakdown are 5m",
			in: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":9,\"output_tokens\":1}}}\n\n" +
				"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":3}}\n\n",
			want: Counts{TokenCounts: config.TokenCounts{Input: 5, Output: 3, CacheWrite5m: 9}},
		},
		{
			name: "cumulative delta usage replaces start values",
			in: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n" +
				"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":6,\"cache_read_input_tokens\":4,\"output_tokens\":8}}\n\n",
			want: Counts{TokenCounts: config.TokenCounts{Input: 6, Output: 8, CacheRead: 4}},
		},
		{
			name: "data lines without event names",
			in: "data: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n" +
				"data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"" + long + "\"}}\n\n" +
				"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":2}}\n\n",
			want: Counts{TokenCounts: config.TokenCounts{Input: 7, Output: 2}},
		},
		{
			name: "long delta lines are not usage",
			in: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"" + long + "\\\"usage\\\":{\\\"output_tokens\\\":77}\"}}\n\n" +
				"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":11}}\n\n",
			want: Counts{TokenCounts: config.TokenCounts{Input: 1, Output: 11}},
		},
		{
			name: "stream cut before message_delta keeps start usage",
			in:   "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":33,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_b",
			want: Counts{TokenCounts: config.TokenCounts{Input: 33, Output: 1}},
		},
		{
			name: "garbage and comments are ignored",
			in:   ": comment\nid: 4\nretry: 10\ndata: not json\n\nevent: message_delta\ndata: {broken\n\n",
			want: Counts{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p StreamParser
			for i := 0; i < len(tt.in); i += 4096 {
				p.Write([]byte(tt.in[i:min(len(tt.in), i+4096)]))
			}
			if got := p.Counts(); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestJSONUsage(t *testing.T) {
	body := `{"id":"msg_1","type":"message","model":"claude-haiku-4-5","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":10,"cache_creation_input_tokens":4,"cache_read_input_tokens":2,"cache_creation":{"ephemeral_5m_input_tokens":1,"ephemeral_1h_input_tokens":3},"output_tokens":6}}`
	got, model, ok := FromJSON([]byte(body))
	if !ok {
		t.Fatal("got no usage, want usage")
	}
	if want := (Counts{TokenCounts: config.TokenCounts{Input: 10, Output: 6, CacheWrite5m: 1, CacheWrite1h: 3, CacheRead: 2}}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if model != "claude-haiku-4-5" {
		t.Fatalf("model got %q, want claude-haiku-4-5", model)
	}
	if _, _, ok := FromJSON([]byte(`{"type":"error"}`)); ok {
		t.Fatal("got usage from an error body, want none")
	}
}

func TestContentDeltasAreNotCopied(t *testing.T) {
	chunk := []byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hello world, this is a typical delta\"}}\n\n")
	var p StreamParser
	p.Write(chunk) // warm the reusable buffers
	if n := testing.AllocsPerRun(100, func() { p.Write(chunk) }); n != 0 {
		t.Fatalf("got %v allocations per delta event, want 0", n)
	}
}

func BenchmarkStreamParser(b *testing.B) {
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	var p StreamParser
	for b.Loop() {
		p.Write([]byte(stream))
	}
}

func TestJSONUsageReadsOnlyTheTopLevelUsage(t *testing.T) {
	tests := []struct {
		name, body string
		want       Counts
		model      string
		ok         bool
	}{
		{
			name:  "a tool input holding a usage key comes first",
			body:  `{"model":"m1","content":[{"type":"tool_use","input":{"usage":{"input_tokens":999}}}],"usage":{"input_tokens":3,"output_tokens":4}}`,
			want:  Counts{TokenCounts: config.TokenCounts{Input: 3, Output: 4}},
			model: "m1", ok: true,
		},
		{
			name:  "usage before content, model last, whitespace and escapes",
			body:  "{ \"usage\" : {\"input_tokens\": 7, \"output_tokens\": 1},\n \"content\":[{\"text\":\"a \\\"usage\\\": {} }\"}], \"model\": \"claude-\\u0073onnet\" }",
			want:  Counts{TokenCounts: config.TokenCounts{Input: 7, Output: 1}},
			model: "claude-sonnet", ok: true,
		},
		{name: "usage is not an object", body: `{"usage":null,"model":"m"}`},
		{name: "truncated before usage ends", body: `{"model":"m","usage":{"input_tokens":3`},
		{name: "not JSON", body: `event: ping`},
		{name: "empty", body: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, model, ok := FromJSON([]byte(tt.body))
			if ok != tt.ok || got != tt.want || model != tt.model {
				t.Fatalf("got %+v %q %v, want %+v %q %v", got, model, ok, tt.want, tt.model, tt.ok)
			}
		})
	}
}

// BenchmarkJSONUsage compares FromJSON with decoding the same fields through json.Unmarshal
// (what FromJSON did before jsonscan), on a long non-streaming answer.
func BenchmarkJSONUsage(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2000) // ~90 KB
	body := []byte(`{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"` +
		text + `"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":6}}`)
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, _, ok := FromJSON(body); !ok {
				b.Fatal("no usage")
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var m struct {
				Model string `json:"model"`
				Usage *struct {
					InputTokens              *int64 `json:"input_tokens"`
					OutputTokens             *int64 `json:"output_tokens"`
					CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
					CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
					CacheCreation            *struct {
						Ephemeral5m *int64 `json:"ephemeral_5m_input_tokens"`
						Ephemeral1h *int64 `json:"ephemeral_1h_input_tokens"`
					} `json:"cache_creation"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(body, &m); err != nil || m.Usage == nil {
				b.Fatal("no usage")
			}
		}
	})
}

func TestOutOfRangeUsageIsClampedAndNamed(t *testing.T) {
	start := func(usage string) string {
		return "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":" + usage + "}}\n\n"
	}
	delta := func(usage string) string {
		return "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":" + usage + "}\n\n"
	}
	tests := []struct {
		name string
		in   string
		want Counts
	}{
		{
			name: "negative counts become zero",
			in:   start(`{"input_tokens":-5000,"output_tokens":1}`) + delta(`{"output_tokens":-3,"cache_read_input_tokens":-1}`),
			want: Counts{Invalid: FieldInput | FieldOutput | FieldCacheRead},
		},
		{
			name: "absurd counts are capped at MaxTokens",
			in:   start(`{"input_tokens":10,"output_tokens":1}`) + delta(`{"output_tokens":10000001}`),
			want: Counts{TokenCounts: config.TokenCounts{Input: 10, Output: MaxTokens}, Invalid: FieldOutput},
		},
		{
			name: "integers beyond int64 are capped, not dropped",
			in:   start(`{"input_tokens":99999999999999999999999,"output_tokens":1}`) + delta(`{"output_tokens":-99999999999999999999999}`),
			want: Counts{TokenCounts: config.TokenCounts{Input: MaxTokens}, Invalid: FieldInput | FieldOutput},
		},
		{
			name: "a negative cache breakdown is clamped before the remainder is computed",
			in:   start(`{"input_tokens":1,"output_tokens":1,"cache_creation_input_tokens":100,"cache_creation":{"ephemeral_5m_input_tokens":-400,"ephemeral_1h_input_tokens":40}}`),
			want: Counts{TokenCounts: config.TokenCounts{Input: 1, Output: 1, CacheWrite5m: 60, CacheWrite1h: 40}, Invalid: FieldCacheWrite5m},
		},
		{
			name: "a later valid value replaces an invalid one",
			in:   start(`{"input_tokens":5,"output_tokens":-1}`) + delta(`{"output_tokens":9}`),
			want: Counts{TokenCounts: config.TokenCounts{Input: 5, Output: 9}},
		},
		{
			name: "MaxTokens itself is valid",
			in:   start(`{"input_tokens":10000000,"output_tokens":0}`),
			want: Counts{TokenCounts: config.TokenCounts{Input: MaxTokens}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p StreamParser
			p.Write([]byte(tt.in))
			if got := p.Counts(); got != tt.want {
				t.Errorf("stream: got %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		got, _, ok := FromJSON([]byte(`{"model":"m","usage":{"input_tokens":-7,"output_tokens":20000000,"cache_read_input_tokens":3}}`))
		want := Counts{TokenCounts: config.TokenCounts{Output: MaxTokens, CacheRead: 3}, Invalid: FieldInput | FieldOutput}
		if !ok || got != want {
			t.Errorf("got %+v %v, want %+v", got, ok, want)
		}
	})
	t.Run("field names", func(t *testing.T) {
		var names []string
		(FieldInput | FieldCacheWrite1h | FieldCacheRead).Each(func(n string) { names = append(names, n) })
		if got, want := strings.Join(names, ","), "input_tokens,cache_write_1h,cache_read"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

// cutStream is a stream the client left after content_block_stop: two text deltas, a
// thinking block with its signature and a tool's input were relayed, no message_delta.
func cutStream(text []string) string {
	s := "event: message_start\n" +
		`data: {"type":"message_start","message":{"model":"claude-opus-4-8","usage":{"input_tokens":25,"cache_read_input_tokens":5,"output_tokens":1}}}` + "\n\n" +
		"event: content_block_start\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}` + "\n\n" +
		"event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think."}}` + "\n\n" +
		"event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"` + strings.Repeat("S", 400) + `"}}` + "\n\n" +
		"event: content_block_stop\n" + `data: {"type":"content_block_stop","index":0}` + "\n\n"
	for _, t := range text {
		b, _ := json.Marshal(t)
		s += "event: content_block_delta\n" + `data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":` + string(b) + `}}` + "\n\n"
	}
	return s + "event: content_block_delta\n" + `data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"path\": \"/tmp/x\"}"}}` + "\n\n" +
		"event: content_block_stop\n" + `data: {"type":"content_block_stop","index":2}` + "\n\n"
}

func TestEstimateOfACutStreamIsAtLeastTheRelayedText(t *testing.T) {
	text := []string{"Hello, this is a reply of some length ", "that the client never let finish; ", "日本語のテキストも"}
	s := cutStream(text)
	// Relayed bytes: thinking 13, text (JSON-escaped), tool input 21 as written on the wire.
	relayed := len("Let me think.") + len(`{\"path\": \"/tmp/x\"}`)
	for _, t := range text {
		b, _ := json.Marshal(t)
		relayed += len(b) - 2
	}
	want := int64((relayed + BytesPerToken - 1) / BytesPerToken)
	for _, size := range []int{1, 7, 64, len(s)} {
		var p StreamParser
		for i := 0; i < len(s); i += size {
			p.Write([]byte(s[i:min(len(s), i+size)]))
		}
		c, estimated := p.Estimate()
		if !estimated || c.Output != want {
			t.Errorf("chunk %d: got output %d (estimated %v), want %d estimated from %d relayed bytes, the signature not counted", size, c.Output, estimated, want, relayed)
		}
		if c.Input != 25 || c.CacheRead != 5 {
			t.Errorf("chunk %d: got %+v, want message_start's input and cache counts kept", size, c)
		}
		if p.Counts().Output != 1 {
			t.Errorf("chunk %d: Counts output %d, want the upstream's 1", size, p.Counts().Output)
		}
	}
}

func TestEstimateKeepsTheUpstreamsCount(t *testing.T) {
	var full StreamParser
	full.Write([]byte(stream))
	if c, estimated := full.Estimate(); estimated || c != wantStream {
		t.Errorf("finished stream: got %+v (estimated %v), want the upstream's %+v", c, estimated, wantStream)
	}
	// A message_start that already reports more output than the relayed text is kept.
	var p StreamParser
	p.Write([]byte(strings.Replace(cutStream(nil), `"output_tokens":1`, `"output_tokens":500`, 1)))
	if c, estimated := p.Estimate(); estimated || c.Output != 500 {
		t.Errorf("got output %d (estimated %v), want the upstream's 500", c.Output, estimated)
	}
	var empty StreamParser
	if c, estimated := empty.Estimate(); estimated || !c.IsZero() {
		t.Errorf("nothing relayed: got %+v (estimated %v), want zero", c, estimated)
	}
}
