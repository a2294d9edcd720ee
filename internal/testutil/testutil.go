// Package testutil is the shared test toolbox: a settable Clock, Eventually, a Buffer safe
// for concurrent writers, FreeAddr, Trickle (a slow client's body) and BuildBinaries for a
// TestMain that runs real processes.
package testutil

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent writers and readers: a logger or a
// subprocess writes to it while the test reads what was written so far.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
