package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRetriedUsageBatchCountsOnce(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	day := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	recs := []UsageRecord{
		{KeyID: "k1", AccountID: "a1", Model: "m", At: day, Usage: Usage{Requests: 1, InputTokens: 10, OutputTokens: 5}},
		{KeyID: "k2", AccountID: "a1", Model: "m", At: day, Usage: Usage{Requests: 1, InputTokens: 7, CacheRead: 3}},
	}
	for i := 0; i < 3; i++ { // the first write and two retries of the same batch
		if err := st.RecordUsageBatch(ctx, "batch-1", recs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.RecordUsageBatch(ctx, "batch-2", recs[0]); err != nil { // a different batch counts
		t.Fatal(err)
	}
	tests := []struct {
		name string
		get  func() (Usage, error)
		want Usage
	}{
		{"k1 day", func() (Usage, error) { m, err := st.KeyUsage(ctx, "k1", day); return m["m"], err }, Usage{Requests: 2, InputTokens: 20, OutputTokens: 10}},
		{"k1 total", func() (Usage, error) { return st.KeyTotals(ctx, "k1") }, Usage{Requests: 2, InputTokens: 20, OutputTokens: 10}},
		{"k2 day", func() (Usage, error) { m, err := st.KeyUsage(ctx, "k2", day); return m["m"], err }, Usage{Requests: 1, InputTokens: 7, CacheRead: 3}},
		{"a1 day", func() (Usage, error) { return st.AccountUsage(ctx, "a1", day) }, Usage{Requests: 3, InputTokens: 27, OutputTokens: 10, CacheRead: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.get()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("usage (-want +got):\n%s", diff)
			}
		})
	}
}
