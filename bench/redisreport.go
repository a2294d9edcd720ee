package main

import (
	"fmt"
	"io"
	"strings"
)

// writeRedisMarkdown prints, for each target with its own Redis, one row per phase: the
// target's CPU beside (b)'s, the Redis CPU, the ratios, and what Redis did per request.
func (res *results) writeRedisMarkdown(w io.Writer) {
	rp := res.target("revproxy")
	var rows []string
	estimated := false
	for _, t := range res.Targets {
		for _, p := range t.Phases {
			c := p.Redis
			if c == nil {
				continue
			}
			base := "—"
			if rp != nil {
				if b := rp.phase(p.Name); b != nil && b.CPUPerReqUS > 0 {
					base = fmt.Sprintf("%.1f", b.CPUPerReqUS)
				}
			}
			sent, trips := "not exported", "not exported"
			if c.Sent {
				sent, trips = fmt.Sprintf("%.2f", c.CommandsSent), fmt.Sprintf("%.2f", c.RoundTrips)
			}
			cmdTime := fmt.Sprintf("%.1f", c.CommandUS)
			if c.CommandUSEstimated {
				cmdTime, estimated = "≈"+cmdTime, true
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %d | %.1f | %s | %.1f | %.1f | %s | %s | %.2f | %.2f | %s | %s | %.2f | %s | %s |",
				label(t.Name), p.Name, p.Requests, p.CPUPerReqUS, base, c.CPUUS, p.ControlCPUUS,
				times(p.CPUVsRevproxy), times(p.WithRedisVsRevproxy),
				c.CommandsExecuted, c.InsideScripts, sent, trips, c.ReadEvents, cmdTime, topCommands(c.Top, 3)))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprint(w, "\n### Redis per request (each relay's own redis-server; every count is per request of the phase)\n\n")
	fmt.Fprintln(w, "| target | phase | requests | relay CPU (µs) | (b) CPU (µs) | Redis CPU (µs) | control plane CPU (µs) | relay ÷ (b) | (relay + Redis) ÷ (b) | commands executed | of them inside scripts | commands sent | round trips | Redis read events | command time (µs) | top commands by time: calls, µs |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rows {
		fmt.Fprintln(w, r)
	}
	fmt.Fprintln(w, "\nCommands executed and command time: INFO commandstats deltas (the harness's INFO taken out; the background work of the sidecar and its control plane during the phase included). Commands sent and round trips: the go-redis counters of the sidecar and the control plane (a script is one command; a pipeline or a lone command one round trip). Read events: Redis's total_reads_processed, one per round trip that arrives whole. Redis CPU: INFO cpu, used_cpu_sys + used_cpu_user.")
	if estimated {
		fmt.Fprintln(w, "\n≈: not exact. A command both sent by the relay and run inside scripts has its inner share of usec apportioned by calls, or the relay's sent counts are missing and script-inner time could not be taken out.")
	}
}

func times(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v)
}

// topCommands formats the first n commands as "evalsha 1.00, 36.1".
func topCommands(top []commandCost, n int) string {
	var parts []string
	for _, c := range top[:min(n, len(top))] {
		parts = append(parts, fmt.Sprintf("%s %.2f, %.1f", c.Name, c.Calls, c.US))
	}
	return strings.Join(parts, "; ")
}
