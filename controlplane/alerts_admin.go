package controlplane

import (
	"errors"
	"net/http"

	"github.com/claude-relay/claude-relay/controlplane/alerts"
)

// recentAlerts is how many messages and events GET /admin/alerts lists.
const recentAlerts = 50

// handleListAlerts serves GET /admin/alerts: the configured destinations (no URL, no
// secret), what is raised now, and the newest messages with their delivery status and the
// newest events.
func (s *Server) handleListAlerts(w http.ResponseWriter, r *http.Request) {
	st, err := s.alerts.Status(r.Context(), recentAlerts)
	if err != nil {
		s.writeStoreError(w, r, err, "alerts")
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// handleTestAlert serves POST /admin/alerts/{name}/test: a test message sent now to that
// destination, answered with the message and its status (sent, or failed with the error):
// the request succeeded either way.
func (s *Server) handleTestAlert(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	m, err := s.alerts.Test(r.Context(), name)
	switch {
	case errors.Is(err, alerts.ErrUnknownAlert):
		writeError(w, http.StatusNotFound, errNotFound, "no alert block named "+name+" in the configuration served", nil)
		return
	case err != nil:
		s.writeStoreError(w, r, err, "alerts")
		return
	}
	s.auditLog(r, "alert.test", name, "status", m.Status)
	writeJSON(w, http.StatusOK, m)
}
