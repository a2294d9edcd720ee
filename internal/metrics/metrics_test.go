package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape returns the registry's /metrics page, after checking that a strict text-format
// parser (legacy names, as every Prometheus version reads them) accepts it.
func scrape(t *testing.T, r *Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: got status %d, want 200: %s", rec.Code, rec.Body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	if _, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String())); err != nil {
		t.Fatalf("GET /metrics is not parseable Prometheus text: %v\n%s", err, rec.Body)
	}
	return rec.Body.String()
}

func TestExpositionMatchesGoldenText(t *testing.T) {
	r := NewRegistry()
	req := r.Counter("relay_requests_total", "Requests relayed.", "route", "code")
	req.With("messages", "200").Add(3)
	req.With("messages", "429").Inc()
	req.With("count_tokens", "200").Inc()
	r.Counter("relay_bytes_total", "Bytes relayed.").With().Add(1.5)
	g := r.Gauge("relay_inflight", "Requests in flight.", "route")
	g.With("messages").Set(7)
	g.With("messages").Dec()
	g.With("admin").Add(-0.25)
	h := r.Histogram("relay_latency_seconds", "Request latency.", []float64{1, 0.1, 0.5, 0.1}, "route")
	for _, v := range []float64{0.05, 0.1, 0.3, 2} {
		h.With("messages").Observe(v)
	}
	r.GaugeFunc("process_uptime_seconds", "Seconds since start.", func() float64 { return 42 })

	// client_golang's text: a family with no series (metrics_label_errors_total here) is
	// left out, label pairs are sorted by name and series by their sorted pairs.
	want := `# HELP process_uptime_seconds Seconds since start.
# TYPE process_uptime_seconds gauge
process_uptime_seconds 42
# HELP relay_bytes_total Bytes relayed.
# TYPE relay_bytes_total counter
relay_bytes_total 1.5
# HELP relay_inflight Requests in flight.
# TYPE relay_inflight gauge
relay_inflight{route="admin"} -0.25
relay_inflight{route="messages"} 6
# HELP relay_latency_seconds Request latency.
# TYPE relay_latency_seconds histogram
relay_latency_seconds_bucket{route="messages",le="0.1"} 2
relay_latency_seconds_bucket{route="messages",le="0.5"} 3
relay_latency_seconds_bucket{route="messages",le="1"} 3
relay_latency_seconds_bucket{route="messages",le="+Inf"} 4
relay_latency_seconds_sum{route="messages"} 2.45
relay_latency_seconds_count{route="messages"} 4
# HELP relay_requests_total Requests relayed.
# TYPE relay_requests_total counter
relay_requests_total{code="200",route="count_tokens"} 1
relay_requests_total{code="200",route="messages"} 3
relay_requests_total{code="429",route="messages"} 1
`
	if diff := cmp.Diff(want, scrape(t, r)); diff != "" {
		t.Errorf("exposition mismatch (-want +got):\n%s", diff)
	}
}

func TestUnlabelledFamiliesExportZeroBeforeFirstUse(t *testing.T) {
	r := NewRegistry()
	r.Counter("a_total", "A.")
	r.Histogram("b_seconds", "B.", []float64{1})
	got := scrape(t, r)
	for _, line := range []string{"a_total 0\n", `b_seconds_bucket{le="1"} 0` + "\n", `b_seconds_bucket{le="+Inf"} 0` + "\n", "b_seconds_sum 0\n", "b_seconds_count 0\n"} {
		if !strings.Contains(got, line) {
			t.Errorf("got exposition without %q:\n%s", line, got)
		}
	}
}

func TestLabelValuesAndHelpAreEscaped(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  string
	}{
		{"backslash", `a\b`, `esc_total{v="a\\b"} 1`},
		{"quote", `say "hi"`, `esc_total{v="say \"hi\""} 1`},
		{"newline", "two\nlines", `esc_total{v="two\nlines"} 1`},
		{"invalid utf8", "bad\xffbyte", `esc_total{v="bad` + "\uFFFD" + `byte"} 1`},
		{"plain", "claude-sonnet-4", `esc_total{v="claude-sonnet-4"} 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry()
			r.Counter("esc_total", "Help with \\ and\nnewline.", "v").With(tt.value).Inc()
			got := scrape(t, r)
			if !strings.Contains(got, tt.want+"\n") {
				t.Errorf("got %q, want a line %q", got, tt.want)
			}
			if wantHelp := `# HELP esc_total Help with \\ and\nnewline.` + "\n"; !strings.Contains(got, wantHelp) {
				t.Errorf("got %q, want help line %q", got, wantHelp)
			}
		})
	}
}

func TestConcurrentUpdatesSumExactly(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "C.", "k")
	g := r.Gauge("g", "G.")
	h := r.Histogram("h", "H.", []float64{1})
	const goroutines, perG = 16, 2000
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprint(i % 4)
			for range perG {
				c.With(key).Inc()
				c.With("frac").Add(0.5)
				g.With().Add(0.25)
				h.With().Observe(0.5)
			}
		}()
	}
	wg.Wait()
	var ints float64
	for k := range 4 {
		ints += c.With(fmt.Sprint(k)).Value()
	}
	checks := []struct {
		name      string
		got, want float64
	}{
		{"counter inc", ints, goroutines * perG},
		{"counter float add", c.With("frac").Value(), goroutines * perG * 0.5},
		{"gauge add", g.With().Value(), goroutines * perG * 0.25},
		{"histogram count", float64(h.With().Count()), goroutines * perG},
		{"histogram sum", h.With().Sum(), goroutines * perG * 0.5},
	}
	for _, tt := range checks {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestWithOnCachedLabelSetDoesNotAllocate(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "C.", "route", "code")
	g := r.Gauge("g", "G.", "route")
	h := r.Histogram("h", "H.", nil, "route")
	route, code := "messages", "200"
	c.With(route, code).Inc()
	g.With(route).Inc()
	h.With(route).Observe(1)
	tests := []struct {
		name string
		f    func()
	}{
		{"counter", func() { c.With(route, code).Inc() }},
		{"gauge", func() { g.With(route).Add(1) }},
		{"histogram", func() { h.With(route).Observe(0.01) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(1000, tt.f); got != 0 {
				t.Errorf("got %v allocs per With+update, want 0", got)
			}
		})
	}
}

func TestWrongArityIsCountedNotPanicked(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "C.", "route", "code")
	tests := []struct {
		name   string
		values []string
	}{
		{"too few", []string{"messages"}},
		{"too many", []string{"messages", "200", "extra"}},
		{"none", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.With(tt.values...).Inc() // must not panic
		})
	}
	g := r.Gauge("g", "G.")
	g.With("unexpected").Set(5)
	r.Histogram("h", "H.", nil).With("x").Observe(1)

	got := scrape(t, r)
	for _, want := range []string{
		`metrics_label_errors_total{metric="c_total",reason="arity"} 3`,
		`metrics_label_errors_total{metric="g",reason="arity"} 1`,
		`metrics_label_errors_total{metric="h",reason="arity"} 1`,
		"g 0\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("got exposition without %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "c_total{") {
		t.Errorf("got a c_total series from a wrong-arity With, want none:\n%s", got)
	}
}

func TestSeriesBeyondCapAreDiscardedAndCounted(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "C.", "model")
	for i := range MaxSeriesPerFamily + 5 {
		c.With(fmt.Sprint("m", i)).Inc()
	}
	if got := r.labelErrors.With("c_total", "cardinality").Value(); got != 5 {
		t.Errorf("got %v cardinality errors, want 5", got)
	}
	if got := strings.Count(scrape(t, r), "c_total{"); got != MaxSeriesPerFamily {
		t.Errorf("got %d series, want %d", got, MaxSeriesPerFamily)
	}
}

func TestRegistration(t *testing.T) {
	r := NewRegistry()
	first := r.Counter("req_total", "Requests.", "code")
	first.With("200").Inc()

	tests := []struct {
		name     string
		register func() any
		shared   bool // returns the first registration
	}{
		{"same shape returns existing", func() any { return r.Counter("req_total", "Other help.", "code") }, true},
		{"different labels", func() any { return r.Counter("req_total", "Requests.", "route") }, false},
		{"different kind", func() any { return r.Gauge("req_total", "Requests.", "code") }, false},
		{"invalid metric name", func() any { return r.Counter("1bad", "x") }, false},
		{"invalid label name", func() any { return r.Counter("ok_total", "x", "bad-label") }, false},
		{"reserved label name", func() any { return r.Counter("ok2_total", "x", "__name") }, false},
		{"duplicate label name", func() any { return r.Counter("ok3_total", "x", "a", "a") }, false},
		{"le on histogram", func() any { return r.Histogram("lat", "x", nil, "le") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.register()
			if shared := got == any(first); shared != tt.shared {
				t.Errorf("got shared %v, want %v", shared, tt.shared)
			}
			if got == nil {
				t.Fatalf("got nil vec, want a usable one")
			}
			if !tt.shared {
				update(got) // were the family exported, its series would show
			}
		})
	}
	if got := r.labelErrors.With("req_total", "registration").Value(); got != 2 {
		t.Errorf("got %v registration errors for req_total, want 2", got)
	}
	out := scrape(t, r)
	for _, absent := range []string{"# TYPE ok_total", "# TYPE ok2_total", "# TYPE ok3_total", "# TYPE lat"} {
		if strings.Contains(out, absent) {
			t.Errorf("got %q exported from a rejected registration:\n%s", absent, out)
		}
	}
	if !strings.Contains(out, "req_total{code=\"200\"} 1\n") {
		t.Errorf("got %q, want the first registration's series", out)
	}
}

// update adds to one series of a family of any kind.
func update(family any) {
	switch v := family.(type) {
	case *CounterVec:
		v.With(make([]string, v.arity)...).Inc()
	case *GaugeVec:
		v.With(make([]string, v.arity)...).Inc()
	case *HistogramVec:
		v.With(make([]string, v.arity)...).Observe(1)
	}
}

func TestCounterIgnoresNegativeAndNaN(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "C.").With()
	c.Add(2)
	c.Add(-1)
	c.Add(0)
	var nan float64
	c.Add(nan / nan)
	if got := c.Value(); got != 2 {
		t.Errorf("got %v, want 2", got)
	}
}

func TestNilMetricsAreNoOps(t *testing.T) {
	var cv *CounterVec
	var gv *GaugeVec
	var hv *HistogramVec
	cv.With("a").Inc()
	gv.With("a").Set(1)
	hv.With("a").Observe(1)
	if got := cv.With().Value(); got != 0 {
		t.Errorf("got %v, want 0", got)
	}
}

func TestHandlerServesTextFormat(t *testing.T) {
	r := NewRegistry()
	r.Counter("hits_total", "Hits.").With().Inc()
	tests := []struct {
		method     string
		wantStatus int
		wantBody   string
	}{
		{http.MethodGet, http.StatusOK, "hits_total 1\n"},
		{http.MethodHead, http.StatusOK, ""},
		{http.MethodPost, http.StatusMethodNotAllowed, "method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			rec := httptest.NewRecorder()
			r.Handler().ServeHTTP(rec, httptest.NewRequest(tt.method, "/metrics", nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("got status %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantStatus == http.StatusOK {
				if got := rec.Header().Get("Content-Type"); got != ContentType {
					t.Errorf("got Content-Type %q, want %q", got, ContentType)
				}
			}
			if body := rec.Body.String(); tt.wantBody == "" && body != "" || !strings.Contains(body, tt.wantBody) {
				t.Errorf("got body %q, want it to contain %q", body, tt.wantBody)
			}
		})
	}
}

// BenchmarkCounterWithInc measures With on a cached label set plus Inc and
// reports each case as a ratio of a bare atomic add measured first in the same run.
func BenchmarkCounterWithInc(b *testing.B) {
	report := atomicAddBaseline(b)

	r := NewRegistry()
	c := r.Counter("requests_total", "Requests.", "route", "code")
	route, code := "messages", "200"
	b.Run("cached_counter_inc", func(b *testing.B) {
		cc := c.With(route, code)
		b.ReportAllocs()
		for b.Loop() {
			cc.Inc()
		}
		report(b)
	})
	b.Run("with_inc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.With(route, code).Inc()
		}
		report(b)
	})
	b.Run("with_inc_parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.With(route, code).Inc()
			}
		})
		report(b)
	})
}

func TestProcessMetricsReportThisProcess(t *testing.T) {
	r := NewRegistry()
	RegisterProcess(r)
	f, err := os.Open(os.DevNull) // one more descriptor than before, at least
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vals := map[string]float64{}
	for _, line := range strings.Split(scrape(t, r), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		vals[name] = n
	}
	checks := []struct {
		name     string
		min, max float64
	}{
		{"go_goroutines", 1, 1e6},
		{"go_memstats_heap_alloc_bytes", 1, 1 << 40},
		{"process_max_fds", 3, 1 << 30},
		{"process_start_time_seconds", float64(time.Now().Add(-2*time.Minute).UnixNano()) / 1e9, float64(time.Now().UnixNano()) / 1e9},
	}
	if runtime.GOOS == "linux" {
		checks = append(checks, []struct {
			name     string
			min, max float64
		}{
			{"process_cpu_seconds_total", 0, 1e6}, // ticks of 10 ms: may still read 0
			{"process_resident_memory_bytes", 1 << 20, 1 << 40},
			{"process_open_fds", 4, vals["process_max_fds"]},
		}...)
	}
	for _, c := range checks {
		v, ok := vals[c.name]
		if !ok || v < c.min || v > c.max {
			t.Errorf("%s: got %v (present %v), want within [%v, %v]", c.name, v, ok, c.min, c.max)
		}
	}
}

func TestHandlerServesTextWhateverTheScraperAccepts(t *testing.T) {
	r := NewRegistry()
	r.Counter("hits_total", "Hits.").With().Inc()
	tests := []struct {
		name            string
		accept, encoded string
	}{
		{"protobuf", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", ""},
		{"openmetrics", "application/openmetrics-text;version=1.0.0", ""},
		{"text 1.0.0", "text/plain;version=1.0.0;escaping=allow-utf-8", ""},
		{"gzip", "", "gzip"},
		{"zstd", "", "zstd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.Header.Set("Accept", tt.accept)
			req.Header.Set("Accept-Encoding", tt.encoded)
			rec := httptest.NewRecorder()
			r.Handler().ServeHTTP(rec, req)
			if got := rec.Header().Get("Content-Type"); got != ContentType {
				t.Errorf("got Content-Type %q, want %q", got, ContentType)
			}
			if got := rec.Header().Get("Content-Encoding"); got != "" {
				t.Errorf("got Content-Encoding %q, want none", got)
			}
			if got := rec.Body.String(); !strings.Contains(got, "hits_total 1\n") {
				t.Errorf("got body %q, want the text format with hits_total 1", got)
			}
		})
	}
}

func TestStandardCollectorsRegisteredTwiceOrShadowedAreCounted(t *testing.T) {
	r := NewRegistry()
	RegisterProcess(r)
	RegisterProcess(r)
	goroutines := r.Gauge("go_goroutines", "A second go_goroutines.")
	goroutines.With().Set(-1)
	out := scrape(t, r) // a duplicate series would make the page unparseable
	for _, want := range []string{
		`metrics_label_errors_total{metric="process",reason="registration"} 1`,
		`metrics_label_errors_total{metric="go",reason="registration"} 1`,
		`metrics_label_errors_total{metric="go_goroutines",reason="registration"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("got exposition without %q:\n%s", want, out)
		}
	}
	if got := strings.Count(out, "\ngo_goroutines "); got != 1 {
		t.Errorf("got %d go_goroutines samples, want the collector's 1:\n%s", got, out)
	}
	if strings.Contains(out, "go_goroutines -1") {
		t.Errorf("got the shadowing gauge exported:\n%s", out)
	}
}

func TestHistogramWithoutFiniteBoundsHasOnlyTheInfBucket(t *testing.T) {
	r := NewRegistry()
	var zero float64
	r.Histogram("h_seconds", "H.", []float64{1 / zero, zero / zero}).With().Observe(3)
	out := scrape(t, r)
	if got := strings.Count(out, "h_seconds_bucket{"); got != 1 {
		t.Errorf("got %d buckets, want only +Inf (not client_golang's defaults):\n%s", got, out)
	}
	if !strings.Contains(out, `h_seconds_bucket{le="+Inf"} 1`+"\n") {
		t.Errorf("got %q, want the +Inf bucket to hold the observation", out)
	}
}

func TestRegistriesAreSeparateAndNotGlobal(t *testing.T) {
	a, b := NewRegistry(), NewRegistry()
	a.Counter("separate_total", "S.").With().Add(2)
	b.Counter("separate_total", "S.").With().Add(5)
	if got := scrape(t, a); !strings.Contains(got, "separate_total 2\n") {
		t.Errorf("got %q, want registry a's own count 2", got)
	}
	if got := scrape(t, b); !strings.Contains(got, "separate_total 5\n") {
		t.Errorf("got %q, want registry b's own count 5", got)
	}
	fams, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "separate_total" || f.GetName() == LabelErrorsName {
			t.Errorf("got %s in client_golang's global registry, want every registry private", f.GetName())
		}
	}
}
