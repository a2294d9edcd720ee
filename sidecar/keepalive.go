package sidecar

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/claude-relay/claude-relay/internal/jsonscan"
)

// pingEvent is the Messages streaming protocol's own keep-alive event, byte for byte as the
// API sends it. Clients (the Anthropic SDKs, Claude Code) skip it wherever it comes.
var pingEvent = []byte("event: ping\ndata: {\"type\": \"ping\"}\n\n")

// keepalive opens a streamed request's response while it waits in its key's queue (policy
// queue_keepalive) and sends a ping event every interval: proxies and clients with idle
// timeouts see a live stream instead of silence. Nothing is written before the first
// interval passes, so a request that does not wait sends nothing early; until then no
// goroutine exists (a timer's function runs only when it fires).
//
// Once the stream is open the answer's status is 200 whatever follows: exchange.fail turns a
// later refusal into an SSE error event, and exchange.relay skips the upstream's status and
// headers (streamOpen).
type keepalive struct {
	ex    *exchange
	every time.Duration
	mu    sync.Mutex // serialises the timer's writes with stop
	t     *time.Timer
	done  bool
	open  bool // the response's status and headers are written
	pings int
}

// startKeepalive arms the keep-alive for a request that may wait in a queue; nil when the
// policy sends none or the request is not streamed.
func (ex *exchange) startKeepalive(every time.Duration) *keepalive {
	if every <= 0 || !wantsStream(ex.body) {
		return nil
	}
	k := &keepalive{ex: ex, every: every}
	k.mu.Lock()
	k.t = time.AfterFunc(every, k.ping)
	k.mu.Unlock()
	return k
}

// ping writes the stream's headers the first time, then a ping event, and re-arms itself.
func (k *keepalive) ping() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done {
		return
	}
	w := k.ex.w
	if !k.open {
		h := w.Header()
		h.Set("Content-Type", "text/event-stream; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("Request-Id", k.ex.id)
		w.WriteHeader(http.StatusOK)
		k.open = true
	}
	if _, err := w.Write(pingEvent); err != nil {
		return // the client left: the queue sees its context end
	}
	if http.NewResponseController(w).Flush() != nil {
		return
	}
	k.pings++
	k.ex.s.m.queuePings.Inc()
	k.t.Reset(k.every)
}

// stop ends the keep-alive (waiting for a ping being written) and reports whether the
// response's stream is open.
func (k *keepalive) stop() bool {
	if k == nil {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.done = true
	k.t.Stop()
	return k.open
}

// wantsStream reports whether a Messages body asks for a stream: a top-level "stream" key
// whose value is true. Only policies with queue_keepalive ask, and only for a request that
// is about to be admitted.
func wantsStream(body []byte) bool {
	s := jsonscan.New(body)
	stream := false
	s.Object(func(key []byte) bool {
		if string(key) != "stream" {
			return s.Skip()
		}
		v, ok := s.Value()
		stream = ok && string(v) == "true"
		return ok
	})
	return stream
}

// maxStreamedError bounds the upstream error body turned into an SSE error event.
const maxStreamedError = 64 << 10

// relayIntoOpenStream ends a request whose stream the keep-alive opened when the upstream
// answered with something else than a stream (an error, typically): its error object goes
// out as the stream's error event, which is what the API sends for an error mid-stream.
func (ex *exchange) relayIntoOpenStream(resp *http.Response) {
	defer resp.Body.Close()
	ex.status = resp.StatusCode
	ex.firstByte = ex.s.now()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxStreamedError))
	var e struct {
		Type  string          `json:"type"`
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Type == "error" && len(e.Error) > 0 {
		var b bytes.Buffer
		b.WriteString("event: error\ndata: ")
		json.Compact(&b, body)
		b.WriteString("\n\n")
		ex.w.Write(b.Bytes())
	} else {
		ex.w.Write(sseError(errAPI, "the upstream answered this streamed request with HTTP "+http.StatusText(resp.StatusCode)+" and no stream"+ex.seeLog()))
	}
	http.NewResponseController(ex.w).Flush()
	ex.s.log.Info("relayed into a kept-alive stream", "request_id", ex.id, "key", ex.principal.KeyID, "account", ex.account, "status", resp.StatusCode)
}
