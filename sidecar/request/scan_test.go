package sched_test

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"

	"github.com/claude-relay/claude-relay/sidecar/sched"
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
			f := sched.Scan(body)
			got := sched.ReplaceModel(body, f, tt.model)
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
				if again := sched.Scan(got).Model; again != tt.model {
					t.Errorf("got model %q after the splice, want %q", again, tt.model)
				}
			}
		})
	}
}

func TestScanReportsTheModelSpan(t *testing.T) {
	body := []byte(`{"max_tokens":1, "model" : "claude-opus-4-1"}`)
	f := sched.Scan(body)
	if got := string(body[f.ModelStart:f.ModelEnd]); got != `"claude-opus-4-1"` {
		t.Errorf("got span %q, want %q", got, `"claude-opus-4-1"`)
	}
}

// BenchmarkSessionKeyLargeFirstMessage hashes a 1 MB first message (a pasted document in
// content blocks), canonically (cache_control dropped) against the raw bytes.
func BenchmarkSessionKeyLargeFirstMessage(b *testing.B) {
	doc := strings.Repeat("All work and no play makes Jack a dull boy. ", 1<<20/44)
	body := []byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"` + doc +
		`","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Summarise it."}]}]}`)
	f := sched.Scan(body)
	b.Run("canonical", func(b *testing.B) {
		b.SetBytes(int64(len(f.FirstMessage)))
		for b.Loop() {
			sched.SessionKey(f)
		}
	})
	b.Run("raw", func(b *testing.B) {
		b.SetBytes(int64(len(f.FirstMessage)))
		for b.Loop() {
			h := sha256.New()
			h.Write(f.FirstMessage)
			h.Sum(nil)
		}
	})
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
		{"huge is capped", `{"max_tokens":1e300}`, sched.MaxTokensCap},
		{"negative is nothing", `{"max_tokens":-5}`, 0},
		{"a string is nothing", `{"max_tokens":"999"}`, 0},
		{"inside metadata is not it", `{"metadata":{"max_tokens":9},"max_tokens":3}`, 3},
		{"absent", `{"model":"m"}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sched.Scan([]byte(tt.body)).MaxTokens; got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}
