package alerts

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/store"
)

// Defaults of the overloaded-repeatedly alert.
const (
	// DefaultOverloads is how many overloaded (529) parks of one account within
	// DefaultOverloadWindow raise account_parked, however short each park is.
	DefaultOverloads = 3
	// DefaultOverloadWindow is the window DefaultOverloads are counted in.
	DefaultOverloadWindow = 10 * time.Minute
)

// countOverloads records, in AlertsOverloads, the overloaded parks not seen before (a park
// is an account, a family and an end time: a 529 that extends a park is a new one), drops
// the sightings older than window, and returns the parks seen within window by account. It
// keeps the count in Redis so that a control plane taking the alerts lock over goes on
// counting. A park that starts and ends between two looks (one a second) is not counted.
func countOverloads(ctx context.Context, st *store.Store, parks []store.Parked, t time.Time, window time.Duration) (map[string]int, error) {
	key := st.Schema().AlertsOverloads()
	rdb := st.Client()
	seen, err := rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("alerts: read overloads: %w", err)
	}
	now := strconv.FormatInt(t.UnixMilli(), 10)
	var fresh []any
	for _, p := range parks {
		if p.State != "overloaded" || p.Until.IsZero() {
			continue
		}
		f := p.Account + "|" + p.Family + "|" + strconv.FormatInt(p.Until.UnixMilli(), 10)
		if _, ok := seen[f]; !ok {
			seen[f] = now
			fresh = append(fresh, f, now)
		}
	}
	counts := map[string]int{}
	var stale []string
	for f, ms := range seen {
		at, err := strconv.ParseInt(ms, 10, 64)
		if err != nil || t.Sub(time.UnixMilli(at)) > window {
			stale = append(stale, f)
			continue
		}
		if i := strings.IndexByte(f, '|'); i > 0 {
			counts[f[:i]]++
		}
	}
	if len(fresh) > 0 {
		if err := rdb.HSet(ctx, key, fresh...).Err(); err != nil {
			return nil, fmt.Errorf("alerts: record overloads: %w", err)
		}
	}
	if len(stale) > 0 {
		if err := rdb.HDel(ctx, key, stale...).Err(); err != nil {
			return nil, fmt.Errorf("alerts: drop old overloads: %w", err)
		}
	}
	return counts, nil
}
