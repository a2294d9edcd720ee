// Package sched chooses the upstream account for each request: key binding, sticky session, then the pool by priority and load, skipping parked accounts.
//
// The path of a request: Plan orders the accounts from memory (sched.go, cache.go: parking
// view and sticky bindings); the sidecar then calls AcquireCapacity for each capped account
// before trying it (capacity.go, one Redis script), Report after an error answer (parks),
// Observe with every answer's headers (windows.go: subscription windows, near_limit parks)
// and Bind when a session lands on a new account. Run, in the background, refreshes the
// parking view, writes the window readings (one HSET per interval), renews capacity leases
// and drops sticky bindings an operator cleared.
package sched

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/jsonscan"
	"github.com/claude-relay/claude-relay/sidecar/request"
	"github.com/claude-relay/claude-relay/store"
)

// State is why an account is out of the rotation.
type State string

// Account states. Rate-limited, overloaded and failing accounts come back by themselves
// when their time passes; unauthorized and blocked ones stay out until an operator (or the
// control plane's token refresh) clears them.
const (
	RateLimited  State = "rate_limited"
	Overloaded   State = "overloaded"
	Failing      State = "failing"
	Unauthorized State = "unauthorized"
	Blocked      State = "blocked"
)

// Account is what the scheduler needs to know about one upstream account.
type Account struct {
	ID       string
	Priority int // lower first
}

// Request is what one request asks of the scheduler.
type Request struct {
	Pool *config.PoolRT
	// Model is the requested model; parking can be limited to its family.
	Model string
	// Session identifies the conversation ("" for none): see SessionKey.
	Session string
	// Bound lists the accounts the relay key is bound to (its binding to one account or an
	// account group, resolved by the sidecar against the schedulable accounts); when
	// non-nil, only they are considered.
	Bound []string
}

// Park is an account's (or one of its model families') time out of the rotation.
type Park struct {
	Account string
	// Family is "" when the whole account is parked, else e.g. "opus".
	Family string
	State  State
	Status int // the upstream status that caused it (0 for a connect error)
	Reason string
	// Until is when it comes back by itself; zero means until cleared.
	Until time.Time
}

func (p Park) field() string {
	if p.Family == "" {
		return p.Account
	}
	return p.Account + "/" + p.Family
}

func (p Park) encode() string {
	var until int64
	if !p.Until.IsZero() {
		until = p.Until.UnixMilli()
	}
	return strconv.FormatInt(until, 10) + "|" + string(p.State) + "|" + strconv.Itoa(p.Status) + "|" + p.Reason
}

func decodePark(field, v string) (Park, bool) {
	parts := strings.SplitN(v, "|", 4)
	if len(parts) != 4 {
		return Park{}, false
	}
	until, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return Park{}, false
	}
	status, _ := strconv.Atoi(parts[2])
	p := Park{State: State(parts[1]), Status: status, Reason: parts[3]}
	p.Account, p.Family, _ = strings.Cut(field, "/")
	if until > 0 {
		p.Until = time.UnixMilli(until)
	}
	return p, true
}

// active reports whether the park still holds at now.
func (p Park) active(now time.Time) bool { return p.Until.IsZero() || now.Before(p.Until) }

// Unavailable is the error Plan returns when no account can serve: it says why and when
// the earliest one frees up.
type Unavailable struct {
	// Parked are the parks keeping every candidate out.
	Parked []Park
	// Full are the caps of the accounts that were not parked but at their capacity.
	Full []CapFull
	// AllRateLimited is true when every candidate is parked for a rate limit.
	AllRateLimited bool
	// Earliest is when the first account comes back (zero when none will by itself).
	Earliest time.Time
	// NoAccounts is true when the pool has no account at all.
	NoAccounts bool
}

func (u *Unavailable) Error() string {
	if u.NoAccounts {
		return "no upstream account is available: an operator must add one (claude-relay admin accounts add)"
	}
	var b strings.Builder
	if len(u.Full) > 0 {
		b.WriteString("every upstream account is at one of its caps or parked")
	} else if u.AllRateLimited {
		b.WriteString("every upstream account is rate-limited")
	} else {
		b.WriteString("no upstream account can serve this request")
	}
	b.WriteString(" (")
	for i, p := range u.Parked {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "account %s", p.Account)
		if p.Family != "" {
			fmt.Fprintf(&b, " (%s models)", p.Family)
		}
		fmt.Fprintf(&b, " %s", strings.ReplaceAll(string(p.State), "_", " "))
		if p.Reason != "" {
			fmt.Fprintf(&b, ": %s", p.Reason)
		}
		if !p.Until.IsZero() {
			fmt.Fprintf(&b, " until %s", p.Until.UTC().Format(time.RFC3339))
		}
	}
	for i, f := range u.Full {
		if i > 0 || len(u.Parked) > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.String())
	}
	b.WriteString(")")
	if !u.Earliest.IsZero() {
		fmt.Fprintf(&b, "; the earliest frees up at %s", u.Earliest.UTC().Format(time.RFC3339))
	} else {
		b.WriteString("; none comes back by itself: an operator must fix or re-enable an account")
	}
	return b.String()
}

// AddFull adds the refusals of accounts at their capacity to u (an *Unavailable of Plan, or
// a new one when Plan found accounts) and moves Earliest to the first time one frees. A cap
// counts as a rate limit.
func (u *Unavailable) AddFull(full []CapFull) {
	if len(u.Parked) == 0 && len(u.Full) == 0 {
		u.AllRateLimited = true
	}
	for _, f := range full {
		u.Full = append(u.Full, f)
		if !f.Frees.IsZero() && (u.Earliest.IsZero() || f.Frees.Before(u.Earliest)) {
			u.Earliest = f.Frees
		}
	}
}

// Refresher asks the control plane to refresh an OAuth account's token. It returns nil
// when a fresh credential is in place (the account stays in the rotation).
type Refresher interface {
	Refresh(ctx context.Context, accountID string) error
}

// Options configures a Scheduler.
type Options struct {
	Logger hclog.Logger
	Now    func() time.Time
	// Refresher, when set, is asked once per 401 before the account is marked unauthorized.
	Refresher Refresher
	// RefreshInterval is how often Run reads the shared parking state (default 250 ms).
	RefreshInterval time.Duration
	// StickyCacheTTL is how long this sidecar trusts its copy of a sticky binding before
	// reading Redis again (default 30 s, never longer than the pool's sticky TTL).
	StickyCacheTTL time.Duration
	// StickyCacheSize caps the sticky bindings this sidecar keeps (default 100,000).
	StickyCacheSize int
}

// Scheduler orders accounts for requests and keeps account health. Parking and sticky
// sessions live in Redis, shared by every sidecar; in-flight counts and last use are this
// sidecar's own. Plan reads memory only: Run refreshes the parking view in the background
// and sticky bindings are cached locally for a short while (see cache.go). Without Redis
// (rdb nil) or while Redis is unreachable it keeps working from its local view.
type Scheduler struct {
	rdb      redis.UniversalClient
	keys     store.Schema
	log      hclog.Logger
	now      func() time.Time
	ref      Refresher
	interval time.Duration

	mu     sync.Mutex
	parked map[string]Park // field → park: the last view read from Redis plus local parks
	// writing counts this sidecar's park/unpark writes in flight and written counts those
	// done: a refresh that overlapped one may predate it in Redis and is not applied.
	writing, written int

	lastRefresh atomic.Int64 // unix ns (wall clock) when the last refresh started
	refreshing  atomic.Bool

	stickies stickyCache

	inflight sync.Map // account id → *atomic.Int64
	lastUsed sync.Map // account id → *atomic.Int64 (unix ns)

	leases sync.Map // capacity lease id → account id: renewed by Run while held

	wmu     sync.Mutex
	windows map[string]store.Windows // account id → latest subscription-window reading
	dirty   map[string]struct{}      // accounts whose reading is not yet in Redis
}

// New returns a Scheduler over rdb (nil: local state only) with the store's key schema.
func New(rdb redis.UniversalClient, keys store.Schema, opts Options) *Scheduler {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 250 * time.Millisecond
	}
	if opts.StickyCacheTTL <= 0 {
		opts.StickyCacheTTL = 30 * time.Second
	}
	if opts.StickyCacheSize <= 0 {
		opts.StickyCacheSize = 100_000
	}
	return &Scheduler{
		rdb: rdb, keys: keys, log: opts.Logger.Named("sched"), now: opts.Now, ref: opts.Refresher,
		interval: opts.RefreshInterval,
		parked:   make(map[string]Park),
		windows:  make(map[string]store.Windows),
		dirty:    make(map[string]struct{}),
		stickies: stickyCache{ttl: opts.StickyCacheTTL, max: opts.StickyCacheSize, m: make(map[string]binding)},
	}
}

// SessionKey derives the sticky-session key of a request from its scanned body: the
// session id in metadata.user_id (Claude Code sends "user_<hash>_account_<uuid>_session_<uuid>",
// newer versions a JSON object with session_id), else the whole user_id, else a hash of the
// first message (the conversation's start stays the same across its turns). "" when the
// body has none of these.
func SessionKey(f request.Fields) string {
	id := f.UserID
	if id != "" {
		if _, after, ok := strings.Cut(id, "_session_"); ok && after != "" {
			id = after
		} else if strings.HasPrefix(id, "{") {
			var v struct {
				SessionID string `json:"session_id"`
			}
			if json.Unmarshal([]byte(id), &v) == nil && v.SessionID != "" {
				id = v.SessionID
			}
		}
		return store.StickySessionHash(id)
	}
	if len(f.FirstMessage) > 0 {
		h := sha256.New()
		h.Write([]byte("m:"))
		if !canonical(jsonscan.New(f.FirstMessage), h) {
			h.Reset() // not JSON we can walk: the bytes as they are
			h.Write([]byte("m:"))
			h.Write(f.FirstMessage)
		}
		return hex.EncodeToString(h.Sum(nil)[:16])
	}
	return ""
}

// canonical writes the JSON value at the cursor to w without whitespace and without any
// "cache_control" member. Clients move cache breakpoints from turn to turn (the first
// message carries one while it is also the last), and the session must hash the same.
func canonical(sc *jsonscan.Scanner, w io.Writer) bool {
	switch sc.Peek() {
	case '{':
		io.WriteString(w, "{")
		ok := sc.Object(func(key []byte) bool {
			if string(key) == "cache_control" {
				return sc.Skip()
			}
			io.WriteString(w, `"`)
			w.Write(key)
			io.WriteString(w, `":`)
			if !canonical(sc, w) {
				return false
			}
			io.WriteString(w, ",")
			return true
		})
		io.WriteString(w, "}")
		return ok
	case '[':
		io.WriteString(w, "[")
		ok := sc.Array(func() bool {
			if !canonical(sc, w) {
				return false
			}
			io.WriteString(w, ",")
			return true
		})
		io.WriteString(w, "]")
		return ok
	}
	raw, ok := sc.Value()
	w.Write(raw)
	return ok
}

// Family is a model's family for parking ("opus", "sonnet", "haiku"), or "".
func Family(model string) string {
	for _, f := range []string{"opus", "sonnet", "haiku"} {
		if strings.Contains(model, f) {
			return f
		}
	}
	return ""
}

// Plan is the order in which a request tries accounts.
type Plan struct {
	// Order lists the available accounts, best first.
	Order []string
	// Sticky is the account the session was bound to ("" for none, or when it is
	// unavailable and the session will move).
	Sticky string
	// MovedFrom is the account the session was bound to when that account is parked or
	// gone, so the session moves ("" otherwise).
	MovedFrom string
}

// Plan orders the accounts for req: the sticky session's account first while it is
// available, then by priority, fewest in flight on this sidecar, least recently used.
// Parked accounts are left out; when none is left it returns *Unavailable. In steady state it
// makes no Redis round trip: the parking view is Run's, and a sticky binding is read from
// Redis only when this sidecar has no fresh copy or its account is unavailable.
func (s *Scheduler) Plan(ctx context.Context, req Request, accounts []Account) (Plan, error) {
	if len(req.Bound) > 0 {
		accounts = slices.DeleteFunc(slices.Clone(accounts), func(a Account) bool { return !slices.Contains(req.Bound, a.ID) })
	}
	if len(accounts) == 0 {
		return Plan{}, &Unavailable{NoAccounts: true}
	}
	s.ensureFresh(ctx)
	now := s.now()
	family := Family(req.Model)

	s.mu.Lock()
	avail := make([]Account, 0, len(accounts))
	var blocked []Park
	for _, a := range accounts {
		if p, ok := s.parked[a.ID]; ok && p.active(now) {
			blocked = append(blocked, p)
			continue
		}
		if family != "" {
			if p, ok := s.parked[a.ID+"/"+family]; ok && p.active(now) {
				blocked = append(blocked, p)
				continue
			}
		}
		avail = append(avail, a)
	}
	s.mu.Unlock()

	if len(avail) == 0 {
		u := &Unavailable{Parked: blocked, AllRateLimited: true}
		for _, p := range blocked {
			if p.State != RateLimited && p.State != NearLimit {
				u.AllRateLimited = false
			}
			if !p.Until.IsZero() && (u.Earliest.IsZero() || p.Until.Before(u.Earliest)) {
				u.Earliest = p.Until
			}
		}
		return Plan{}, u
	}
	stickyAcct, moved := s.stickyAccount(ctx, req, avail, now)
	load := make(map[string][2]int64, len(avail))
	for _, a := range avail {
		load[a.ID] = [2]int64{counter(&s.inflight, a.ID).Load(), counter(&s.lastUsed, a.ID).Load()}
	}
	strategy := ""
	if req.Pool != nil {
		strategy = req.Pool.Strategy
	}
	slices.SortStableFunc(avail, func(a, b Account) int {
		la, lb := load[a.ID], load[b.ID]
		switch strategy {
		case config.StrategyRoundRobin:
			return cmp.Compare(la[1], lb[1])
		case config.StrategyPriority:
			return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(la[1], lb[1]))
		}
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(la[0], lb[0]), cmp.Compare(la[1], lb[1]))
	})
	plan := Plan{Order: make([]string, 0, len(avail)), MovedFrom: moved}
	if stickyAcct != "" {
		plan.Sticky = stickyAcct
		plan.Order = append(plan.Order, stickyAcct)
	}
	for _, a := range avail {
		if a.ID != plan.Sticky {
			plan.Order = append(plan.Order, a.ID)
		}
	}
	return plan, nil
}

func counter(m *sync.Map, id string) *atomic.Int64 {
	if c, ok := m.Load(id); ok {
		return c.(*atomic.Int64)
	}
	c, _ := m.LoadOrStore(id, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// Acquire counts a request in flight on account (and marks it used now); call the
// returned function when the request ends.
func (s *Scheduler) Acquire(account string) (release func()) {
	c := counter(&s.inflight, account)
	c.Add(1)
	counter(&s.lastUsed, account).Store(s.now().UnixNano())
	var once sync.Once
	return func() { once.Do(func() { c.Add(-1) }) }
}

// InFlight returns this sidecar's requests in flight on account.
func (s *Scheduler) InFlight(account string) int64 { return counter(&s.inflight, account).Load() }

// parkScript parks an account unless it is already parked for longer (a 529's brief park
// never shortens a 429's). KEYS[1]: parking hash. ARGV[1]: field; ARGV[2]: value; ARGV[3]:
// until (ms, 0 = until cleared); ARGV[4]: now (ms). Expired fields are swept on the way.
// Returns 1 when the park was written.
var parkScript = redis.NewScript(`
local all = redis.call('HGETALL', KEYS[1])
local now = tonumber(ARGV[4])
for i = 1, #all, 2 do
  local u = tonumber(string.match(all[i + 1], '^(%d+)|'))
  if u and u > 0 and u <= now then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local u = tonumber(string.match(cur, '^(%d+)|'))
  local want = tonumber(ARGV[3])
  if u and (u == 0 or (want > 0 and u >= want)) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// ParkAccount takes an account (or one model family of it) out of the rotation, shared with
// every sidecar. A park never shortens a longer one.
func (s *Scheduler) ParkAccount(ctx context.Context, p Park) error {
	s.mu.Lock()
	if cur, ok := s.parked[p.field()]; !ok || !cur.active(s.now()) || (!cur.Until.IsZero() && !p.Until.IsZero() && p.Until.After(cur.Until)) || p.Until.IsZero() {
		s.parked[p.field()] = p
	}
	s.writing++
	s.mu.Unlock()
	defer s.wrote()
	s.log.Warn("account parked", "account", p.Account, "family", p.Family, "state", p.State, "status", p.Status, "reason", p.Reason, "until", p.Until)
	if s.rdb == nil {
		return nil
	}
	var until int64
	if !p.Until.IsZero() {
		until = p.Until.UnixMilli()
	}
	if err := parkScript.Run(ctx, s.rdb, []string{s.keys.AccountsParked()}, p.field(), p.encode(), until, s.now().UnixMilli()).Err(); err != nil {
		return fmt.Errorf("park account %s: %w", p.Account, err)
	}
	return nil
}

// Unpark returns an account (every family) to the rotation.
func (s *Scheduler) Unpark(ctx context.Context, account string) error {
	s.mu.Lock()
	var fields []string
	for f, p := range s.parked {
		if p.Account == account {
			delete(s.parked, f)
			fields = append(fields, f)
		}
	}
	s.writing++
	s.mu.Unlock()
	defer s.wrote()
	if s.rdb == nil {
		return nil
	}
	all, err := s.rdb.HKeys(ctx, s.keys.AccountsParked()).Result()
	if err != nil {
		return fmt.Errorf("unpark account %s: %w", account, err)
	}
	for _, f := range all {
		if a, _, _ := strings.Cut(f, "/"); a == account {
			fields = append(fields, f)
		}
	}
	if len(fields) == 0 {
		return nil
	}
	if err := s.rdb.HDel(ctx, s.keys.AccountsParked(), fields...).Err(); err != nil {
		return fmt.Errorf("unpark account %s: %w", account, err)
	}
	return nil
}

// Parked returns every park in force now, as Redis holds it (or the local view without Redis).
func (s *Scheduler) Parked(ctx context.Context) ([]Park, error) {
	now := s.now()
	var out []Park
	if s.rdb == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range s.parked {
			if p.active(now) {
				out = append(out, p)
			}
		}
		return out, nil
	}
	m, err := s.rdb.HGetAll(ctx, s.keys.AccountsParked()).Result()
	if err != nil {
		return nil, fmt.Errorf("read parked accounts: %w", err)
	}
	for f, v := range m {
		if p, ok := decodePark(f, v); ok && p.active(now) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b Park) int { return strings.Compare(a.field(), b.field()) })
	return out, nil
}

// Outcome is how an upstream attempt went, before any byte reached the client.
type Outcome struct {
	Status int
	Header http.Header
	// Body is the start of an error response (a few KB suffice).
	Body []byte
	// Err is a connect or transport error (Status is 0).
	Err error
}

// Report updates an account's health after an attempt and says whether the request should
// move to another account. Parking failures are logged, never returned: the request goes on.
func (s *Scheduler) Report(ctx context.Context, req Request, account string, o Outcome) (failover bool) {
	pool := req.Pool
	if pool == nil {
		pool = &config.PoolRT{}
	}
	now := s.now()
	park := func(p Park) {
		p.Account = account
		if err := s.ParkAccount(context.WithoutCancel(ctx), p); err != nil {
			s.log.Warn("cannot share account parking; this sidecar parks it alone", "account", account, "error", err)
		}
	}
	switch {
	case o.Err != nil:
		return true
	case o.Status == http.StatusTooManyRequests:
		p := Park{State: RateLimited, Status: 429, Until: now.Add(cmp.Or(pool.Park429For, time.Minute)), Reason: errorMessage(o.Body)}
		if pool.ParkOn429 != config.ParkOn429Fixed {
			if t, ok := resetTime(o.Header, now); ok {
				p.Until = t
			}
		}
		p.Family = limitedFamily(o.Header)
		park(p)
		return true
	case o.Status == 529:
		park(Park{State: Overloaded, Status: 529, Until: now.Add(cmp.Or(pool.Park529For, 15*time.Second)), Reason: errorMessage(o.Body)})
		return true
	case o.Status == http.StatusUnauthorized:
		if s.ref != nil {
			err := s.ref.Refresh(ctx, account)
			if err == nil {
				s.log.Info("account token refreshed after a 401", "account", account)
				return true
			}
			s.log.Warn("token refresh after a 401 failed", "account", account, "error", err)
		}
		park(Park{State: Unauthorized, Status: 401, Reason: errorMessage(o.Body)})
		return true
	case o.Status == http.StatusForbidden || (o.Status == http.StatusBadRequest && orgDisabled(o.Body)):
		park(Park{State: Blocked, Status: o.Status, Reason: errorMessage(o.Body)})
		return true
	case o.Status >= 500:
		s.countError(ctx, pool, account, o)
		return pool.FailsOverOn(o.Status)
	}
	return pool.FailsOverOn(o.Status)
}

// countErrorScript counts one error in a window that starts with the first.
// KEYS[1]: counter. ARGV[1]: window (ms). Returns the count.
var countErrorScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

// countError counts a 5xx in the pool's window and parks the account once there are
// park_5xx_after of them.
func (s *Scheduler) countError(ctx context.Context, pool *config.PoolRT, account string, o Outcome) {
	if pool.Park5xxAfter <= 0 || s.rdb == nil {
		return
	}
	key := s.keys.AccountErrors(account)
	n, err := countErrorScript.Run(context.WithoutCancel(ctx), s.rdb, []string{key}, cmp.Or(pool.Park5xxWindow, time.Minute).Milliseconds()).Int64()
	if err != nil {
		s.log.Warn("cannot count account errors", "account", account, "error", err)
		return
	}
	if n >= int64(pool.Park5xxAfter) {
		p := Park{Account: account, State: Failing, Status: o.Status,
			Reason: fmt.Sprintf("%d upstream errors within %s, the last %d %s", n, pool.Park5xxWindow, o.Status, errorMessage(o.Body)),
			Until:  s.now().Add(cmp.Or(pool.Park5xxFor, time.Minute))}
		if err := s.ParkAccount(context.WithoutCancel(ctx), p); err != nil {
			s.log.Warn("cannot share account parking; this sidecar parks it alone", "account", account, "error", err)
		}
		s.rdb.Del(context.WithoutCancel(ctx), key)
	}
}

// resetTime reads when a 429 ends: anthropic-ratelimit-unified-reset (unix seconds, or
// RFC 3339 as the per-window API headers send), else retry-after (seconds or an HTTP date).
func resetTime(h http.Header, now time.Time) (time.Time, bool) {
	if v := h.Get("Anthropic-Ratelimit-Unified-Reset"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return time.Unix(n, 0), true
		}
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t, true
		}
	}
	for _, k := range []string{"Anthropic-Ratelimit-Requests-Reset", "Anthropic-Ratelimit-Tokens-Reset"} {
		if t, err := time.Parse(time.RFC3339, h.Get(k)); err == nil && t.After(now) {
			return t, true
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 {
			return now.Add(time.Duration(n * float64(time.Second))), true
		}
		if t, err := http.ParseTime(v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// limitedFamily returns the model family a 429 is limited to, when the upstream names one:
// anthropic-ratelimit-unified-representative-claim is the binding window, and the
// model-specific windows are named "seven_day_opus", "seven_day_sonnet" and so on.
func limitedFamily(h http.Header) string {
	claim := h.Get("Anthropic-Ratelimit-Unified-Representative-Claim")
	for _, f := range []string{"opus", "sonnet", "haiku"} {
		if strings.HasSuffix(claim, "_"+f) {
			return f
		}
	}
	return ""
}

// errorMessage extracts error.message from an Anthropic error body, bounded.
func errorMessage(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	var msg string
	s := jsonscan.New(body)
	s.Object(func(key []byte) bool {
		if string(key) != "error" || s.Peek() != '{' {
			return s.Skip()
		}
		s.Object(func(k []byte) bool {
			if string(k) == "message" {
				msg, _ = s.String()
				return false
			}
			return s.Skip()
		})
		return false
	})
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return strings.ReplaceAll(msg, "|", "/")
}

func orgDisabled(body []byte) bool {
	m := strings.ToLower(errorMessage(body))
	return strings.Contains(m, "organization") && strings.Contains(m, "disabled")
}
