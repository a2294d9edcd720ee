package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// ledgerRecs makes n records of two keys and two models at at, at+1ms, …
func ledgerRecs(n int, at time.Time) []UsageRecord {
	recs := make([]UsageRecord, n)
	for i := range recs {
		recs[i] = UsageRecord{
			KeyID: fmt.Sprintf("k%d", i%2), AccountID: "a1", Model: []string{"m-a", "m-b"}[i/2%2],
			At:     at.Add(time.Duration(i) * time.Millisecond),
			Usage:  Usage{Requests: 1, InputTokens: int64(10 + i), OutputTokens: 5, CostMicroUSD: 7},
			Ledger: &LedgerEntry{Route: "messages", Status: []int{200, 529}[i%3/2], TTFBMillis: 3, DurationMillis: 9, Client: "claude-cli", Sidecar: "sc1", SessionHash: "h"},
		}
	}
	return recs
}

func TestLedgerPagesNewestFirstEachRecordOnce(t *testing.T) {
	s, _, _, _ := newStore(t)
	ctx := context.Background()
	s.SetLedger(&LedgerSettings{})
	at := time.Now().UTC().Truncate(time.Hour)
	recs := ledgerRecs(25, at)
	if err := s.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, recs[:10]...); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 2}, recs[10:]...); err != nil {
		t.Fatal(err)
	}
	// A retried batch adds nothing to the ledger either.
	if err := s.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 2}, recs[10:]...); err != nil {
		t.Fatal(err)
	}
	q := LedgerQuery{From: at.Add(-48 * time.Hour), To: at.Add(time.Hour), Limit: 4}
	seen := map[int64]bool{}
	var last time.Time
	for pages := 0; ; pages++ {
		p, err := s.Ledger(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Records {
			if seen[r.Usage.InputTokens] {
				t.Fatalf("record %d returned twice", r.Usage.InputTokens)
			}
			seen[r.Usage.InputTokens] = true
			if !last.IsZero() && r.At.After(last) {
				t.Fatalf("not newest first: %s after %s", r.At, last)
			}
			last = r.At
		}
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
		if pages > 10 {
			t.Fatal("cursor does not end")
		}
	}
	if len(seen) != 25 {
		t.Fatalf("paged %d records, want 25", len(seen))
	}
	p, err := s.Ledger(ctx, LedgerQuery{From: at, To: at.Add(time.Hour), KeyID: "k1", Model: "m-b", StatusClass: 5, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Records {
		if r.KeyID != "k1" || r.Model != "m-b" || r.Status != 529 || r.Sidecar != "sc1" || r.TTFBMillis != 3 || r.Usage.Requests != 1 {
			t.Fatalf("filter let through %+v", r)
		}
	}
	if want := 2; len(p.Records) != want { // i odd, i/2 odd, i%3 == 2: 11 and 23
		t.Fatalf("filtered %d records, want %d", len(p.Records), want)
	}
}

func TestLedgerTrimsOldestBeyondMaxPerDay(t *testing.T) {
	s, _, _, _ := newStore(t)
	ctx := context.Background()
	s.SetLedger(&LedgerSettings{MaxPerDay: 5})
	at := time.Now().UTC().Truncate(time.Hour)
	if err := s.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, ledgerRecs(12, at)...); err != nil {
		t.Fatal(err)
	}
	p, err := s.Ledger(ctx, LedgerQuery{From: at, To: at.Add(time.Hour), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 5 || p.Records[0].Usage.InputTokens != 21 || p.Records[4].Usage.InputTokens != 17 {
		t.Fatalf("kept %+v, want the newest 5 (inputs 21..17)", p.Records)
	}
}

func TestLedgerOffWritesNothing(t *testing.T) {
	s, _, rdb, _ := newStore(t)
	ctx := context.Background()
	at := time.Now().UTC()
	if err := s.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, ledgerRecs(3, at)...); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Exists(ctx, s.keys.LedgerDay(at)).Result(); err != nil || n != 0 {
		t.Fatalf("ledger off: stream exists=%d err=%v", n, err)
	}
	if ttl, err := rdb.TTL(ctx, s.keys.UsageDay(at)).Result(); err != nil || ttl <= 0 {
		t.Fatalf("report bucket not written: ttl %v %v", ttl, err)
	}
}

func TestLedgerRefusesBadQueries(t *testing.T) {
	s, _, _, _ := newStore(t)
	now := time.Now()
	for _, q := range []LedgerQuery{
		{From: now, To: now.Add(time.Hour), Limit: 0},
		{From: now, To: now, Limit: 1},
		{From: now, To: now.Add(time.Hour), Limit: 1, Cursor: "not!a cursor"},
		{From: now.Add(-500 * 24 * time.Hour), To: now, Limit: 1},
	} {
		if _, err := s.Ledger(context.Background(), q); !errors.Is(err, ErrLedgerQuery) {
			t.Errorf("%+v: err %v, want ErrLedgerQuery", q, err)
		}
	}
}
