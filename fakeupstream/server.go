// Package fakeupstream is a faithful fake of the Anthropic Messages API for tests, benchmarks and demos.
package fakeupstream

import (
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Options configures a [Server].
type Options struct {
	// APIKeys are the accepted credentials, sent as x-api-key or as
	// Authorization: Bearer. Empty accepts any non-empty credential.
	APIKeys []string
	// Default is the script used when none is queued or given in the header.
	Default Script
	// Logger receives one debug line per request; nil discards.
	Logger hclog.Logger
}

// Request is what the fake received and did, for assertions.
type Request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
	// Script is the script that answered (zero for requests refused before
	// one was chosen and for endpoints other than POST /v1/messages).
	Script Script
	// Usage is exactly what the fake reported: final, cumulative values.
	Usage Usage
	// Events holds the raw bytes of every SSE event written, in order, each
	// "event: X\ndata: {...}\n\n".
	Events []string
	// Status is the HTTP status written (0 if none was).
	Status int
	// Completed reports that the fake wrote everything it meant to write,
	// error responses and streams ended by a scripted error event included.
	Completed bool
	// Canceled reports that the client went away (request context done or
	// a write failed) before completion.
	Canceled bool
}

// Server is the fake upstream. It implements http.Handler; use [Start] in
// tests, or [Server.Listen] and [Server.Serve] for a standalone process.
type Server struct {
	apiKeys [][]byte
	def     Script
	log     hclog.Logger

	// base is canceled by Close; in-flight answers stop when it is.
	base   context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	queue   []Script
	records []*record
	changed chan struct{} // closed and replaced whenever a record is finalised
	url     string
	ts      *httptest.Server
}

// record is one request's entry; its Request is written only by the handler
// until done is set under Server.mu.
type record struct {
	req  Request
	done bool
}

// New returns a fake upstream configured by opts.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Server{
		def:     opts.Default,
		log:     log,
		changed: make(chan struct{}),
	}
	for _, k := range opts.APIKeys {
		if k != "" {
			s.apiKeys = append(s.apiKeys, []byte(k))
		}
	}
	s.base, s.cancel = context.WithCancel(context.Background())
	return s
}

// Start starts a fake upstream on 127.0.0.1 with a free port and closes it
// when the test ends.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := New(opts)
	ts := httptest.NewServer(s)
	s.mu.Lock()
	s.ts = ts
	s.url = ts.URL
	s.mu.Unlock()
	tb.Cleanup(s.Close)
	return s
}

// Listen binds addr (host:port) and records the server's base URL.
// Serve the returned listener with [Server.Serve].
func (s *Server) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.mu.Lock()
	s.url = "http://" + ln.Addr().String()
	s.mu.Unlock()
	return ln, nil
}

// Serve answers requests on ln until ctx is done, then shuts down: it waits
// up to grace for in-flight requests, then aborts the rest.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	s.cancel()
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Close aborts in-flight answers and, after [Start], stops the test server.
func (s *Server) Close() {
	s.cancel()
	s.mu.Lock()
	ts := s.ts
	s.ts = nil
	s.mu.Unlock()
	if ts != nil {
		ts.Close()
	}
}

// URL returns the base URL, such as "http://127.0.0.1:41234", after
// [Start] or [Server.Listen]; empty before.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Enqueue appends scripts to the queue. Each POST /v1/messages that passes
// authentication and validation and carries no [ScriptHeader] consumes one.
func (s *Server) Enqueue(scripts ...Script) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, scripts...)
}

// Requests returns copies of the finalised requests, to any path, in
// arrival order. A request is finalised when its handler returns; requests
// still being answered are not included.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finishedLocked()
}

func (s *Server) finishedLocked() []Request {
	var out []Request
	for _, r := range s.records {
		if r.done {
			out = append(out, cloneRequest(r.req))
		}
	}
	return out
}

// WaitRequests waits until at least n requests are finalised and returns
// them as [Server.Requests] does.
func (s *Server) WaitRequests(ctx context.Context, n int) ([]Request, error) {
	for {
		s.mu.Lock()
		got := s.finishedLocked()
		ch := s.changed
		s.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return got, fmt.Errorf("wait for %d requests, have %d: %w", n, len(got), ctx.Err())
		}
	}
}

// Reset forgets recorded requests and queued scripts. Requests in flight are
// not recorded when they finish.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = nil
	s.records = nil
}

func cloneRequest(r Request) Request {
	r.Header = r.Header.Clone()
	r.Body = bytes.Clone(r.Body)
	r.Events = slices.Clone(r.Events)
	if r.Script.Usage != nil {
		u := *r.Script.Usage
		r.Script.Usage = &u
	}
	r.Script.Blocks = slices.Clone(r.Script.Blocks)
	return r
}

func (s *Server) begin(r *http.Request) *record {
	rec := &record{req: Request{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
	}}
	s.mu.Lock()
	s.records = append(s.records, rec)
	s.mu.Unlock()
	return rec
}

func (s *Server) finish(rec *record) {
	s.mu.Lock()
	rec.done = true
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// nextScript pops the queue, or returns the default script.
func (s *Server) nextScript() Script {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return s.def
	}
	sc := s.queue[0]
	s.queue = slices.Delete(s.queue, 0, 1)
	return sc
}

// exchange is the state of one request being answered.
type exchange struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context
	rec   *Request
	reqID string
	now   func() time.Time
	// aborted is set when the fake dropped the connection on purpose.
	aborted bool
}

// ServeHTTP answers one API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := s.begin(r)
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(s.base, cancel)
	x := &exchange{s: s, w: w, r: r, ctx: ctx, rec: &rec.req, reqID: newID("req_"), now: time.Now}
	defer func() {
		stop()
		cancel()
		if !x.rec.Completed && !x.aborted && ctx.Err() != nil {
			x.rec.Canceled = true
		}
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", x.rec.Status,
			"events", len(x.rec.Events), "completed", x.rec.Completed, "canceled", x.rec.Canceled,
			"duration", time.Since(start))
		s.finish(rec)
	}()
	x.serve()
}

func (x *exchange) serve() {
	r := x.r
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	x.rec.Body = body
	if err != nil {
		x.rec.Canceled = true
		return
	}
	if len(body) > MaxBodyBytes {
		x.fail(http.StatusRequestEntityTooLarge, ErrRequestTooLarge, messageFor(ErrRequestTooLarge))
		return
	}
	if !x.authorized() {
		return
	}
	if r.Header.Get("anthropic-version") == "" {
		x.fail(http.StatusBadRequest, ErrInvalidRequest, "anthropic-version: header is required")
		return
	}
	path := r.URL.Path
	switch {
	case path == "/v1/messages":
		if x.allow(http.MethodPost) {
			x.messages()
		}
	case path == "/v1/messages/count_tokens":
		if x.allow(http.MethodPost) {
			x.countTokens()
		}
	case path == "/v1/models":
		if x.allow(http.MethodGet) {
			x.writeJSON(http.StatusOK, x.modelList())
		}
	case strings.HasPrefix(path, "/v1/models/"):
		if x.allow(http.MethodGet) {
			id := strings.TrimPrefix(path, "/v1/models/")
			m, ok := lookupModel(id)
			if !ok {
				x.fail(http.StatusNotFound, ErrNotFound, "model: "+id)
				return
			}
			x.writeJSON(http.StatusOK, m)
		}
	default:
		x.fail(http.StatusNotFound, ErrNotFound, "Not Found")
	}
}

// authorized checks the credential and answers 401 when it is missing or wrong.
func (x *exchange) authorized() bool {
	key := x.r.Header.Get("x-api-key")
	if key == "" {
		if v, ok := strings.CutPrefix(x.r.Header.Get("Authorization"), "Bearer "); ok {
			key = strings.TrimSpace(v)
		}
	}
	if key == "" {
		x.fail(http.StatusUnauthorized, ErrAuthentication, "x-api-key header is required")
		return false
	}
	if len(x.s.apiKeys) == 0 {
		return true
	}
	for _, k := range x.s.apiKeys {
		if subtle.ConstantTimeCompare(k, []byte(key)) == 1 {
			return true
		}
	}
	x.fail(http.StatusUnauthorized, ErrAuthentication, "invalid x-api-key")
	return false
}

// allow answers 405 unless the request uses method.
func (x *exchange) allow(method string) bool {
	if x.r.Method == method {
		return true
	}
	x.fail(http.StatusMethodNotAllowed, ErrInvalidRequest, "Method Not Allowed")
	return false
}

// fail writes an error response with no retry headers.
func (x *exchange) fail(status int, errType, msg string) {
	x.failRetry(status, errType, msg, 0)
}

func (x *exchange) failRetry(status int, errType, msg string, retryAfter time.Duration) {
	writeError(x.w, x.reqID, status, errType, msg, retryAfter, x.now())
	x.rec.Status = status
	x.rec.Completed = true
}

func (x *exchange) writeJSON(status int, v any) { x.writeJSONAfter(status, v, 0) }

// writeJSONAfter answers with v; with bodyDelay > 0 it sends (flushes) the headers first
// and waits that long before the body.
func (x *exchange) writeJSONAfter(status int, v any, bodyDelay time.Duration) {
	h := x.w.Header()
	setCommonHeaders(h, x.reqID)
	h.Set("Content-Type", "application/json")
	x.w.WriteHeader(status)
	x.rec.Status = status
	if bodyDelay > 0 {
		if err := http.NewResponseController(x.w).Flush(); err != nil || !x.sleep(bodyDelay) {
			x.rec.Canceled = true
			return
		}
	}
	if _, err := x.w.Write(marshal(v)); err != nil {
		x.rec.Canceled = true
		return
	}
	x.rec.Completed = true
}

func (x *exchange) modelList() modelList {
	ms := Models()
	return modelList{Data: ms, HasMore: false, FirstID: ms[0].ID, LastID: ms[len(ms)-1].ID}
}

// countTokens answers POST /v1/messages/count_tokens.
func (x *exchange) countTokens() {
	var req messagesRequest
	if err := decodeRequest(x.rec.Body, &req); err != nil {
		x.fail(http.StatusBadRequest, ErrInvalidRequest, err.Error())
		return
	}
	if msg := req.missing(false); msg != "" {
		x.fail(http.StatusBadRequest, ErrInvalidRequest, msg)
		return
	}
	x.writeJSON(http.StatusOK, struct {
		InputTokens int64 `json:"input_tokens"`
	}{inputTokens(x.rec.Body)})
}

// sleep waits d, or less if the request ends first; it reports whether the
// full wait elapsed.
func (x *exchange) sleep(d time.Duration) bool {
	if d <= 0 {
		return x.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-x.ctx.Done():
		return false
	}
}

// inputTokens is the default input token count of a request body.
func inputTokens(body []byte) int64 {
	return max(1, int64(len(body)/4))
}
