// Package httpserve bounds how long a client may take to send a request, on every listener:
// the headers within a total time from their first byte, the body under an idle and a
// minimum-rate bound, and a refused request's unread body for at most a second.
//
// Go's HTTP/1 server has ReadHeaderTimeout for the headers but only a whole-request
// ReadTimeout for the body, which would cut a slow but moving upload; and after a handler
// answers without reading a body, the server drains up to 256 KiB of it with no deadline at
// all, so a request that declares a body and never sends it holds its connection forever.
// Handler closes both gaps with read deadlines on the connection.
package httpserve

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// MinBodyRate is the average, in bytes per second, a request body must keep up once its
// first Timeouts.Body has passed: a client trickling a byte just often enough to dodge the
// idle bound is cut too.
const MinBodyRate = 1024

// RefusalDrain bounds how long the server keeps reading the unread body of a request the
// handler answered without reading it (a refusal), so that a client whose body is already
// on its way reads the answer instead of a reset connection; then the connection closes.
const RefusalDrain = time.Second

// Timeouts bound how long a client may take to send a request.
type Timeouts struct {
	// Header bounds the request line and headers, from their first byte (from the accept
	// for a connection's first request): http.Server.ReadHeaderTimeout.
	Header time.Duration
	// Body is the longest a request body may go without a byte, the wait for its first
	// byte included; after it, the body must also average MinBodyRate. Zero disables the
	// body bounds.
	Body time.Duration
}

// Handler returns h with t's body bounds applied to every request that has a body. It must
// be the outermost handler of the server: it sets read deadlines on the connection.
func (t Timeouts) Handler(h http.Handler) http.Handler {
	if t.Body <= 0 {
		return h
	}
	return &guard{h: h, timeout: t.Body}
}

type guard struct {
	h       http.Handler
	timeout time.Duration
}

// deadliner is the part of Go's HTTP/1 response writer that sets the connection's read
// deadline (what http.ResponseController.SetReadDeadline calls).
type deadliner interface {
	SetReadDeadline(time.Time) error
}

// bodies recycles the body wrappers: one per request with a body, on the hot path.
var bodies = sync.Pool{New: func() any { return new(body) }}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength == 0 {
		// No body: the server already watches the connection for the client going away,
		// and a read deadline would end that watch.
		g.h.ServeHTTP(w, r)
		return
	}
	d := findDeadliner(w)
	if d == nil {
		g.h.ServeHTTP(w, r)
		return
	}
	b := bodies.Get().(*body)
	now := time.Now()
	*b = body{src: r.Body, conn: d, timeout: g.timeout, start: now}
	b.setDeadline(now.Add(g.timeout), false)
	// The server looks at the request's Body field when it writes the response headers (to
	// decide whether to drain or close), so the original goes back when the handler returns:
	// a short answer is written after that, with the server's own logic intact.
	orig := r.Body
	r.Body = b
	defer g.finish(r, orig, b)
	g.h.ServeHTTP(w, r)
}

// finish restores the request's body and, when the handler did not read it to its end,
// leaves the server at most RefusalDrain to read the rest before it closes the connection.
func (g *guard) finish(r *http.Request, orig io.ReadCloser, b *body) {
	r.Body = orig
	if !b.done {
		if end := time.Now().Add(min(RefusalDrain, g.timeout)); end.Before(b.deadline) {
			b.setDeadline(end, false)
		}
	}
	*b = body{}
	bodies.Put(b)
}

func findDeadliner(w http.ResponseWriter) deadliner {
	for {
		if d, ok := w.(deadliner); ok {
			return d
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
}

// body moves the connection's read deadline forward as the request body arrives.
type body struct {
	src      io.ReadCloser
	conn     deadliner
	timeout  time.Duration
	start    time.Time
	got      int64
	deadline time.Time
	slow     bool // the deadline is the rate bound's, not the idle bound's
	done     bool // EOF seen: the server cleared the deadline to watch for the client leaving
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	b.got += int64(n)
	switch {
	case err == io.EOF:
		b.done = true
	case err != nil:
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = &BodyTimeoutError{Idle: b.timeout, Slow: b.slow, Received: b.got}
		}
	case n > 0:
		now := time.Now()
		idle := now.Add(b.timeout)
		rate := b.start.Add(b.timeout + time.Duration(b.got)*(time.Second/MinBodyRate))
		if rate.Before(idle) {
			b.setDeadline(rate, true)
		} else {
			b.setDeadline(idle, false)
		}
	}
	return n, err
}

func (b *body) Close() error { return b.src.Close() }

func (b *body) setDeadline(t time.Time, slow bool) {
	b.deadline, b.slow = t, slow
	_ = b.conn.SetReadDeadline(t) // fails only on a closed connection, which the next read reports
}

// BodyTimeoutError is the error a request body's reads return once a bound is crossed. It
// matches os.ErrDeadlineExceeded.
type BodyTimeoutError struct {
	Idle     time.Duration // Timeouts.Body
	Slow     bool          // the minimum rate was not kept (else: no byte for Idle)
	Received int64         // body bytes received before the cut
}

func (e *BodyTimeoutError) Error() string {
	if e.Slow {
		return fmt.Sprintf("the request body arrived slower than %d bytes/s (%d bytes received)", MinBodyRate, e.Received)
	}
	return fmt.Sprintf("no byte of the request body arrived for %s (%d bytes received)", e.Idle, e.Received)
}

// Is makes errors.Is(err, os.ErrDeadlineExceeded) hold.
func (e *BodyTimeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// Timeout reports true, as net.Error timeouts do.
func (e *BodyTimeoutError) Timeout() bool { return true }
