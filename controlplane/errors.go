package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// Short local names for the error types of adminapi.
const (
	errInvalidRequest = adminapi.ErrInvalidRequest
	errAuthentication = adminapi.ErrAuthentication
	errPermission     = adminapi.ErrPermission
	errNotFound       = adminapi.ErrNotFound
	errConflict       = adminapi.ErrConflict
	errPrecondition   = adminapi.ErrPreconditionFailed
	errRateLimit      = adminapi.ErrRateLimit
	errAPI            = adminapi.ErrAPI
	errTimeout        = adminapi.ErrTimeout
)

// fieldErrors maps request field names to what is wrong with them.
type fieldErrors map[string]string

// add records the first problem found with field.
func (f fieldErrors) add(field, problem string) {
	if _, ok := f[field]; !ok {
		f[field] = problem
	}
}

// writeJSON answers with v as JSON. Admin responses may carry secrets or tokens, so none is cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, errAPI, "encode response", nil)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError answers with {"error":{"type","message","fields"}}.
func writeError(w http.ResponseWriter, status int, typ, msg string, fields fieldErrors) {
	body := adminapi.ErrorBody{Error: adminapi.ErrorDetail{Type: typ, Message: msg, Fields: fields}}
	b, _ := json.Marshal(body) // cannot fail: strings only
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeInvalid answers 400 naming each bad field.
func writeInvalid(w http.ResponseWriter, fields fieldErrors) {
	names := make([]string, 0, len(fields))
	for name, problem := range fields {
		names = append(names, name+": "+problem)
	}
	slices.Sort(names)
	writeError(w, http.StatusBadRequest, errInvalidRequest, "invalid request: "+strings.Join(names, "; "), fields)
}

// writeRetryAfter answers 429 telling the client how long to wait.
func writeRetryAfter(w http.ResponseWriter, wait time.Duration, msg string) {
	secs := int64((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeError(w, http.StatusTooManyRequests, errRateLimit, fmt.Sprintf("%s; retry in %ds", msg, secs), nil)
}

// writeStoreError maps a store error to a response; what names the object, e.g. `key "abc"`.
func (s *Server) writeStoreError(w http.ResponseWriter, r *http.Request, err error, what string) {
	var stale *store.StaleError
	switch {
	case errors.As(err, &stale):
		w.Header().Set("ETag", adminapi.ETag(stale.Current))
		writeError(w, http.StatusPreconditionFailed, errPrecondition, fmt.Sprintf(
			"%s changed since it was read: If-Match names revision %d, the current revision is %d; read it again, reapply your change and retry",
			what, stale.Want, stale.Current), nil)
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, errNotFound, what+" not found", nil)
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, errConflict, what+": "+err.Error(), nil)
	case errors.Is(err, store.ErrTampered):
		s.log.Error("account record changed outside the admin API", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusConflict, errConflict, what+": "+err.Error(), nil)
	case errors.Is(err, store.ErrInvalid):
		writeError(w, http.StatusBadRequest, errInvalidRequest, what+": "+err.Error(), nil)
	case clientGone(r):
		s.log.Debug("request ended before the store answered: the client went away", "method", r.Method, "path", r.URL.Path)
	default:
		s.log.Error("store call failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusInternalServerError, errAPI, "internal error; see the control plane log", nil)
	}
}

// clientGone reports whether the request's client went away (its context ended), so that
// a failure that follows is the client's leaving, not the control plane's fault: a CLI
// interrupted mid-login, or dev mode stopped while it logs its admin in.
func clientGone(r *http.Request) bool { return r.Context().Err() != nil }

// decodeJSON reads a JSON object body into v, refusing unknown fields and trailing data.
// On failure it has already answered 400.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeJSONMax(w, r, v, maxBodyBytes)
}

// decodeJSONMax is decodeJSON with a body cap of max bytes.
func decodeJSONMax(w http.ResponseWriter, r *http.Request, v any, max int64) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, errInvalidRequest, fmt.Sprintf("request body is larger than %d bytes", max), nil)
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The listener's body bound (CLAUDE_RELAY_CLIENT_BODY_TIMEOUT) cut a stalled body.
			writeError(w, http.StatusRequestTimeout, errTimeout, "the control plane stopped waiting for the request body: "+err.Error()+"; send the body promptly after the headers", nil)
		case errors.As(err, &typeErr) && typeErr.Field != "":
			writeInvalid(w, fieldErrors{typeErr.Field: "must be " + jsonKind(typeErr.Type)})
		case errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, errInvalidRequest, "request body must be a JSON object", nil)
		default:
			writeError(w, http.StatusBadRequest, errInvalidRequest, "request body is not valid JSON: "+err.Error(), nil)
		}
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, errInvalidRequest, "request body must hold one JSON object", nil)
		return false
	}
	return true
}

// jsonKind names a Go type the way a JSON user would, with an article.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	default:
		return "a " + t.Kind().String()
	}
}
