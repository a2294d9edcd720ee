package sched

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/claude-relay/claude-relay/store"
)

// NearLimit is the state of an account parked because a subscription window is used beyond
// its pool's stop_at_utilization: it comes back when that window resets.
const NearLimit State = "near_limit"

// The anthropic-ratelimit-unified-* response headers of Claude subscription (OAuth)
// accounts, in canonical form. Anthropic does not document them; their names and formats
// are observed: utilization a fraction (0..1, a little over 1 once exhausted), reset unix
// seconds, status allowed, allowed_warning or rejected, and the representative claim the
// window that binds (five_hour, seven_day, seven_day_opus, …).
const (
	hdrUnifiedStatus = "Anthropic-Ratelimit-Unified-Status"
	hdrUnifiedClaim  = "Anthropic-Ratelimit-Unified-Representative-Claim"
	hdr5hUtil        = "Anthropic-Ratelimit-Unified-5h-Utilization"
	hdr5hReset       = "Anthropic-Ratelimit-Unified-5h-Reset"
	hdr5hStatus      = "Anthropic-Ratelimit-Unified-5h-Status"
	hdr7dUtil        = "Anthropic-Ratelimit-Unified-7d-Utilization"
	hdr7dReset       = "Anthropic-Ratelimit-Unified-7d-Reset"
	hdr7dStatus      = "Anthropic-Ratelimit-Unified-7d-Status"
)

// ReadWindows reads the subscription windows from a response's headers. It reports false
// when the response carries no window utilization (API-key accounts and most compatible
// endpoints send none), without allocating.
func ReadWindows(h http.Header, now time.Time) (store.Windows, bool) {
	u5, u7 := first(h, hdr5hUtil), first(h, hdr7dUtil)
	if u5 == "" && u7 == "" {
		return store.Windows{}, false
	}
	w := store.Windows{Status: first(h, hdrUnifiedStatus), Claim: first(h, hdrUnifiedClaim), ObservedAt: now}
	w.FiveHour = readWindow(u5, first(h, hdr5hReset), first(h, hdr5hStatus))
	w.SevenDay = readWindow(u7, first(h, hdr7dReset), first(h, hdr7dStatus))
	if w.FiveHour == nil && w.SevenDay == nil {
		return store.Windows{}, false
	}
	return w, true
}

// first is h.Get for a canonical key, without canonicalising it again.
func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// readWindow parses one window; nil when its utilization is absent or not a number.
func readWindow(util, reset, status string) *store.Window {
	if util == "" {
		return nil
	}
	u, err := strconv.ParseFloat(util, 64)
	if err != nil || math.IsNaN(u) || math.IsInf(u, 0) || u < 0 {
		return nil
	}
	w := &store.Window{Utilization: u, Status: status}
	if n, err := strconv.ParseInt(reset, 10, 64); err == nil && n > 0 {
		w.Reset = time.Unix(n, 0).UTC()
	} else if t, err := time.Parse(time.RFC3339, reset); err == nil {
		w.Reset = t.UTC()
	}
	return w
}

// nearLimit returns the park a reading calls for under stop (the pool's
// stop_at_utilization): every window used to at least stop whose reset is still ahead, the
// account parked until the latest of their resets (each must free up before it can serve).
// A window with no reset time cannot say when it frees, so it does not park.
func nearLimit(w store.Windows, stop float64, now time.Time) (Park, bool) {
	if stop <= 0 {
		return Park{}, false
	}
	var p Park
	var reason string
	for _, x := range []struct {
		name string
		w    *store.Window
	}{{"5-hour", w.FiveHour}, {"7-day", w.SevenDay}} {
		if x.w == nil || x.w.Utilization < stop || !x.w.Reset.After(now) {
			continue
		}
		if reason != "" {
			reason += ", "
		}
		reason += fmt.Sprintf("%s window %.0f%% used", x.name, x.w.Utilization*100)
		if x.w.Reset.After(p.Until) {
			p.Until = x.w.Reset
		}
	}
	if reason == "" {
		return Park{}, false
	}
	p.State = NearLimit
	p.Status = http.StatusOK
	p.Reason = fmt.Sprintf("%s (the pool stops at %.0f%%)", reason, stop*100)
	return p, true
}

// Observe takes the subscription-window reading of an account's response (any status): it
// keeps the latest one to write to Redis with the next refresh (one HSET for every account
// read since, never on the request path), and parks the account near_limit when a window is
// used beyond the pool's stop_at_utilization. It returns the reading, false when the
// response had none.
func (s *Scheduler) Observe(ctx context.Context, req Request, account string, h http.Header) (store.Windows, bool) {
	now := s.now()
	w, ok := ReadWindows(h, now)
	if !ok {
		return store.Windows{}, false
	}
	s.wmu.Lock()
	s.windows[account] = w
	s.dirty[account] = struct{}{}
	s.wmu.Unlock()
	if req.Pool == nil {
		return w, true
	}
	p, park := nearLimit(w, req.Pool.StopAtUtilization, now)
	if !park {
		return w, true
	}
	p.Account = account
	s.mu.Lock()
	cur, held := s.parked[account]
	s.mu.Unlock()
	if held && cur.active(now) && (cur.Until.IsZero() || !cur.Until.Before(p.Until)) {
		return w, true // parked already, for at least as long
	}
	go func() {
		if err := s.ParkAccount(context.WithoutCancel(ctx), p); err != nil {
			s.log.Warn("cannot share account parking; this sidecar parks it alone", "account", account, "error", err)
		}
	}()
	return w, true
}

// Windows returns this sidecar's latest subscription-window reading of account.
func (s *Scheduler) Windows(account string) (store.Windows, bool) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	w, ok := s.windows[account]
	return w, ok
}

// flushWindows writes the readings taken since the last flush, in one HSET. A failed write
// keeps them for the next one (a newer reading of an account replaces its older one).
func (s *Scheduler) flushWindows(ctx context.Context) error {
	s.wmu.Lock()
	if len(s.dirty) == 0 {
		s.wmu.Unlock()
		return nil
	}
	fields := make([]any, 0, 2*len(s.dirty))
	for id := range s.dirty {
		fields = append(fields, id, s.windows[id].Encode())
	}
	clear(s.dirty)
	s.wmu.Unlock()
	if err := s.rdb.HSet(ctx, s.keys.AccountWindows(), fields...).Err(); err != nil {
		s.wmu.Lock()
		for i := 0; i < len(fields); i += 2 {
			s.dirty[fields[i].(string)] = struct{}{}
		}
		s.wmu.Unlock()
		return fmt.Errorf("write account windows: %w", err)
	}
	return nil
}
