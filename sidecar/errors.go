package sidecar

import (
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
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
	errTimeout        = "timeout_error"
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

// relayRequestIDHeader carries the relay's request id on every answer to a relayed path;
// the relay's own errors also carry it as request-id and, where the details are for
// operators, in their message. Every log line about the request has it as request_id.
const relayRequestIDHeader = "X-Relay-Request-Id"

// newRequestID returns a request id: "relay_" and 16 hex digits.
func newRequestID() string {
	var b [6 + 16]byte
	copy(b[:], "relay_")
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], rand.Uint64())
	hex.Encode(b[6:], n[:])
	return string(b[:])
}

// upstreamCause says, for a client, why an upstream attempt failed, without host names,
// addresses or proxy URLs: those stay in the log.
func upstreamCause(err error) string {
	var dns *net.DNSError
	var op *net.OpError
	var cert *tls.CertificateVerificationError
	var ne net.Error
	switch {
	case err == nil:
		return "no attempt was made"
	case errors.As(err, &op) && op.Op == "proxyconnect":
		return "the account's outbound proxy could not be reached"
	case errors.As(err, &dns):
		return "the upstream's host name could not be resolved"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "the upstream refused the connection"
	case errors.As(err, &cert):
		return "the upstream's TLS certificate was not accepted"
	case strings.Contains(err.Error(), "response headers exceeded") || strings.Contains(err.Error(), "header list larger"):
		return fmt.Sprintf("the upstream's response headers exceeded the relay's %d KiB limit", MaxResponseHeaderBytes>>10)
	case errors.As(err, &ne) && ne.Timeout():
		return "the connection to the upstream timed out"
	default:
		return "the connection to the upstream failed"
	}
}
