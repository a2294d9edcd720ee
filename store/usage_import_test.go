package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestImportUsageWritesTheRecordersHashesAndNeverCountsTwice(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, prefix := newStore(t)
	day1 := time.Date(2026, 2, 1, 15, 0, 0, 0, time.UTC)
	day2 := day1.AddDate(0, 0, 1)
	u := Usage{Requests: 3, InputTokens: 300, OutputTokens: 40, CacheWrite5m: 5, CacheWrite1h: 6, CacheRead: 70, CostMicroUSD: 1_234_567}
	older := Usage{Requests: 100, InputTokens: 9_000, CostMicroUSD: 50_000_000}
	recs := []UsageRecord{
		{KeyID: "imported", Model: "claude-sonnet-4-5", At: day1, Usage: u},
		{KeyID: "imported", Model: "claude-opus-4-1", At: day2, Usage: u},
		{KeyID: "imported", TotalOnly: true, Usage: older},
		{AccountID: "acct", At: day2, Usage: u},
	}
	if err := s.ImportUsage(ctx, "crs", recs...); err != nil {
		t.Fatal(err)
	}
	// The recorder writes the same hashes: a live request on day 2 adds to the import.
	live := UsageRecord{KeyID: "imported", AccountID: "acct", Model: "claude-opus-4-1", At: day2, Usage: u}
	if err := s.RecordUsage(ctx, live); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		d1, err := s.KeyUsage(ctx, "imported", day1)
		if err != nil {
			t.Fatal(err)
		}
		d2, _ := s.KeyUsage(ctx, "imported", day2)
		want := map[string]map[string]Usage{
			"day1": {"claude-sonnet-4-5": u},
			"day2": {"claude-opus-4-1": u.Add(u)},
		}
		if diff := cmp.Diff(want, map[string]map[string]Usage{"day1": d1, "day2": d2}); diff != "" {
			t.Errorf("%s: key days (-want +got):\n%s", when, diff)
		}
		total, _ := s.KeyTotals(ctx, "imported")
		if wantTotal := u.Add(u).Add(u).Add(older); total != wantTotal {
			t.Errorf("%s: total got %+v, want %+v", when, total, wantTotal)
		}
		acct, _ := s.AccountUsage(ctx, "acct", day2)
		if acct != u.Add(u) {
			t.Errorf("%s: account day got %+v, want %+v", when, acct, u.Add(u))
		}
	}
	check("after the import")
	before := dumpPrefix(t, rdb, prefix)
	if err := s.ImportUsage(ctx, "crs", recs...); err != nil {
		t.Fatal(err)
	}
	check("after importing again")
	if after := dumpPrefix(t, rdb, prefix); !equalDumps(before, after) {
		t.Errorf("importing the same source again changed the store")
	}
	for _, tag := range []string{"key:imported", "acct:acct"} {
		if ttl, _ := rdb.TTL(ctx, s.Schema().UsageBatchApplied(tag, "import:crs")).Result(); ttl != -1 {
			t.Errorf("import marker of %s has TTL %v, want none", tag, ttl)
		}
	}
}

func TestSeedKeyLimitCounterNeverOverwritesACounter(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	if ok, err := s.SeedKeyLimitCounter(ctx, "k", "cost_total_usd", time.Time{}, 4_000_000); err != nil || !ok {
		t.Fatalf("first seed: %v, %v", ok, err)
	}
	rdb.IncrBy(ctx, s.Schema().KeyLimitCounter("k", "cost_total_usd", time.Time{}), 500)
	if ok, err := s.SeedKeyLimitCounter(ctx, "k", "cost_total_usd", time.Time{}, 4_000_000); err != nil || ok {
		t.Fatalf("second seed: %v, %v; want not set", ok, err)
	}
	if v, _ := rdb.Get(ctx, s.Schema().KeyLimitCounter("k", "cost_total_usd", time.Time{})).Int64(); v != 4_000_500 {
		t.Errorf("counter is %d, want 4000500", v)
	}
}
