package store

import (
	"context"
	"testing"
)

func TestClearUnauthorizedLeavesOtherParks(t *testing.T) {
	st, _, rdb, _ := newStore(t)
	ctx := context.Background()
	key := st.Schema().AccountsParked()
	rdb.HSet(ctx, key,
		"a1", "0|unauthorized|401|invalid x-api-key",
		"a2", "9999999999999|rate_limited|429|rate limited",
		"a2/opus", "0|unauthorized|401|odd but per family",
	)
	tests := []struct {
		id          string
		wantCleared bool
	}{
		{"a1", true},
		{"a1", false}, // already cleared
		{"a2", false}, // a rate limit is not lifted by a token refresh
		{"a3", false}, // never parked
	}
	for _, tt := range tests {
		got, err := st.ClearUnauthorized(ctx, tt.id)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.wantCleared {
			t.Errorf("ClearUnauthorized(%s): got %v, want %v", tt.id, got, tt.wantCleared)
		}
	}
	left, err := rdb.HKeys(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 {
		t.Errorf("parks left: got %v, want a2 and a2/opus", left)
	}
}
