package metrics

import (
	"encoding/binary"
	"math"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// series is what the three vector kinds share: the label sets a family has handed out,
// at most MaxSeriesPerFamily of them, each resolved once from client_golang's vector.
type series[M any] struct {
	name    string
	arity   int
	reg     *Registry               // where refusals are counted; nil for metrics_label_errors_total itself
	resolve func(values []string) M // client_golang's series for values; nil for an unexported family
	discard M                       // returned for refused label sets; never exported

	mu  sync.RWMutex
	set map[string]M // by appendKey of the label values
}

func newSeries[M any](reg *Registry, name string, arity int, resolve func([]string) M, discard M) series[M] {
	return series[M]{name: name, arity: arity, reg: reg, resolve: resolve, discard: discard, set: make(map[string]M)}
}

// unexported is the series of a family whose registration was refused: every label set
// gets the discard metric, so updates are taken and nothing of them is exported.
func unexported[M any](reg *Registry, name string, arity int, discard M) series[M] {
	return newSeries(reg, name, arity, nil, discard)
}

// with returns the metric for values, resolving it on first use. Once a label set has
// been handed out, with takes a read lock and allocates nothing.
func (s *series[M]) with(values []string) M {
	if len(values) != s.arity {
		s.reg.labelError(s.name, "arity")
		return s.discard
	}
	if s.resolve == nil {
		return s.discard
	}
	var buf [256]byte
	key := appendKey(buf[:0], values)
	s.mu.RLock()
	m, ok := s.set[string(key)]
	s.mu.RUnlock()
	if ok {
		return m
	}
	return s.create(key, values)
}

// create resolves the series for values (key is their encoding) unless another
// goroutine did first or the family is full.
func (s *series[M]) create(key []byte, values []string) M {
	s.mu.Lock()
	if m, ok := s.set[string(key)]; ok {
		s.mu.Unlock()
		return m
	}
	if len(s.set) >= MaxSeriesPerFamily {
		s.mu.Unlock()
		s.reg.labelError(s.name, "cardinality")
		return s.discard
	}
	clean := make([]string, len(values))
	for i, v := range values {
		// client_golang refuses a label value that is not valid UTF-8 (and so would a scraper).
		if !utf8.ValidString(v) {
			v = strings.ToValidUTF8(v, "\uFFFD")
		}
		clean[i] = v
	}
	m := s.resolve(clean)
	s.set[string(key)] = m
	s.mu.Unlock()
	return m
}

// appendKey encodes values unambiguously (length-prefixed) for the set's map.
func appendKey(b []byte, values []string) []byte {
	for _, v := range values {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// resolveAll exports a family without labels from the start: it has exactly one series.
func (s *series[M]) resolveAll() {
	if s.arity == 0 {
		s.with(nil)
	}
}

// CounterVec is a counter family; With selects one label set.
type CounterVec struct{ series[*Counter] }

func newCounterVec(reg *Registry, name, help string, labelNames []string) (*CounterVec, prometheus.Collector) {
	pv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labelNames)
	v := &CounterVec{newSeries(reg, name, len(labelNames), func(values []string) *Counter {
		return &Counter{c: pv.WithLabelValues(values...)}
	}, newCounter(name, help))}
	v.resolveAll()
	return v, pv
}

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

// Counter is a monotonically increasing value. Its methods are safe for concurrent
// use; all are no-ops on a nil *Counter.
type Counter struct{ c prometheus.Counter }

// newCounter returns a counter that is never registered: a family's discard metric.
func newCounter(name, help string) *Counter {
	return &Counter{c: prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})}
}

// Inc adds 1.
func (c *Counter) Inc() {
	if c != nil {
		c.c.Inc()
	}
}

// Add adds v. Counters only go up: a negative, zero or NaN v is ignored.
func (c *Counter) Add(v float64) {
	if c != nil && v > 0 {
		c.c.Add(v)
	}
}

// Value returns the current count. It reads the metric as a scrape does: for tests and
// diagnostics, not for the hot path.
func (c *Counter) Value() float64 {
	if c == nil {
		return 0
	}
	return read(c.c).GetCounter().GetValue()
}

// GaugeVec is a gauge family; With selects one label set.
type GaugeVec struct{ series[*Gauge] }

func newGaugeVec(reg *Registry, name, help string, labelNames []string) (*GaugeVec, prometheus.Collector) {
	pv := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labelNames)
	v := &GaugeVec{newSeries(reg, name, len(labelNames), func(values []string) *Gauge {
		return &Gauge{g: pv.WithLabelValues(values...)}
	}, newGauge(name, help))}
	v.resolveAll()
	return v, pv
}

// With returns the gauge for labelValues; see CounterVec.With.
func (v *GaugeVec) With(labelValues ...string) *Gauge {
	if v == nil {
		return nil
	}
	return v.with(labelValues)
}

// Gauge is a value that goes up and down. Its methods are safe for concurrent use;
// all are no-ops on a nil *Gauge.
type Gauge struct{ g prometheus.Gauge }

func newGauge(name, help string) *Gauge {
	return &Gauge{g: prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})}
}

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) {
	if g != nil {
		g.g.Set(v)
	}
}

// Inc adds 1.
func (g *Gauge) Inc() {
	if g != nil {
		g.g.Inc()
	}
}

// Dec subtracts 1.
func (g *Gauge) Dec() {
	if g != nil {
		g.g.Dec()
	}
}

// Add adds v, which may be negative.
func (g *Gauge) Add(v float64) {
	if g != nil {
		g.g.Add(v)
	}
}

// Value returns the current value; see Counter.Value.
func (g *Gauge) Value() float64 {
	if g == nil {
		return 0
	}
	return read(g.g).GetGauge().GetValue()
}

// HistogramVec is a histogram family; With selects one label set.
type HistogramVec struct{ series[*Histogram] }

func newHistogramVec(reg *Registry, name, help string, upper []float64, labelNames []string) (*HistogramVec, prometheus.Collector) {
	pv := prometheus.NewHistogramVec(histogramOpts(name, help, upper), labelNames)
	v := &HistogramVec{newSeries(reg, name, len(labelNames), func(values []string) *Histogram {
		return &Histogram{h: pv.WithLabelValues(values...)}
	}, newHistogram(name, help, upper))}
	v.resolveAll()
	return v, pv
}

// histogramOpts gives client_golang the upper bounds; with none left it is told +Inf
// alone, which it keeps as the only bucket (an empty list would mean its defaults).
func histogramOpts(name, help string, upper []float64) prometheus.HistogramOpts {
	if len(upper) == 0 {
		upper = []float64{math.Inf(1)}
	}
	return prometheus.HistogramOpts{Name: name, Help: help, Buckets: upper}
}

// With returns the histogram for labelValues; see CounterVec.With.
func (v *HistogramVec) With(labelValues ...string) *Histogram {
	if v == nil {
		return nil
	}
	return v.with(labelValues)
}

// Histogram counts observations into cumulative buckets. Observe is safe for
// concurrent use; all methods are no-ops on a nil *Histogram.
type Histogram struct{ h prometheus.Observer }

func newHistogram(name, help string, upper []float64) *Histogram {
	return &Histogram{h: prometheus.NewHistogram(histogramOpts(name, help, upper))}
}

// Observe records v. NaN is ignored.
func (h *Histogram) Observe(v float64) {
	if h != nil && !math.IsNaN(v) {
		h.h.Observe(v)
	}
}

// Count returns the number of observations; see Counter.Value.
func (h *Histogram) Count() uint64 {
	if h == nil {
		return 0
	}
	return readObserver(h.h).GetHistogram().GetSampleCount()
}

// Sum returns the sum of the observations; see Counter.Value.
func (h *Histogram) Sum() float64 {
	if h == nil {
		return 0
	}
	return readObserver(h.h).GetHistogram().GetSampleSum()
}

// read returns m as a scrape would see it (an empty one if m cannot be written).
func read(m prometheus.Metric) *dto.Metric {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		return &dto.Metric{}
	}
	return &out
}

// readObserver reads a histogram series: client_golang's vector hands it out as an
// Observer, but every histogram it makes is a Metric too.
func readObserver(o prometheus.Observer) *dto.Metric {
	m, ok := o.(prometheus.Metric)
	if !ok {
		return &dto.Metric{}
	}
	return read(m)
}
