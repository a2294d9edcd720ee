package alerts

import (
	"context"
	"sort"
	"sync"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
)

// Destination is an alert block as `admin alerts` shows it: no URL, no secret.
type Destination struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Events      []string `json:"events,omitempty"`
	MinSeverity string   `json:"min_severity"`
	Cooldown    string   `json:"cooldown"`
	// WindowThreshold is the block's subscription_window threshold.
	WindowThreshold float64 `json:"window_threshold,omitempty"`
}

// Status is the body of GET /admin/alerts.
type Status struct {
	// Alerts are the configured destinations, by name.
	Alerts []Destination `json:"alerts"`
	// Pending counts the messages still to send.
	Pending int64 `json:"pending"`
	// Raised are the conditions alerted on now (their all-clear is still to come).
	Raised []Event `json:"raised"`
	// Messages are the newest messages, newest first, with their delivery status.
	Messages []Message `json:"messages"`
	// Events are the newest events, newest first.
	Events []Event `json:"events"`
}

// Status reports the configured destinations, what is raised, and the newest messages and
// events (up to n each).
func (s *Service) Status(ctx context.Context, n int64) (Status, error) {
	st := Status{Alerts: []Destination{}, Raised: []Event{}, Messages: []Message{}, Events: []Event{}}
	for name, a := range s.opts.Alerts() {
		st.Alerts = append(st.Alerts, Destination{Name: name, Kind: a.Kind, Events: a.Events, MinSeverity: a.MinSeverity, Cooldown: a.Cooldown, WindowThreshold: a.WindowThreshold})
	}
	sort.Slice(st.Alerts, func(i, j int) bool { return st.Alerts[i].Name < st.Alerts[j].Name })
	var err error
	if st.Pending, err = s.out.Pending(ctx); err != nil {
		return st, err
	}
	raised, err := s.out.Raised(ctx)
	if err != nil {
		return st, err
	}
	for _, e := range raised {
		st.Raised = append(st.Raised, e)
	}
	sort.Slice(st.Raised, func(i, j int) bool { return st.Raised[i].Time.Before(st.Raised[j].Time) })
	msgs, err := s.out.Messages(ctx, n)
	if err != nil {
		return st, err
	}
	st.Messages = append(st.Messages, msgs...)
	events, err := s.out.RecentEvents(ctx, n)
	if err != nil {
		return st, err
	}
	st.Events = append(st.Events, events...)
	return st, nil
}

// Snapshots decodes the configuration an envelope source serves, once per version.
type Snapshots struct {
	cur  func() *configapi.Envelope
	mu   sync.Mutex
	sha  string
	snap *config.Snapshot
}

// NewSnapshots follows cur (a control plane's Config.Current).
func NewSnapshots(cur func() *configapi.Envelope) *Snapshots { return &Snapshots{cur: cur} }

// Current returns the served snapshot; nil when none is (or it does not decode).
func (s *Snapshots) Current() *config.Snapshot {
	e := s.cur()
	if e == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.SHA256 != s.sha {
		snap, err := e.Snapshot()
		if err != nil {
			return s.snap
		}
		s.sha, s.snap = e.SHA256, snap
	}
	return s.snap
}

// Alerts returns the served snapshot's alert blocks.
func (s *Snapshots) Alerts() map[string]config.Alert {
	if snap := s.Current(); snap != nil {
		return snap.Alerts
	}
	return nil
}
