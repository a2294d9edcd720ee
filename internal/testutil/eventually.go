package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond every 10 ms until it holds and returns how long that took; when d
// passes first, it fails the test, saying what it waited for.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
