package metrics

import (
	"encoding/binary"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// vec is the label-set cache shared by the three vector kinds.
type vec[M any] struct {
	desc
	reg       *Registry // nil for the registry's own error counter
	newMetric func() *M
	discard   *M // returned for refused label sets; never exported

	mu     sync.RWMutex
	series map[string]*entry[M]
}

// entry is one label set of a family.
type entry[M any] struct {
	values []string
	labels string // rendered `a="x",b="y"`, fixed at creation
	metric *M
}

// init prepares an empty vec in place (it holds a lock, so it is not copied).
func (v *vec[M]) init(reg *Registry, d desc, newMetric func() *M) {
	v.desc, v.reg, v.newMetric = d, reg, newMetric
	v.discard = newMetric()
	v.series = make(map[string]*entry[M])
	if len(d.labelNames) == 0 {
		// A family without labels has exactly one series: export it from the start.
		v.create(nil, nil)
	}
}

// with returns the metric for values, creating it on first use. Once a label
// set exists, with takes a read lock and allocates nothing.
func (v *vec[M]) with(values []string) *M {
	if len(values) != len(v.labelNames) {
		v.reg.labelError(v.name, "arity")
		return v.discard
	}
	var buf [256]byte
	key := appendKey(buf[:0], values)
	v.mu.RLock()
	e := v.series[string(key)]
	v.mu.RUnlock()
	if e != nil {
		return e.metric
	}
	return v.create(key, values)
}

// create adds the series for values (key is their encoding) unless another
// goroutine did first or the family is full.
func (v *vec[M]) create(key []byte, values []string) *M {
	v.mu.Lock()
	if e := v.series[string(key)]; e != nil {
		v.mu.Unlock()
		return e.metric
	}
	if len(v.series) >= MaxSeriesPerFamily {
		v.mu.Unlock()
		v.reg.labelError(v.name, "cardinality")
		return v.discard
	}
	clean := make([]string, len(values))
	for i, s := range values {
		// Prometheus rejects a scrape with invalid UTF-8 in a label value.
		clean[i] = strings.ToValidUTF8(s, "\uFFFD")
	}
	e := &entry[M]{values: clean, labels: renderLabels(v.labelNames, clean), metric: v.newMetric()}
	v.series[string(key)] = e
	v.mu.Unlock()
	return e.metric
}

// sorted returns the series ordered by label values.
func (v *vec[M]) sorted() []*entry[M] {
	v.mu.RLock()
	out := make([]*entry[M], 0, len(v.series))
	for _, e := range v.series {
		out = append(out, e)
	}
	v.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return slices.Compare(out[i].values, out[j].values) < 0 })
	return out
}

// appendKey encodes values unambiguously (length-prefixed) for the cache map.
func appendKey(b []byte, values []string) []byte {
	for _, s := range values {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func renderLabels(names, values []string) string {
	var b []byte
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, n...)
		b = append(b, `="`...)
		b = appendEscaped(b, values[i], true)
		b = append(b, '"')
	}
	return string(b)
}

// addFloat adds delta to the float64 stored as bits in u.
func addFloat(u *atomic.Uint64, delta float64) {
	for {
		old := u.Load()
		if u.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+delta)) {
			return
		}
	}
}

// CounterVec is a counter family; With selects one label set.
type CounterVec struct{ vec[Counter] }

// With returns the counter for labelValues, given in the order of the label
// names at registration. A wrong number of values returns a discard counter
// and is counted in metrics_label_errors_total. A nil CounterVec returns nil,
// on which every Counter method is a no-op.
func (v *CounterVec) With(labelValues ...string) *Counter {
	if v == nil {
		return nil
	}
	return v.with(labelValues)
}

func (v *CounterVec) appendSamples(b []byte) []byte {
	var num [32]byte
	for _, e := range v.sorted() {
		b = appendSample(b, v.name, "", e.labels, nil, e.metric.appendValue(num[:0]))
	}
	return b
}

// Counter is a monotonically increasing value. Its methods are lock-free and
// safe for concurrent use; all are no-ops on a nil *Counter.
type Counter struct {
	n    atomic.Uint64 // integer increments: one atomic add
	bits atomic.Uint64 // fractional increments: float64 bits, CAS loop
}

func newCounter() *Counter { return new(Counter) }

// Inc adds 1.
func (c *Counter) Inc() {
	if c != nil {
		c.n.Add(1)
	}
}

// Add adds v. Counters only go up: a negative, zero or NaN v is ignored.
func (c *Counter) Add(v float64) {
	if c == nil || !(v > 0) {
		return
	}
	if v < 1<<53 && v == math.Trunc(v) {
		c.n.Add(uint64(v))
		return
	}
	addFloat(&c.bits, v)
}

// Value returns the current count.
func (c *Counter) Value() float64 {
	if c == nil {
		return 0
	}
	return float64(c.n.Load()) + math.Float64frombits(c.bits.Load())
}

func (c *Counter) appendValue(b []byte) []byte {
	if c.bits.Load() == 0 {
		return appendUint(b, c.n.Load())
	}
	return appendFloat(b, c.Value())
}

func appendUint(b []byte, n uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// GaugeVec is a gauge family; With selects one label set.
type GaugeVec struct{ vec[Gauge] }

// With returns the gauge for labelValues; see CounterVec.With.
func (v *GaugeVec) With(labelValues ...string) *Gauge {
	if v == nil {
		return nil
	}
	return v.with(labelValues)
}

func (v *GaugeVec) appendSamples(b []byte) []byte {
	var num [32]byte
	for _, e := range v.sorted() {
		b = appendSample(b, v.name, "", e.labels, nil, appendFloat(num[:0], e.metric.Value()))
	}
	return b
}

// Gauge is a value that goes up and down. Its methods are lock-free and safe
// for concurrent use; all are no-ops on a nil *Gauge.
type Gauge struct{ bits atomic.Uint64 }

func newGauge() *Gauge { return new(Gauge) }

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) {
	if g != nil {
		g.bits.Store(math.Float64bits(v))
	}
}

// Inc adds 1.
func (g *Gauge) Inc() { g.Add(1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { g.Add(-1) }

// Add adds v, which may be negative.
func (g *Gauge) Add(v float64) {
	if g != nil {
		addFloat(&g.bits, v)
	}
}

// Value returns the current value.
func (g *Gauge) Value() float64 {
	if g == nil {
		return 0
	}
	return math.Float64frombits(g.bits.Load())
}

// HistogramVec is a histogram family; With selects one label set.
type HistogramVec struct {
	vec[Histogram]
	upper []float64
}

// With returns the histogram for labelValues; see CounterVec.With.
func (v *HistogramVec) With(labelValues ...string) *Histogram {
	if v == nil {
		return nil
	}
	return v.with(labelValues)
}

func (v *HistogramVec) appendSamples(b []byte) []byte {
	var num, le [32]byte
	for _, e := range v.sorted() {
		h := e.metric
		var cum uint64
		for i := range h.counts {
			cum += h.counts[i].Load()
			bound := math.Inf(1)
			if i < len(h.upper) {
				bound = h.upper[i]
			}
			extra := append(append(append(le[:0], `le="`...), appendFloat(num[:0], bound)...), '"')
			b = appendSample(b, v.name, "_bucket", e.labels, extra, appendUint(num[:0], cum))
		}
		b = appendSample(b, v.name, "_sum", e.labels, nil, appendFloat(num[:0], h.Sum()))
		// _count is the +Inf bucket, so the two always agree within one scrape.
		b = appendSample(b, v.name, "_count", e.labels, nil, appendUint(num[:0], cum))
	}
	return b
}

// Histogram counts observations into cumulative buckets. Observe is lock-free
// and safe for concurrent use; all methods are no-ops on a nil *Histogram.
type Histogram struct {
	upper   []float64       // shared with the family, read-only
	counts  []atomic.Uint64 // per bucket, not cumulative; last is +Inf
	sumBits atomic.Uint64
}

func newHistogram(upper []float64) *Histogram {
	return &Histogram{upper: upper, counts: make([]atomic.Uint64, len(upper)+1)}
}

// Observe records v. NaN is ignored.
func (h *Histogram) Observe(v float64) {
	if h == nil || math.IsNaN(v) {
		return
	}
	h.counts[sort.SearchFloat64s(h.upper, v)].Add(1)
	addFloat(&h.sumBits, v)
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 {
	if h == nil {
		return 0
	}
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Sum returns the sum of the observations.
func (h *Histogram) Sum() float64 {
	if h == nil {
		return 0
	}
	return math.Float64frombits(h.sumBits.Load())
}

// Interface guards: every vector kind is a family the registry can render.
var (
	_ family = (*CounterVec)(nil)
	_ family = (*GaugeVec)(nil)
	_ family = (*HistogramVec)(nil)
	_ family = (*gaugeFunc)(nil)
)
