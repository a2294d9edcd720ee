package limits

// Unbatched returns opts for a Limiter that sends each script call on its own, as before
// auto-pipelining, for benchmarks that compare the two.
func Unbatched(opts Options) Options { opts.unbatched = true; return opts }

// Renewing reports whether the lease renewer's goroutine is running.
func (l *Limiter) Renewing() bool {
	l.renew.mu.Lock()
	defer l.renew.mu.Unlock()
	return l.renew.running
}
