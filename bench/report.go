package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// results is the JSON written to -out.
type results struct {
	Date         string         `json:"date"`
	GoVersion    string         `json:"go_version"`
	CPUs         int            `json:"cpus"`
	PhaseSeconds float64        `json:"phase_seconds"`
	NoFile       uint64         `json:"rlimit_nofile"`
	StreamLevels []int          `json:"stream_levels"`
	Targets      []targetResult `json:"targets"`
	Ratios       map[string]any `json:"relay_ratios,omitempty"`
	Ledger       *ledgerResult  `json:"ledger,omitempty"`
	Notes        []string       `json:"notes,omitempty"`
}

// targetResult is every metric of one target. Latencies are milliseconds.
type targetResult struct {
	Name          string  `json:"name"`
	P50C1         float64 `json:"latency_p50_c1_ms"`
	P99C1         float64 `json:"latency_p99_c1_ms"`
	P50C32        float64 `json:"latency_p50_c32_ms"`
	P99C32        float64 `json:"latency_p99_c32_ms"`
	ThroughputC32 float64 `json:"throughput_c32_rps"`
	TTFBP50C1     float64 `json:"stream_ttfb_p50_c1_ms"`
	TTFBP99C1     float64 `json:"stream_ttfb_p99_c1_ms"`
	TTFBP50C32    float64 `json:"stream_ttfb_p50_c32_ms"`
	TTFBP99C32    float64 `json:"stream_ttfb_p99_c32_ms"`
	CPUPerReqC1US float64 `json:"cpu_per_request_c1_us"`
	CPUPerReqUS   float64 `json:"cpu_per_request_us"` // at c=32
	RedisCPUC1US  float64 `json:"redis_cpu_per_request_c1_us,omitempty"`
	RedisCPUUS    float64 `json:"redis_cpu_per_request_us,omitempty"` // at c=32
	// LimitCallsPerPipeline is the relay's limit script calls per Redis pipeline at c=32
	// (from its /metrics): how well concurrent requests share round trips.
	LimitCallsPerPipeline float64        `json:"limit_calls_per_redis_pipeline,omitempty"`
	Phases                []phaseResult  `json:"phases"`
	Streams               []streamMetric `json:"streams"`
	Errors                int64          `json:"errors"`
}

// phaseResult is one load phase of a target: its CPU and, for the relay, its Redis cost,
// per request, with the ratios to (b) in the same phase.
type phaseResult struct {
	Name        string     `json:"name"`
	Concurrency int        `json:"concurrency"`
	Requests    int64      `json:"requests"`
	Seconds     float64    `json:"seconds"`
	CPUPerReqUS float64    `json:"cpu_per_request_us"`
	Redis       *redisCost `json:"redis,omitempty"`
	// ControlCPUUS is the relay's control plane's CPU per request (none of it on the
	// request path: configuration polls and background jobs).
	ControlCPUUS float64 `json:"control_plane_cpu_us,omitempty"`
	// CPUVsRevproxy is this target's CPU per request ÷ (b)'s in the same phase;
	// WithRedisVsRevproxy adds the Redis CPU per request to this target's first.
	CPUVsRevproxy       float64 `json:"cpu_vs_revproxy,omitempty"`
	WithRedisVsRevproxy float64 `json:"cpu_with_redis_vs_revproxy,omitempty"`
}

// The load phases every target runs, in this order.
var phaseNames = []string{"JSON c=1", "JSON c=32", "stream c=1", "stream c=32"}

func newPhaseResult(name string, conc int, p phase) phaseResult {
	r := phaseResult{Name: name, Concurrency: conc, Requests: p.Requests, Seconds: p.Elapsed.Seconds(), Redis: p.Redis}
	if p.Requests > 0 {
		r.CPUPerReqUS = float64(p.CPU.Microseconds()) / float64(p.Requests)
		r.ControlCPUUS = float64(p.CtlCPU.Microseconds()) / float64(p.Requests)
	}
	return r
}

func (t *targetResult) phase(name string) *phaseResult {
	for i := range t.Phases {
		if t.Phases[i].Name == name {
			return &t.Phases[i]
		}
	}
	return nil
}

type streamMetric struct {
	Open         int     `json:"open"`
	Wanted       int     `json:"wanted"`
	Errors       int64   `json:"errors"`
	KiBPerStream float64 `json:"rss_kib_per_stream"`
	OpenSeconds  float64 `json:"open_seconds"`
	// What the fake upstream carried with every stream open (Go proxies, HTTP/2 over TLS).
	UpstreamConns   int            `json:"upstream_conns,omitempty"`
	UpstreamStreams int            `json:"upstream_streams,omitempty"`
	UpstreamProtos  map[string]int `json:"upstream_conns_by_protocol,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// measure runs the latency, throughput and first-byte phases against t: small JSON
// requests and paced streams, each at concurrency 1 and 32.
func measure(t *target, d time.Duration) targetResult {
	r := targetResult{Name: t.name}
	closedLoop(t, 8, d/3, smallBody, "", false) // warm up connections and caches
	c1 := closedLoop(t, 1, d, smallBody, "", false)
	r.P50C1, r.P99C1 = ms(percentile(c1.Lat, .50)), ms(percentile(c1.Lat, .99))
	c32 := closedLoop(t, 32, d, smallBody, "", false)
	r.P50C32, r.P99C32 = ms(percentile(c32.Lat, .50)), ms(percentile(c32.Lat, .99))
	r.ThroughputC32 = float64(c32.Requests) / c32.Elapsed.Seconds()
	s1 := closedLoop(t, 1, d, streamBody, streamScript, true)
	r.TTFBP50C1, r.TTFBP99C1 = ms(percentile(s1.Lat, .50)), ms(percentile(s1.Lat, .99))
	s32 := closedLoop(t, 32, d, streamBody, streamScript, true)
	r.TTFBP50C32, r.TTFBP99C32 = ms(percentile(s32.Lat, .50)), ms(percentile(s32.Lat, .99))
	for i, p := range []phase{c1, c32, s1, s32} {
		r.Phases = append(r.Phases, newPhaseResult(phaseNames[i], []int{1, 32, 1, 32}[i], p))
	}
	if p := r.phase("JSON c=1"); p != nil {
		r.CPUPerReqC1US = p.CPUPerReqUS
		if p.Redis != nil {
			r.RedisCPUC1US = p.Redis.CPUUS
		}
	}
	if p := r.phase("JSON c=32"); p != nil {
		r.CPUPerReqUS = p.CPUPerReqUS
		if rc := p.Redis; rc != nil {
			r.RedisCPUUS = rc.CPUUS
			if rc.LimitPipelines > 0 {
				r.LimitCallsPerPipeline = rc.LimitCalls / rc.LimitPipelines
			}
		}
	}
	r.Errors = c1.Errors + c32.Errors + s1.Errors + s32.Errors
	return r
}

// measureStreams holds each level of open streams through t and adds the results to r. A
// short warm-up first brings a freshly started proxy to the state the latency phases leave.
func measureStreams(t *target, r *targetResult, levels []int, warmUp time.Duration) {
	r.Errors += closedLoop(t, 8, warmUp, smallBody, "", false).Errors
	for _, n := range levels {
		s := holdStreams(t, n, 60*time.Second)
		m := streamMetric{Open: s.Open, Wanted: s.Wanted, Errors: s.Errors, OpenSeconds: s.OpenTime.Seconds()}
		if s.Open > 0 && s.RSSOpen > 0 {
			m.KiBPerStream = float64(s.RSSOpen-s.RSSBefore) / 1024 / float64(s.Open)
		}
		if u := s.Upstream; u != nil {
			m.UpstreamConns, m.UpstreamStreams, m.UpstreamProtos = u.Conns, u.Streams, u.Protos
		}
		r.Streams = append(r.Streams, m)
		r.Errors += s.Errors
	}
}

func (res *results) target(name string) *targetResult {
	for i := range res.Targets {
		if res.Targets[i].Name == name {
			return &res.Targets[i]
		}
	}
	return nil
}

// computeRatios sets the relay's numbers against the direct call and the plain proxy, in the
// terms of the targets: added latency in ms, throughput and memory as ratios.
func (res *results) computeRatios() {
	relay, direct, rp := res.target("relay"), res.target("direct"), res.target("revproxy")
	res.phaseRatios(rp)
	if relay == nil {
		return
	}
	res.Ratios = map[string]any{}
	res.ledgerAndFloorRatios(relay)
	if direct != nil {
		res.Ratios["added_p50_c32_ms_vs_direct"] = relay.P50C32 - direct.P50C32
		res.Ratios["added_p99_c32_ms_vs_direct"] = relay.P99C32 - direct.P99C32
		res.Ratios["added_ttfb_p50_c1_ms_vs_direct"] = relay.TTFBP50C1 - direct.TTFBP50C1
		res.Ratios["added_ttfb_p50_c32_ms_vs_direct"] = relay.TTFBP50C32 - direct.TTFBP50C32
	}
	if rp != nil {
		res.Ratios["added_p50_c32_ms_vs_revproxy"] = relay.P50C32 - rp.P50C32
		res.Ratios["added_p99_c32_ms_vs_revproxy"] = relay.P99C32 - rp.P99C32
		if rp.ThroughputC32 > 0 {
			res.Ratios["throughput_c32_vs_revproxy"] = relay.ThroughputC32 / rp.ThroughputC32
		}
		if rp.CPUPerReqUS > 0 {
			res.Ratios["cpu_per_request_vs_revproxy"] = relay.CPUPerReqUS / rp.CPUPerReqUS
			res.Ratios["cpu_per_request_with_redis_vs_revproxy"] = (relay.CPUPerReqUS + relay.RedisCPUUS) / rp.CPUPerReqUS
		}
		if pool := res.target("revproxy-pool"); pool != nil {
			res.Ratios["added_p50_c32_ms_vs_revproxy_pool"] = relay.P50C32 - pool.P50C32
			if pool.ThroughputC32 > 0 {
				res.Ratios["throughput_c32_vs_revproxy_pool"] = relay.ThroughputC32 / pool.ThroughputC32
			}
			if open := res.target("relay-open"); open != nil {
				res.Ratios["no_limits_added_p50_c32_ms_vs_revproxy_pool"] = open.P50C32 - pool.P50C32
				if pool.ThroughputC32 > 0 {
					res.Ratios["no_limits_throughput_c32_vs_revproxy_pool"] = open.ThroughputC32 / pool.ThroughputC32
				}
			}
		}
		if open := res.target("relay-open"); open != nil {
			res.Ratios["no_limits_added_p50_c32_ms_vs_revproxy"] = open.P50C32 - rp.P50C32
			if rp.ThroughputC32 > 0 {
				res.Ratios["no_limits_throughput_c32_vs_revproxy"] = open.ThroughputC32 / rp.ThroughputC32
			}
			if rp.CPUPerReqUS > 0 {
				res.Ratios["no_limits_cpu_per_request_vs_revproxy"] = open.CPUPerReqUS / rp.CPUPerReqUS
			}
		}
		for i := range relay.Streams {
			if i < len(rp.Streams) && rp.Streams[i].KiBPerStream > 0 {
				res.Ratios[fmt.Sprintf("memory_per_stream_at_%d_vs_revproxy", relay.Streams[i].Wanted)] = relay.Streams[i].KiBPerStream / rp.Streams[i].KiBPerStream
			}
		}
	}
}

// phaseRatios sets each target's CPU per request, alone and with its Redis, as a ratio to
// (b)'s in the same phase.
func (res *results) phaseRatios(rp *targetResult) {
	if rp == nil {
		return
	}
	for i := range res.Targets {
		t := &res.Targets[i]
		if t.Name == rp.Name {
			continue
		}
		for j := range t.Phases {
			p := &t.Phases[j]
			b := rp.phase(p.Name)
			if b == nil || b.CPUPerReqUS <= 0 {
				continue
			}
			p.CPUVsRevproxy = p.CPUPerReqUS / b.CPUPerReqUS
			if p.Redis != nil {
				p.WithRedisVsRevproxy = (p.CPUPerReqUS + p.Redis.CPUUS) / b.CPUPerReqUS
			}
		}
	}
}

// writeMarkdown prints one row per metric, one column per target, then the relay's ratios.
func (res *results) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "\n## claude-relay benchmark (%s, %s, %d CPUs, %.0fs phases)\n\n", res.Date, res.GoVersion, res.CPUs, res.PhaseSeconds)
	fmt.Fprint(w, "| metric |")
	for _, t := range res.Targets {
		fmt.Fprintf(w, " %s |", label(t.Name))
	}
	fmt.Fprint(w, " relay ÷ (a) | relay ÷ (b) |\n|---|")
	for range res.Targets {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprint(w, "---:|---:|\n")
	direct, rp, relay := res.target("direct"), res.target("revproxy"), res.target("relay")
	row := func(name, unit string, get func(*targetResult) float64) {
		fmt.Fprintf(w, "| %s |", name)
		for i := range res.Targets {
			v := get(&res.Targets[i])
			if v == 0 && unit != "" {
				fmt.Fprint(w, " — |")
				continue
			}
			fmt.Fprintf(w, " %s |", format(v, unit))
		}
		fmt.Fprintf(w, " %s | %s |\n", ratio(relay, direct, get), ratio(relay, rp, get))
	}
	row("latency p50, c=1 (ms)", "ms", func(t *targetResult) float64 { return t.P50C1 })
	row("latency p99, c=1 (ms)", "ms", func(t *targetResult) float64 { return t.P99C1 })
	row("latency p50, c=32 (ms)", "ms", func(t *targetResult) float64 { return t.P50C32 })
	row("latency p99, c=32 (ms)", "ms", func(t *targetResult) float64 { return t.P99C32 })
	row("throughput, c=32 (req/s)", "rps", func(t *targetResult) float64 { return t.ThroughputC32 })
	row("stream TTFB p50, c=1 (ms)", "ms", func(t *targetResult) float64 { return t.TTFBP50C1 })
	row("stream TTFB p99, c=1 (ms)", "ms", func(t *targetResult) float64 { return t.TTFBP99C1 })
	row("stream TTFB p50, c=32 (ms)", "ms", func(t *targetResult) float64 { return t.TTFBP50C32 })
	row("stream TTFB p99, c=32 (ms)", "ms", func(t *targetResult) float64 { return t.TTFBP99C32 })
	row("proxy CPU per request, c=1 (µs)", "us", func(t *targetResult) float64 { return t.CPUPerReqC1US })
	row("proxy CPU per request, c=32 (µs)", "us", func(t *targetResult) float64 { return t.CPUPerReqUS })
	row("Redis CPU per request, c=1 (µs)", "us", func(t *targetResult) float64 { return t.RedisCPUC1US })
	row("Redis CPU per request, c=32 (µs)", "us", func(t *targetResult) float64 { return t.RedisCPUUS })
	row("proxy + Redis CPU per request, c=1 (µs)", "us", func(t *targetResult) float64 { return t.CPUPerReqC1US + t.RedisCPUC1US })
	row("proxy + Redis CPU per request, c=32 (µs)", "us", func(t *targetResult) float64 { return t.CPUPerReqUS + t.RedisCPUUS })
	for i, n := range res.StreamLevels {
		row(fmt.Sprintf("proxy RSS per open stream at %d (KiB)", n), "kib", func(t *targetResult) float64 {
			if i < len(t.Streams) {
				return t.Streams[i].KiBPerStream
			}
			return 0
		})
		row(fmt.Sprintf("streams open of %d", n), "", func(t *targetResult) float64 {
			if i < len(t.Streams) {
				return float64(t.Streams[i].Open)
			}
			return math.NaN() // not measured for this target
		})
		row(fmt.Sprintf("upstream connections at %d streams", n), "n", func(t *targetResult) float64 {
			if i < len(t.Streams) {
				return float64(t.Streams[i].UpstreamConns)
			}
			return 0
		})
	}
	row("errors (all phases)", "", func(t *targetResult) float64 { return float64(t.Errors) })
	if relay != nil {
		fmt.Fprintln(w, "\nRelay against the targets (added = relay − baseline):")
		for _, k := range sortedKeys(res.Ratios) {
			fmt.Fprintf(w, "- %s: %.3f\n", k, res.Ratios[k])
		}
	}
	if relay != nil && relay.LimitCallsPerPipeline > 0 {
		fmt.Fprintf(w, "\nThe relay's limit checks and charges at c=32 went to Redis %.2f calls per pipeline.\n", relay.LimitCallsPerPipeline)
	}
	res.writeLedgerAndFloor(w, relay)
	res.writeRedisMarkdown(w)
	fmt.Fprintln(w, "\nUpstream of the open-streams phase (counted by the fake upstream with every stream open):")
	for _, t := range res.Targets {
		for _, s := range t.Streams {
			if s.UpstreamConns == 0 {
				continue
			}
			fmt.Fprintf(w, "- %s at %d: upstream %s over TLS, %d connections for %d streams\n",
				label(t.Name), s.Wanted, protocols(s.UpstreamProtos), s.UpstreamConns, s.UpstreamStreams)
		}
	}
	if res.target("direct") != nil || res.target("nginx") != nil {
		fmt.Fprintln(w, "- direct and nginx: plain HTTP/1.1, one upstream connection per stream")
	}
	for _, n := range res.Notes {
		fmt.Fprintln(w, "\nNote:", n)
	}
}

// protocols lists connections by protocol, such as "HTTP/2.0" or "HTTP/2.0 ×40, HTTP/1.1 ×1".
func protocols(m map[string]int) string {
	if len(m) == 1 {
		for p := range m {
			return p
		}
	}
	var parts []string
	for _, p := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s ×%d", p, m[p]))
	}
	return strings.Join(parts, ", ")
}

func label(name string) string {
	switch name {
	case "direct":
		return "(a) direct"
	case "revproxy":
		return "(b) ReverseProxy"
	case "revproxy-pool":
		return "(b′) ReverseProxy + BufferPool"
	case "relay":
		return "(c) relay"
	case "relay-open":
		return "(c′) relay, key without limits"
	case "floor":
		return "(r) ReverseProxy + INCR/DECR in Redis"
	case "nginx":
		return "(d) nginx"
	}
	return name
}

func format(v float64, unit string) string {
	if math.IsNaN(v) {
		return "—"
	}
	switch unit {
	case "ms":
		return fmt.Sprintf("%.3f", v)
	case "rps", "us", "kib":
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func ratio(a, b *targetResult, get func(*targetResult) float64) string {
	if a == nil || b == nil || get(b) == 0 || math.IsNaN(get(a)) || math.IsNaN(get(b)) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", get(a)/get(b))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ledgerAndFloorRatios sets what the request ledger adds to the relay's CPU per request
// (on − off, µs, and their ratio) and the relay's Redis CPU per request against
// the floor's (two round trips per request, nothing else), at c=1 and c=32.
func (res *results) ledgerAndFloorRatios(relay *targetResult) {
	if l := res.Ledger; l != nil {
		res.Ratios["ledger_added_cpu_us_c32"] = l.AddedUS
		res.Ratios["ledger_cpu_per_request_vs_off_c32"] = l.Ratio
	}
	if f := res.target("floor"); f != nil {
		res.Ratios["redis_floor_us_c1"] = f.RedisCPUC1US
		res.Ratios["redis_floor_us_c32"] = f.RedisCPUUS
		if f.RedisCPUC1US > 0 {
			res.Ratios["relay_redis_vs_floor_c1"] = relay.RedisCPUC1US / f.RedisCPUC1US
		}
		if f.RedisCPUUS > 0 {
			res.Ratios["relay_redis_vs_floor_c32"] = relay.RedisCPUUS / f.RedisCPUUS
		}
	}
}

// writeLedgerAndFloor says in words what ledgerAndFloorRatios measured.
func (res *results) writeLedgerAndFloor(w io.Writer, relay *targetResult) {
	if relay == nil {
		return
	}
	if l := res.Ledger; l != nil {
		fmt.Fprintf(w, "\nThe request ledger, switched off and on in the same relay (JSON c=32, %d rounds each): %+.1f µs of relay CPU per request (median on %.1f vs off %.1f, %.3f×); rounds off %s, on %s; %.2f XADDs per request with it on.\n",
			len(l.OnUS), l.AddedUS, median(l.OnUS), median(l.OffUS), l.Ratio, usList(l.OffUS), usList(l.OnUS), l.XAddsOn)
	}
	if f := res.target("floor"); f != nil {
		fmt.Fprintf(w, "\nRedis floor (r), an INCR before and a DECR after each request and nothing else, each its own round trip: %.1f µs of Redis CPU per request at c=1, %.1f at c=32; the relay's Redis: %.1f (%s the floor) and %.1f (%s).\n",
			f.RedisCPUC1US, f.RedisCPUUS, relay.RedisCPUC1US, times(relay.RedisCPUC1US/f.RedisCPUC1US), relay.RedisCPUUS, times(relay.RedisCPUUS/f.RedisCPUUS))
	}
}

func usList(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(parts, "/")
}
