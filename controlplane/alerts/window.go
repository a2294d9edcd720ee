package alerts

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/store"
)

// windowEvery is how often WindowSource reads the accounts' subscription windows (one
// HGETALL of AccountWindows, plus the account list when a reading is at a threshold).
const windowEvery = 2 * time.Second

// WindowSource observes the accounts' latest subscription-window readings (which sidecars
// write from the anthropic-ratelimit-unified-* headers): an account whose 5-hour or 7-day
// utilization is at or above an alert block's window_threshold raises subscription_window
// at that threshold; a reading below it, or the window's reset passing, clears it. Each
// distinct threshold of the blocks that want the event is its own condition, routed only to
// the blocks with that threshold; with no such block, config.DefaultAlertWindowThreshold
// (for `admin alerts`).
func WindowSource(st *store.Store, alerts func() map[string]config.Alert, now func() time.Time) Source {
	if now == nil {
		now = time.Now
	}
	return Source{Name: config.EventSubscriptionWindow, Every: windowEvery, Observe: func(ctx context.Context, o *Outbox) error {
		readings, err := st.AccountWindows(ctx)
		if err != nil {
			return err
		}
		thresholds := windowThresholds(alerts())
		t := now()
		type high struct {
			window string
			w      store.Window
		}
		highs := map[string]high{}
		for id, ws := range readings {
			for _, h := range []high{{"5h", deref(ws.FiveHour)}, {"7d", deref(ws.SevenDay)}} {
				if !h.w.Reset.IsZero() && !h.w.Reset.After(t) {
					continue // the window started afresh: the reading is of the last one
				}
				if h.w.Utilization >= thresholds[0] && h.w.Utilization > highs[id].w.Utilization {
					highs[id] = h
				}
			}
		}
		cur := map[string]Event{}
		if len(highs) > 0 {
			accts, err := st.ListAccounts(ctx)
			if err != nil {
				return err
			}
			for _, a := range accts {
				h, ok := highs[a.ID]
				if !ok {
					continue
				}
				for _, th := range thresholds {
					if h.w.Utilization < th {
						break
					}
					e := windowEvent(a, h.window, h.w, th)
					cur[e.condition()] = e
				}
			}
		}
		return reconcileConditions(ctx, o, config.EventSubscriptionWindow, cur, allClear("below the threshold again (lower use, or the window reset)"))
	}}
}

func deref(w *store.Window) store.Window {
	if w == nil {
		return store.Window{}
	}
	return *w
}

// windowThresholds returns the distinct window_threshold of the blocks that want
// subscription_window at any severity, lowest first.
func windowThresholds(alerts map[string]config.Alert) []float64 {
	seen := map[float64]bool{}
	var out []float64
	for _, a := range alerts {
		if a.Wants(config.EventSubscriptionWindow, config.SeverityCritical) && a.WindowThreshold > 0 && !seen[a.WindowThreshold] {
			seen[a.WindowThreshold] = true
			out = append(out, a.WindowThreshold)
		}
	}
	if len(out) == 0 {
		return []float64{config.DefaultAlertWindowThreshold}
	}
	sort.Float64s(out)
	return out
}

// windowEvent is an account's subscription_window event at threshold th: warning, critical
// when the window is used up (utilization 1 or more, or the upstream said rejected).
func windowEvent(a store.Account, window string, w store.Window, th float64) Event {
	sev := config.SeverityWarning
	if w.Utilization >= 1 || w.Status == "rejected" {
		sev = config.SeverityCritical
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%q: %s subscription window at %.0f%% (threshold %.0f%%)", a.Name, window, math.Floor(100*w.Utilization), 100*th)
	if !w.Reset.IsZero() {
		fmt.Fprintf(&b, "; resets %s", w.Reset.UTC().Format(time.RFC3339))
	}
	return Event{Name: config.EventSubscriptionWindow, Subject: a.ID, Severity: sev, Summary: b.String(), Threshold: th}
}
