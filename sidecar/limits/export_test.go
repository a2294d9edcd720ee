package limits

// Unbatched returns opts for a Limiter that sends each script call on its own, as before
// auto-pipelining, for benchmarks that compare the two.
func Unbatched(opts Options) Options { opts.unbatched = true; return opts }
