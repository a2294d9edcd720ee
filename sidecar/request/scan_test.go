package request_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/sidecar/request"
)

func TestReplaceModelSplicesOnlyTheModelString(t *testing.T) {
	tests := []struct {
		name, body, model, want string
	}{
		{"first key", `{"model":"claude-sonnet-4-5","max_tokens":1}`, "glm-4.6",
			`{"model":"glm-4.6","max_tokens":1}`},
		{"last key with spaces around", `{ "messages" : [{"role":"user","content":"model"}] , "model" : "a" }`, "a-much-longer-name",
			`{ "messages" : [{"role":"user","content":"model"}] , "model" : "a-much-longer-name" }`},
		{"escaped original", `{"model":"claude-\u0073onnet","stream":true}`, "s",
			`{"model":"s","stream":true}`},
		{"new name needing escapes", `{"model":"m"}`, `we"ird\name`,
			`{"model":"we\"ird\\name"}`},
		{"a model key inside metadata is not the model", `{"metadata":{"model":"x"},"model":"m"}`, "n",
			`{"metadata":{"model":"x"},"model":"n"}`},
		{"no model: unchanged", `{"max_tokens":1}`, "n", `{"max_tokens":1}`},
		{"non-string model: unchanged", `{"model":7}`, "n", `{"model":7}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			f := request.Scan(body)
			got := request.ReplaceModel(body, f, tt.model)
			if string(got) != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if string(body) != tt.body {
				t.Errorf("the original body changed to %s, want it untouched", body)
			}
			if json.Valid([]byte(tt.body)) && !json.Valid(got) {
				t.Errorf("got invalid JSON %s", got)
			}
			if f.Model != "" {
				if again := request.Scan(got).Model; again != tt.model {
					t.Errorf("got model %q after the splice, want %q", again, tt.model)
				}
			}
		})
	}
}

func TestScanReportsTheModelSpan(t *testing.T) {
	body := []byte(`{"max_tokens":1, "model" : "claude-opus-4-1"}`)
	f := request.Scan(body)
	if got := string(body[f.ModelStart:f.ModelEnd]); got != `"claude-opus-4-1"` {
		t.Errorf("got span %q, want %q", got, `"claude-opus-4-1"`)
	}
}

func TestScanReadsMaxTokensAsAnUpperBound(t *testing.T) {
	tests := []struct {
		name, body string
		want       int64
	}{
		{"integer", `{"model":"m","max_tokens":32000,"messages":[]}`, 32000},
		{"after the messages", `{"messages":[{"role":"user","content":"max_tokens"}],"max_tokens": 64000 }`, 64000},
		{"fraction rounds up", `{"max_tokens":10.2}`, 11},
		{"exponent", `{"max_tokens":1e3}`, 1000},
		{"two spellings: the largest", `{"max_tokens":5,"MAX_TOKENS":700}`, 700},
		{"huge is capped", `{"max_tokens":1e300}`, request.MaxTokensCap},
		{"negative is nothing", `{"max_tokens":-5}`, 0},
		{"a string is nothing", `{"max_tokens":"999"}`, 0},
		{"inside metadata is not it", `{"metadata":{"max_tokens":9},"max_tokens":3}`, 3},
		{"absent", `{"model":"m"}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := request.Scan([]byte(tt.body)).MaxTokens; got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestScanFindsModelUserIDAndFirstMessageWithoutDecoding(t *testing.T) {
	tests := []struct {
		name, body           string
		model, user, message string
	}{
		{"plain", `{"model":"claude-sonnet-4-5","metadata":{"user_id":"user_ab_account__session_123"},"messages":[{"role":"user","content":"hi"}]}`,
			"claude-sonnet-4-5", "user_ab_account__session_123", `{"role":"user","content":"hi"}`},
		{"keys in any order, values to skip", ` { "system" : [{"type":"text","text":"a \"quoted\" } ] brace"}], "messages" : [ {"role":"user","content":[{"type":"text","text":"x"}]} , {"role":"assistant","content":"y"} ], "max_tokens": 10, "stream": true, "metadata": {"other": {"n": [1,2]}, "user_id": "u1"}, "model": "m" }`,
			"m", "u1", `{"role":"user","content":[{"type":"text","text":"x"}]}`},
		{"escaped model", `{"model":"claude-\u0073onnet"}`, "claude-sonnet", "", ""},
		{"no metadata", `{"model":"m","messages":[]}`, "m", "", ""},
		{"not an object", `[1,2]`, "", "", ""},
		// A body cut short yields nothing: a key past the fault could name another model.
		{"truncated", `{"model":"m","messages":[{"role":"user","content":"hi`, "", "", ""},
		{"backslash at the end", `{"model":"m\`, "", "", ""},
		{"empty", ``, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := request.Scan([]byte(tt.body))
			if f.Model != tt.model || f.UserID != tt.user || string(f.FirstMessage) != tt.message {
				t.Errorf("got %q %q %q, want %q %q %q", f.Model, f.UserID, f.FirstMessage, tt.model, tt.user, tt.message)
			}
		})
	}
}

func benchBody() []byte {
	var b bytes.Buffer
	b.WriteString(`{"model":"claude-sonnet-4-5-20250929","max_tokens":32000,"stream":true,"system":[{"type":"text","text":"You are Claude Code."}],"messages":[`)
	for i := range 2000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"role":"user","content":[{"type":"text","text":"` + strings.Repeat("lorem ipsum \\\"dolor\\\" sit amet {} [] ", 120) + `"}]}`)
	}
	b.WriteString(`],"metadata":{"user_id":"user_0123_account__session_4567"}}`)
	return b.Bytes()
}

// BenchmarkScan scans a ~10 MB body for model and metadata.user_id and reports the ratio
// against json.Unmarshal into a small struct, measured in the same run.
func BenchmarkScan(b *testing.B) {
	body := benchBody()
	type small struct {
		Model    string `json:"model"`
		Metadata struct {
			UserID string `json:"user_id"`
		} `json:"metadata"`
	}
	timeIt := func(n int, f func()) time.Duration {
		t0 := time.Now()
		for range n {
			f()
		}
		return time.Since(t0) / time.Duration(n)
	}
	var scan, unmarshal time.Duration
	for b.Loop() {
		scan = timeIt(20, func() {
			if f := request.Scan(body); f.UserID == "" {
				b.Fatal("user_id not found")
			}
		})
		unmarshal = timeIt(3, func() {
			var v small
			if err := json.Unmarshal(body, &v); err != nil || v.Metadata.UserID == "" {
				b.Fatal("unmarshal failed", err)
			}
		})
	}
	b.ReportMetric(float64(len(body))/1e6, "MB")
	b.ReportMetric(float64(scan.Microseconds()), "scan-µs")
	b.ReportMetric(float64(unmarshal.Microseconds()), "unmarshal-µs")
	b.ReportMetric(float64(unmarshal)/float64(scan), "unmarshal/scan")
	b.ReportMetric(testing.AllocsPerRun(5, func() { request.Scan(body) }), "scan-allocs")
}
