package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// SidecarLoad is what one sidecar is doing now, as it last said (Schema.SidecarLoad).
type SidecarLoad struct {
	// InFlight counts the requests the sidecar is answering; Streams those of them whose
	// event stream is being relayed.
	InFlight int64 `json:"in_flight"`
	Streams  int64 `json:"streams"`
	// At is when the sidecar wrote these numbers.
	At time.Time `json:"at"`
}

// LoadRefresh is how often a sidecar writes its load even when it has not changed, so a
// reader can tell a quiet sidecar (At recent) from a gone one (At older than LoadStale).
const LoadRefresh = 30 * time.Second

// LoadStale is the age past which a load report is no longer what the sidecar does now.
const LoadStale = 3 * LoadRefresh

// loadForget is how long a silent sidecar's load stays in the hash.
const loadForget = 24 * time.Hour

// PutSidecarLoad records sidecar id's load: one HSET.
func (s *Store) PutSidecarLoad(ctx context.Context, id string, l SidecarLoad) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("encode sidecar load: %w", err)
	}
	if err := s.rdb.HSet(ctx, s.keys.SidecarLoad(), id, b).Err(); err != nil {
		return fmt.Errorf("write sidecar load: %w", err)
	}
	return nil
}

// SidecarLoads returns every sidecar's last load report by id; reports silent for a day
// (or unreadable) are dropped.
func (s *Store) SidecarLoads(ctx context.Context) (map[string]SidecarLoad, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.SidecarLoad()).Result()
	if err != nil {
		return nil, fmt.Errorf("read sidecar load: %w", err)
	}
	out := make(map[string]SidecarLoad, len(m))
	var stale []string
	now := s.now()
	for id, raw := range m {
		var l SidecarLoad
		if err := json.Unmarshal([]byte(raw), &l); err != nil || now.Sub(l.At) > loadForget {
			stale = append(stale, id)
			continue
		}
		out[id] = l
	}
	if len(stale) > 0 {
		if err := s.rdb.HDel(ctx, s.keys.SidecarLoad(), stale...).Err(); err != nil {
			return out, fmt.Errorf("drop silent sidecars' load: %w", err)
		}
	}
	return out, nil
}
