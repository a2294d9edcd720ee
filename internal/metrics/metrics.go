package metrics

import (
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

// ContentType is the Content-Type of GET /metrics: the Prometheus text exposition format
// 0.0.4, as promhttp labels it (names are already valid, so "escaping" changes nothing).
const ContentType = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"

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

// Registry is one process's set of metric families, kept in a client_golang registry.
// The zero value is not usable; call NewRegistry.
type Registry struct {
	prom        *prometheus.Registry
	labelErrors *CounterVec

	mu       sync.Mutex
	families map[string]registered // by name: what each name was registered as
}

// registered is a family the registry holds under a name, with the shape a second
// registration must have to share it.
type registered struct {
	shape  shape
	family any // *CounterVec, *GaugeVec or *HistogramVec; nil for a function
}

// shape is what makes two registrations of one name interchangeable.
type shape struct {
	kind    string // "counter", "gauge", "histogram" or "func" (never shared: its function is its identity)
	labels  []string
	buckets []float64
}

func (s shape) sharable(o shape) bool {
	return s.kind != "func" && s.kind == o.kind && slices.Equal(s.labels, o.labels) && slices.Equal(s.buckets, o.buckets)
}

// NewRegistry returns an empty registry holding only metrics_label_errors_total.
func NewRegistry() *Registry {
	r := &Registry{prom: prometheus.NewRegistry(), families: make(map[string]registered)}
	help := "Metric updates or registrations dropped because of wrong label arity, too many series or a conflicting registration."
	// A nil registry: errors of the error counter itself are not counted (no recursion).
	labelErrors, c := newCounterVec(nil, LabelErrorsName, help, []string{"metric", "reason"})
	r.prom.MustRegister(c) // a fixed, valid name in an empty registry
	r.labelErrors = labelErrors
	r.families[LabelErrorsName] = registered{shape: shape{kind: "counter", labels: []string{"metric", "reason"}}, family: labelErrors}
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
// A conflicting or invalid registration is counted in metrics_label_errors_total
// and returns a family that takes every update and exports none.
func (r *Registry) Counter(name, help string, labelNames ...string) *CounterVec {
	labelNames = slices.Clone(labelNames)
	s := shape{kind: "counter", labels: labelNames}
	if v, ok := register(r, name, s, validate(name, labelNames, false), func() (*CounterVec, prometheus.Collector) {
		return newCounterVec(r, name, help, labelNames)
	}); ok {
		return v
	}
	return &CounterVec{unexported(r, name, len(labelNames), newCounter(name, help))}
}

// Gauge registers (or returns the already registered) gauge family name.
// Registration problems are handled as for Counter.
func (r *Registry) Gauge(name, help string, labelNames ...string) *GaugeVec {
	labelNames = slices.Clone(labelNames)
	s := shape{kind: "gauge", labels: labelNames}
	if v, ok := register(r, name, s, validate(name, labelNames, false), func() (*GaugeVec, prometheus.Collector) {
		return newGaugeVec(r, name, help, labelNames)
	}); ok {
		return v
	}
	return &GaugeVec{unexported(r, name, len(labelNames), newGauge(name, help))}
}

// Histogram registers (or returns the already registered) histogram family
// name with the given upper bounds; nil buckets mean DefaultLatencyBuckets.
// Bounds are copied, sorted and de-duplicated; NaN and +Inf are dropped (+Inf
// is always implied). Registration problems are handled as for Counter.
func (r *Registry) Histogram(name, help string, buckets []float64, labelNames ...string) *HistogramVec {
	labelNames = slices.Clone(labelNames)
	upper := normalizeBuckets(buckets)
	s := shape{kind: "histogram", labels: labelNames, buckets: upper}
	if v, ok := register(r, name, s, validate(name, labelNames, true), func() (*HistogramVec, prometheus.Collector) {
		return newHistogramVec(r, name, help, upper, labelNames)
	}); ok {
		return v
	}
	return &HistogramVec{unexported(r, name, len(labelNames), newHistogram(name, help, upper))}
}

// GaugeFunc registers a gauge without labels whose value is f(), evaluated at
// each scrape (uptime, goroutines, pool sizes). f must be safe for concurrent
// use and fast. A nil f or a conflicting name is counted as a registration error.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	registerFunc(r, name, f, func() prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	})
}

// CounterFunc registers a counter without labels whose value is f(), evaluated at each
// scrape, for totals another package already keeps (pipelines sent, calls batched). f must
// be safe for concurrent use, fast and never decrease.
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	registerFunc(r, name, f, func() prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	})
}

func registerFunc(r *Registry, name string, f func() float64, build func() prometheus.Collector) {
	register(r, name, shape{kind: "func"}, validate(name, nil, false) && f != nil, func() (any, prometheus.Collector) {
		return nil, build()
	})
}

// register returns the family already registered under name when it has shape s, or
// registers the one build returns. It returns false, having counted a registration
// error, when the family is invalid or its name is held by another shape (or by a
// collector such as the process one): the caller then returns one that is never exported.
func register[F any](r *Registry, name string, s shape, valid bool, build func() (F, prometheus.Collector)) (F, bool) {
	var none F
	if !valid {
		r.labelError(name, "registration")
		return none, false
	}
	r.mu.Lock()
	got, found := r.families[name]
	if !found {
		fam, c := build()
		err := r.prom.Register(c)
		if err == nil {
			r.families[name] = registered{shape: s, family: fam}
		}
		r.mu.Unlock()
		if err != nil {
			r.labelError(name, "registration")
			return none, false
		}
		return fam, true
	}
	r.mu.Unlock()
	if fam, ok := got.family.(F); ok && got.shape.sharable(s) {
		return fam, true
	}
	r.labelError(name, "registration")
	return none, false
}

// validate checks the metric name and label names against the Prometheus data model
// as every scraper understands it (the legacy character set, not UTF-8 names).
func validate(name string, labelNames []string, histogram bool) bool {
	if !model.LegacyValidation.IsValidMetricName(name) {
		return false
	}
	for i, l := range labelNames {
		if !model.LegacyValidation.IsValidLabelName(l) || strings.HasPrefix(l, "__") ||
			(histogram && l == "le") || slices.Contains(labelNames[:i], l) {
			return false
		}
	}
	return true
}

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

// Handler serves the registry at GET (and HEAD) in the Prometheus text format 0.0.4,
// whatever the scraper's Accept header asks for (protobuf or OpenMetrics), uncompressed.
// A collector that fails leaves its metrics out of the page; the others are served.
func (r *Registry) Handler() http.Handler {
	h := promhttp.HandlerFor(r.prom, promhttp.HandlerOpts{
		ErrorHandling:      promhttp.ContinueOnError,
		DisableCompression: true,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if req.Method == http.MethodHead {
			w.Header().Set("Content-Type", ContentType)
			return
		}
		if req.Header.Get("Accept") != "" {
			req = req.Clone(req.Context())
			req.Header.Del("Accept") // promhttp then answers in the text format
		}
		h.ServeHTTP(w, req)
	})
}
