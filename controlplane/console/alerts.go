package console

import (
	"net/http"
	"net/url"

	"github.com/claude-relay/claude-relay/controlplane/adminclient"
	"github.com/claude-relay/claude-relay/controlplane/alerts"
)

// handleAlerts shows the alert destinations, what is raised now, the newest messages with
// their delivery status and the newest events (GET /admin/alerts).
func (c *Console) handleAlerts(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	v := s.view("Alerts", "alerts")
	st, err := s.api.Alerts(r.Context())
	if adminclient.IsNotFound(err) {
		v.Notice = "This control plane sends no alerts: its configuration has no alert blocks (see README, Alerts)."
		c.render(w, r, http.StatusOK, "error", v)
		return
	}
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	if q := r.URL.Query(); q.Get("tested") != "" {
		v.Notice, v.Error = testedNotice(q.Get("tested"), q.Get("status"))
	}
	v.Data = st
	c.render(w, r, http.StatusOK, "alerts", v)
}

// testedNotice says how a test message went, from the redirect's fixed words.
func testedNotice(name, status string) (notice, failure string) {
	switch status {
	case alerts.StatusSent:
		return "A test message was sent to " + name + ".", ""
	case alerts.StatusFailed:
		return "", "The test message to " + name + " failed: see its delivery below."
	default:
		return "A test message to " + name + " is queued.", ""
	}
}

// handleTestAlert sends a test message to one destination (POST /admin/alerts/{name}/test).
func (c *Console) handleTestAlert(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	name := r.PathValue("name")
	m, err := s.api.TestAlert(r.Context(), name)
	if err != nil {
		c.fail(w, r, s.view("Alerts", "alerts"), err)
		return
	}
	http.Redirect(w, r, Prefix+"alerts?"+url.Values{"tested": {name}, "status": {m.Status}}.Encode(), http.StatusSeeOther)
}
