package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Window is the latest reading of one subscription window (5 hours or 7 days) of an account,
// from the anthropic-ratelimit-unified-<window>-* response headers.
type Window struct {
	// Utilization is the fraction of the window used (0..1; Anthropic has been seen to
	// report slightly more than 1 on an exhausted window).
	Utilization float64 `json:"u"`
	// Reset is when the window starts afresh (zero when the header was absent).
	Reset time.Time `json:"r,omitzero"`
	// Status is allowed, allowed_warning or rejected as the upstream sent it ("" when absent).
	Status string `json:"s,omitempty"`
}

// Windows is an account's latest subscription-window reading: what the last response that
// carried anthropic-ratelimit-unified-* headers said, and when it was seen.
type Windows struct {
	// Status is anthropic-ratelimit-unified-status (allowed, allowed_warning, rejected).
	Status string `json:"st,omitempty"`
	// Claim is anthropic-ratelimit-unified-representative-claim: the window that binds
	// (five_hour, seven_day, seven_day_opus, …).
	Claim string `json:"c,omitempty"`
	// FiveHour and SevenDay are nil when the response did not report that window.
	FiveHour *Window `json:"5h,omitempty"`
	SevenDay *Window `json:"7d,omitempty"`
	// ObservedAt is when the sidecar saw the response.
	ObservedAt time.Time `json:"at"`
}

// Encode returns w as stored in the AccountWindows hash.
func (w Windows) Encode() string {
	b, err := json.Marshal(w)
	if err != nil { // unreachable: every field has a JSON encoding
		return "{}"
	}
	return string(b)
}

// DecodeWindows reads a value of the AccountWindows hash.
func DecodeWindows(v string) (Windows, bool) {
	var w Windows
	if err := json.Unmarshal([]byte(v), &w); err != nil || w.ObservedAt.IsZero() {
		return Windows{}, false
	}
	return w, true
}

// AccountWindows returns every account's latest subscription-window reading, by account id.
// Readings that do not decode are left out.
func (s *Store) AccountWindows(ctx context.Context) (map[string]Windows, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.AccountWindows()).Result()
	if err != nil {
		return nil, fmt.Errorf("account windows: %w", err)
	}
	out := make(map[string]Windows, len(m))
	for id, v := range m {
		if w, ok := DecodeWindows(v); ok {
			out[id] = w
		}
	}
	return out, nil
}
