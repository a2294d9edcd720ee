// Package metrics is the relay's thin layer over prometheus/client_golang: one registry per
// process, capped counter, gauge and histogram families, the standard process and Go
// collectors, and the /metrics handler.
//
// Every process (dev, control, sidecar) builds its own Registry with NewRegistry and hands
// it to the packages that count things; nothing is registered with client_golang's global
// DefaultRegisterer. The registry's families live in client_golang, which also renders
// them (promhttp, text format 0.0.4); what this package adds is the relay's rules:
//
//   - Registering a name again with the same kind, labels (and buckets) returns the family
//     already registered, so two components can share one (a test can read a counter by
//     registering it again). A bad name or a conflicting shape returns a working family that
//     is not exported, and counts the refusal in metrics_label_errors_total{metric,reason}
//     with reason "registration" (client_golang would return an error or panic).
//   - With(values...) never panics: a wrong number of values returns a discard metric and
//     counts reason "arity"; invalid UTF-8 in a value is replaced by U+FFFD; a family holds at
//     most MaxSeriesPerFamily label sets, and beyond them With returns a discard metric and
//     counts reason "cardinality", so a client-chosen label value cannot exhaust memory.
//   - Counter.Add ignores a negative or NaN value and Histogram.Observe ignores NaN, where
//     client_golang would panic or poison the sum. Every method is a no-op on a nil metric or
//     family, so optional instrumentation needs no checks.
//
// The request hot path resolves its series once where the label values are fixed
// (sidecar.tokenCounters, the active-streams gauge) and otherwise calls With, which finds a
// label set it has handed out before under a read lock without allocating (see
// BenchmarkHotPath).
//
// To add a metric: register it where its owner is built (the sidecar's server and recorder,
// the control plane's configuration watcher, internal/app for connections and the Redis
// pool) with Registry.Counter, Gauge, Histogram, GaugeFunc or CounterFunc, from the
// Registry that process passes in; keep label values to a small known set; add a row to
// README.md's "Health and metrics" table.
package metrics
