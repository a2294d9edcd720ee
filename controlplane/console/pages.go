package console

import (
	"net/http"
	"sort"
	"sync"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// dashboardRefresh is how often the dashboard reloads itself, in seconds.
const dashboardRefresh = 30

// auditPageSize is how many audit entries one page shows.
const auditPageSize = 100

// dashboardData is the dashboard's data; a part the API could not give is nil, with the reason
// in Problems.
type dashboardData struct {
	Usage     *usageSummary
	States    []stateCount
	Accounts  int
	Attention []adminapi.Account
	Sidecars  *configapi.SidecarList
	Load      *relayLoad
	Health    *configapi.Health
	Config    *configapi.ConfigStatus
	Problems  []string
}

// stateCount is how many accounts are in one state.
type stateCount struct {
	State string
	Count int
}

// handleDashboard shows the usage of the last 24 hours (or 30 days) by model and its top keys,
// what the relay is doing now, the accounts at a glance, the sidecars and the control plane's
// health; it reloads itself. Its parts are read at once, each from its own API call.
func (c *Console) handleDashboard(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	ctx := r.Context()
	var d dashboardData
	var mu sync.Mutex
	problem := func(what string, err error) {
		if err != nil && !adminclient.IsNotFound(err) {
			mu.Lock()
			d.Problems = append(d.Problems, what+": "+apiMessage(err))
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	part := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	var accountNames map[string]string
	part(func() {
		u, err := dashboardUsage(ctx, s.api, dashboardSpan(r.URL.Query().Get("range"), c.now()))
		if err == nil {
			d.Usage = &u
		}
		problem("usage", err)
	})
	part(func() {
		accts, err := s.api.ListAccounts(ctx)
		if err == nil {
			d.Accounts, d.States, d.Attention = len(accts), countStates(accts), needAttention(accts)
			accountNames = make(map[string]string, len(accts))
			for _, a := range accts {
				accountNames[a.ID] = a.Name
			}
		}
		problem("accounts", err)
	})
	part(func() {
		sc, err := s.api.Sidecars(ctx)
		if err == nil {
			d.Sidecars, d.Load = &sc, loadOf(sc.Sidecars)
		}
		problem("sidecars", err)
	})
	part(func() {
		h, err := s.api.Health(ctx)
		if err == nil {
			d.Health = &h
		}
		problem("health", err)
	})
	part(func() {
		cs, err := s.api.ConfigStatus(ctx)
		if err == nil {
			d.Config = &cs
		}
		problem("configuration", err)
	})
	wg.Wait()
	if d.Usage != nil {
		nameAccounts(d.Usage.AccountCharts, accountNames)
	}
	sort.Strings(d.Problems)
	v := s.view("Dashboard", "dashboard")
	v.Refresh, v.Data = dashboardRefresh, d
	c.render(w, r, http.StatusOK, "dashboard", v)
}

// relayLoad is the sidecars' load added up: what the relay is doing now.
type relayLoad struct {
	InFlight, Streams int64
	// Reporting counts the sidecars whose load is current; Stale those whose last report is
	// too old to count (they may be gone); Silent those that reported none.
	Reporting, Stale, Silent int
}

// loadOf adds up the current load reports of the sidecars.
func loadOf(list []configapi.Sidecar) *relayLoad {
	var l relayLoad
	for _, sc := range list {
		switch {
		case sc.Load == nil:
			l.Silent++
		case sc.Load.Stale:
			l.Stale++
		default:
			l.Reporting++
			l.InFlight += sc.Load.InFlight
			l.Streams += sc.Load.Streams
		}
	}
	return &l
}

func countStates(accts []adminapi.Account) []stateCount {
	n := map[string]int{}
	for _, a := range accts {
		n[a.Status.State]++
	}
	out := make([]stateCount, 0, len(n))
	for st, k := range n {
		out = append(out, stateCount{State: st, Count: k})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].State < out[j].State })
	return out
}

// needAttention are the accounts not active or not schedulable.
func needAttention(accts []adminapi.Account) []adminapi.Account {
	var out []adminapi.Account
	for _, a := range accts {
		if a.Status.State != adminapi.AccountActive || !a.Schedulable || len(a.Parked) > 0 {
			out = append(out, a)
		}
	}
	return out
}

// configData is the configuration page's data.
type configData struct {
	Status   configapi.ConfigStatus
	Sidecars configapi.SidecarList
}

// handleConfig shows the served configuration, the last refused edit and each sidecar's version.
func (c *Console) handleConfig(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	v := s.view("Configuration", "config")
	var d configData
	var err error
	d.Status, err = s.api.ConfigStatus(r.Context())
	if err == nil {
		d.Sidecars, err = s.api.Sidecars(r.Context())
	}
	if adminclient.IsNotFound(err) {
		v.Notice = "This control plane does not distribute a configuration to sidecars."
		c.render(w, r, http.StatusOK, "error", v)
		return
	}
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	v.Data = d
	c.render(w, r, http.StatusOK, "config", v)
}

// auditData is one page of the audit log.
type auditData struct {
	Entries []adminapi.AuditEntry
	Next    string
	First   bool
}

// handleAudit shows the audit log, newest first.
func (c *Console) handleAudit(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	v := s.view("Audit log", "audit")
	before := r.URL.Query().Get("before")
	list, err := s.api.Audit(r.Context(), before, auditPageSize)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	v.Data = auditData{Entries: list.Entries, Next: list.NextCursor, First: before == ""}
	c.render(w, r, http.StatusOK, "audit", v)
}
