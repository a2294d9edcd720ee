package fakeupstream

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// OrganizationID is the anthropic-organization-id header value of every response.
const OrganizationID = "f3a0c9e2-5b7d-4e61-9a8c-2d4b6e8f0a1c"

// MaxBodyBytes is the largest request body accepted; larger ones get 413.
const MaxBodyBytes = 32 << 20

// wireUsage is the usage object of message_start and of a JSON message.
type wireUsage struct {
	InputTokens              int64             `json:"input_tokens"`
	CacheCreationInputTokens int64             `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64             `json:"cache_read_input_tokens"`
	CacheCreation            wireCacheCreation `json:"cache_creation"`
	OutputTokens             int64             `json:"output_tokens"`
	ServiceTier              string            `json:"service_tier"`
}

type wireCacheCreation struct {
	Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
	Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
}

func toWireUsage(u Usage) wireUsage {
	return wireUsage{
		InputTokens:              u.InputTokens,
		CacheCreationInputTokens: u.CacheCreationInputTokens,
		CacheReadInputTokens:     u.CacheReadInputTokens,
		CacheCreation:            wireCacheCreation{Ephemeral5m: u.Ephemeral5mInputTokens, Ephemeral1h: u.Ephemeral1hInputTokens},
		OutputTokens:             u.OutputTokens,
		ServiceTier:              "standard",
	}
}

// wireDeltaUsage is the usage object of message_delta.
type wireDeltaUsage struct {
	InputTokens              *int64 `json:"input_tokens,omitempty"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens,omitempty"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens,omitempty"`
	OutputTokens             int64  `json:"output_tokens"`
}

// wireMessage is a message object, both streamed (message_start) and whole.
type wireMessage struct {
	ID           string    `json:"id"`
	Type         string    `json:"type"`
	Role         string    `json:"role"`
	Model        string    `json:"model"`
	Content      []any     `json:"content"`
	StopReason   *string   `json:"stop_reason"`
	StopSequence *string   `json:"stop_sequence"`
	Usage        wireUsage `json:"usage"`
}

type textBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type thinkingBlock struct {
	Type      string `json:"type"`
	Thinking  string `json:"thinking"`
	Signature string `json:"signature"`
}

type toolUseBlock struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type messageStartEvent struct {
	Type    string      `json:"type"`
	Message wireMessage `json:"message"`
}

type blockStartEvent struct {
	Type         string `json:"type"`
	Index        int    `json:"index"`
	ContentBlock any    `json:"content_block"`
}

type blockDeltaEvent struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
	Delta any    `json:"delta"`
}

type textDelta struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type thinkingDelta struct {
	Type     string `json:"type"`
	Thinking string `json:"thinking"`
}

type signatureDelta struct {
	Type      string `json:"type"`
	Signature string `json:"signature"`
}

type inputJSONDelta struct {
	Type        string `json:"type"`
	PartialJSON string `json:"partial_json"`
}

type blockStopEvent struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
}

type messageDeltaEvent struct {
	Type  string            `json:"type"`
	Delta messageDeltaDelta `json:"delta"`
	Usage wireDeltaUsage    `json:"usage"`
}

type messageDeltaDelta struct {
	StopReason   string  `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

type typeOnly struct {
	Type string `json:"type"`
}

type errorBody struct {
	Type      string      `json:"type"`
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id,omitempty"`
}

type errorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// marshal encodes v as the API does: compact, with <, > and & left literal.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Unreachable: every wire type here has a JSON encoding.
		return []byte(`{}`)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Error types of the Anthropic API.
const (
	ErrInvalidRequest  = "invalid_request_error"
	ErrAuthentication  = "authentication_error"
	ErrPermission      = "permission_error"
	ErrNotFound        = "not_found_error"
	ErrRequestTooLarge = "request_too_large"
	ErrRateLimit       = "rate_limit_error"
	ErrAPI             = "api_error"
	ErrOverloaded      = "overloaded_error"
)

// errorTypeFor returns the error type the API uses for status.
func errorTypeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return ErrInvalidRequest
	case http.StatusUnauthorized:
		return ErrAuthentication
	case http.StatusForbidden:
		return ErrPermission
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusRequestEntityTooLarge:
		return ErrRequestTooLarge
	case http.StatusTooManyRequests:
		return ErrRateLimit
	case 529:
		return ErrOverloaded
	}
	if status >= 500 {
		return ErrAPI
	}
	return ErrInvalidRequest
}

// messageFor returns a default message for an error type.
func messageFor(errType string) string {
	switch errType {
	case ErrAuthentication:
		return "invalid x-api-key"
	case ErrPermission:
		return "Your API key does not have permission to use the specified resource."
	case ErrNotFound:
		return "Not found"
	case ErrRequestTooLarge:
		return "Request exceeds the maximum allowed number of bytes."
	case ErrRateLimit:
		return "This request would exceed your account's rate limit. Please try again later."
	case ErrAPI:
		return "Internal server error"
	case ErrOverloaded:
		return "Overloaded"
	}
	return "Invalid request"
}

// writeError writes an Anthropic error response. retryAfter > 0 adds the
// retry-after and anthropic-ratelimit-unified-reset headers.
func writeError(w http.ResponseWriter, reqID string, status int, errType, msg string, retryAfter time.Duration, now time.Time) {
	h := w.Header()
	setCommonHeaders(h, reqID)
	h.Set("Content-Type", "application/json")
	if status == http.StatusTooManyRequests {
		h.Set("anthropic-ratelimit-unified-status", "rejected")
	}
	if retryAfter > 0 {
		secs := int64(math.Ceil(retryAfter.Seconds()))
		h.Set("retry-after", strconv.FormatInt(secs, 10))
		h.Set("anthropic-ratelimit-unified-reset", strconv.FormatInt(now.Add(retryAfter).Unix(), 10))
	}
	if status == http.StatusMethodNotAllowed {
		h.Set("Allow", "GET, POST")
	}
	w.WriteHeader(status)
	_, _ = w.Write(marshal(errorBody{Type: "error", Error: errorDetail{Type: errType, Message: msg}, RequestID: reqID}))
}

// setCommonHeaders sets the headers every API response carries.
func setCommonHeaders(h http.Header, reqID string) {
	h.Set("request-id", reqID)
	h.Set("anthropic-organization-id", OrganizationID)
}

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns prefix followed by 24 random base62 characters, the shape of
// the API's msg_, req_ and toolu_ identifiers.
func newID(prefix string) string {
	b := make([]byte, len(prefix)+24)
	copy(b, prefix)
	for i := len(prefix); i < len(b); i++ {
		b[i] = idAlphabet[rand.IntN(len(idAlphabet))]
	}
	return string(b)
}

// Model is one entry of GET /v1/models.
type Model struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
	CreatedAt   string `json:"created_at"`
}

// Models returns the models the fake lists, newest first.
func Models() []Model {
	return []Model{
		{Type: "model", ID: "claude-haiku-4-5-20251001", DisplayName: "Claude Haiku 4.5", CreatedAt: "2025-10-01T00:00:00Z"},
		{Type: "model", ID: "claude-sonnet-4-5-20250929", DisplayName: "Claude Sonnet 4.5", CreatedAt: "2025-09-29T00:00:00Z"},
		{Type: "model", ID: "claude-opus-4-1-20250805", DisplayName: "Claude Opus 4.1", CreatedAt: "2025-08-05T00:00:00Z"},
		{Type: "model", ID: "claude-opus-4-20250514", DisplayName: "Claude Opus 4", CreatedAt: "2025-05-22T00:00:00Z"},
		{Type: "model", ID: "claude-sonnet-4-20250514", DisplayName: "Claude Sonnet 4", CreatedAt: "2025-05-22T00:00:00Z"},
		{Type: "model", ID: "claude-3-5-haiku-20241022", DisplayName: "Claude Haiku 3.5", CreatedAt: "2024-10-22T00:00:00Z"},
	}
}

// lookupModel finds a model by ID or by its undated alias ("claude-sonnet-4-5").
func lookupModel(id string) (Model, bool) {
	for _, m := range Models() {
		if m.ID == id || aliasOf(m.ID) == id {
			return m, true
		}
	}
	return Model{}, false
}

// aliasOf returns the undated alias of a dated model ID: the ID without its
// trailing -YYYYMMDD.
func aliasOf(id string) string {
	if len(id) > 9 && id[len(id)-9] == '-' {
		return id[:len(id)-9]
	}
	return id
}

type modelList struct {
	Data    []Model `json:"data"`
	HasMore bool    `json:"has_more"`
	FirstID string  `json:"first_id"`
	LastID  string  `json:"last_id"`
}
