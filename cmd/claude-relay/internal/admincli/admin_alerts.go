package admincli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/claude-relay/claude-relay/controlplane/alerts"
)

// adminAlerts prints the alert destinations, what is raised now and the recent messages.
func adminAlerts(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	st, err := c.client.Alerts(ctx)
	if done, err := c.answered(f, st, err); done {
		return err
	}
	if len(st.Alerts) == 0 {
		fmt.Fprintln(c.stdout, "No alert blocks in the configuration served: events are recorded but sent nowhere (README: Alerts).")
	} else {
		rows := make([][]string, 0, len(st.Alerts))
		for _, a := range st.Alerts {
			events := "(all)"
			if a.Events != nil {
				events = strings.Join(a.Events, ",")
			}
			rows = append(rows, []string{a.Name, a.Kind, events, a.MinSeverity, a.Cooldown, strconv.FormatFloat(a.WindowThreshold, 'g', -1, 64)})
		}
		if err := c.table([]string{"ALERT", "DESTINATION", "EVENTS", "MIN SEVERITY", "COOLDOWN", "WINDOW THRESHOLD"}, rows); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.stdout, "\nRaised now (%d):\n", len(st.Raised))
	rows := make([][]string, 0, len(st.Raised))
	for _, e := range st.Raised {
		rows = append(rows, []string{e.Name, e.Severity, e.Subject, fmtTime(e.Time), firstLine(e.Summary)})
	}
	if err := c.table([]string{"EVENT", "SEVERITY", "SUBJECT", "SINCE", "SUMMARY"}, rows); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\nRecent messages (%d pending):\n", st.Pending)
	rows = rows[:0]
	for _, m := range st.Messages {
		what := m.Event
		if m.Resolved {
			what += " (resolved)"
		}
		rows = append(rows, []string{m.ID, m.Alert, what, fmt.Sprint(len(m.Events)), m.Status, fmt.Sprint(m.Attempts), fmtTime(m.Created), orDash(m.LastError)})
	}
	return c.table([]string{"ID", "ALERT", "EVENT", "SUBJECTS", "STATUS", "ATTEMPTS", "CREATED", "LAST ERROR"}, rows)
}

// adminAlertsTest sends a test message and fails (exit 1) when it did not arrive.
func adminAlertsTest(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
	m, err := c.client.TestAlert(ctx, args[0])
	if err != nil {
		return err
	}
	if f.json {
		if err := c.printJSON(m); err != nil {
			return err
		}
	} else if m.Status == alerts.StatusSent {
		fmt.Fprintf(c.stdout, "Test message %s sent to alert %s.\n", m.ID, m.Alert)
	}
	if m.Status != alerts.StatusSent {
		return fmt.Errorf("alert %s: the test message was not delivered: %s", m.Alert, m.LastError)
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
