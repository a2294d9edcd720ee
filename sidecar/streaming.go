package sidecar

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/claude-relay/claude-relay/sidecar/usage"
)

// Copying, split from proxying as Caddy splits reverseproxy/streaming.go from its handler:
// the upstream call's idle deadline, the copy-and-flush loop, the usage tap it feeds and the
// one header filter of both directions. exchange.forward and exchange.relay (proxy.go)
// decide what an answer means; nothing here knows about accounts, limits or errors' shapes.

// Copy buffers: 32 KiB for JSON answers (few reads for a long one), 8 KiB for event
// streams, which arrive an event (a few hundred bytes) at a time and may be held open by
// the ten thousand, each holding its buffer while it waits. A burst of events larger
// than the buffer just takes another read; the stream parser handles lines of any length.
var (
	bufPool    = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	sseBufPool = sync.Pool{New: func() any { b := make([]byte, 8<<10); return &b }}
)

// upstreamCall is the context of a request's upstream attempts. It ends when the client
// goes away, when the upstream sends nothing for timeout (cause errIdleTimeout; the
// response's headers and every read of its body re-arm the timer), or when a write to the
// client fails (cause errClientGone).
type upstreamCall struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	idle    *time.Timer
	timeout time.Duration
}

func startUpstreamCall(parent context.Context, timeout time.Duration) upstreamCall {
	ctx, cancel := context.WithCancelCause(parent)
	idle := time.AfterFunc(timeout, func() { cancel(errIdleTimeout) })
	return upstreamCall{ctx: ctx, cancel: cancel, idle: idle, timeout: timeout}
}

// arrived re-arms the idle deadline: something came from the upstream.
func (c *upstreamCall) arrived() { c.idle.Reset(c.timeout) }

// end stops the idle timer and releases the context.
func (c *upstreamCall) end() {
	c.idle.Stop()
	c.cancel(nil)
}

// copyBody copies the upstream's answer to the client as it arrives. An event stream's
// headers go out (flushed) before its first byte, so the client sees the stream open, and
// every read of it is flushed at once; a JSON answer's headers go out with its first bytes
// (exchange.writeHeader), so an answer that stalls or breaks before any byte can still get
// a proper error status. Every read re-arms the idle deadline and goes to the tap. It
// returns whether the headers are written and why the copy ended: nil at the body's end,
// errClientGone when a write to the client failed (the upstream call is cancelled with it),
// else the upstream call's cause when it has one (errIdleTimeout, the client gone), else
// the read's error.
func (ex *exchange) copyBody(call *upstreamCall, resp *http.Response, sse bool, tap *usageTap) (committed bool, err error) {
	rc := http.NewResponseController(ex.w)
	pool := &bufPool
	if sse {
		pool = &sseBufPool
		ex.writeHeader(resp)
		committed = true
		rc.Flush()
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			call.arrived()
			if !committed {
				ex.writeHeader(resp)
				committed = true
			}
			if _, werr := ex.w.Write(buf[:n]); werr != nil {
				call.cancel(errClientGone)
				tap.undelivered(buf[:n])
				return committed, errClientGone
			}
			if sse {
				rc.Flush()
			}
			tap.delivered(buf[:n])
		}
		if err == io.EOF {
			return committed, nil
		}
		if err != nil {
			if cause := context.Cause(call.ctx); cause != nil {
				return committed, cause
			}
			return committed, err
		}
	}
}

// maxJSONUsage bounds how much of a JSON answer the usage tap keeps to read its usage.
const maxJSONUsage = 8 << 20

// usageTap reads a Messages answer's usage as the copy passes it: an event stream through
// usage.StreamParser, a JSON answer kept (up to maxJSONUsage bytes) for usage.FromJSON. A
// tap that is not on (an answer that is not accounted) takes nothing.
type usageTap struct {
	on, sse bool
	parser  usage.StreamParser
	body    []byte
}

// delivered takes bytes the client was sent.
func (t *usageTap) delivered(p []byte) {
	switch {
	case !t.on:
	case t.sse:
		t.parser.Write(p)
	case len(t.body)+len(p) <= maxJSONUsage:
		t.body = append(t.body, p...)
	}
}

// undelivered takes bytes whose write to the client failed: a stream still counts them
// (the upstream produced them), a JSON answer, unreadable without its end anyway, does not.
func (t *usageTap) undelivered(p []byte) {
	if t.on && t.sse {
		t.parser.Write(p)
	}
}

// usage is what the answer consumed and the model that answered. A stream cut short is
// charged at least what it relayed: usage.StreamParser.Estimate, and estimated says so.
func (t *usageTap) usage() (c Counts, model string, estimated bool) {
	if t.sse {
		c, estimated = t.parser.Estimate()
		return c, t.parser.Model(), estimated
	}
	c, model, _ = usage.FromJSON(t.body)
	return c, model, false
}

// copyHeaders copies src's fields to dst except those pass refuses and those src's
// Connection header lists (hop-by-hop, RFC 9110 §7.6.1): the one filter of both directions,
// a client's request (forwardRequestHeader) and an upstream's answer (the runtime's
// response header allowlist).
func copyHeaders(dst, src http.Header, pass func(name string) bool) {
	conn := src.Values("Connection")
	for k, vv := range src {
		if !pass(k) || listed(conn, k) {
			continue
		}
		dst[k] = vv
	}
}

// listed reports whether a Connection header names key.
func listed(conn []string, key string) bool {
	for _, v := range conn {
		for _, f := range strings.Split(v, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(f)) == key {
				return true
			}
		}
	}
	return false
}
