package admincli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/claude-relay/claude-relay/config/configapi"
)

// adminHealth prints the control plane's own health: one row per component with its status
// and error, then each component's details.
func adminHealth(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	h, err := c.client.Health(ctx)
	if done, err := c.answered(f, h, err); done {
		return err
	}
	fmt.Fprintf(c.stdout, "status %s, version %s, up %ds, checked %s\n\n", h.Status, orDash(h.Version), h.Uptime, fmtTime(h.CheckedAt))
	names := slices.Sorted(maps.Keys(h.Components))
	rows := make([][]string, 0, len(names))
	for _, name := range names {
		comp := h.Components[name]
		rows = append(rows, []string{name, comp.Status, orDash(comp.Error)})
	}
	if err := c.table([]string{"COMPONENT", "STATUS", "ERROR"}, rows); err != nil {
		return err
	}
	for _, name := range names {
		if d := h.Components[name].Details; len(d) > 0 {
			fmt.Fprintf(c.stdout, "\n%s: %s\n", name, compactJSON(d))
		}
	}
	return nil
}

// healthState is a sidecar's health in one word for the sidecars table: "ok", "degraded",
// "warning" when a component warns (the control plane unreachable), or "-" when the
// sidecar reports none.
func healthState(h *configapi.Health) string {
	if h == nil {
		return "-"
	}
	if h.Status != "ok" {
		return h.Status
	}
	for _, comp := range h.Components {
		if comp.Status != "ok" {
			return "warning"
		}
	}
	return "ok"
}

// printHealthProblems lists a sidecar's components that are not ok, with their errors.
func (c *adminCLI) printHealthProblems(id string, h *configapi.Health) {
	if h == nil {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(h.Components)) {
		comp := h.Components[name]
		if comp.Status == "ok" {
			continue
		}
		fmt.Fprintf(c.stdout, "\n%s %s: %s", id, name, comp.Status)
		if comp.Error != "" {
			fmt.Fprintf(c.stdout, " (%s)", comp.Error)
		}
		fmt.Fprintln(c.stdout)
	}
}

// compactJSON prints details on one line; details that are not JSON are printed as they are.
func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
