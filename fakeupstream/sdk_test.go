package fakeupstream

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/google/go-cmp/cmp"
)

// sdkClient returns an official SDK client pointed at s, without retries.
func sdkClient(s *Server) anthropic.Client {
	return anthropic.NewClient(
		option.WithBaseURL(s.URL()),
		option.WithAPIKey(testKey),
		option.WithMaxRetries(0),
	)
}

func sdkParams() anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     testModel,
		MaxTokens: 1024,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is the weather?"))},
		Tools: []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
			Name:        "lookup_weather",
			InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"location": map[string]any{"type": "string"}}},
		}}},
	}
}

// sdkBlock is the part of a content block the tests compare.
type sdkBlock struct {
	Type, Text, Thinking, Signature, Name string
	Input                                 string
	HasID                                 bool
}

func sdkBlocks(t *testing.T, msg *anthropic.Message) []sdkBlock {
	t.Helper()
	var out []sdkBlock
	for _, c := range msg.Content {
		b := sdkBlock{Type: c.Type, Text: c.Text, Thinking: c.Thinking, Signature: c.Signature, Name: c.Name}
		if c.Type == "tool_use" {
			var v any
			if err := json.Unmarshal(c.Input, &v); err != nil {
				t.Fatalf("tool input %q is not JSON: %v", c.Input, err)
			}
			norm, _ := json.Marshal(v)
			b.Input = string(norm)
			b.HasID = strings.HasPrefix(c.ID, "toolu_")
		}
		out = append(out, b)
	}
	return out
}

// wantBlocks returns the blocks a script should produce, built independently
// of the fake's plan.
func wantBlocks(t *testing.T, sc Script) []sdkBlock {
	t.Helper()
	var out []sdkBlock
	for _, k := range sc.Blocks {
		switch k {
		case BlockText:
			text := sc.Text
			if text == "" {
				text = strings.Join(generate(textWords(), sc.Deltas), "")
			}
			out = append(out, sdkBlock{Type: "text", Text: text})
		case BlockThinking:
			thinking := strings.Join(generate(thinkingWords(), sc.Deltas), "")
			sum := sha256.Sum256([]byte(thinking))
			out = append(out, sdkBlock{Type: "thinking", Thinking: thinking, Signature: "EqQB" + base64.StdEncoding.EncodeToString(sum[:])})
		case BlockToolUse:
			out = append(out, sdkBlock{Type: "tool_use", Name: "lookup_weather", Input: `{"location":"San Francisco, CA","unit":"celsius"}`, HasID: true})
		}
	}
	return out
}

func TestSDKStreamingAccumulate(t *testing.T) {
	tests := []struct {
		name     string
		script   Script
		wantStop anthropic.StopReason
	}{
		{"text", Script{Deltas: 5, Blocks: []string{"text"}}, anthropic.StopReasonEndTurn},
		{"thinking text tool_use", Script{Deltas: 4, Blocks: []string{"thinking", "text", "tool_use"}}, anthropic.StopReasonToolUse},
		{"cache usage with cumulative delta", Script{Deltas: 3, Blocks: []string{"text"}, CumulativeDeltaUsage: true,
			Usage: &Usage{InputTokens: 12, CacheReadInputTokens: 900, Ephemeral5mInputTokens: 40, Ephemeral1hInputTokens: 60}}, anthropic.StopReasonEndTurn},
		{"200 KB single delta", Script{Deltas: 1, Blocks: []string{"text"}, Text: strings.Repeat("z", 200*1024)}, anthropic.StopReasonEndTurn},
	}
	s := Start(t, Options{APIKeys: []string{testKey}})
	client := sdkClient(s)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Enqueue(tt.script)
			stream := client.Messages.NewStreaming(context.Background(), sdkParams())
			defer stream.Close()
			var msg anthropic.Message
			for stream.Next() {
				if err := msg.Accumulate(stream.Current()); err != nil {
					t.Fatalf("accumulate: %v", err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			rec := waitOne(t, s, i+1)
			if diff := cmp.Diff(wantBlocks(t, tt.script), sdkBlocks(t, &msg)); diff != "" {
				t.Errorf("content (-want +got):\n%s", diff)
			}
			if msg.StopReason != tt.wantStop {
				t.Errorf("stop reason: got %q, want %q", msg.StopReason, tt.wantStop)
			}
			if msg.Model != testModel || !strings.HasPrefix(msg.ID, "msg_") {
				t.Errorf("model/id: got %q/%q, want %q/msg_…", msg.Model, msg.ID, testModel)
			}
			got := Usage{
				InputTokens: msg.Usage.InputTokens, OutputTokens: msg.Usage.OutputTokens,
				CacheCreationInputTokens: msg.Usage.CacheCreationInputTokens, CacheReadInputTokens: msg.Usage.CacheReadInputTokens,
				Ephemeral5mInputTokens: msg.Usage.CacheCreation.Ephemeral5mInputTokens, Ephemeral1hInputTokens: msg.Usage.CacheCreation.Ephemeral1hInputTokens,
			}
			if got != rec.Usage {
				t.Errorf("SDK usage: got %+v, want the recorded %+v", got, rec.Usage)
			}
			wantOut := int64(0)
			for _, k := range tt.script.Blocks {
				wantOut += int64(min(tt.script.Deltas, 200*1024))
				if k == BlockThinking {
					wantOut++
				}
			}
			if got.OutputTokens != wantOut {
				t.Errorf("output tokens: got %d, want %d", got.OutputTokens, wantOut)
			}
			if u := tt.script.Usage; u != nil && (got.InputTokens != u.InputTokens || got.CacheCreationInputTokens != u.Ephemeral5mInputTokens+u.Ephemeral1hInputTokens || got.CacheReadInputTokens != u.CacheReadInputTokens) {
				t.Errorf("SDK usage: got %+v, want input/cache from %+v", got, *u)
			}
		})
	}
}

func TestSDKNonStreaming(t *testing.T) {
	sc := Script{Deltas: 3, Blocks: []string{"thinking", "text", "tool_use"}, Usage: &Usage{CacheReadInputTokens: 77}}
	s := Start(t, Options{Default: sc})
	client := sdkClient(s)
	msg, err := client.Messages.New(context.Background(), sdkParams())
	if err != nil {
		t.Fatalf("new message: %v", err)
	}
	if diff := cmp.Diff(wantBlocks(t, sc), sdkBlocks(t, msg)); diff != "" {
		t.Errorf("content (-want +got):\n%s", diff)
	}
	if msg.StopReason != anthropic.StopReasonToolUse {
		t.Errorf("stop reason: got %q, want tool_use", msg.StopReason)
	}
	rec := waitOne(t, s, 1)
	if msg.Usage.InputTokens != int64(len(rec.Body)/4) || msg.Usage.OutputTokens != 3+1+3+3 || msg.Usage.CacheReadInputTokens != 77 {
		t.Errorf("usage: got input %d output %d cache read %d, want %d %d 77",
			msg.Usage.InputTokens, msg.Usage.OutputTokens, msg.Usage.CacheReadInputTokens, len(rec.Body)/4, 10)
	}
	if got := rec.Header.Get("anthropic-version"); got == "" {
		t.Errorf("recorded anthropic-version: got empty, want the SDK's version")
	}
}

func TestSDKSeesErrors(t *testing.T) {
	tests := []struct {
		name     string
		script   Script
		wantCode int
		wantType string
	}{
		{"429 before the stream", Script{Status: 429}, 429, "rate_limit_error"},
		{"529 before the stream", Script{Status: 529}, 529, "overloaded_error"},
		{"error event mid-stream", Script{ErrorEventAfter: 5}, 200, "overloaded_error"},
	}
	s := Start(t, Options{})
	client := sdkClient(s)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Enqueue(tt.script)
			stream := client.Messages.NewStreaming(context.Background(), sdkParams())
			defer stream.Close()
			for stream.Next() {
			}
			var apiErr *anthropic.Error
			if !errors.As(stream.Err(), &apiErr) {
				t.Fatalf("stream error: got %v, want *anthropic.Error", stream.Err())
			}
			if apiErr.StatusCode != tt.wantCode {
				t.Errorf("status: got %d, want %d", apiErr.StatusCode, tt.wantCode)
			}
			if !strings.Contains(apiErr.Error(), tt.wantType) {
				t.Errorf("error: got %v, want it to mention %s", apiErr, tt.wantType)
			}
			if !strings.HasPrefix(apiErr.RequestID, "req_") {
				t.Errorf("request id: got %q, want req_ prefix", apiErr.RequestID)
			}
		})
	}
}
