package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRecordUsageIsOneRoundTripAndSumsExactly(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	day1 := time.Date(2026, 5, 1, 23, 59, 59, 0, time.UTC)
	day2 := day1.Add(2 * time.Second) // next UTC day
	keys := []string{"key-a", "key-b"}
	models := []string{"claude-sonnet-4-5", "claude-haiku-4-5", "vendor:model:with:colons"}

	var recs []UsageRecord
	wantDay := map[string]map[string]Usage{} // key@day → model → usage
	wantTotal := map[string]Usage{}
	wantAcct := map[string]Usage{} // acct@day
	for i := range 500 {
		at := day1
		if i%3 == 0 {
			at = day2
		}
		r := UsageRecord{
			KeyID:     keys[i%len(keys)],
			AccountID: fmt.Sprintf("acct-%d", i%4),
			Model:     models[i%len(models)],
			At:        at,
			Usage: Usage{
				Requests: 1, InputTokens: int64(1000 + i), OutputTokens: int64(i * 7),
				CacheWrite5m: int64(i % 11), CacheWrite1h: int64(i % 5), CacheRead: int64(i * 13),
				CostMicroUSD:     int64(i*1_000_003 + 1),
				UnpricedRequests: int64(i % 2), EstimatedRequests: int64(i % 3 / 2),
			},
		}
		recs = append(recs, r)
		dk := r.KeyID + "@" + dayString(at)
		if wantDay[dk] == nil {
			wantDay[dk] = map[string]Usage{}
		}
		wantDay[dk][r.Model] = wantDay[dk][r.Model].Add(r.Usage)
		wantTotal[r.KeyID] = wantTotal[r.KeyID].Add(r.Usage)
		wantAcct[r.AccountID+"@"+dayString(at)] = wantAcct[r.AccountID+"@"+dayString(at)].Add(r.Usage)
	}

	hook := &countHook{}
	rdb.AddHook(hook)
	if err := s.RecordUsage(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	if p, c := hook.pipeline.Load(), hook.process.Load(); p != 1 || c != 0 {
		t.Errorf("got %d pipelines and %d single commands for %d records, want 1 pipeline and 0 commands", p, c, len(recs))
	}
	// Record the same batch again: counters are additive.
	if err := s.RecordUsage(ctx, recs...); err != nil {
		t.Fatal(err)
	}

	for _, key := range keys {
		for _, day := range []time.Time{day1, day2} {
			got, err := s.KeyUsage(ctx, key, day)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]Usage{}
			for m, u := range wantDay[key+"@"+dayString(day)] {
				want[m] = u.Add(u)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("KeyUsage(%s, %s) (-want +got):\n%s", key, dayString(day), diff)
			}
		}
		got, err := s.KeyTotals(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if want := wantTotal[key].Add(wantTotal[key]); got != want {
			t.Errorf("KeyTotals(%s): got %+v, want %+v", key, got, want)
		}
	}
	for i := range 4 {
		for _, day := range []time.Time{day1, day2} {
			acct := fmt.Sprintf("acct-%d", i)
			got, err := s.AccountUsage(ctx, acct, day)
			if err != nil {
				t.Fatal(err)
			}
			w := wantAcct[acct+"@"+dayString(day)]
			if want := w.Add(w); got != want {
				t.Errorf("AccountUsage(%s, %s): got %+v, want %+v", acct, dayString(day), got, want)
			}
		}
	}
}

func TestDailyUsageExpiresAfterRetentionAndTotalsDoNot(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	now := time.Now().UTC()
	if err := s.RecordUsage(ctx, UsageRecord{KeyID: "k", AccountID: "a", Model: "m", At: now, Usage: Usage{Requests: 1}}); err != nil {
		t.Fatal(err)
	}
	dayEnd := now.Truncate(24 * time.Hour).Add(24 * time.Hour)
	wantTTL := time.Until(dayEnd.Add(UsageRetention))
	tests := []struct {
		name string
		key  string
		want time.Duration
	}{
		{"key day", s.keys.KeyUsageDay("k", now), wantTTL},
		{"account day", s.keys.AccountUsageDay("a", now), wantTTL},
		{"key total", s.keys.KeyUsageTotal("k"), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rdb.TTL(ctx, tt.key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if tt.want < 0 {
				if got != -1 {
					t.Errorf("got TTL %v, want none", got)
				}
				return
			}
			if d := got - tt.want; d < -5*time.Second || d > 5*time.Second {
				t.Errorf("got TTL %v, want about %v", got, tt.want)
			}
		})
	}
}

func TestRecordUsageEdgeCases(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb, _ := newStore(t)
	hook := &countHook{}
	rdb.AddHook(hook)
	if err := s.RecordUsage(ctx); err != nil {
		t.Fatal(err)
	}
	if got := hook.roundTrips(); got != 0 {
		t.Errorf("got %d round trips for no records, want 0", got)
	}
	err := s.RecordUsage(ctx, UsageRecord{KeyID: "k", Usage: Usage{Requests: 1}}, UsageRecord{KeyID: "k", Usage: Usage{InputTokens: -5}})
	if err == nil || !strings.Contains(err.Error(), "negative input_tokens") {
		t.Errorf("got %v, want a negative input_tokens error", err)
	}
	if tot, _ := s.KeyTotals(ctx, "k"); tot != (Usage{}) {
		t.Errorf("got totals %+v after a refused batch, want nothing recorded", tot)
	}
	// No model and no time: counted as "unknown" today (by the store clock).
	if err := s.RecordUsage(ctx, UsageRecord{KeyID: "k", Usage: Usage{Requests: 2}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.KeyUsage(ctx, "k", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]Usage{"unknown": {Requests: 2}}, got); diff != "" {
		t.Errorf("KeyUsage (-want +got):\n%s", diff)
	}
	if got, err := s.KeyUsage(ctx, "never-used", clk.Now()); err != nil || got != nil {
		t.Errorf("got (%v, %v), want (nil, nil) for no usage", got, err)
	}
}

func TestUnpricedAndEstimatedRequestsAreCountedAndZerosNotWritten(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	at := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	recs := []UsageRecord{
		{KeyID: "k", Model: "claude-unreleased-9", At: at, Usage: Usage{Requests: 1, InputTokens: 10, CostMicroUSD: 150, UnpricedRequests: 1}},
		{KeyID: "k", Model: "claude-opus-4-8", At: at, Usage: Usage{Requests: 1, OutputTokens: 40, CostMicroUSD: 1000, EstimatedRequests: 1}},
		{KeyID: "k", Model: "claude-opus-4-8", At: at, Usage: Usage{Requests: 1, OutputTokens: 2, CostMicroUSD: 50}},
	}
	if err := s.RecordUsage(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	day, err := s.KeyUsage(ctx, "k", at)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Usage{
		"claude-unreleased-9": {Requests: 1, InputTokens: 10, CostMicroUSD: 150, UnpricedRequests: 1},
		"claude-opus-4-8":     {Requests: 2, OutputTokens: 42, CostMicroUSD: 1050, EstimatedRequests: 1},
	}
	if diff := cmp.Diff(want, day); diff != "" {
		t.Errorf("day usage (-want +got):\n%s", diff)
	}
	fields, err := rdb.HKeys(ctx, s.keys.KeyUsageDay("k", at)).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		if f == "claude-opus-4-8:unpriced_requests" || f == "claude-unreleased-9:estimated_requests" {
			t.Errorf("field %s was written for a zero counter", f)
		}
	}
}
