package metrics

import (
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// RegisterProcess adds client_golang's standard process and Go runtime collectors, so
// existing dashboards and alerts apply: process_cpu_seconds_total,
// process_resident_memory_bytes, process_open_fds, process_max_fds,
// process_start_time_seconds and the rest of process_*, where the platform reports them
// (Linux reads /proc); go_goroutines, go_threads, go_memstats_heap_alloc_bytes, go_gc_*
// and the rest of go_*. Registering them twice counts a registration error.
func RegisterProcess(r *Registry) {
	if err := r.prom.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		r.labelError("process", "registration")
	}
	if err := r.prom.Register(collectors.NewGoCollector()); err != nil {
		r.labelError("go", "registration")
	}
}
