package testutil

import (
	"io"
	"time"
)

// Trickle writes s to w every interval, as a client sending its body too slowly does,
// until w fails or the returned stop is called.
func Trickle(w io.Writer, s string, every time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(every):
			}
			if _, err := io.WriteString(w, s); err != nil {
				return
			}
		}
	}()
	return func() { close(done) }
}
