package alerts

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Event is one thing an operator should hear about, or its all-clear (Resolved).
type Event struct {
	// ID is the event's stream entry id; empty until the event is recorded.
	ID string `json:"id,omitempty"`
	// Name is one of the config.Event* names.
	Name string `json:"name"`
	// Severity is info, warning or critical; an all-clear carries its raise's severity so
	// that it reaches the destinations the raise reached.
	Severity string `json:"severity"`
	// Subject is what the event is about: an account id, a key id, a sidecar id, a plugin.
	Subject string `json:"subject"`
	// Summary says what happened, in one line a person can act on. It never holds a secret.
	Summary  string    `json:"summary"`
	Resolved bool      `json:"resolved,omitempty"`
	Time     time.Time `json:"time"`
	// Threshold is set on subscription_window events: the window share they were raised
	// at. Only alert blocks with that window_threshold receive them (and their all-clear).
	Threshold float64 `json:"threshold,omitempty"`
}

// condition names the state an event raises or clears: its name and subject, and its
// threshold when it has one (one account can be above 0.8 for one block and not yet above
// 0.9 for another).
func (e Event) condition() string {
	if e.Threshold != 0 {
		return e.Name + "|" + e.Subject + "|" + strconv.FormatFloat(e.Threshold, 'g', -1, 64)
	}
	return e.Name + "|" + e.Subject
}

// Message statuses.
const (
	// StatusPending: gathering events or waiting for its next attempt.
	StatusPending = "pending"
	// StatusSent: the destination accepted it.
	StatusSent = "sent"
	// StatusFailed: undeliverable after every attempt (or its alert block is gone); kept
	// for `admin alerts`.
	StatusFailed = "failed"
)

// Message is what one destination receives: one or more events of one name, coalesced.
type Message struct {
	ID       string    `json:"id"`
	Alert    string    `json:"alert"`
	Event    string    `json:"event"`
	Severity string    `json:"severity"`
	Resolved bool      `json:"resolved,omitempty"`
	Events   []Event   `json:"events"`
	Created  time.Time `json:"created"`
	// Due is when it is (next) attempted.
	Due       time.Time  `json:"due"`
	Status    string     `json:"status"`
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error,omitempty"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
}

// pairKey names the (alert, event, resolved) pair cooldowns and coalescing apply to.
func pairKey(alert, event string, resolved bool) string {
	k := alert + "|" + event
	if resolved {
		k += "|resolved"
	}
	return k
}

// add puts an event in the message, keeping its severity the highest of its events.
func (m *Message) add(e Event) {
	m.Events = append(m.Events, e)
	if severityRank(e.Severity) > severityRank(m.Severity) {
		m.Severity = e.Severity
	}
}

// maxLines bounds the events a message lists, so that it stays within every service's
// message size (WeCom's text is 2048 bytes).
const maxLines = 20

// Title is the message's first line.
func (m *Message) Title() string {
	what := fmt.Sprintf("%s (%s)", m.Event, m.Severity)
	if m.Resolved {
		what = "resolved: " + m.Event
	}
	if n := len(m.Events); n != 1 {
		return fmt.Sprintf("[claude-relay] %s: %d subjects", what, n)
	}
	return fmt.Sprintf("[claude-relay] %s: %s", what, m.Events[0].Subject)
}

// Text is the message as plain text: the title, then one line per event.
func (m *Message) Text() string {
	var b strings.Builder
	b.WriteString(m.Title())
	for i, e := range m.Events {
		if i == maxLines {
			fmt.Fprintf(&b, "\n… and %d more (claude-relay admin alerts)", len(m.Events)-maxLines)
			break
		}
		line := fmt.Sprintf("\n- %s: %s", e.Subject, e.Summary)
		if len(line) > 300 {
			line = line[:297] + "…"
		}
		b.WriteString(line)
	}
	return b.String()
}
