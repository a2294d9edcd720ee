package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/sidecar/request"
	"github.com/claude-relay/claude-relay/sidecar/sched"
	"github.com/claude-relay/claude-relay/sidecar/usage"
	"github.com/claude-relay/claude-relay/store"
)

// Counts is the token usage of one response.
type Counts = usage.Counts

var (
	errIdleTimeout = errors.New("upstream sent nothing within the request timeout")
	errClientGone  = errors.New("client went away")
)

// hopHeaders are never forwarded in either direction (RFC 9110 §7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// dropRequest lists client headers the relay replaces or withholds: the client's own
// credential, framing, compression, and the client's network identity.
var dropRequest = map[string]bool{
	"X-Api-Key": true, "Authorization": true, "Host": true, "Content-Length": true,
	"Accept-Encoding": true, "Cookie": true, "Forwarded": true, "X-Forwarded-For": true,
	"X-Forwarded-Host": true, "X-Forwarded-Proto": true, "X-Real-Ip": true,
}

func init() {
	for _, h := range hopHeaders {
		dropRequest[h] = true
	}
}

// forwardRequestHeader reports whether a client header is sent upstream (not in dropRequest).
func forwardRequestHeader(name string) bool { return !dropRequest[name] }

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody is the largest body buffer returned to bodyPool.
const maxPooledBody = 1 << 20

// credential returns the relay key as Claude Code (x-api-key) or the SDKs (Bearer) send it.
func credential(r *http.Request) string {
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return strings.TrimSpace(k)
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// exchange is one relayed request: what the handler knows while it works.
type exchange struct {
	s         *Server
	rt        *config.Runtime
	route     *config.RouteRT
	w         http.ResponseWriter
	r         *http.Request
	principal Principal
	clientIP  netip.Addr
	body      []byte
	bodyRead  bool // the body was read whole: refusals before it close the connection
	upPath    string
	id        string // the request id: in every answer and every log line about the request
	status    int
	account   string
	started   time.Time
	fields    request.Fields // model, metadata.user_id, first message: scanned, not decoded
	session   *string        // sched.SessionKey of fields, once computed (see sessionKey)
	charge    limits.Usage   // what the upstream reported, charged to the key's limits at the end
	lease     *limits.Lease  // the key's admission: finished on every exit path
	moved     string         // why the conversation left its bound account ("" when it did not)
	firstByte time.Time      // when the upstream's answer headers arrived (zero before)
	// kind names how the request ended when not well, for the usage counters and the
	// ledger (see errorKind); refused says the relay refused it rather than failed it.
	kind     string
	refused  bool
	recorded bool // accountUsage recorded it (else recordOutcome does)
	// streamOpen: the queue keep-alive answered 200 and ping events while the request
	// waited (keepalive.go), so what follows goes out as stream events, not as a status.
	streamOpen bool
}

func (s *Server) serveRelay(w http.ResponseWriter, r *http.Request) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	ex := &exchange{s: s, w: w, r: r, started: s.now(), id: newRequestID()}
	w.Header()[relayRequestIDHeader] = []string{ex.id}
	routeName := "unmatched"
	defer func() {
		s.m.requests.With(routeName, strconv.Itoa(ex.status)).Inc()
	}()

	rt := s.rt.Load()
	if rt == nil {
		ex.fail(http.StatusServiceUnavailable, errAPI, "the relay has no configuration yet: it has not reached its control plane and has no saved copy; see GET /health", 0)
		return
	}
	ex.rt = rt
	// Every refused or failed request is counted and, with the ledger on, has its record,
	// like those with usage.
	defer ex.recordOutcome()
	route, upPath, ok := rt.Resolve(r.Method, r.URL.Path)
	if !ok {
		ex.refusal("no_route").fail(http.StatusNotFound, errNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path), 0)
		return
	}
	ex.route, ex.upPath, routeName = route, upPath, route.Name

	ex.clientIP = rt.ClientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
	if !route.Allowed(ex.clientIP) {
		ex.refusal("ip_not_allowed").fail(http.StatusForbidden, errPermission, fmt.Sprintf("client address %s is not allowed on route %q", ex.clientIP, route.Name), 0)
		return
	}
	cred := credential(r)
	if cred == "" {
		ex.refusal("key_missing").fail(http.StatusUnauthorized, errAuthentication, "missing relay key: send it as the x-api-key header or as Authorization: Bearer", 0)
		return
	}
	p, err := s.opts.Auth.Authenticate(r.Context(), AuthInput{Credential: cred, ClientIP: ex.clientIP, Route: route.Name})
	if err != nil {
		if errors.Is(err, ErrInvalidCredential) {
			ex.refusal(keyRefusalKind(err)).fail(http.StatusUnauthorized, errAuthentication, err.Error(), 0)
			return
		}
		s.m.authErrors.With("authenticate").Inc()
		s.log.Error("authentication backend unavailable", "request_id", ex.id, "error", err)
		ex.failure("auth_unavailable").fail(http.StatusServiceUnavailable, errAPI, "the relay cannot check keys right now (its key store is unavailable); retry shortly", 5*time.Second)
		return
	}
	ex.principal = p

	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		// Keep typical bodies' buffers for reuse; let a rare multi-megabyte one go.
		if buf.Cap() <= maxPooledBody {
			bodyPool.Put(buf)
		}
	}()
	if !identityEncoding(r.Header.Values("Content-Encoding")) {
		ex.refusal("body_encoded").fail(http.StatusUnsupportedMediaType, errInvalidRequest, fmt.Sprintf("the request body is encoded (Content-Encoding: %s); the relay reads the model from the body and accepts only uncompressed bodies: send it without Content-Encoding", strings.Join(r.Header.Values("Content-Encoding"), ", ")), 0)
		return
	}
	if err := ex.readBody(buf); err != nil {
		return
	}
	ex.fields = request.Scan(ex.body)
	if !ex.checkModel() {
		return
	}
	if !ex.admit() {
		return
	}
	// The lease is finished (usage charged, concurrency slot released) however the
	// request ends: success, client gone, upstream reset, timeout or a panic.
	defer ex.finishLease()
	ex.forward()
}

// policy returns the rules the key is under: its policy (else the route's default) with
// the key's own overrides applied.
func (ex *exchange) policy() (*config.Policy, bool) {
	base := ex.route.Policy
	if name := ex.principal.Policy; name != "" {
		p, ok := ex.rt.Policy(name)
		if !ok {
			return nil, false
		}
		base = p
	}
	pr := &ex.principal
	if pr.Limits.IsZero() && pr.AllowedModels == nil && pr.DeniedModels == nil && pr.AllowedClients == nil {
		return base, true
	}
	var eff config.Policy
	if p := base.WithKeyLimits(pr.Limits); p != nil {
		eff = *p
	}
	if pr.AllowedModels != nil {
		eff.Models = pr.AllowedModels
	}
	if pr.DeniedModels != nil {
		eff.DeniedModels = append(slices.Clip(eff.DeniedModels), pr.DeniedModels...)
	}
	if pr.AllowedClients != nil {
		eff.Clients = pr.AllowedClients
	}
	return &eff, true
}

// admit applies the key's policy: model and client rules (403), then its counted and
// concurrency limits in one Redis script (429). It answers the client when it refuses.
func (ex *exchange) admit() bool {
	pol, ok := ex.policy()
	if !ok {
		ex.s.log.Error("relay key names an unknown policy", "request_id", ex.id, "key", ex.principal.KeyID, "policy", ex.principal.Policy)
		ex.refusal("unknown_policy").fail(http.StatusForbidden, errPermission, fmt.Sprintf("this relay key is under policy %q, which the relay's configuration does not define; ask the operator to define it or change the key", ex.principal.Policy), 0)
		return false
	}
	if cidrs := ex.principal.AllowedCIDRs; cidrs != nil {
		ip := ex.clientIP.Unmap()
		if !slices.ContainsFunc(cidrs, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			ex.refusal("key_ip_not_allowed").fail(http.StatusForbidden, errPermission, fmt.Sprintf("client address %s is not in this relay key's IP allowlist", ip), 0)
			return false
		}
	}
	if ex.fields.ModelStatus == request.ModelFound {
		if m := ex.fields.Model; !pol.AllowsModel(m) {
			ex.refusal("model_not_allowed").fail(http.StatusForbidden, errPermission, fmt.Sprintf("model %q is not allowed for this relay key (its policy allows %s)", m, modelRule(pol)), 0)
			return false
		}
	} else if len(ex.body) > 0 && pol != nil && (pol.Models != nil || len(pol.DeniedModels) > 0) {
		// A body on another endpoint (a batch, say) whose model the scanner cannot name:
		// a key limited to some models must not get through it.
		ex.refusal("model_not_allowed").fail(http.StatusForbidden, errPermission, fmt.Sprintf("this relay key may use only some models (its policy allows %s), and the relay cannot tell which model this request uses", modelRule(pol)), 0)
		return false
	}
	if ua := ex.r.Header.Get("User-Agent"); !pol.AllowsClient(ua) {
		ex.refusal("client_not_allowed").fail(http.StatusForbidden, errPermission, fmt.Sprintf("client %q is not allowed for this relay key (its policy allows clients %s)", ua, strings.Join(pol.Clients, ", ")), 0)
		return false
	}
	set := limits.FromPolicy(pol)
	if set.Empty() {
		return true
	}
	if set.PerConversation() {
		set.Conversation = ex.sessionKey()
	}
	if ex.s.limits == nil {
		ex.s.log.Error("a policy has limits but the sidecar has no limit store", "request_id", ex.id, "key", ex.principal.KeyID)
		ex.failure("limits_unavailable").fail(http.StatusServiceUnavailable, errAPI, "the relay cannot check this key's limits (no limit store is configured); retry shortly", 5*time.Second)
		return false
	}
	start := time.Now()
	var ka *keepalive
	if set.QueueTimeout > 0 && set.Concurrency > 0 {
		ka = ex.startKeepalive(pol.QueueKeepaliveEvery())
	}
	lease, refusal, err := ex.s.limits.AdmitUpTo(ex.r.Context(), ex.principal.KeyID, set, ex.worstCase(set))
	ex.streamOpen = ka.stop()
	ex.observeQueue(set, start, lease, refusal)
	if err != nil {
		if ex.r.Context().Err() != nil {
			ex.failure("client_gone").status = 499
			return false
		}
		ex.s.m.limitErrors.Inc()
		ex.s.log.Error("cannot check limits", "request_id", ex.id, "key", ex.principal.KeyID, "error", err)
		ex.failure("limits_unavailable").fail(http.StatusServiceUnavailable, errAPI, "the relay cannot check this key's limits right now (its limit store is unavailable); retry shortly", 5*time.Second)
		return false
	}
	if refusal != nil {
		ex.s.m.limitRefusals.With(refusal.Limit).Inc()
		refusalHeaders(ex.w.Header(), refusal)
		ex.refusal(limitRefusalKind(refusal))
		if refusal.RetryAfter <= 0 { // a limit that never resets: waiting does not help
			ex.failFinal(http.StatusTooManyRequests, errRateLimit, refusal.Message())
			return false
		}
		ex.fail(http.StatusTooManyRequests, errRateLimit, refusal.Message(), refusal.RetryAfter)
		return false
	}
	ex.lease = lease
	return true
}

// observeQueue records how long a request of a queued set waited for a concurrency slot,
// by outcome: admitted, timeout, refused (by another limit), gone (the client left).
func (ex *exchange) observeQueue(set limits.Set, start time.Time, lease *limits.Lease, refusal *limits.Refusal) {
	switch {
	case set.QueueTimeout <= 0 || set.Concurrency <= 0:
	case lease != nil && lease.Waited() > 0:
		ex.s.m.queueWait.With("admitted").Observe(lease.Waited().Seconds())
	case refusal != nil && refusal.Waited > 0 && refusal.Limit == limits.ConcurrencyLimit:
		ex.s.m.queueWait.With("timeout").Observe(refusal.Waited.Seconds())
	case refusal != nil && refusal.Waited > 0:
		ex.s.m.queueWait.With("refused").Observe(refusal.Waited.Seconds())
	case lease == nil && refusal == nil && ex.r.Context().Err() != nil:
		ex.s.m.queueWait.With("gone").Observe(time.Since(start).Seconds())
	}
}

// sessionKey is the request's conversation (sched.SessionKey), computed once: per-conversation
// limits and sticky sessions both use it.
func (ex *exchange) sessionKey() string {
	if ex.session == nil {
		k := sched.SessionKey(ex.fields)
		ex.session = &k
	}
	return *ex.session
}

// worstCase is the most this request can be charged, which reserve-mode limits reserve
// (limits.WorstCase): its body and max_tokens at the dearest price it may be billed at —
// its model's, or that of a model an account's model_map renames it to (the fallback price
// for a model without one, as the charge would use). Nothing when the set reserves nothing.
func (ex *exchange) worstCase(set limits.Set) limits.Usage {
	if !set.Reserves() {
		return limits.Usage{}
	}
	model := ex.fields.Model
	p, _ := ex.rt.Price(model)
	prices := []config.Price{p}
	if model == "" || ex.s.opts.Accounts == nil {
		return limits.WorstCase(int64(len(ex.body)), ex.fields.MaxTokens, prices...)
	}
	if ups, err := ex.s.opts.Accounts.Upstreams(ex.r.Context()); err == nil {
		for _, up := range ups {
			if m, ok := up.ModelMap[model]; ok {
				p, _ := ex.rt.Price(m)
				prices = append(prices, p)
			}
		}
	}
	return limits.WorstCase(int64(len(ex.body)), ex.fields.MaxTokens, prices...)
}

// refusalHeaders describe a limit refusal for programs: the limit, what is left of it in
// its unit (USD for cost limits, else a count), when its window resets, and for a
// reserve-mode refusal what this request could have used.
func refusalHeaders(h http.Header, r *limits.Refusal) {
	h.Set("X-Relay-Limit", r.Limit)
	h.Set("X-Relay-Limit-Remaining", r.Value(r.Remaining()))
	if !r.ResetAt.IsZero() {
		h.Set("X-Relay-Limit-Reset", r.ResetAt.UTC().Format(time.RFC3339))
	}
	if r.Reservation {
		h.Set("X-Relay-Limit-Requested", r.Value(r.Need))
	}
}

// checkModel refuses (400) a body whose model cannot be told unambiguously: on the
// Messages endpoints, which always name one, whatever the problem; elsewhere, when two keys
// could name it or it is not a string. The model rules, model_map and parking by family
// all act on the model found here.
func (ex *exchange) checkModel() bool {
	st := ex.fields.ModelStatus
	if st == request.ModelFound || (len(ex.body) == 0 && !namesModel(ex.upPath)) {
		return true
	}
	if namesModel(ex.upPath) || st == request.ModelDuplicated || st == request.ModelNotString {
		ex.refusal("bad_model").fail(http.StatusBadRequest, errInvalidRequest, st.Problem(), 0)
		return false
	}
	return true
}

// namesModel reports whether an upstream path is a Messages endpoint, whose body names
// the one model it runs on.
func namesModel(upPath string) bool {
	return upPath == "/v1/messages" || upPath == "/v1/messages/count_tokens"
}

// identityEncoding reports whether Content-Encoding values leave the body as it is.
func identityEncoding(values []string) bool {
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" && !strings.EqualFold(f, "identity") {
				return false
			}
		}
	}
	return true
}

func (ex *exchange) finishLease() {
	if ex.lease == nil {
		return
	}
	if err := ex.lease.Finish(ex.r.Context(), ex.charge); err != nil {
		ex.s.m.limitErrors.Inc()
		ex.s.log.Warn("cannot charge usage to the key's limits; its concurrency slot expires by itself", "request_id", ex.id, "key", ex.principal.KeyID, "error", err)
	}
}

func modelRule(p *config.Policy) string {
	var parts []string
	if p.Models != nil {
		parts = append(parts, strings.Join(p.Models, ", "))
	} else {
		parts = append(parts, "any model")
	}
	if len(p.DeniedModels) > 0 {
		parts = append(parts, "except "+strings.Join(p.DeniedModels, ", "))
	}
	return strings.Join(parts, " ")
}

// fail answers with a relay-made error; its request-id header is the relay's request id,
// which the Anthropic SDKs quote in their errors.
func (ex *exchange) fail(status int, typ, msg string, retryAfter time.Duration) {
	ex.status = status
	if ex.streamOpen { // the keep-alive already answered 200: the error is the stream's event
		ex.w.Write(sseError(typ, msg))
		http.NewResponseController(ex.w).Flush()
		return
	}
	ex.w.Header().Set("Request-Id", ex.id)
	if !ex.bodyRead {
		// Refused before its body was read (no route, no key, a body that is too large or
		// stalled): close the connection rather than keep it for a client that may never
		// send the body, or that has no key to use it with.
		ex.w.Header().Set("Connection", "close")
	}
	writeError(ex.w, status, typ, msg, retryAfter)
}

// failFinal answers with an error that retrying cannot fix: x-should-retry: false, which
// the Anthropic SDKs and Claude Code honour, and no retry-after.
func (ex *exchange) failFinal(status int, typ, msg string) {
	ex.w.Header().Set("X-Should-Retry", "false")
	ex.fail(status, typ, msg, 0)
}

// seeLog ends a message whose details are for operators only.
func (ex *exchange) seeLog() string {
	return "; the relay's log has the details under request id " + ex.id
}

// readBody reads the whole (capped) body: failover must be able to replay it, and it
// keeps Go's HTTP/1 server from closing the body under a streaming response (golang/go#40747).
func (ex *exchange) readBody(buf *bytes.Buffer) error {
	limit := ex.rt.MaxBodyBytes()
	tooLarge := func() error {
		ex.refusal("body_too_large").fail(http.StatusRequestEntityTooLarge, errTooLarge, fmt.Sprintf("request body is larger than the relay's limit of %d bytes", limit), 0)
		return errors.New("body too large")
	}
	if ex.r.ContentLength > limit {
		return tooLarge()
	}
	if ex.r.ContentLength > 0 {
		buf.Grow(int(ex.r.ContentLength))
	}
	// The listener bounds how long the body may take (CLAUDE_RELAY_CLIENT_BODY_TIMEOUT: an
	// idle and a minimum-rate bound from the first byte; internal/httpserve).
	_, err := buf.ReadFrom(http.MaxBytesReader(ex.w, ex.r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			ex.refusal("body_timeout").fail(http.StatusRequestTimeout, errTimeout, "the relay stopped waiting for the request body: "+err.Error()+"; send the body promptly after the headers", 0)
			return err
		}
		ex.refusal("body_unreadable").fail(http.StatusBadRequest, errInvalidRequest, "could not read the request body: "+err.Error(), 0)
		return err
	}
	ex.bodyRead = true
	ex.body = buf.Bytes()
	return nil
}

func (ex *exchange) timeout() time.Duration {
	if ex.route != nil && ex.route.Timeout > 0 {
		return ex.route.Timeout
	}
	return ex.s.opts.RequestTimeout
}

// forward sends the request to upstream accounts in the scheduler's order, failing over
// on retryable failures until a response starts; then it relays that response.
func (ex *exchange) forward() {
	call := startUpstreamCall(ex.r.Context(), ex.timeout())
	defer call.end()
	req, plan, byID, ok := ex.schedule(call.ctx)
	if !ok {
		return
	}
	maxAttempts := max(1, req.Pool.FailoverMaxAttempts)
	tried := 0
	var full []sched.CapFull
	var lastErr error
	for i, id := range plan.Order {
		if tried == maxAttempts {
			break
		}
		up := byID[id]
		lease, refused := ex.acquireAccount(call.ctx, req, plan, up)
		if refused != nil {
			if cause := context.Cause(call.ctx); cause != nil {
				ex.upstreamGone(cause)
				return
			}
			full = append(full, *refused)
			continue
		}
		tried++
		ex.noteMove(plan, id, tried, full)
		a := ex.try(&call, req, plan, up, lease, tried, tried == maxAttempts || i == len(plan.Order)-1)
		switch {
		case a.done:
			return
		case a.resp == nil:
			if a.err != nil {
				lastErr = a.err
			}
			continue
		}
		ex.account = up.ID
		ex.s.opts.Accounts.Touch(up.ID, ex.started)
		defer a.release() // also when relay aborts the handler
		ex.relay(&call, a.resp)
		return
	}
	if tried == 0 { // every account was at its capacity
		u := &sched.Unavailable{}
		u.AddFull(full)
		ex.noAccount(u)
		return
	}
	ex.failure("upstream_unreachable").fail(http.StatusBadGateway, errAPI, fmt.Sprintf("no upstream account could be reached (%d tried; the last: %s)%s", tried, upstreamCause(lastErr), ex.seeLog()), 5*time.Second)
}

// attempt is what one upstream attempt came to.
type attempt struct {
	resp    *http.Response // the answer to relay; nil: try the next account
	release func()         // frees the account's places, once resp is relayed
	err     error          // why the account could not be reached (nil when it answered)
	done    bool           // the request ended (its context did) and was answered
}

// try sends the request to up, holding its capacity lease, and reports the outcome to the
// scheduler. A connection failure, or an error status the scheduler fails over on (unless
// last), frees the account and asks for the next one; any other answer is the one to relay.
// An error answer's start is read to learn why (organization disabled, which limit) and
// put back in front of its body, which is relayed intact.
func (ex *exchange) try(call *upstreamCall, req sched.Request, plan sched.Plan, up *Upstream, lease *sched.AccountLease, tried int, last bool) attempt {
	s, ctx, id := ex.s, call.ctx, up.ID
	local := s.sched.Acquire(id)
	release := func() {
		local()
		lease.Release(ctx, ex.charge.Tokens, ex.charge.CostMicroUSD)
	}
	resp, err := ex.send(ctx, up)
	if err != nil {
		release()
		if cause := context.Cause(ctx); cause != nil {
			ex.upstreamGone(cause)
			return attempt{done: true}
		}
		s.m.upstreamErrors.With("connect").Inc()
		s.log.Warn("upstream request failed", "request_id", ex.id, "account", id, "error", err, "attempt", tried)
		s.sched.Report(ctx, req, id, sched.Outcome{Err: err})
		ex.account = id // the last account tried, should none answer
		return attempt{err: err}
	}
	call.arrived() // the headers are in: the wait for the body starts now
	if resp.StatusCode < 400 {
		ex.observeWindows(ctx, req, id, resp.Header)
		if id != plan.Sticky {
			s.sched.Bind(ctx, req, id) // a sticky hit's TTL was refreshed by Plan
		}
		return attempt{resp: resp, release: release}
	}
	peek, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	failover := s.sched.Report(ctx, req, id, sched.Outcome{Status: resp.StatusCode, Header: resp.Header, Body: peek})
	ex.observeWindows(ctx, req, id, resp.Header) // after Report: a 429's park stands
	if failover && !last {
		s.m.upstreamErrors.With(strconv.Itoa(resp.StatusCode)).Inc()
		s.log.Warn("upstream refused, failing over", "request_id", ex.id, "account", id, "status", resp.StatusCode, "attempt", tried)
		io.CopyN(io.Discard, resp.Body, 64<<10)
		resp.Body.Close()
		release()
		return attempt{}
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(peek), resp.Body), resp.Body}
	return attempt{resp: resp, release: release}
}

// schedule asks the scheduler for the order in which to try the accounts the request may
// use. It answers the client itself when there is none (and returns false).
func (ex *exchange) schedule(ctx context.Context) (sched.Request, sched.Plan, map[string]*Upstream, bool) {
	s := ex.s
	ups, err := s.opts.Accounts.Upstreams(ctx)
	if err != nil {
		s.log.Error("cannot list upstream accounts", "request_id", ex.id, "error", err)
		ex.failure("accounts_unavailable").fail(http.StatusServiceUnavailable, errAPI, "the relay cannot load its upstream accounts right now; retry shortly", 5*time.Second)
		return sched.Request{}, sched.Plan{}, nil, false
	}
	byID := make(map[string]*Upstream, len(ups))
	accts := make([]sched.Account, 0, len(ups))
	for _, u := range ups {
		byID[u.ID] = u
		accts = append(accts, sched.Account{ID: u.ID, Priority: u.Priority})
	}
	pool := ex.route.Pool
	req := sched.Request{
		Pool:    pool,
		Model:   ex.fields.Model,
		Session: ex.sessionKey(),
	}
	if b := ex.principal.Binding; b.AccountID != "" || b.Group != "" {
		if req.Bound = boundAccounts(b, ups); len(req.Bound) == 0 {
			s.log.Warn("relay key bound to no schedulable account", "request_id", ex.id, "key", ex.principal.KeyID, "binding", bindingName(b))
			ex.refusal("no_account").failFinal(http.StatusInternalServerError, errAPI, "this relay key is bound to an upstream account or account group that has no schedulable account; retrying will not help: ask the operator"+ex.seeLog())
			return sched.Request{}, sched.Plan{}, nil, false
		}
	}
	plan, err := s.sched.Plan(ctx, req, accts)
	if err != nil {
		var u *sched.Unavailable
		if !errors.As(err, &u) {
			u = &sched.Unavailable{}
		}
		ex.noAccount(u)
		return sched.Request{}, sched.Plan{}, nil, false
	}
	return req, plan, byID, true
}

// acquireAccount takes a place on up under its caps (store.AccountCaps), shared with every
// sidecar. The conversation's own account, when full for want of a concurrency slot, is
// waited for up to the pool's sticky_wait: its prompt cache is worth a few seconds. It
// returns the lease (nil for an account without caps), or why the account cannot take the
// request now.
func (ex *exchange) acquireAccount(ctx context.Context, req sched.Request, plan sched.Plan, up *Upstream) (*sched.AccountLease, *sched.CapFull) {
	s := ex.s
	var deadline time.Time
	for {
		lease, full, err := s.sched.AcquireCapacity(ctx, up.ID, up.Caps)
		if err != nil {
			if ctx.Err() == nil {
				s.m.limitErrors.Inc()
				s.log.Warn("cannot check an account's capacity; skipping it", "request_id", ex.id, "account", up.ID, "error", err)
			}
			return nil, &sched.CapFull{Account: up.ID, Cap: sched.CapUnknown, Frees: s.now().Add(5 * time.Second)}
		}
		if full == nil {
			return lease, nil
		}
		wait := req.Pool.StickyWait
		if up.ID != plan.Sticky || full.Cap != sched.CapConcurrency || wait <= 0 {
			return nil, full
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(wait)
		}
		if !time.Now().Before(deadline) {
			return nil, full
		}
		t := time.NewTimer(min(stickyPoll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, full
		case <-t.C:
		}
	}
}

// stickyPoll is how often a conversation waiting for its busy account asks again.
const stickyPoll = 50 * time.Millisecond

// Why a conversation moved to another account, for the cache re-warm metric.
const (
	movedPark     = "park"     // its account was parked (or is gone)
	movedCap      = "cap"      // its account was at its capacity
	movedFailover = "failover" // its account failed and the request failed over
)

// noteMove records why the conversation is served by another account than the one it was
// bound to, when it is: its first request there writes the prompt cache again.
func (ex *exchange) noteMove(plan sched.Plan, id string, tried int, full []sched.CapFull) {
	switch {
	case plan.MovedFrom != "":
		ex.moved = movedPark
	case plan.Sticky == "" || id == plan.Sticky:
		ex.moved = ""
	case tried > 1:
		ex.moved = movedFailover
	case len(full) > 0 && full[0].Account == plan.Sticky:
		ex.moved = movedCap
	}
}

// observeWindows hands a response's subscription-window headers to the scheduler (which
// records them and parks the account near its limit) and updates the window gauges.
func (ex *exchange) observeWindows(ctx context.Context, req sched.Request, account string, h http.Header) {
	w, ok := ex.s.sched.Observe(ctx, req, account, h)
	if !ok {
		return
	}
	m := &ex.s.m
	for _, x := range []struct {
		name string
		w    *store.Window
	}{{"5h", w.FiveHour}, {"7d", w.SevenDay}} {
		if x.w == nil {
			continue
		}
		m.windowUtil.With(account, x.name).Set(x.w.Utilization)
		if !x.w.Reset.IsZero() {
			m.windowReset.With(account, x.name).Set(float64(x.w.Reset.Unix()))
		}
	}
}

// noAccount answers when no account can serve. When one comes back by itself: 429 if all
// are rate-limited, else 503 overloaded, with retry-after. When none will (no account at
// all, or every one blocked or unauthorized until an operator acts): a final 500. The
// answer names no account and no upstream reason; the log line does, under the request id.
func (ex *exchange) noAccount(u *sched.Unavailable) {
	ex.s.log.Warn("no upstream account can serve", "request_id", ex.id, "key", ex.principal.KeyID, "why", u.Error())
	ex.refusal("no_account")
	if u.Earliest.IsZero() {
		msg := "every upstream account is out of service until an operator re-enables one (blocked or unauthorized)"
		if u.NoAccounts || len(u.Parked) == 0 {
			msg = "the relay has no upstream account to send this request to; an operator must add one"
		}
		ex.failFinal(http.StatusInternalServerError, errAPI, msg+"; retrying will not help"+ex.seeLog())
		return
	}
	retry := max(u.Earliest.Sub(ex.s.now()), time.Second)
	when := "; the earliest frees up at " + u.Earliest.UTC().Format(time.RFC3339) + ex.seeLog()
	if len(u.Full) > 0 {
		ex.fail(http.StatusTooManyRequests, errRateLimit, "every upstream account that could serve this request is at one of its caps ("+capsFull(u.Full)+")"+when, retry)
		return
	}
	if u.AllRateLimited {
		ex.fail(http.StatusTooManyRequests, errRateLimit, "every upstream account is rate-limited or near the limit of its subscription window"+familyOf(u.Parked)+when, retry)
		return
	}
	ex.fail(http.StatusServiceUnavailable, errOverloaded, "no upstream account can serve this request right now (rate-limited, overloaded or failing)"+familyOf(u.Parked)+when, retry)
}

// capsFull names the caps that are full, each with how many accounts and when the first
// of them frees: "max_concurrency: 2 accounts, a slot frees when a request ends;
// tokens_per_day: 1 account, frees at …". Accounts are not named (the log names them).
func capsFull(full []sched.CapFull) string {
	type agg struct {
		n     int
		frees time.Time
	}
	var order []string
	by := map[string]*agg{}
	for _, f := range full {
		a, ok := by[f.Cap]
		if !ok {
			a = &agg{frees: f.Frees}
			by[f.Cap] = a
			order = append(order, f.Cap)
		}
		a.n++
		if f.Frees.Before(a.frees) {
			a.frees = f.Frees
		}
	}
	parts := make([]string, 0, len(order))
	for _, c := range order {
		a := by[c]
		p := fmt.Sprintf("%s: %d account", c, a.n)
		if a.n > 1 {
			p += "s"
		}
		switch c {
		case sched.CapConcurrency:
			p += ", a slot frees when one of their requests ends"
		case sched.CapUnknown:
			p += ", the relay cannot check their capacity right now"
		default:
			p += ", frees at " + a.frees.UTC().Format(time.RFC3339)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// familyOf names the model family every park is limited to, as " for opus models", or "".
func familyOf(parks []sched.Park) string {
	if len(parks) == 0 || parks[0].Family == "" {
		return ""
	}
	for _, p := range parks[1:] {
		if p.Family != parks[0].Family {
			return ""
		}
	}
	return " for " + parks[0].Family + " models"
}

// send makes one upstream attempt with the account's credential. When the account maps the
// request's model (an Anthropic-compatible endpoint's model_map), the body it sends is a
// copy with only the model string replaced; ex.body stays as the client sent it, for the
// next attempt.
func (ex *exchange) send(ctx context.Context, up *Upstream) (*http.Response, error) {
	body := ex.body
	if m, ok := up.ModelMap[ex.fields.Model]; ok && ex.fields.ModelStatus == request.ModelFound {
		body = request.ReplaceModel(body, ex.fields, m)
	}
	u := *up.url
	u.Path = strings.TrimSuffix(u.Path, "/") + ex.upPath
	u.RawPath = ""
	u.RawQuery = ex.r.URL.RawQuery
	req := &http.Request{
		Method:        ex.r.Method,
		URL:           &u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        make(http.Header, len(ex.r.Header)+2),
		Host:          u.Host,
		ContentLength: int64(len(body)),
	}
	req = req.WithContext(ctx)
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	copyHeaders(req.Header, ex.r.Header, forwardRequestHeader)
	setCredential(req.Header, up)
	req.Header.Set("Accept-Encoding", "identity")
	start := ex.s.now()
	rt := ex.s.transport
	if up.Transport != nil {
		rt = up.Transport
	}
	resp, err := rt.RoundTrip(req)
	if err == nil {
		ex.s.m.upstreamTime.With(ex.route.Name).Observe(ex.s.now().Sub(start).Seconds())
	}
	return resp, err
}

// relay copies the upstream's answer to the client as it arrives (copyBody: event
// streams flushed read by read, their usage read in passing by the tap), reports how the
// copy ended (copyEnded) and accounts the usage the tap saw.
func (ex *exchange) relay(call *upstreamCall, resp *http.Response) {
	s := ex.s
	defer resp.Body.Close()
	sse := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	if ex.streamOpen && !sse {
		ex.relayIntoOpenStream(resp)
		return
	}
	if sse {
		s.m.activeStreams.Inc()
		defer s.m.activeStreams.Dec()
	}
	tap := usageTap{on: ex.upPath == "/v1/messages" && resp.StatusCode == http.StatusOK, sse: sse}
	committed, err := ex.copyBody(call, resp, sse, &tap)
	upstreamFailed := ex.copyEnded(err, resp, sse, committed, call.timeout, tap.parser.Events())
	if tap.on {
		ex.accountUsage(tap.usage())
	}
	s.log.Info("relayed", "request_id", ex.id, "route", ex.route.Name, "key", ex.principal.KeyID, "account", ex.account,
		"status", ex.status, "duration", s.now().Sub(ex.started).Round(time.Millisecond))
	if !sse && committed && upstreamFailed {
		// A JSON body cut short cannot be repaired: abort the connection so the client
		// sees a truncated response rather than a silently short one.
		panic(http.ErrAbortHandler)
	}
}

// copyEnded answers for how the copy ended, and reports whether the upstream failed: an
// upstream failure or silence goes to upstreamBroke; a client that went away is logged
// (499 when nothing was sent); an empty body still gets its status and headers.
func (ex *exchange) copyEnded(err error, resp *http.Response, sse, committed bool, timeout time.Duration, events int) bool {
	clientGone := errors.Is(err, errClientGone) || errors.Is(err, context.Canceled)
	switch {
	case err != nil && !clientGone:
		ex.upstreamBroke(err, sse, committed, timeout)
		return true
	case clientGone:
		if ex.failure("client_gone"); !committed {
			ex.status = 499 // client closed the request, as nginx logs it
		}
		ex.s.log.Info("client went away mid-response", "request_id", ex.id, "key", ex.principal.KeyID, "account", ex.account, "events", events)
	case !committed: // an empty body
		ex.writeHeader(resp)
	}
	return false
}

// writeHeader writes the upstream response's status and its allowlisted headers
// (config.DefaultResponseHeaders and the operator's server.response_headers): never
// cookies, the account's organization id or whatever else an upstream or its gateway adds.
func (ex *exchange) writeHeader(resp *http.Response) {
	if ex.streamOpen { // the keep-alive sent the stream's status and headers already
		ex.status, ex.firstByte = resp.StatusCode, ex.s.now()
		return
	}
	copyHeaders(ex.w.Header(), resp.Header, ex.rt.PassResponseHeader)
	ex.status = resp.StatusCode
	ex.firstByte = ex.s.now()
	ex.w.WriteHeader(resp.StatusCode)
}

// upstreamBroke ends a response whose upstream failed or went silent: an SSE error event
// on a stream; a 504 or 502 for a JSON answer of which nothing was sent yet (one already
// begun is aborted by the caller). The client gets the cause in general terms and the
// request id; the log gets the error.
func (ex *exchange) upstreamBroke(err error, sse, committed bool, timeout time.Duration) {
	s := ex.s
	s.m.upstreamErrors.With("mid_stream").Inc()
	s.log.Warn("upstream stream broke", "request_id", ex.id, "account", ex.account, "route", ex.route.Name, "error", err)
	idle := errors.Is(err, errIdleTimeout)
	ex.failure("upstream_broke")
	if idle {
		ex.failure("upstream_timeout")
	}
	switch {
	case sse:
		msg := "the upstream connection broke mid-response" + ex.seeLog()
		if idle {
			msg = fmt.Sprintf("the upstream sent nothing for %s (REQUEST_TIMEOUT or the route's timeout)%s", timeout, ex.seeLog())
		}
		ex.w.Write(sseError(errAPI, msg))
		http.NewResponseController(ex.w).Flush()
	case committed:
	case idle:
		ex.fail(http.StatusGatewayTimeout, errAPI, fmt.Sprintf("the upstream sent its answer's headers but no body within %s (REQUEST_TIMEOUT or the route's timeout)%s", timeout, ex.seeLog()), 0)
	default:
		ex.fail(http.StatusBadGateway, errAPI, "the upstream connection broke before its answer's body"+ex.seeLog(), 5*time.Second)
	}
}

// accountUsage prices c, charges it to the key's limits and records it. estimated says
// c.Output is the relay's estimate of a stream cut short, not the upstream's count.
func (ex *exchange) accountUsage(c Counts, model string, estimated bool) {
	if c.IsZero() {
		return
	}
	s := ex.s
	price, known := ex.rt.Price(model)
	if !known {
		s.log.Warn("no price for model, charging the fallback", "model", model)
		s.m.unpriced.With(modelLabel(model)).Inc()
	}
	cost := price.Cost(c.TokenCounts)
	ex.charge = limits.Usage{
		Tokens:       c.Input + c.Output + c.CacheWrite5m + c.CacheWrite1h + c.CacheRead,
		CostMicroUSD: int64(math.Round(cost * 1e6)),
	}
	s.m.tokens.add(c)
	if ex.moved != "" {
		s.m.rewarm.With(ex.moved).Add(float64(c.CacheWrite5m + c.CacheWrite1h))
		s.m.moves.With(ex.moved).Inc()
	}
	if s.opts.Usage != nil {
		kind := ex.errorKind(estimated)
		rec := UsageRecord{KeyID: ex.principal.KeyID, AccountID: ex.account, Model: model, At: s.now(), Counts: c,
			CostUSD: cost, Unpriced: !known, Estimated: estimated, Failed: kind != ""}
		if u := ex.rt.Snapshot.Usage; u != nil && u.Ledger { // nothing built for a ledger that is off
			rec.Ledger = ex.ledgerEntry(kind)
		}
		s.opts.Usage.Record(rec)
		ex.recorded = true
	}
}

// recordOutcome counts a refused or failed request that recorded no usage when it ends,
// with its ledger record when the ledger is on. A request answered well without usage
// (count_tokens, a model list) is not counted, as it is not billed. On the request path it
// costs building one record and a channel send.
func (ex *exchange) recordOutcome() {
	s := ex.s
	if ex.recorded || s.opts.Usage == nil {
		return
	}
	kind := ex.errorKind(false)
	if kind == "" {
		return
	}
	rec := UsageRecord{KeyID: ex.principal.KeyID, AccountID: ex.account, Model: ex.countedModel(), At: s.now(),
		Refused: ex.refused, Failed: !ex.refused && kind != ""}
	if u := ex.rt.Snapshot.Usage; u != nil && u.Ledger {
		rec.Ledger = ex.ledgerEntry(kind)
	}
	s.opts.Usage.Record(rec)
}

// refusal names the relay's refusal of the request (see errorKind) and returns ex.
func (ex *exchange) refusal(kind string) *exchange {
	ex.kind, ex.refused = kind, true
	return ex
}

// failure names how the request failed (see errorKind) and returns ex.
func (ex *exchange) failure(kind string) *exchange {
	ex.kind, ex.refused = kind, false
	return ex
}

// errorKind says how the request ended when not well: the refusal or failure the relay
// named ("key_invalid", "limit_cost_per_day_usd", "no_account", "upstream_timeout",
// "client_gone" …), else "upstream_<status>" for an upstream's error status, "cut_short"
// for a stream that ended before its final count (estimated), "" for a request that went well.
func (ex *exchange) errorKind(estimated bool) string {
	switch {
	case ex.kind != "":
		return ex.kind
	case ex.status == 499:
		return "client_gone"
	case ex.status >= 400:
		return "upstream_" + strconv.Itoa(ex.status)
	case estimated:
		return "cut_short"
	}
	return ""
}

// countedModel is the model a request without usage is counted under: the one its body
// names when the price table prices it, else "" (counted as "unknown"). Usage names the
// model the upstream answered with; a refusal has only what the client sent, which must not
// add a report field per made-up name.
func (ex *exchange) countedModel() string {
	m := ex.fields.Model
	if ex.fields.ModelStatus != request.ModelFound || len(m) > maxModelLabel {
		return ""
	}
	if _, known := ex.rt.Price(m); !known {
		return ""
	}
	return m
}

// keyRefusalKind names an authentication refusal from the provider's reason: key_revoked,
// key_disabled, key_expired, else key_invalid (unknown or malformed). The provider names no
// key it refuses, so the record has none either, and never the credential.
func keyRefusalKind(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "revoked"):
		return "key_revoked"
	case strings.Contains(msg, "disabled"):
		return "key_disabled"
	case strings.Contains(msg, "expired"):
		return "key_expired"
	}
	return "key_invalid"
}

// limitRefusalKind names a limit refusal: "queue_timeout" (waited for a concurrency slot in
// vain), "queue_full", else "limit_" and the limit's name.
func limitRefusalKind(r *limits.Refusal) string {
	switch {
	case r.QueueFull:
		return "queue_full"
	case r.Limit == limits.ConcurrencyLimit && r.Waited > 0:
		return "queue_timeout"
	}
	return "limit_" + r.Limit
}

// ledgerEntry is the request's record for the request ledger: metadata only, with its error
// kind (errorKind) and, on a moved conversation's first request, why it moved.
func (ex *exchange) ledgerEntry(kind string) *store.LedgerEntry {
	now := ex.s.now()
	e := &store.LedgerEntry{
		Status: ex.status, DurationMillis: now.Sub(ex.started).Milliseconds(),
		Client: config.ClientKind(ex.r.Header.Get("User-Agent")), Sidecar: ex.s.opts.SidecarID,
		ErrorKind: kind, Moved: ex.moved,
	}
	if ex.route != nil {
		e.Route = ex.route.Name
	}
	if ex.bodyRead { // the conversation is known from the body only
		e.SessionHash = ex.sessionKey()
	}
	if !ex.firstByte.IsZero() {
		e.TTFBMillis = ex.firstByte.Sub(ex.started).Milliseconds()
	}
	return e
}

// maxModelLabel bounds a model label's length; the family's series are capped by the
// registry (metrics.MaxSeriesPerFamily), so a client naming endless models cannot grow it.
const maxModelLabel = 64

// modelLabel is model as a metric label value: at most maxModelLabel bytes, "unknown" when
// empty.
func modelLabel(model string) string {
	if model == "" {
		return "unknown"
	}
	if len(model) > maxModelLabel {
		return strings.ToValidUTF8(model[:maxModelLabel], "")
	}
	return model
}

// parseBaseURL validates an account's base URL.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse base URL %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("base URL %q: want http(s)://host[/path]", raw)
	}
	return u, nil
}

// upstreamGone ends a request whose context ended before a response started.
func (ex *exchange) upstreamGone(cause error) {
	if errors.Is(cause, errIdleTimeout) {
		ex.s.m.upstreamErrors.With("timeout").Inc()
		ex.s.log.Warn("upstream did not answer", "request_id", ex.id, "timeout", ex.timeout())
		ex.failure("upstream_timeout").fail(http.StatusGatewayTimeout, errAPI, fmt.Sprintf("the upstream did not answer within %s (REQUEST_TIMEOUT or the route's timeout)%s", ex.timeout(), ex.seeLog()), 0)
		return
	}
	ex.failure("client_gone").status = 499 // client closed the request, as nginx logs it
}
