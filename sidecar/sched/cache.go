package sched

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/store"
)

// Why Plan makes no Redis round trip in steady state:
//
//   - The parking hash changes on 429/529/401/403 and operator actions only. Run reads it
//     every RefreshInterval; this sidecar's own parks and unparks change its view at once.
//     A park made by another sidecar is honoured here within one interval.
//   - A sticky binding (session → account) is cached for min(StickyTTL, StickyCacheTTL)
//     from when it was read or bound. A miss reads Redis (GET + EXPIRE, one round trip); a
//     hit whose account is parked or not a candidate reads Redis again before choosing, so
//     a re-bind by another sidecar is seen then or when the copy expires. The Redis TTL of a
//     binding in use is refreshed at most once per StickyTTL/4 per session, off the
//     request path.

// binding is this sidecar's copy of one sticky session.
type binding struct {
	account string
	expires time.Time // when the copy must be read from Redis again
	touched time.Time // when the Redis TTL was last set
}

// stickyCache holds sticky bindings, bounded in size.
type stickyCache struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]binding // Redis key → binding
}

// get returns the fresh binding of key.
func (c *stickyCache) get(key string, now time.Time) (binding, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[key]
	if !ok || !now.Before(b.expires) {
		return binding{}, false
	}
	return b, true
}

// touch marks key's Redis TTL refreshed at now when it is older than every; it reports
// whether the caller should refresh it.
func (c *stickyCache) touch(key string, now time.Time, every time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[key]
	if !ok || now.Sub(b.touched) < every {
		return false
	}
	b.touched = now
	c.m[key] = b
	return true
}

// put records key → account, read or written in Redis at now with the pool's sticky TTL.
func (c *stickyCache) put(key, account string, now time.Time, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		c.evictLocked(now)
	}
	c.m[key] = binding{account: account, expires: now.Add(min(ttl, c.ttl)), touched: now}
}

// forgetWhere drops the bindings for which drop is true.
func (c *stickyCache) forgetWhere(drop func(key string, b binding) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, b := range c.m {
		if drop(k, b) {
			delete(c.m, k)
			n++
		}
	}
	return n
}

func (c *stickyCache) forget(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// evictLocked drops expired bindings and, when that leaves the cache more than 90 % full,
// arbitrary others (map order) down to 90 %: one sweep per tenth of the capacity inserted.
func (c *stickyCache) evictLocked(now time.Time) {
	for k, b := range c.m {
		if !now.Before(b.expires) {
			delete(c.m, k)
		}
	}
	keep := c.max - max(1, c.max/10)
	for k := range c.m {
		if len(c.m) <= keep {
			break
		}
		delete(c.m, k)
	}
}

// sweep drops expired bindings.
func (c *stickyCache) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, b := range c.m {
		if !now.Before(b.expires) {
			delete(c.m, k)
		}
	}
}

// StickyCached returns how many sticky bindings this sidecar holds in memory.
func (s *Scheduler) StickyCached() int {
	s.stickies.mu.Lock()
	defer s.stickies.mu.Unlock()
	return len(s.stickies.m)
}

// Run keeps the parking view fresh until ctx ends: it reads the shared parking state every
// RefreshInterval and sweeps expired sticky bindings. Without Redis it returns at once.
func (s *Scheduler) Run(ctx context.Context) {
	if s.rdb == nil {
		return
	}
	go s.listenCleared(ctx)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	var failing bool
	lastSweep, lastRenew := time.Now(), time.Now()
	for {
		err := s.refreshParked(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			s.log.Warn("cannot read account parking state; using this sidecar's view", "error", err)
		case err == nil && failing:
			failing = false
			s.log.Info("account parking state readable again")
		}
		if err := s.flushWindows(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("cannot record subscription windows; retrying with the next refresh", "error", err)
		}
		if time.Since(lastRenew) >= leaseTTL/3 {
			lastRenew = time.Now()
			if err := s.renewLeases(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("cannot renew account capacity leases; they expire unless renewed in time", "error", err)
			}
		}
		if time.Since(lastSweep) >= s.stickies.ttl {
			lastSweep = time.Now()
			s.stickies.sweep(s.now())
		}
		select {
		case <-ctx.Done():
			// The readings of the last interval: written once more on the way out.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := s.flushWindows(fctx); err != nil {
				s.log.Warn("cannot record subscription windows at shutdown", "error", err)
			}
			return
		case <-tick.C:
		}
	}
}

// listenCleared drops this sidecar's cached copies of the sticky bindings an operator
// cleared (store.ClearStickySession, ClearAccountBindings) as they are announced, until ctx
// ends. go-redis re-subscribes by itself after a broken connection; a missed announcement
// costs at most StickyCacheTTL of the old binding.
func (s *Scheduler) listenCleared(ctx context.Context) {
	store.Receive(ctx, s.rdb.Subscribe(ctx, s.keys.StickyClearedChannel()), func(msg any) {
		m, ok := msg.(*redis.Message)
		if !ok {
			return
		}
		kind, v, _ := strings.Cut(m.Payload, ":")
		n := s.stickies.forgetWhere(func(key string, b binding) bool {
			return (kind == "session" && strings.HasSuffix(key, ":"+v)) || (kind == "account" && b.account == v)
		})
		s.log.Info("sticky bindings cleared by an operator", "what", m.Payload, "cached_dropped", n)
	}, nil)
}

// errRefreshBusy says another refresh is under way.
var errRefreshBusy = errors.New("a refresh of the parking state is under way")

// refreshParked reads the shared parking hash into the local view. A read that overlapped
// one of this sidecar's own park or unpark writes is dropped (it may predate the write);
// the next one applies.
func (s *Scheduler) refreshParked(ctx context.Context) error {
	if !s.refreshing.CompareAndSwap(false, true) {
		return errRefreshBusy
	}
	defer s.refreshing.Store(false)
	s.lastRefresh.Store(time.Now().UnixNano())
	s.mu.Lock()
	written := s.written
	s.mu.Unlock()
	m, err := s.rdb.HGetAll(ctx, s.keys.AccountsParked()).Result()
	if err != nil {
		return fmt.Errorf("read parked accounts: %w", err)
	}
	view := make(map[string]Park, len(m))
	for f, v := range m {
		if p, ok := decodePark(f, v); ok {
			view[f] = p
		}
	}
	s.mu.Lock()
	if s.writing == 0 && s.written == written {
		s.parked = view
	}
	s.mu.Unlock()
	return nil
}

// wrote ends one of this sidecar's park or unpark writes.
func (s *Scheduler) wrote() {
	s.mu.Lock()
	s.writing--
	s.written++
	s.mu.Unlock()
}

// ensureFresh refreshes the parking view on the request path only when Run has not done so
// for four intervals (Run not started, or stalled): a scheduler never plans from a view
// older than that while Redis answers.
func (s *Scheduler) ensureFresh(ctx context.Context) {
	if s.rdb == nil || time.Since(time.Unix(0, s.lastRefresh.Load())) < 4*s.interval {
		return
	}
	if err := s.refreshParked(ctx); err != nil && !errors.Is(err, errRefreshBusy) && ctx.Err() == nil {
		s.log.Warn("cannot read account parking state; using this sidecar's view", "error", err)
	}
}

// View returns the parks this scheduler's Plan honours now: the last parking state read
// from Redis and this sidecar's own parks since, sorted by account and family.
func (s *Scheduler) View() []Park {
	now := s.now()
	s.mu.Lock()
	var out []Park
	for _, p := range s.parked {
		if p.active(now) {
			out = append(out, p)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Park) int { return strings.Compare(a.field(), b.field()) })
	return out
}

// stickyKey returns the Redis key of req's sticky session, or "" when it has none.
func (s *Scheduler) stickyKey(req Request) string {
	if s.rdb == nil || req.Session == "" || req.Pool == nil || req.Pool.Strategy != config.StrategyStickyLeastLoaded || req.Pool.StickyTTL <= 0 {
		return ""
	}
	return s.keys.StickySession(req.Pool.Name, req.Session)
}

// stickyAccount returns the account req's session is bound to when it is among avail, else
// "" (no session, a new one, or its account is unavailable and the session will move: then
// moved is that account).
func (s *Scheduler) stickyAccount(ctx context.Context, req Request, avail []Account, now time.Time) (acct, moved string) {
	key := s.stickyKey(req)
	if key == "" {
		return "", ""
	}
	ttl := req.Pool.StickyTTL
	has := func(id string) bool { return slices.ContainsFunc(avail, func(a Account) bool { return a.ID == id }) }
	if b, ok := s.stickies.get(key, now); ok && has(b.account) {
		if s.stickies.touch(key, now, ttl/4) {
			go s.expire(context.WithoutCancel(ctx), key, ttl)
		}
		return b.account, ""
	}
	// No fresh copy, or its account is parked here: Redis decides (another sidecar may have
	// moved the session already). The EXPIRE keeps a live binding alive in the same trip.
	pipe := s.rdb.Pipeline()
	get := pipe.Get(ctx, key)
	pipe.Expire(ctx, key, ttl)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		if ctx.Err() == nil {
			s.log.Warn("cannot read sticky session; treating it as new", "error", err)
		}
		return "", ""
	}
	acct = get.Val()
	if acct == "" {
		s.stickies.forget(key)
		return "", ""
	}
	s.stickies.put(key, acct, now, ttl)
	if !has(acct) {
		return "", acct
	}
	return acct, ""
}

// expire refreshes the Redis TTL of a sticky binding in use, off the request path.
func (s *Scheduler) expire(ctx context.Context, key string, ttl time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.rdb.Expire(ctx, key, ttl).Err(); err != nil {
		s.log.Warn("cannot refresh sticky session TTL", "error", err)
	}
}

// Bind records that req's session is served by account, for the pool's sticky TTL, in
// Redis and in this sidecar's copy.
func (s *Scheduler) Bind(ctx context.Context, req Request, account string) {
	key := s.stickyKey(req)
	if key == "" {
		return
	}
	s.stickies.put(key, account, s.now(), req.Pool.StickyTTL)
	if err := s.rdb.Set(ctx, key, account, req.Pool.StickyTTL).Err(); err != nil && ctx.Err() == nil {
		s.log.Warn("cannot record sticky session", "account", account, "error", err)
	}
}
