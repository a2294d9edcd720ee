package sidecar

import (
	"context"
	"time"

	"github.com/claude-relay/claude-relay/store"
)

// LoadSink receives a sidecar's load (store.Store: one HSET in Redis).
type LoadSink interface {
	PutSidecarLoad(ctx context.Context, id string, l store.SidecarLoad) error
}

// DefaultLoadEvery is how often ReportLoad looks at the numbers.
const DefaultLoadEvery = 2 * time.Second

// Load is what the sidecar is doing now: requests in flight and event streams being relayed.
func (s *Server) Load() store.SidecarLoad {
	return store.SidecarLoad{InFlight: s.inFlight.Load(), Streams: int64(s.m.activeStreams.Value()), At: s.now().UTC()}
}

// ReportLoad writes the sidecar's load to sink under Options.SidecarID until ctx ends: when
// the numbers changed since the last write (looked at every every), and at least every
// store.LoadRefresh, so the control plane shows the streams of each sidecar within seconds
// for one Redis write per sidecar every few seconds at most. A failed write is retried at the
// next look.
func (s *Server) ReportLoad(ctx context.Context, sink LoadSink, every time.Duration) {
	if every <= 0 {
		every = DefaultLoadEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var last store.SidecarLoad
	written := false
	for {
		now := s.Load()
		if !written || now.InFlight != last.InFlight || now.Streams != last.Streams || now.At.Sub(last.At) >= store.LoadRefresh {
			if err := sink.PutSidecarLoad(ctx, s.opts.SidecarID, now); err == nil {
				last, written = now, true
			} else if ctx.Err() == nil {
				s.log.Debug("cannot report the sidecar's load", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
