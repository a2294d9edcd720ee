// Package metrics is a small, allocation-free Prometheus text-format (0.0.4) registry.
package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ContentType is the Content-Type of the Prometheus text exposition format 0.0.4.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// MaxSeriesPerFamily caps the number of label sets one metric family may hold.
// With beyond the cap returns a discard metric and counts the refusal, so an
// unbounded label value (a client-chosen model name, say) cannot exhaust memory.
const MaxSeriesPerFamily = 10000

// LabelErrorsName is the counter that records dropped label sets and bad
// registrations, labelled by metric name and reason ("arity", "cardinality",
// "registration").
const LabelErrorsName = "metrics_label_errors_total"

// DefaultLatencyBuckets are histogram upper bounds, in seconds, suited to
// request latencies from sub-millisecond cache hits to ten-minute streams.
// Histogram copies the slice it is given, so changing this one later has no
// effect on registered histograms.
var DefaultLatencyBuckets = []float64{
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
}

// family is one metric family as the registry renders it.
type family interface {
	meta() *desc
	appendSamples(b []byte) []byte
}

// desc is what every family has: a name, a help text and a Prometheus type.
type desc struct {
	name       string
	help       string
	typ        string // "counter", "gauge" or "histogram"
	labelNames []string
}

func (d *desc) meta() *desc { return d }

// Registry holds metric families and renders them in the Prometheus text
// format. The zero value is not usable; call NewRegistry.
type Registry struct {
	mu          sync.Mutex
	families    map[string]family
	labelErrors *CounterVec
}

// NewRegistry returns an empty registry holding only metrics_label_errors_total.
func NewRegistry() *Registry {
	r := &Registry{families: make(map[string]family)}
	// reg is nil: errors of the error counter itself are not reported (no recursion).
	r.labelErrors = new(CounterVec)
	r.labelErrors.init(nil, desc{
		name:       LabelErrorsName,
		help:       "Metric updates or registrations dropped because of wrong label arity, too many series or a conflicting registration.",
		typ:        "counter",
		labelNames: []string{"metric", "reason"},
	}, newCounter)
	r.families[LabelErrorsName] = r.labelErrors
	return r
}

// labelError counts one dropped update or registration for the named metric.
func (r *Registry) labelError(name, reason string) {
	if r == nil {
		return
	}
	r.labelErrors.With(name, reason).Inc()
}

// Counter registers (or returns the already registered) counter family name.
// A conflicting or invalid registration returns a working but unexported
// family and is counted in metrics_label_errors_total.
func (r *Registry) Counter(name, help string, labelNames ...string) *CounterVec {
	v := new(CounterVec)
	v.init(r, desc{name: name, help: help, typ: "counter", labelNames: slices.Clone(labelNames)}, newCounter)
	if got, ok := register(r, v, validate(name, labelNames, false)); ok {
		return got
	}
	return v
}

// Gauge registers (or returns the already registered) gauge family name.
// Registration problems are handled as for Counter.
func (r *Registry) Gauge(name, help string, labelNames ...string) *GaugeVec {
	v := new(GaugeVec)
	v.init(r, desc{name: name, help: help, typ: "gauge", labelNames: slices.Clone(labelNames)}, newGauge)
	if got, ok := register(r, v, validate(name, labelNames, false)); ok {
		return got
	}
	return v
}

// Histogram registers (or returns the already registered) histogram family
// name with the given upper bounds; nil buckets mean DefaultLatencyBuckets.
// Bounds are copied, sorted and de-duplicated; NaN and +Inf are dropped (+Inf
// is always implied). Registration problems are handled as for Counter.
func (r *Registry) Histogram(name, help string, buckets []float64, labelNames ...string) *HistogramVec {
	upper := normalizeBuckets(buckets)
	v := &HistogramVec{upper: upper}
	v.init(r, desc{name: name, help: help, typ: "histogram", labelNames: slices.Clone(labelNames)},
		func() *Histogram { return newHistogram(upper) })
	if got, ok := register(r, v, validate(name, labelNames, true)); ok {
		return got
	}
	return v
}

// GaugeFunc registers a gauge without labels whose value is f(), evaluated at
// each scrape (uptime, goroutines, pool sizes). f must be safe for concurrent
// use and fast. A nil f or a conflicting name is counted as a registration error.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	ok := validate(name, nil, false)
	if f == nil {
		ok = false
	}
	register(r, &gaugeFunc{desc: desc{name: name, help: help, typ: "gauge"}, fn: f}, ok)
}

// CounterFunc registers a counter without labels whose value is f(), evaluated at each
// scrape, for totals another package already keeps (pipelines sent, calls batched). f must
// be safe for concurrent use, fast and never decrease.
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	ok := validate(name, nil, false)
	if f == nil {
		ok = false
	}
	register(r, &gaugeFunc{desc: desc{name: name, help: help, typ: "counter"}, fn: f}, ok)
}

// register adds fam under its name. It returns the family already registered
// under that name when it is of the same kind with the same labels, or fam
// itself when it was added. ok is false when fam was not registered: invalid,
// or conflicting with an existing family; the error is counted.
func register[F family](r *Registry, fam F, valid bool) (F, bool) {
	var zero F
	d := fam.meta()
	if !valid {
		r.labelError(d.name, "registration")
		return zero, false
	}
	r.mu.Lock()
	existing, found := r.families[d.name]
	if !found {
		r.families[d.name] = fam
		r.mu.Unlock()
		return fam, true
	}
	r.mu.Unlock()
	if same, isF := existing.(F); isF && sameShape(same, fam) {
		return same, true
	}
	r.labelError(d.name, "registration")
	return zero, false
}

// sameShape reports whether two families of one Go type can be used interchangeably.
func sameShape(a, b family) bool {
	da, db := a.meta(), b.meta()
	if da.typ != db.typ || !slices.Equal(da.labelNames, db.labelNames) {
		return false
	}
	ha, okA := a.(*HistogramVec)
	hb, okB := b.(*HistogramVec)
	if okA != okB {
		return false
	}
	if okA && !slices.Equal(ha.upper, hb.upper) {
		return false
	}
	_, fa := a.(*gaugeFunc)
	return !fa // a GaugeFunc is never shared: its function is its identity
}

// validate checks the metric name and label names against the Prometheus data model.
func validate(name string, labelNames []string, histogram bool) bool {
	if !validMetricName(name) {
		return false
	}
	for i, l := range labelNames {
		if !validLabelName(l) || (histogram && l == "le") || slices.Contains(labelNames[:i], l) {
			return false
		}
	}
	return true
}

func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c == ':' || isLetter(c) || (i > 0 && isDigit(c)) {
			continue
		}
		return false
	}
	return true
}

func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || isLetter(c) || (i > 0 && isDigit(c)) {
			continue
		}
		return false
	}
	return true
}

func isLetter(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// normalizeBuckets returns sorted, de-duplicated finite-or--Inf upper bounds.
func normalizeBuckets(buckets []float64) []float64 {
	if buckets == nil {
		buckets = DefaultLatencyBuckets
	}
	out := make([]float64, 0, len(buckets))
	for _, b := range buckets {
		if math.IsNaN(b) || math.IsInf(b, 1) {
			continue
		}
		out = append(out, b)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// WriteTo writes every family in the Prometheus text format 0.0.4: families
// sorted by name, series sorted by label values, HELP and TYPE lines first.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	fams := make([]family, 0, len(r.families))
	for _, f := range r.families {
		fams = append(fams, f)
	}
	r.mu.Unlock()
	sort.Slice(fams, func(i, j int) bool { return fams[i].meta().name < fams[j].meta().name })

	var total int64
	buf := make([]byte, 0, 4096)
	for _, f := range fams {
		d := f.meta()
		buf = append(buf[:0], "# HELP "...)
		buf = append(buf, d.name...)
		buf = append(buf, ' ')
		buf = appendEscaped(buf, d.help, false)
		buf = append(buf, "\n# TYPE "...)
		buf = append(buf, d.name...)
		buf = append(buf, ' ')
		buf = append(buf, d.typ...)
		buf = append(buf, '\n')
		buf = f.appendSamples(buf)
		n, err := w.Write(buf)
		total += int64(n)
		if err != nil {
			return total, fmt.Errorf("write metrics: %w", err)
		}
	}
	return total, nil
}

// Handler serves the registry at GET (and HEAD) in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Cache-Control", "no-store")
		if req.Method == http.MethodHead {
			return
		}
		// A write error means the scraper went away; there is no one to tell.
		_, _ = r.WriteTo(w)
	})
}

// appendEscaped appends s escaped for a HELP text (\\ and \n) or, with
// quote, for a label value (also \").
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFloat appends v as Prometheus expects: integers without exponent
// where exact, +Inf, -Inf and NaN spelled out.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendSample appends `name{labels[,extra]} value\n`; labels is the
// pre-rendered label list without braces.
func appendSample(b []byte, name, suffix, labels string, extra, value []byte) []byte {
	b = append(b, name...)
	b = append(b, suffix...)
	if labels != "" || len(extra) > 0 {
		b = append(b, '{')
		b = append(b, labels...)
		if labels != "" && len(extra) > 0 {
			b = append(b, ',')
		}
		b = append(b, extra...)
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = append(b, value...)
	return append(b, '\n')
}

// gaugeFunc is a label-less gauge evaluated at scrape time.
type gaugeFunc struct {
	desc
	fn func() float64
}

func (g *gaugeFunc) appendSamples(b []byte) []byte {
	var num [32]byte
	return appendSample(b, g.name, "", "", nil, appendFloat(num[:0], g.fn()))
}
