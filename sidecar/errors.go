package sidecar

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Anthropic error types, as the Messages API names them.
const (
	errInvalidRequest = "invalid_request_error"
	errAuthentication = "authentication_error"
	errPermission     = "permission_error"
	errNotFound       = "not_found_error"
	errTooLarge       = "request_too_large"
	errRateLimit      = "rate_limit_error"
	errAPI            = "api_error"
	errOverloaded     = "overloaded_error"
)

type apiError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func errorBody(typ, msg string) []byte {
	var e apiError
	e.Type = "error"
	e.Error.Type = typ
	e.Error.Message = msg
	b, _ := json.Marshal(e) // cannot fail: strings only
	return b
}

// writeError answers with Anthropic's error shape. retryAfter > 0 adds a retry-after header.
func writeError(w http.ResponseWriter, status int, typ, msg string, retryAfter time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Relay-Error", "1")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(status)
	w.Write(errorBody(typ, msg))
}

// sseError is an SSE error event for failures after the stream has started.
func sseError(typ, msg string) []byte {
	b := append([]byte("event: error\ndata: "), errorBody(typ, msg)...)
	return append(b, '\n', '\n')
}
