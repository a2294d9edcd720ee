package alerts

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/store"
)

// Defaults of the sources.
const (
	// DefaultParkThreshold: a rate-limited or overloaded account is worth an alert only when
	// parked at least this long (a short 429 park is the relay working as designed).
	DefaultParkThreshold = 5 * time.Minute
	// DefaultBudgetThreshold is the share of a cost limit that raises budget_threshold.
	DefaultBudgetThreshold = 0.8
	// DefaultBudgetEvery is how often BudgetSource reads the keys' usage
	// (config.DefaultAlertBudgetInterval; CLAUDE_RELAY_ALERT_BUDGET_INTERVAL).
	DefaultBudgetEvery = config.DefaultAlertBudgetInterval
)

// reconcile raises every condition of the named event that holds now (by subject) and
// clears every raised one that no longer does. clearing turns a raised event into its
// all-clear.
func reconcile(ctx context.Context, o *Outbox, name string, now map[string]Event, clearing func(Event) Event) error {
	conds := make(map[string]Event, len(now))
	for s, e := range now {
		e.Name, e.Subject = name, s
		conds[e.condition()] = e
	}
	return reconcileConditions(ctx, o, name, conds, clearing)
}

// reconcileConditions is reconcile over events keyed by their condition (Name and Subject
// set), for sources whose conditions are more than a subject (subscription_window's
// thresholds).
func reconcileConditions(ctx context.Context, o *Outbox, name string, now map[string]Event, clearing func(Event) Event) error {
	raised, err := o.Raised(ctx)
	if err != nil {
		return err
	}
	conds := make([]string, 0, len(now))
	for c := range now {
		conds = append(conds, c)
	}
	sort.Strings(conds)
	for _, c := range conds {
		if _, ok := raised[c]; ok {
			continue
		}
		if _, err := o.Raise(ctx, now[c]); err != nil {
			return err
		}
	}
	for c, e := range raised {
		if e.Name != name {
			continue
		}
		if _, ok := now[c]; ok {
			continue
		}
		if _, err := o.Clear(ctx, clearing(e)); err != nil {
			return err
		}
	}
	return nil
}

func allClear(summary string) func(Event) Event {
	return func(e Event) Event {
		return Event{Name: e.Name, Subject: e.Subject, Severity: e.Severity, Summary: summary, Threshold: e.Threshold}
	}
}

// tamperEvery is how often ParkSource opens every account's credential to find records
// changed outside the admin API (one crypto call per account).
const tamperEvery = 30 * time.Second

// ParkOptions tunes ParkSource; zero values take the defaults.
type ParkOptions struct {
	// Threshold: a rate-limited or overloaded park this long or longer raises
	// account_parked (DefaultParkThreshold).
	Threshold time.Duration
	// Overloads overloaded (529) parks of one account within OverloadWindow raise
	// account_parked however short each is (DefaultOverloads, DefaultOverloadWindow).
	Overloads      int
	OverloadWindow time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ParkSource observes the parked accounts (which sidecars write): an account parked as
// unauthorized, blocked or failing, or rate limited or overloaded for at least the
// threshold, or overloaded repeatedly (opts.Overloads parks within opts.OverloadWindow),
// raises account_parked; its return to rotation (and, for the repeated overloads, fewer of
// them within the window) clears it. Every 30 s it also looks for tampered accounts (a
// record changed outside the admin API, which sidecars skip), raised as account_parked too.
func ParkSource(st *store.Store, opts ParkOptions) Source {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Threshold = cmp.Or(opts.Threshold, DefaultParkThreshold)
	opts.Overloads = cmp.Or(opts.Overloads, DefaultOverloads)
	opts.OverloadWindow = cmp.Or(opts.OverloadWindow, DefaultOverloadWindow)
	var tampered map[string]string
	var checked time.Time
	return Source{Name: config.EventAccountParked, Every: time.Second, Observe: func(ctx context.Context, o *Outbox) error {
		parks, err := st.ParkedAccounts(ctx)
		if err != nil {
			return err
		}
		t := opts.Now()
		overloads, err := countOverloads(ctx, st, parks, t, opts.OverloadWindow)
		if err != nil {
			return err
		}
		var accts []store.Account
		if len(parks) > 0 || len(tampered) > 0 || len(overloads) > 0 || t.Sub(checked) >= tamperEvery {
			if accts, err = st.ListAccounts(ctx); err != nil {
				return err
			}
		}
		if t.Sub(checked) >= tamperEvery {
			if tampered, err = tamperedAccounts(ctx, st, accts); err != nil {
				return err
			}
			checked = t
		}
		names := make(map[string]string, len(accts))
		for _, a := range accts {
			names[a.ID] = a.Name
		}
		cur := map[string]Event{}
		for id, why := range tampered {
			cur[id] = Event{Severity: config.SeverityCritical, Summary: fmt.Sprintf("%q tampered: sidecars skip it: %s", names[id], why)}
		}
		parkEvents(cur, parks, names, t, opts.Threshold)
		for id, n := range overloads {
			if _, ok := cur[id]; !ok && n >= opts.Overloads {
				cur[id] = Event{Severity: config.SeverityWarning, Summary: fmt.Sprintf("%q overloaded (529) %d times in the last %s: the upstream keeps refusing it, however short each park", names[id], n, opts.OverloadWindow)}
			}
		}
		return reconcile(ctx, o, config.EventAccountParked, cur, allClear("back in rotation"))
	}}
}

// parkEvents adds an event for each account parked hard, or parked long, to cur (one per
// account, whatever families are parked).
func parkEvents(cur map[string]Event, parks []store.Parked, names map[string]string, t time.Time, threshold time.Duration) {
	for _, p := range parks {
		short := p.State == "rate_limited" || p.State == "overloaded"
		if _, ok := cur[p.Account]; ok || short && !p.Until.IsZero() && p.Until.Sub(t) < threshold {
			continue
		}
		sev := config.SeverityWarning
		if p.State == "unauthorized" || p.State == "blocked" {
			sev = config.SeverityCritical
		}
		summary := parkSummary(p)
		if n := names[p.Account]; n != "" {
			summary = fmt.Sprintf("%q %s", n, summary)
		}
		cur[p.Account] = Event{Severity: sev, Summary: summary}
	}
}

// tamperedAccounts finds the schedulable accounts whose credential does not open under
// their record (see store.ErrTampered).
func tamperedAccounts(ctx context.Context, st *store.Store, accts []store.Account) (map[string]string, error) {
	var ids []string
	for _, a := range accts {
		if a.Schedulable {
			ids = append(ids, a.ID)
		}
	}
	return st.TamperedAccounts(ctx, ids)
}

func parkSummary(p store.Parked) string {
	var b strings.Builder
	fmt.Fprintf(&b, "parked as %s", p.State)
	if p.Status != 0 {
		fmt.Fprintf(&b, " (%d)", p.Status)
	}
	if p.Family != "" {
		fmt.Fprintf(&b, " for %s models", p.Family)
	}
	if p.Until.IsZero() {
		b.WriteString(" until an operator clears it (claude-relay admin accounts)")
	} else {
		fmt.Fprintf(&b, " until %s", p.Until.UTC().Format(time.RFC3339))
	}
	if p.Reason != "" {
		fmt.Fprintf(&b, ": %s", p.Reason)
	}
	return b.String()
}

// RefreshSource observes OAuth accounts every 5 s: a failing token refresh raises
// oauth_refresh_failed; the next successful refresh clears it. The refresh job records its
// outcomes at once too (RecordRefresh); this catches what it could not record.
func RefreshSource(st *store.Store) Source {
	return Source{Name: config.EventOAuthRefreshFailed, Every: 5 * time.Second, Observe: func(ctx context.Context, o *Outbox) error {
		accts, err := st.ListAccounts(ctx)
		if err != nil {
			return err
		}
		cur := map[string]Event{}
		for _, a := range accts {
			if a.Type == store.AccountTypeClaudeOAuth && a.RefreshFailures > 0 {
				cur[a.ID] = refreshFailed(a)
			}
		}
		return reconcile(ctx, o, config.EventOAuthRefreshFailed, cur, allClear(refreshedSummary))
	}}
}

const refreshedSummary = "token refreshed"

func refreshFailed(a store.Account) Event {
	summary := fmt.Sprintf("%q: token refresh failed %d time(s): %s", a.Name, a.RefreshFailures, a.RefreshError)
	if a.RefreshRetryAt != nil {
		summary += fmt.Sprintf("; next try %s", a.RefreshRetryAt.UTC().Format(time.RFC3339))
	}
	return Event{Name: config.EventOAuthRefreshFailed, Subject: a.ID, Severity: config.SeverityCritical, Summary: summary}
}

// RecordRefresh records a token refresh's outcome as it happens: a failure raises
// oauth_refresh_failed, a success clears it.
func RecordRefresh(ctx context.Context, o *Outbox, a store.Account) error {
	var err error
	if a.RefreshFailures > 0 {
		_, err = o.Raise(ctx, refreshFailed(a))
	} else {
		_, err = o.Clear(ctx, Event{Name: config.EventOAuthRefreshFailed, Subject: a.ID, Summary: refreshedSummary})
	}
	return err
}

// SidecarSource observes the sidecar registry and this control plane's own health: a
// sidecar still refusing a snapshot raises sidecar_nack; a plugin component (plugin.auth,
// plugin.crypto) not ok in a sidecar or here raises plugin_failed.
func SidecarSource(list func(context.Context) ([]configapi.Sidecar, error), own func(context.Context) configapi.Health) Source {
	return Source{Name: config.EventSidecarNack, Every: 2 * time.Second, Observe: func(ctx context.Context, o *Outbox) error {
		sidecars, err := list(ctx)
		if err != nil {
			return err
		}
		nacks, plugins := map[string]Event{}, map[string]Event{}
		for _, sc := range sidecars {
			if sc.NackVersion > sc.Version && sc.LastError != "" {
				nacks[sc.ID] = Event{Severity: config.SeverityCritical,
					Summary: fmt.Sprintf("refused configuration version %d (runs %d): %s", sc.NackVersion, sc.Version, sc.LastError)}
			}
			pluginEvents(plugins, "sidecar "+sc.ID, sc.Health)
		}
		if own != nil {
			h := own(ctx)
			pluginEvents(plugins, "control plane", &h)
		}
		if err := reconcile(ctx, o, config.EventSidecarNack, nacks, allClear("runs the current configuration")); err != nil {
			return err
		}
		return reconcile(ctx, o, config.EventPluginFailed, plugins, allClear("healthy again"))
	}}
}

func pluginEvents(into map[string]Event, where string, h *configapi.Health) {
	if h == nil {
		return
	}
	for name, c := range h.Components {
		if !strings.HasPrefix(name, "plugin.") || c.Status == "ok" {
			continue
		}
		msg := c.Status
		if c.Error != "" {
			msg = c.Error
		}
		into[where+": "+name] = Event{Severity: config.SeverityCritical, Summary: msg}
	}
}

// ConfigReloads is a Config.OnReload hook: a refused reload raises config_refused for
// subject (this control plane's configuration directory), the next accepted one clears it.
// Every control plane may call it; the condition is recorded once.
func ConfigReloads(o *Outbox, subject string, log hclog.Logger) func(context.Context, bool, string) {
	return func(ctx context.Context, refused bool, text string) {
		var err error
		if refused {
			summary := strings.TrimSpace(text)
			if len(summary) > 600 {
				summary = summary[:600] + "… (claude-relay admin config status)"
			}
			_, err = o.Raise(ctx, Event{Name: config.EventConfigRefused, Severity: config.SeverityCritical, Subject: subject,
				Summary: "the edit was refused; the last good configuration is still served:\n" + summary})
		} else {
			_, err = o.Clear(ctx, Event{Name: config.EventConfigRefused, Subject: subject, Summary: "the configuration is valid again"})
		}
		if err != nil && log != nil && ctx.Err() == nil {
			log.Warn("cannot record the configuration alert", "error", err)
		}
	}
}
