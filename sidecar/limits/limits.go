// Package limits enforces per-key request, token, cost and concurrency limits atomically in Redis, token and cost limits either charged at the end or reserved at admission (reserve.go), requests that find the concurrency full waiting in a queue when the policy says so (queue.go).
package limits

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/store"
)

// Kind is what a limit counts.
type Kind int

// Limit kinds.
const (
	// Requests are counted when a request is admitted: never more than Max in a window.
	Requests Kind = iota
	// Tokens are charged when a request ends, with what the upstream reported.
	Tokens
	// Cost is charged when a request ends, in micro-USD.
	Cost
)

// Window is the period a limit counts over. Windows are fixed and aligned in UTC.
type Window int

// Windows.
const (
	Minute Window = iota
	Day
	Week  // ISO week, from Monday 00:00 UTC
	Month // calendar month
	Total // the key's whole life: never resets
)

// Bounds returns the window holding now; end is the zero time for Total.
func (w Window) Bounds(now time.Time) (start, end time.Time) {
	now = now.UTC()
	switch w {
	case Minute:
		start = now.Truncate(time.Minute)
		return start, start.Add(time.Minute)
	case Day:
		start = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case Week:
		back := (int(now.Weekday()) + 6) % 7 // days since Monday
		start = time.Date(now.Year(), now.Month(), now.Day()-back, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 7)
	case Month:
		start = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	return time.Time{}, time.Time{}
}

// Limit is one counted limit of a policy.
type Limit struct {
	// Name is the policy attribute, e.g. "requests_per_minute"; refusals name it.
	Name   string
	Kind   Kind
	Window Window
	// Max is the allowance per window: requests, tokens, or micro-USD.
	Max int64
	// PerConversation limits count one conversation of the key (Set.Conversation), not
	// the whole key.
	PerConversation bool
	// Reserve (tokens and cost only) makes the limit hold exactly: admission reserves the
	// request's worst case and refuses it when that does not fit (config.LimitModeReserve).
	// Otherwise the limit admits while below Max and is charged at the end.
	Reserve bool
}

// Set is every limit one key is under.
type Set struct {
	// Counted are checked longest window first, so a refusal names the limit that binds
	// longest.
	Counted []Limit
	// Concurrency caps requests in flight; 0 means unlimited.
	Concurrency int
	// Conversation is the request's conversation (sched.SessionKey), set per request; the
	// PerConversation limits apply only when it is set.
	Conversation string
	// QueueTimeout, with Concurrency, makes a request that finds the key's concurrency full
	// wait up to this long for a slot, in arrival order across sidecars (queue.go); 0 refuses
	// it at once.
	QueueTimeout time.Duration
	// QueueMax caps the key's waiters; 0 leaves the queue unbounded.
	QueueMax int
}

// queues reports whether a request of the set that finds no free slot waits for one.
func (s Set) queues() bool { return s.Concurrency > 0 && s.QueueTimeout > 0 }

// PerConversation reports whether the set has limits per conversation: whether admission
// needs Conversation.
func (s Set) PerConversation() bool {
	return slices.ContainsFunc(s.Counted, func(l Limit) bool { return l.PerConversation })
}

// forRequest returns the set without its PerConversation limits when the request names no
// conversation (a copy; s is shared by every request of a policy).
func (s Set) forRequest() Set {
	if s.Conversation != "" || !s.PerConversation() {
		return s
	}
	s.Counted = slices.DeleteFunc(slices.Clone(s.Counted), func(l Limit) bool { return l.PerConversation })
	return s
}

// Empty reports whether the set limits nothing (no Redis work is needed).
func (s Set) Empty() bool { return len(s.Counted) == 0 && s.Concurrency == 0 }

// Reserves reports whether any limit of the set is in reserve mode: whether admission needs
// the request's worst case (WorstCase).
func (s Set) Reserves() bool {
	t, c := s.reserves()
	return t || c
}

// reserves reports which kinds the set reserves: whether any token limit, and any cost
// limit, is in reserve mode.
func (s Set) reserves() (tokens, cost bool) {
	for _, lim := range s.Counted {
		if lim.Reserve {
			tokens = tokens || lim.Kind == Tokens
			cost = cost || lim.Kind == Cost
		}
	}
	return tokens, cost
}

// FromPolicy returns the counted limits and concurrency of a policy. A nil policy limits
// nothing.
func FromPolicy(p *config.Policy) Set {
	if p == nil {
		return Set{}
	}
	var s Set
	for d := range config.Limits() {
		max := d.Max(p)
		switch {
		case d.Counts == config.CountsInFlight:
			s.Concurrency = int(max)
		case max > 0:
			k, w := kindWindow(d.Counts, d.Window)
			// Breakers (per conversation) are always charged: reservations are summed per
			// key, not per conversation.
			reserve := d.Budget() && p.ModeOf(d.Name) == config.LimitModeReserve
			s.Counted = append(s.Counted, Limit{Name: d.Name, Kind: k, Window: w, Max: max, PerConversation: d.PerConversation, Reserve: reserve})
		}
	}
	s.QueueTimeout, s.QueueMax = p.QueueWait(), max(p.QueueMax, 0)
	return s
}

// kindWindow maps what a config limit counts and its window to the limiter's.
func kindWindow(c config.LimitCounts, w config.LimitWindow) (Kind, Window) {
	k := Requests
	switch c {
	case config.CountsTokens:
		k = Tokens
	case config.CountsCost:
		k = Cost
	}
	win := Minute
	switch w {
	case config.WindowDay:
		win = Day
	case config.WindowWeek:
		win = Week
	case config.WindowMonth:
		win = Month
	case config.WindowTotal:
		win = Total
	}
	return k, win
}

// ConcurrencyLimit is the name refusals give the concurrency limit.
const ConcurrencyLimit = "concurrency"

// Refusal says which limit refused a request, where it stands and when it frees up.
type Refusal struct {
	Limit   string
	Kind    Kind
	Max     int64
	Current int64
	// ResetAt is when the window ends (zero for a total limit, which never resets).
	ResetAt time.Time
	// RetryAfter is how long to wait before retrying; 0 when waiting will not help.
	RetryAfter time.Duration
	// Waited is how long the request waited in the key's queue before this refusal; Queued
	// is how many requests were waiting when a full queue refused it (QueueFull).
	Waited    time.Duration
	Queued    int64
	QueueFull bool
	// Reservation is set when a reserve-mode limit refused: Need is this request's worst
	// case and Reserved what requests in flight hold; the request fits when
	// Current+Reserved+Need <= Max.
	Reservation bool
	Need        int64
	Reserved    int64
	// Conversation is set when a per-conversation limit refused: the count is this
	// conversation's, not the key's.
	Conversation bool
}

// scope names, in a message, what a per-conversation limit counted.
func (r *Refusal) scope() string {
	if r.Conversation {
		return " by this conversation (its session in metadata.user_id, else its first message); the key's other conversations are not limited by it"
	}
	return ""
}

// Remaining is what is left of the limit: Max less what is used and, for a reserve-mode
// limit, reserved; never negative.
func (r *Refusal) Remaining() int64 {
	if r.Limit == ConcurrencyLimit {
		return max(r.Max-r.Current, 0)
	}
	return max(r.Max-r.Current-r.Reserved, 0)
}

// Format writes v in the limit's unit for a person: "$0.25", "1200 tokens", "3 requests".
func (r *Refusal) Format(v int64) string {
	switch r.Kind {
	case Cost:
		return "$" + strconv.FormatFloat(float64(v)/1e6, 'f', -1, 64)
	case Tokens:
		return strconv.FormatInt(v, 10) + " tokens"
	}
	return strconv.FormatInt(v, 10) + " requests"
}

// Value writes v in the limit's unit for a header: USD for cost, else a count.
func (r *Refusal) Value(v int64) string {
	if r.Kind == Cost {
		return strconv.FormatFloat(float64(v)/1e6, 'f', -1, 64)
	}
	return strconv.FormatInt(v, 10)
}

// Message is the refusal as a person reads it: the limit, the current value, the reset.
func (r *Refusal) Message() string {
	if r.Limit == ConcurrencyLimit {
		return r.concurrencyMessage()
	}
	if r.Reservation {
		return r.reservationMessage()
	}
	val := r.Format
	if r.ResetAt.IsZero() {
		return fmt.Sprintf("%s limit reached: %s used of %s%s; this limit never resets, ask the operator to raise it", r.Limit, val(r.Current), val(r.Max), r.scope())
	}
	return fmt.Sprintf("%s limit reached: %s used of %s%s; it resets at %s (in %s)", r.Limit, val(r.Current), val(r.Max), r.scope(),
		r.ResetAt.UTC().Format(time.RFC3339), r.RetryAfter.Round(time.Second))
}

// Options configures a Limiter.
type Options struct {
	Logger hclog.Logger
	// LeaseTTL is how long a concurrency lease lives without a renewal: a sidecar that
	// dies frees its slots within this time. Default 60 s; leases are renewed every third.
	LeaseTTL time.Duration
	// Now is the clock (default time.Now); every window and lease expiry is computed from
	// it, never from Redis's clock.
	Now func() time.Time
	// Context, when set, ends the Limiter: calls after it is done fail and pipelines in
	// flight are cancelled. Close does the same explicitly.
	Context context.Context
	// TicketTTL is how long a queued request's ticket lives without a poll: a sidecar that
	// dies leaves its waiters' places within this time. Default 5 s; waiters poll at least
	// every tenth of it.
	TicketTTL time.Duration
	// unbatched sends each script call on its own (benchmarks compare it).
	unbatched bool
}

// Limiter checks and charges limits in Redis. It is safe for concurrent use by many
// requests and by many sidecars sharing one Redis. Script calls of concurrent requests are
// auto-pipelined: whatever is queued while a pipeline is in flight goes in the next one.
type Limiter struct {
	rdb      redis.UniversalClient
	batch    *batcher // nil when unbatched
	keys     store.Schema
	log      hclog.Logger
	leaseTTL time.Duration
	queue    queueState
	now      func() time.Time
	base     context.Context
	renew    renewer
	windows  [Total + 1]atomic.Pointer[windowBounds]
}

// New returns a Limiter over rdb with the store's key schema.
func New(rdb redis.UniversalClient, keys store.Schema, opts Options) *Limiter {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TicketTTL <= 0 {
		opts.TicketTTL = defaultTicketTTL
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	l := &Limiter{rdb: rdb, keys: keys, log: opts.Logger.Named("limits"), leaseTTL: opts.LeaseTTL, now: opts.Now, base: opts.Context}
	l.queue.ticketTTL = opts.TicketTTL
	if !opts.unbatched {
		l.batch = newBatcher(opts.Context, rdb, l.log)
	}
	return l
}

// Close stops the Limiter: later Admits and Finishes fail, leases are no longer renewed, and
// Close returns once every call already queued has been sent. The batcher owns a goroutine
// only while calls are queued, the renewer only while leases are live.
func (l *Limiter) Close() {
	l.renew.close()
	if l.batch != nil {
		l.batch.close()
	}
}

// Stats are totals since the Limiter started, for metrics.
type Stats struct {
	// Calls is how many script calls (admissions, charges, releases) were sent to Redis.
	Calls int64
	// Pipelines is how many pipelines carried them: Calls/Pipelines is the batching factor.
	Pipelines int64
	// Waiting is how many requests of this Limiter wait in a key's queue now.
	Waiting int64
	// QueueTimeouts is how many requests were refused after waiting their queue_timeout.
	QueueTimeouts int64
}

// Stats returns the Limiter's totals; Calls and Pipelines stay zero when it is unbatched.
func (l *Limiter) Stats() Stats {
	st := Stats{Waiting: l.queue.waiting.Load(), QueueTimeouts: l.queue.timeouts.Load()}
	if l.batch != nil {
		st.Calls, st.Pipelines = l.batch.calls.Load(), l.batch.pipelines.Load()
	}
	return st
}

// run runs script once, through the batcher unless the Limiter is unbatched.
func (l *Limiter) run(ctx context.Context, c *scriptCall) (*redis.Cmd, error) {
	if l.batch == nil {
		if c.script != nil {
			return c.script.Run(ctx, l.rdb, c.keys, c.args...), nil
		}
		pipe := l.rdb.Pipeline()
		cmds := queue(ctx, pipe, c)
		_, _ = pipe.Exec(ctx)
		c.cmds = cmds
		return result(ctx, l.rdb, c, cmds), nil
	}
	return l.batch.do(ctx, c)
}

// Load loads the scripts into Redis so the hot path is one EVALSHA (go-redis would also
// fall back to EVAL on NOSCRIPT).
func (l *Limiter) Load(ctx context.Context) error {
	for _, s := range scripts {
		if err := s.Load(ctx, l.rdb).Err(); err != nil {
			return fmt.Errorf("load limit script: %w", err)
		}
	}
	return nil
}

// counterSlack keeps a window's counter a little past the window's end, so a request
// finishing at the boundary charges a key that still exists for readers.
const counterSlack = time.Minute

// counterKey returns the key and TTL of limit's counter for the window holding now: the
// key's, or for a PerConversation limit that of conversation conv.
func (l *Limiter) counterKey(keyID, conv string, lim Limit, now time.Time) (key string, ttl time.Duration, reset time.Time) {
	w := l.window(lim.Window, now)
	if lim.Window != Total {
		ttl = w.end.Sub(now) + counterSlack
	}
	if lim.PerConversation {
		return l.keys.KeyConversationCounterAt(keyID, conv, lim.Name, w.stamp), ttl, w.end
	}
	return l.keys.KeyLimitCounterAt(keyID, lim.Name, w.stamp), ttl, w.end
}

// windowBounds is one window's start, end and formatted start, computed once per window
// rather than once per counter and request.
type windowBounds struct {
	start, end time.Time
	stamp      string
}

// window returns the bounds of w holding now, from a cache that follows the clock.
func (l *Limiter) window(w Window, now time.Time) *windowBounds {
	slot := &l.windows[w]
	if b := slot.Load(); b != nil && !now.Before(b.start) && (w == Total || now.Before(b.end)) {
		return b
	}
	start, end := w.Bounds(now)
	b := &windowBounds{start: start, end: end, stamp: store.LimitWindowStamp(start)}
	slot.Store(b)
	return b
}

// Admit checks every limit of set for the key and, when all pass, counts the request and
// takes a concurrency slot, in one EVALSHA. It is AdmitUpTo with a worst case of nothing:
// for requests whose usage cannot be bounded, or sets without reserve-mode limits.
func (l *Limiter) Admit(ctx context.Context, keyID string, set Set) (*Lease, *Refusal, error) {
	return l.AdmitUpTo(ctx, keyID, set, Usage{})
}

// AdmitUpTo checks every limit of set for the key and, when all pass, counts the request,
// takes a concurrency slot and reserves worst (the most the request can be charged; see
// WorstCase) against the set's reserve-mode limits, all in one EVALSHA. It returns a Lease
// to Finish on every exit path, or the Refusal of the first limit that binds. An empty set
// costs no round trip.
//
// When the set has a queue (Set.QueueTimeout) and no slot is free, AdmitUpTo waits for one
// in the key's queue (queue.go) until the timeout, ctx's end or another limit's refusal.
func (l *Limiter) AdmitUpTo(ctx context.Context, keyID string, set Set, worst Usage) (*Lease, *Refusal, error) {
	set = set.forRequest()
	lease := &Lease{l: l, keyID: keyID, set: set}
	if set.Empty() {
		return lease, nil, nil
	}
	res, resets, now, err := l.admitOnce(ctx, lease, worst, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("check limits of key %s: %w", keyID, err)
	}
	switch {
	case len(res) == 0 || res[0] == -1:
		l.admitted(lease)
		return lease, nil, nil
	case res[0] == -2 && len(res) >= 4:
		return l.wait(ctx, lease, worst, res)
	}
	r, err := refusal(set, res, resets, now)
	if err != nil {
		return nil, nil, fmt.Errorf("check limits of key %s: %w", keyID, err)
	}
	return nil, r, nil
}

// admitOnce runs the admission script once for lease (seq is its queue ticket's arrival
// number, 0 before it queued) and returns the script's reply, the counters' window ends and
// the time the call was built at.
func (l *Limiter) admitOnce(ctx context.Context, lease *Lease, worst Usage, seq int64) ([]int64, []time.Time, time.Time, error) {
	now := l.now()
	call, resets := l.admitCall(lease.keyID, lease.set, worst, now, lease, seq)
	if lease.id != "" {
		call.onAbandon = func(cmd *redis.Cmd) { l.releaseAbandoned(lease, cmd) }
	}
	cmd, err := l.run(ctx, call)
	var res []int64
	if err == nil {
		res, err = cmd.Int64Slice()
	}
	return res, resets, now, err
}

// admitted starts renewing an admitted lease's slot and reservation.
func (l *Limiter) admitted(lease *Lease) {
	if lease.id != "" {
		l.renew.add(l, lease)
	}
}

// admitCall builds the admission script's call (plainAdmitScript for a set that neither
// queues nor reserves, else admitScript; see each for its keys and arguments) and fills
// lease with the ids it takes; resets are the counters' window ends.
func (l *Limiter) admitCall(keyID string, set Set, worst Usage, now time.Time, lease *Lease, seq int64) (*scriptCall, []time.Time) {
	if resT, resC := set.reserves(); !resT && !resC && !set.queues() {
		return l.plainAdmitCall(keyID, set, now, lease)
	}
	return l.fullAdmitCall(keyID, set, worst, now, lease, seq)
}

// fullAdmitCall is admitCall for a set that queues or reserves.
func (l *Limiter) fullAdmitCall(keyID string, set Set, worst Usage, now time.Time, lease *Lease, seq int64) (*scriptCall, []time.Time) {
	resT, resC := set.reserves()
	var need Usage
	if resT {
		need.Tokens = max(worst.Tokens, 0)
	}
	if resC {
		need.CostMicroUSD = max(worst.CostMicroUSD, 0)
	}
	reserving := need.Tokens > 0 || need.CostMicroUSD > 0
	if lease.id == "" && (set.Concurrency > 0 || reserving) {
		lease.id = newLeaseID()
		lease.conc = set.Concurrency > 0
	}
	member := ""
	if resT || resC { // reads and sweeps what others hold, even when this request needs nothing
		member = lease.id + ":" + strconv.FormatInt(need.Tokens, 10) + ":" + strconv.FormatInt(need.CostMicroUSD, 10)
	}
	if reserving {
		lease.res, lease.need = member, need
	}
	keys := make([]string, 6, len(set.Counted)+6)
	keys[0], keys[1], keys[2] = l.keys.KeyConcurrency(keyID), l.keys.KeyReservations(keyID), l.keys.KeyReserved(keyID)
	keys[3], keys[4], keys[5] = l.keys.KeyQueue(keyID), l.keys.KeyQueueDeadlines(keyID), l.keys.KeyQueueSeq(keyID)
	concID, ticket := "", ""
	if lease.conc {
		concID = lease.id
	}
	if set.queues() {
		ticket = lease.id
	}
	args := make([]any, 12, 12+4*len(set.Counted))
	args[0], args[1], args[2], args[3] = now.UnixMilli(), concID, l.leaseTTL.Milliseconds(), set.Concurrency
	args[4], args[5], args[6] = member, need.Tokens, need.CostMicroUSD
	args[7], args[8], args[9], args[10] = ticket, set.QueueMax, l.queue.ticketTTL.Milliseconds(), seq
	args[11] = now.UnixMilli() + l.leaseTTL.Milliseconds()
	resets := make([]time.Time, len(set.Counted))
	for i, lim := range set.Counted {
		k, ttl, reset := l.counterKey(keyID, set.Conversation, lim, now)
		keys = append(keys, k)
		inc, kind := 0, 0
		switch {
		case lim.Kind == Requests:
			inc = 1
		case lim.Reserve && lim.Kind == Tokens:
			kind = 1
		case lim.Reserve:
			kind = 2
		}
		args = append(args, lim.Max, ttl.Milliseconds(), inc, kind)
		resets[i] = reset
	}
	return &scriptCall{script: admitScript, keys: keys, args: args}, resets
}

// refusal turns the admission script's refusal reply into a Refusal.
func refusal(set Set, res []int64, resets []time.Time, now time.Time) (*Refusal, error) {
	if len(res) < 2 {
		return nil, fmt.Errorf("unexpected reply %v", res)
	}
	idx, cur := res[0], res[1]
	if idx == 0 {
		r := &Refusal{Limit: ConcurrencyLimit, Max: int64(set.Concurrency), Current: cur, RetryAfter: time.Second}
		if len(res) >= 3 {
			r.QueueFull, r.Queued = true, res[2]
		}
		return r, nil
	}
	if idx < 1 || int(idx) > len(set.Counted) {
		return nil, fmt.Errorf("unexpected reply %v", res)
	}
	lim := set.Counted[idx-1]
	r := &Refusal{Limit: lim.Name, Kind: lim.Kind, Max: lim.Max, Current: cur, ResetAt: resets[idx-1], Conversation: lim.PerConversation}
	if len(res) >= 4 {
		r.Reservation, r.Reserved, r.Need = true, res[2], res[3]
	}
	switch {
	case r.Reservation && r.Need > r.Max:
		// Never fits, whatever is charged or reserved: retrying cannot help.
	case r.Reservation && r.Reserved > 0 && r.Current+r.Need <= r.Max:
		// Fits once requests in flight settle, as a concurrency slot frees.
		r.RetryAfter = time.Second
	case !r.ResetAt.IsZero():
		r.RetryAfter = max(r.ResetAt.Sub(now), time.Second)
	}
	return r, nil
}

// releaseAbandoned frees the concurrency slot and the reservation an admission took when its
// caller gave up before the result arrived: nobody will Finish that lease. The request stays
// counted, as it would had the caller gone just after admission.
func (l *Limiter) releaseAbandoned(ls *Lease, cmd *redis.Cmd) {
	res, err := cmd.Int64Slice()
	if err == nil && len(res) > 0 && res[0] == -2 {
		l.leaveDetached(ls) // queued: nobody will poll that ticket
		return
	}
	if err == nil && len(res) > 0 && res[0] != -1 {
		return // refused: nothing was taken
	}
	// Admitted, or unknown (an error may hide a run that took the slot): releasing a lease
	// or reservation that is not there does nothing.
	c := ls.settleCall(Usage{}, l.now())
	c.what = "release of an abandoned admission"
	l.batch.detach(c)
}

// Usage is what a finished request is charged.
type Usage struct {
	Tokens       int64
	CostMicroUSD int64
}

// Lease is one admitted request. Finish it exactly once, on every exit path; calls after
// the first do nothing.
type Lease struct {
	l     *Limiter
	keyID string
	set   Set
	// id names the lease's concurrency slot (when conc) and reservation (when res is
	// set); "" when it holds neither.
	id   string
	conc bool
	res  string // the reservation's member in KeyReservations
	need Usage  // what the reservation holds
	// waited is how long the request waited in the key's queue before admission.
	waited time.Duration

	once sync.Once
}

// ID is the lease id ("" when the lease holds no concurrency slot and no reservation).
func (ls *Lease) ID() string { return ls.id }

// Waited is how long the request waited in the key's queue before it was admitted (0 when
// a slot was free at once).
func (ls *Lease) Waited() time.Duration { return ls.waited }

// Reserved is what the lease's reservation holds (zero without one).
func (ls *Lease) Reserved() Usage { return ls.need }

// Finish charges u to the key's token and cost windows (those holding the time it ends),
// releases the concurrency slot and settles the reservation, in the next pipeline: plain
// commands, or one script when a reservation is held (its release and the charge must land
// together). It ignores ctx's cancellation (the client may be gone) but not its values; it
// gives up after five seconds, and a slot or reservation it could not release expires by
// itself after the lease TTL.
func (ls *Lease) Finish(ctx context.Context, u Usage) error {
	var err error
	ls.once.Do(func() {
		if ls.id != "" {
			ls.l.renew.remove(ls)
		}
		err = ls.finish(ctx, u)
		if ls.conc && ls.set.queues() {
			ls.l.queue.wake(ls.keyID) // a slot is free: this sidecar's waiters poll now
		}
	})
	return err
}

func (ls *Lease) finish(ctx context.Context, u Usage) error {
	l := ls.l
	var c *scriptCall
	if ls.res != "" {
		c = ls.settleCall(u, l.now())
	} else if c = ls.chargeCall(u, l.now()); c == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	cmd, err := l.run(ctx, c)
	if err == nil {
		err = cmd.Err()
	}
	if err == nil {
		err = l.expireCreated(ctx, c)
	}
	if err != nil {
		return fmt.Errorf("charge and release key %s: %w", ls.keyID, err)
	}
	return nil
}

// chargeCall is the plain commands that release the concurrency slot and charge u; nil
// when there is nothing to do. Nothing here is checked, only added, and Redis runs a
// pipeline's commands in order, so the release lands before anything this sidecar queues
// after it. A counter expires a little after its window ends, by a TTL computed from the
// sidecar's clock as every window is: the charge that creates it gives it that expiry
// (expireCreated), so the other charges of the window are one INCRBY each.
func (ls *Lease) chargeCall(u Usage, now time.Time) *scriptCall {
	l := ls.l
	c := &scriptCall{}
	if ls.conc {
		c.plain = append(c.plain, []any{"ZREM", l.keys.KeyConcurrency(ls.keyID), ls.id})
	}
	ls.charges(u, now, func(k string, ttl time.Duration, amt int64) {
		if ttl > 0 {
			c.windowed = append(c.windowed, chargedCounter{at: len(c.plain), key: k, amt: amt, ttl: ttl})
		}
		c.plain = append(c.plain, []any{"INCRBY", k, amt})
	})
	if len(c.plain) == 0 {
		return nil
	}
	return c
}

// chargedCounter is a windowed counter a charge's INCRBY (plain command at) adds amt to.
type chargedCounter struct {
	at  int
	key string
	amt int64
	ttl time.Duration
}

// expireCreated gives the counters a charge created (its INCRBY answered the amount: the
// counter was not there) their expiry, in one more round trip: once per counter and
// window. A counter that was there at 0 gets its expiry again, which changes nothing.
func (l *Limiter) expireCreated(ctx context.Context, c *scriptCall) error {
	var plain [][]any
	for _, w := range c.windowed {
		if w.at < len(c.cmds) {
			if n, err := c.cmds[w.at].Int64(); err == nil && n == w.amt {
				plain = append(plain, []any{"PEXPIRE", w.key, w.ttl.Milliseconds()})
			}
		}
	}
	if len(plain) == 0 {
		return nil
	}
	cmd, err := l.run(ctx, &scriptCall{plain: plain})
	if err == nil {
		err = cmd.Err()
	}
	if err != nil {
		return fmt.Errorf("set the expiry of a new limit counter: %w", err)
	}
	return nil
}

// charges calls fn with each token and cost counter u charges: its key, TTL and amount.
func (ls *Lease) charges(u Usage, now time.Time, fn func(k string, ttl time.Duration, amt int64)) {
	for _, lim := range ls.set.Counted {
		var amt int64
		switch lim.Kind {
		case Tokens:
			amt = u.Tokens
		case Cost:
			amt = u.CostMicroUSD
		}
		if amt <= 0 {
			continue
		}
		k, ttl, _ := ls.l.counterKey(ls.keyID, ls.set.Conversation, lim, now)
		fn(k, ttl, amt)
	}
}

// InFlight returns how many concurrency leases of a key are live now.
func (l *Limiter) InFlight(ctx context.Context, keyID string) (int64, error) {
	n, err := l.rdb.ZCount(ctx, l.keys.KeyConcurrency(keyID), strconv.FormatInt(l.now().UnixMilli(), 10), "+inf").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("count leases of key %s: %w", keyID, err)
	}
	return n, nil
}

// Current returns the value of a limit's counter in the window holding now (for a
// PerConversation limit, use ConversationCurrent).
func (l *Limiter) Current(ctx context.Context, keyID string, lim Limit) (int64, error) {
	return l.ConversationCurrent(ctx, keyID, "", lim)
}

// ConversationCurrent returns the value of a limit's counter in the window holding now, for
// conversation conv of the key when the limit is PerConversation.
func (l *Limiter) ConversationCurrent(ctx context.Context, keyID, conv string, lim Limit) (int64, error) {
	k, _, _ := l.counterKey(keyID, conv, lim, l.now())
	n, err := l.rdb.Get(ctx, k).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read limit %s of key %s: %w", lim.Name, keyID, err)
	}
	return n, nil
}

func newLeaseID() string {
	var b [12]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}
