// Package health runs a process's component checks and serves them: the public GET /health
// (statuses only) and the operators' report (errors and details), for every process (control
// plane, sidecar, dev).
package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/claude-relay/claude-relay/config/configapi"
)

// timeout bounds every component check.
const timeout = 2 * time.Second

// Check is one component of GET /health.
type Check struct {
	Name string
	// Check returns nil when the component is ok. Any other error fails the service (503)
	// and shows as "error" on the public /health, unless it is a *Problem, which
	// says what the public answer may show and whether the service still works.
	Check func(ctx context.Context) error
	// Info, when set, adds details about the component to the operators' report (the
	// admin API, never the public /health); it must be fast and safe for concurrent use.
	Info func() any
}

// Problem is a check's error that says what the public /health may show about it. The
// public answer is read by anyone who can reach the port, so it never carries Err's text
// (addresses, paths, upstream errors): those go to operators through the admin API.
type Problem struct {
	// Public is a short status text that names nothing internal: "unreachable", "no
	// configuration applied".
	Public string
	// Warning marks a problem the service works through: the public answer stays 200 and
	// "ok", and the component shows Public alone (a sidecar serving its saved
	// configuration while the control plane is unreachable).
	Warning bool
	// Err is the full error, for operators.
	Err error
}

// Error implements error with the full text.
func (p *Problem) Error() string {
	if p.Err == nil {
		return p.Public
	}
	return p.Err.Error()
}

// Unwrap returns Err.
func (p *Problem) Unwrap() error { return p.Err }

// componentStatus is what the public /health shows for a check's result: "ok", a warning's
// public text, "error", or "error: " and a failure's public text.
func componentStatus(err error) (status string, failed bool) {
	if err == nil {
		return "ok", false
	}
	var p *Problem
	if !errors.As(err, &p) {
		return "error", true
	}
	if p.Warning {
		if p.Public == "" {
			return "warning", false
		}
		return p.Public, false
	}
	if p.Public == "" {
		return "error", true
	}
	return "error: " + p.Public, true
}

// Report runs the checks concurrently, each bounded by a 2 s deadline, and returns the
// operators' report: every component's public status with its full error and, from Info,
// its details.
func Report(ctx context.Context, version string, started time.Time, checks []Check) configapi.Health {
	return run(ctx, version, started, checks, true)
}

func run(ctx context.Context, version string, started time.Time, checks []Check, details bool) configapi.Health {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	now := time.Now()
	h := configapi.Health{
		Status:     "ok",
		Version:    version,
		Uptime:     int64(now.Sub(started).Seconds()),
		CheckedAt:  now.UTC(),
		Components: make(map[string]configapi.Component, len(checks)),
	}
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(checks))
	for i, hc := range checks {
		go func() { results <- result{i, hc.Check(ctx)} }()
	}
	for range checks {
		res := <-results
		hc := checks[res.i]
		status, failed := componentStatus(res.err)
		if failed {
			h.Status = "degraded"
		}
		c := configapi.Component{Status: status}
		if details {
			if res.err != nil {
				c.Error = res.err.Error()
			}
			if hc.Info != nil {
				if b, err := json.Marshal(hc.Info()); err == nil {
					c.Details = b
				}
			}
		}
		h.Components[hc.Name] = c
	}
	return h
}

// publicHealth is the body of the public GET /health, in the deployment contract's shape.
type publicHealth struct {
	Status     string            `json:"status"`
	Version    string            `json:"version"`
	Uptime     int64             `json:"uptime"`
	Components map[string]string `json:"components"`
}

// Handler serves the public GET /health in the deployment contract's shape,
// {"status":"ok","version":…,"uptime":…,"components":{"redis":"ok",…}}, with each
// component's status only (see componentStatus). A failing component answers 503 with
// "status":"degraded"; a warning does not. Errors and details are for operators:
// Report, served by the admin API.
func Handler(version string, started time.Time, checks []Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := run(r.Context(), version, started, checks, false)
		body := publicHealth{Status: h.Status, Version: h.Version, Uptime: h.Uptime, Components: make(map[string]string, len(h.Components))}
		for name, c := range h.Components {
			body.Components[name] = c.Status
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if body.Status != "ok" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body) // a client gone away is not our problem
	})
}
