package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testredis"
)

// benchLedgerRecs is a recorder batch of n realistic records: 50 keys, 3 models, 4 accounts.
func benchLedgerRecs(n int, at time.Time) []UsageRecord {
	models := []string{"claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805"}
	recs := make([]UsageRecord, n)
	for i := range recs {
		recs[i] = UsageRecord{
			KeyID: fmt.Sprintf("k_%020d", i%50), AccountID: fmt.Sprintf("acct_%016d", i%4), Model: models[i%3], At: at,
			Usage: Usage{Requests: 1, InputTokens: 1234 + int64(i), OutputTokens: 456, CacheRead: 20000, CacheWrite5m: 300, CostMicroUSD: 18_765},
			Ledger: &LedgerEntry{Route: "messages", Status: 200, TTFBMillis: 812, DurationMillis: 14_230, Client: "claude_code",
				Sidecar: "relay-7f9c:8080", SessionHash: fmt.Sprintf("%032x", i/8)},
		}
	}
	return recs
}

// BenchmarkLedgerRelayCPU is the relay's CPU per recorded request in the store path (summing
// a 512-record batch into hashes and building the script arguments; Redis not involved),
// ledger off vs on. "ns/record" is the figure; the ledger's cost is on − off (target < 5 µs).
func BenchmarkLedgerRelayCPU(b *testing.B) {
	rdb, prefix := testredis.New(b)
	s, err := Open(context.Background(), rdb, Options{Prefix: prefix, Sealer: sealer(b, testEncKey)})
	if err != nil {
		b.Fatal(err)
	}
	recs := benchLedgerRecs(512, time.Now())
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("ledger=%v", on), func(b *testing.B) {
			s.SetLedger(nil)
			if on {
				s.SetLedger(&LedgerSettings{})
			}
			b.ReportAllocs()
			for b.Loop() {
				groups, err := s.usageGroups(recs)
				if err != nil {
					b.Fatal(err)
				}
				for _, g := range groups {
					_ = groupArgs(g, []any{"seq", "w", 1, "0", "0"})
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
		})
	}
}

// BenchmarkLedgerBatchWrite writes 512-record batches to Redis, ledger off vs on: the whole
// write (relay and Redis) per record.
func BenchmarkLedgerBatchWrite(b *testing.B) {
	rdb, prefix := testredis.New(b)
	s, err := Open(context.Background(), rdb, Options{Prefix: prefix, Sealer: sealer(b, testEncKey)})
	if err != nil {
		b.Fatal(err)
	}
	recs := benchLedgerRecs(512, time.Now())
	seq := uint64(0)
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("ledger=%v", on), func(b *testing.B) {
			s.SetLedger(nil)
			if on {
				s.SetLedger(&LedgerSettings{})
			}
			for b.Loop() {
				seq++
				if err := s.RecordUsageBatch(context.Background(), BatchID{Writer: "bench", Seq: seq}, recs...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
		})
	}
}

// BenchmarkLedgerMemory writes 100,000 realistic records to one day's ledger and reports the
// stream's Redis memory (MEMORY USAGE, every node counted) scaled to a million records.
func BenchmarkLedgerMemory(b *testing.B) {
	rdb, prefix := testredis.New(b)
	s, err := Open(context.Background(), rdb, Options{Prefix: prefix, Sealer: sealer(b, testEncKey)})
	if err != nil {
		b.Fatal(err)
	}
	s.SetLedger(&LedgerSettings{})
	ctx := context.Background()
	const total = 100_000
	for i := range b.N {
		day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -i)
		recs := benchLedgerRecs(500, day.Add(time.Hour))
		for j := range total / len(recs) {
			if err := s.RecordUsageBatch(ctx, BatchID{Writer: "mem", Seq: uint64(i*1000 + j + 1)}, recs...); err != nil {
				b.Fatal(err)
			}
		}
		n, err := rdb.Do(ctx, "MEMORY", "USAGE", s.keys.LedgerDay(day), "SAMPLES", "0").Int64()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)*1e6/total/(1<<20), "MiB/1M_records")
		b.ReportMetric(float64(n)/total, "bytes/record")
	}
}
