package metrics

import (
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkHotPath measures the metric operations the sidecar does on every relayed
// request, as sidecar/proxy.go does them, and reports each case as a ratio of a bare
// atomic add measured first in the same run. per_request is one request's whole share:
// the request counter looked up by route and status, the upstream-latency histogram by
// route, the active-streams gauge up and down, and the five pre-resolved token counters.
// atomicAddBaseline measures a bare atomic add as b's first sub-benchmark and returns the
// report a later sub-benchmark calls at its end: its time per op as a ratio of that add.
func atomicAddBaseline(b *testing.B) func(*testing.B) {
	var baseNs float64
	b.Run("baseline_atomic_add", func(b *testing.B) {
		var n atomic.Uint64
		for b.Loop() {
			n.Add(1)
		}
		baseNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	return func(b *testing.B) {
		if baseNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseNs, "x_atomic_add")
		}
	}
}

func BenchmarkHotPath(b *testing.B) {
	report := atomicAddBaseline(b)

	r := NewRegistry()
	requests := r.Counter("claude_relay_requests_total", "Requests answered, by route and status.", "route", "status")
	upstream := r.Histogram("claude_relay_upstream_response_seconds", "Upstream latency.", DefaultLatencyBuckets, "route")
	active := r.Gauge("claude_relay_active_streams", "Responses being relayed right now.").With()
	tokens := r.Counter("claude_relay_tokens_total", "Tokens relayed, by kind.", "kind")
	kinds := []*Counter{tokens.With("input"), tokens.With("output"), tokens.With("cache_write_5m"), tokens.With("cache_write_1h"), tokens.With("cache_read")}
	route, status := "messages", 200
	perRequest := func() {
		active.Inc()
		upstream.With(route).Observe(0.123)
		for _, k := range kinds {
			k.Add(40)
		}
		active.Dec()
		requests.With(route, strconv.Itoa(status)).Inc()
	}
	perRequest() // every series exists before the measurement, as after a sidecar's first request

	cases := []struct {
		name string
		f    func()
	}{
		{"resolved_counter_inc", func() { kinds[0].Inc() }},
		{"resolved_counter_add", func() { kinds[1].Add(40) }},
		{"resolved_gauge_inc_dec", func() { active.Inc(); active.Dec() }},
		{"histogram_with_observe", func() { upstream.With(route).Observe(0.123) }},
		{"requests_with_route_status_inc", func() { requests.With(route, strconv.Itoa(status)).Inc() }},
		{"per_request", perRequest},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.f()
			}
			report(b)
		})
	}
	b.Run("per_request_parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				perRequest()
			}
		})
		report(b)
	})
}
