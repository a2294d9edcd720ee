package request_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/claude-relay/claude-relay/sidecar/request"
)

func TestScanFindsTheModelAnUpstreamWouldSee(t *testing.T) {
	tests := []struct {
		name, body string
		status     request.ModelStatus
		model      string
	}{
		{"plain", `{"model":"claude-haiku-4-5","max_tokens":1}`, request.ModelFound, "claude-haiku-4-5"},
		{"escaped value", `{"model":"claude-\u006fpus-4-1"}`, request.ModelFound, "claude-opus-4-1"},
		{"escaped key", `{"mod\u0065l":"claude-opus-4-1"}`, request.ModelFound, "claude-opus-4-1"},
		{"capitalised key, as Go decoders match it", `{"Model":"claude-opus-4-1"}`, request.ModelFound, "claude-opus-4-1"},
		{"upper-case key", `{"MODEL":"claude-opus-4-1"}`, request.ModelFound, "claude-opus-4-1"},
		{"nested model is not the model", `{"metadata":{"model":"x"},"messages":[{"model":"y"}]}`, request.ModelMissing, ""},
		{"no model", `{"max_tokens":1}`, request.ModelMissing, ""},
		{"empty body", ``, request.ModelMissing, ""},
		{"twice", `{"model":"claude-haiku-4-5","model":"claude-opus-4-1"}`, request.ModelDuplicated, ""},
		{"twice in two spellings", `{"model":"claude-haiku-4-5","Model":"claude-opus-4-1"}`, request.ModelDuplicated, ""},
		{"twice, once escaped", `{"mod\u0065l":"claude-opus-4-1","model":"claude-haiku-4-5"}`, request.ModelDuplicated, ""},
		{"null", `{"model":null}`, request.ModelNotString, ""},
		{"number", `{"model":7}`, request.ModelNotString, ""},
		{"object", `{"model":{"id":"claude-opus-4-1"}}`, request.ModelNotString, ""},
		{"array body", `[{"model":"claude-haiku-4-5"}]`, request.BodyMalformed, ""},
		{"trailing garbage", `{"model":"claude-haiku-4-5"} {"model":"claude-opus-4-1"}`, request.BodyMalformed, ""},
		{"cut short", `{"model":"claude-haiku-4-5","messages":[`, request.BodyMalformed, ""},
		{"bad escape in a key", `{"mo\del":"claude-opus-4-1","model":"claude-haiku-4-5"}`, request.BodyMalformed, ""},
		{"raw control character in the model", "{\"model\":\"claude-haiku\x01\"}", request.BodyMalformed, ""},
		{"invalid UTF-8 decodes as encoding/json does", "{\"model\":\"claude-haiku-\xff\"}", request.ModelFound, "claude-haiku-\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := request.Scan([]byte(tt.body))
			if f.ModelStatus != tt.status || f.Model != tt.model {
				t.Errorf("got %v %q, want %v %q", f.ModelStatus, f.Model, tt.status, tt.model)
			}
			if (f.ModelStatus == request.ModelFound) != (f.ModelStatus.Problem() == "") {
				t.Errorf("Problem(): got %q for status %v", f.ModelStatus.Problem(), f.ModelStatus)
			}
		})
	}
}

// FuzzScanModel compares the model Scan finds with what encoding/json decodes from the same
// body: on every body encoding/json accepts, Scan must report the model json.Unmarshal
// sets, and report a problem exactly when a parser could see no model, or more than one
// key naming it, or a model that is not a string. On other bodies it must not panic, and
// a model it reports must be the string at the span it reports.
func FuzzScanModel(f *testing.F) {
	for _, seed := range []string{
		`{"model":"claude-sonnet-4-5-20250929","max_tokens":256,"messages":[{"role":"user","content":"hi"}]}`,
		`{"max_tokens":1,"model":"claude-haiku-4-5","stream":true,"metadata":{"user_id":"u"}}`,
		`{"mod\u0065l":"claude-opus-4-1"}`,
		`{"Model":"claude-opus-4-1"}`,
		`{"model":"claude-haiku-4-5","MODEL":"claude-opus-4-1"}`,
		`{"model":"a","model":"b"}`,
		`{"model":null}`,
		`{"model":7}`,
		`{"model":["x"]}`,
		`{"metadata":{"model":"x"}}`,
		`{"messages":[{"role":"user","content":"{\"model\":\"x\"}"}],"model":"m"}`,
		`{"model":"claude-\u0068aiku","x":"\"model\":"}`,
		`{"model":"\ud800"}`,
		`{"model":"a\u0000b"}`,
		"{\"model\":\"claude\xff\"}",
		"{\"mod\xc3\xa9l\":\"x\"}",
		` { "model" : "a" } `,
		`{"model":"a",}`,
		`{"model":"a"}x`,
		`[{"model":"a"}]`,
		`{}`,
		``,
		`{"\u212a":1,"model":"k"}`,
		`{"a":{"b":[1,2,{"model":"x"}]},"c":"}","model":"y"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := request.Scan(body)
		if got.ModelStatus == request.ModelFound {
			var atSpan string
			if got.ModelStart < 0 || got.ModelEnd > len(body) || got.ModelStart >= got.ModelEnd ||
				json.Unmarshal(body[got.ModelStart:got.ModelEnd], &atSpan) != nil || atSpan != got.Model {
				t.Fatalf("Scan(%q): model %q, but the span [%d:%d] is not that string", body, got.Model, got.ModelStart, got.ModelEnd)
			}
		}
		keys, values, valid := modelKeys(body)
		if !valid {
			return // encoding/json refuses the body, so would a strict upstream
		}
		switch {
		case keys == 0:
			if got.ModelStatus != request.ModelMissing {
				t.Fatalf("Scan(%q): got %v %q, want ModelMissing", body, got.ModelStatus, got.Model)
			}
		case keys > 1:
			if got.ModelStatus != request.ModelDuplicated && got.ModelStatus != request.ModelNotString {
				t.Fatalf("Scan(%q): got %v %q, want the duplicated model refused", body, got.ModelStatus, got.Model)
			}
		case values[0][0] != '"':
			if got.ModelStatus != request.ModelNotString {
				t.Fatalf("Scan(%q): got %v %q, want ModelNotString", body, got.ModelStatus, got.Model)
			}
		default:
			var want struct {
				Model string `json:"model"`
			}
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatalf("json.Unmarshal(%q): %v", body, err)
			}
			if got.ModelStatus != request.ModelFound || got.Model != want.Model {
				t.Fatalf("Scan(%q): got %v %q, want encoding/json's %q", body, got.ModelStatus, got.Model, want.Model)
			}
			replaced := request.ReplaceModel(body, got, "replaced")
			if err := json.Unmarshal(replaced, &want); err != nil || want.Model != "replaced" {
				t.Fatalf("ReplaceModel(%q) = %q: model %q, %v; want \"replaced\"", body, replaced, want.Model, err)
			}
		}
	})
}

// modelKeys walks a body's top-level object with encoding/json's tokenizer and counts the
// keys that encoding/json itself matches to a struct field named "model", with their raw
// values. valid is false when encoding/json does not accept the body as one JSON object.
func modelKeys(body []byte) (keys int, values [][]byte, valid bool) {
	if !json.Valid(body) {
		return 0, nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, nil, false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0, nil, false
		}
		name, _ := json.Marshal(tok.(string))
		var probe struct {
			Model *int `json:"model"`
		}
		json.Unmarshal(append(append([]byte("{"), name...), ":1}"...), &probe)
		if probe.Model != nil {
			keys++
			values = append(values, v)
		}
	}
	return keys, values, true
}
