package sched_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/sidecar/sched"
	"github.com/claude-relay/claude-relay/store"
)

func TestReadWindowsTakesObservedFormatsAndIgnoresWhatItCannotRead(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name     string
		hdr      map[string]string
		ok       bool
		u5, u7   float64 // -1: window absent
		reset5h  time.Time
		status5h string
		status   string
		claim    string
	}{
		{name: "API-key account: none", hdr: map[string]string{"anthropic-ratelimit-requests-remaining": "49"}, ok: false},
		{name: "unix seconds", hdr: map[string]string{
			"anthropic-ratelimit-unified-status": "allowed_warning", "anthropic-ratelimit-unified-representative-claim": "five_hour",
			"anthropic-ratelimit-unified-5h-utilization": "0.7370692663445869", "anthropic-ratelimit-unified-5h-reset": "1800003600",
			"anthropic-ratelimit-unified-5h-status": "allowed", "anthropic-ratelimit-unified-7d-utilization": "0.3"},
			ok: true, u5: 0.7370692663445869, u7: 0.3, reset5h: time.Unix(1_800_003_600, 0), status5h: "allowed", status: "allowed_warning", claim: "five_hour"},
		{name: "RFC 3339 reset", hdr: map[string]string{"anthropic-ratelimit-unified-5h-utilization": "1.04", "anthropic-ratelimit-unified-5h-reset": "2027-01-15T10:00:00Z"},
			ok: true, u5: 1.04, u7: -1, reset5h: time.Date(2027, 1, 15, 10, 0, 0, 0, time.UTC)},
		{name: "7-day only", hdr: map[string]string{"anthropic-ratelimit-unified-7d-utilization": "0"}, ok: true, u5: -1, u7: 0},
		{name: "not numbers", hdr: map[string]string{"anthropic-ratelimit-unified-5h-utilization": "lots", "anthropic-ratelimit-unified-7d-utilization": "NaN"}, ok: false},
		{name: "negative", hdr: map[string]string{"anthropic-ratelimit-unified-5h-utilization": "-0.1"}, ok: false},
		{name: "bad reset keeps the utilization", hdr: map[string]string{"anthropic-ratelimit-unified-5h-utilization": "0.2", "anthropic-ratelimit-unified-5h-reset": "soon"},
			ok: true, u5: 0.2, u7: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.hdr {
				h.Set(k, v)
			}
			w, ok := sched.ReadWindows(h, now)
			if ok != tt.ok {
				t.Fatalf("ok: got %v, want %v (%+v)", ok, tt.ok, w)
			}
			if !ok {
				return
			}
			if tt.u5 < 0 != (w.FiveHour == nil) || (w.FiveHour != nil && (w.FiveHour.Utilization != tt.u5 || !w.FiveHour.Reset.Equal(tt.reset5h) || w.FiveHour.Status != tt.status5h)) {
				t.Errorf("5h: got %+v, want %v until %v %q", w.FiveHour, tt.u5, tt.reset5h, tt.status5h)
			}
			if tt.u7 < 0 != (w.SevenDay == nil) || (w.SevenDay != nil && w.SevenDay.Utilization != tt.u7) {
				t.Errorf("7d: got %+v, want %v", w.SevenDay, tt.u7)
			}
			if w.Status != tt.status || w.Claim != tt.claim || !w.ObservedAt.Equal(now) {
				t.Errorf("got status %q claim %q at %v, want %q %q %v", w.Status, w.Claim, w.ObservedAt, tt.status, tt.claim, now)
			}
		})
	}
}

func TestReadWindowsAllocatesNothingWithoutUnifiedHeaders(t *testing.T) {
	h := http.Header{"Content-Type": {"text/event-stream"}, "Request-Id": {"req_1"}}
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { sched.ReadWindows(h, now) }); n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
}

// BenchmarkSchedulingCostOfWindowsAndCaps measures what windows and caps add to one request's
// scheduling on an account that has neither (an API-key account): Plan, AcquireCapacity,
// Observe of a typical answer's headers and the releases, against Plan and Acquire alone,
// in the same run. The ratio should stay near 1: such an account pays no Redis work and no
// allocation for the new features. It also reports Observe of a subscription answer.
func BenchmarkSchedulingCostOfWindowsAndCaps(b *testing.B) {
	s := sched.New(nil, store.NewSchema("bench:"), sched.Options{})
	pool := &config.PoolRT{Name: "p", Strategy: config.StrategyLeastLoaded, StopAtUtilization: 0.9}
	accts := []sched.Account{{ID: "a", Priority: 1}, {ID: "b", Priority: 1}, {ID: "c", Priority: 2}}
	req := sched.Request{Pool: pool, Model: "claude-sonnet-4-5"}
	plain := http.Header{"Content-Type": {"text/event-stream"}, "Request-Id": {"req_1"}, "Anthropic-Ratelimit-Requests-Remaining": {"49"}}
	sub := plain.Clone()
	for k, v := range map[string]string{"Anthropic-Ratelimit-Unified-5h-Utilization": "0.42", "Anthropic-Ratelimit-Unified-5h-Reset": "1800003600", "Anthropic-Ratelimit-Unified-7d-Utilization": "0.3", "Anthropic-Ratelimit-Unified-7d-Reset": "1800300000", "Anthropic-Ratelimit-Unified-Status": "allowed"} {
		sub.Set(k, v)
	}
	ctx := context.Background()
	base := func() {
		p, _ := s.Plan(ctx, req, accts)
		s.Acquire(p.Order[0])()
	}
	full := func(h http.Header) func() {
		return func() {
			p, _ := s.Plan(ctx, req, accts)
			lease, _, _ := s.AcquireCapacity(ctx, p.Order[0], store.AccountCaps{})
			release := s.Acquire(p.Order[0])
			s.Observe(ctx, req, p.Order[0], h)
			release()
			lease.Release(ctx, 100, 1000)
		}
	}
	timeIt := func(n int, f func()) time.Duration {
		t0 := time.Now()
		for range n {
			f()
		}
		return time.Since(t0) / time.Duration(n)
	}
	// The fastest of the runs of each: the machine is shared, and noise only adds time.
	tb, tf, ts := time.Hour, time.Hour, time.Hour
	for b.Loop() {
		tb = min(tb, timeIt(2000, base))
		tf = min(tf, timeIt(2000, full(plain)))
		ts = min(ts, timeIt(2000, full(sub)))
	}
	b.ReportMetric(float64(tb.Nanoseconds()), "plan-ns")
	b.ReportMetric(float64(tf.Nanoseconds()), "plan+caps+observe-ns")
	b.ReportMetric(float64(tf)/float64(tb), "no-windows/baseline")
	b.ReportMetric(float64(ts)/float64(tb), "subscription/baseline")
	b.ReportMetric(testing.AllocsPerRun(100, full(plain))-testing.AllocsPerRun(100, base), "extra-allocs")
}
