package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// ledgerResult is what the request ledger costs the relay: JSON c=32 phases of the same
// relay process, the ledger switched off and on in turn by editing its HCL (the control plane
// hot-reloads it), so the two sides share the process, its Redis and the machine's mood.
type ledgerResult struct {
	OffUS []float64 `json:"relay_cpu_us_ledger_off"` // relay CPU per request, each round
	OnUS  []float64 `json:"relay_cpu_us_ledger_on"`
	// XAddsOn is the ledger's XADDs per request in the "on" rounds (1: every request
	// recorded), the proof that the switch took.
	XAddsOn float64 `json:"xadds_per_request_on"`
	// AddedUS is median(on) − median(off); Ratio median(on) ÷ median(off).
	AddedUS float64 `json:"added_us"`
	Ratio   float64 `json:"ratio"`
}

// measureLedger alternates the ledger off and on in the relay t, rounds times each, with a
// JSON c=32 phase of d per round, and leaves it off.
func measureLedger(t *target, configDir string, d time.Duration, rounds int) (*ledgerResult, error) {
	r := &ledgerResult{}
	var xadds, onRequests, offXAdds float64
	for i := range 2 * rounds {
		on := i%2 == 1
		hcl := benchHCL
		if on {
			hcl += ledgerHCL
		}
		if err := applyHCL(t, configDir, hcl); err != nil {
			return nil, err
		}
		closedLoop(t, 8, d/6, smallBody, "", false) // settle after the swap
		p := closedLoop(t, 32, d, smallBody, "", false)
		if p.Requests == 0 || p.Errors > 0 {
			return nil, fmt.Errorf("ledger round %d: %d requests, %d errors", i, p.Requests, p.Errors)
		}
		us := float64(p.CPU.Microseconds()) / float64(p.Requests)
		x := phaseCalls(p, "xadd")
		if !on {
			r.OffUS = append(r.OffUS, us)
			offXAdds += x
			continue
		}
		r.OnUS = append(r.OnUS, us)
		xadds += x * float64(p.Requests)
		onRequests += float64(p.Requests)
	}
	if err := applyHCL(t, configDir, benchHCL); err != nil {
		return nil, err
	}
	if onRequests > 0 {
		r.XAddsOn = xadds / onRequests
	}
	if r.XAddsOn < 0.9 || offXAdds > 0.1 {
		return nil, fmt.Errorf("the switch did not take: %.2f XADDs per request with the ledger on, %.2f with it off", r.XAddsOn, offXAdds)
	}
	off, on := median(r.OffUS), median(r.OnUS)
	r.AddedUS = on - off
	if off > 0 {
		r.Ratio = on / off
	}
	return r, nil
}

// phaseCalls is how many times per request Redis ran command in phase p.
func phaseCalls(p phase, command string) float64 {
	if p.Redis == nil {
		return 0
	}
	return p.Redis.Calls[command]
}

// applyHCL writes the relay's configuration and waits until its control plane serves a new
// snapshot (none when the file already says so), then a moment for the sidecar's long-poll to apply it.
func applyHCL(t *target, configDir, hcl string) error {
	path := filepath.Join(configDir, "bench.hcl")
	if cur, err := os.ReadFile(path); err == nil && string(cur) == hcl {
		return nil
	}
	before, err := configVersion(t.controlURL)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(hcl), 0o644); err != nil {
		return err
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		v, err := configVersion(t.controlURL)
		if err == nil && v != before {
			time.Sleep(300 * time.Millisecond)
			return nil
		}
	}
	return fmt.Errorf("the control plane did not publish the edited bench.hcl within 15 s")
}

// configVersion reads claude_relay_config_version from the control plane's /metrics.
func configVersion(base string) (float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("control plane metrics: %w", err)
	}
	defer resp.Body.Close()
	return scanGauge(resp.Body, "claude_relay_config_version")
}

// scanGauge finds an unlabelled series in a Prometheus text page.
func scanGauge(r io.Reader, name string) (float64, error) {
	var v float64
	found := false
	err := eachSample(r, func(n, labels string, x float64) {
		if n == name && labels == "" {
			v, found = x, true
		}
	})
	if err == nil && !found {
		err = fmt.Errorf("%s not exported", name)
	}
	return v, err
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
