package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/testredis"
)

func TestRetriedUsageBatchCountsOnce(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	day := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	recs := []UsageRecord{
		{KeyID: "k1", AccountID: "a1", Model: "m", At: day, Usage: Usage{Requests: 1, InputTokens: 10, OutputTokens: 5}},
		{KeyID: "k2", AccountID: "a1", Model: "m", At: day, Usage: Usage{Requests: 1, InputTokens: 7, CacheRead: 3}},
	}
	first := BatchID{Writer: "w1", Seq: 1}
	for i := 0; i < 3; i++ { // the first write and two retries of the same batch
		if err := st.RecordUsageBatch(ctx, first, recs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w1", Seq: 2}, recs[0]); err != nil { // a different batch counts
		t.Fatal(err)
	}
	// A stale copy of the first batch arriving after the second (a write that timed out and
	// reached Redis late) is recognised too.
	if err := st.RecordUsageBatch(ctx, first, recs...); err != nil {
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

func TestUsageBatchesOfDifferentWritersAndNamedBatchesCountOnceEach(t *testing.T) {
	st, _, _, _ := newStore(t)
	ctx := context.Background()
	rec := UsageRecord{KeyID: "k", AccountID: "a", Model: "m", Usage: Usage{Requests: 1, InputTokens: 1}}
	for _, id := range []BatchID{
		{Writer: "sidecar-a", Seq: 1}, {Writer: "sidecar-b", Seq: 1}, // two sidecars' first batches
		{Writer: "sidecar-b", Seq: 1},              // a retry
		{Writer: "0123abcd"}, {Writer: "0123abcd"}, // a named batch (an old spool line) and its replay
		{Writer: "reapply-1"}, // another named batch
	} {
		if err := st.RecordUsageBatch(ctx, id, rec); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.KeyTotals(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Usage{Requests: 4, InputTokens: 4}); got != want {
		t.Errorf("got %+v, want %+v (two writers' batches and two named batches, once each)", got, want)
	}
	if err := st.RecordUsageBatch(ctx, BatchID{}, rec); !errors.Is(err, ErrUsageRefused) {
		t.Errorf("a batch without a writer: got %v, want %v", err, ErrUsageRefused)
	}
}

// TestUsageBookkeepingDoesNotGrowPerRequest: batch bookkeeping is one small hash per key,
// account and day of report buckets, however many batches (requests) they saw.
func TestUsageBookkeepingDoesNotGrowPerRequest(t *testing.T) {
	st, _, rdb, prefix := newStore(t)
	ctx := context.Background()
	const batches, keys, accounts = 500, 10, 3
	for i := range batches {
		rec := UsageRecord{KeyID: fmt.Sprintf("k%d", i%keys), AccountID: fmt.Sprintf("a%d", i%accounts), Model: "m", Usage: Usage{Requests: 1, OutputTokens: 2}}
		if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: uint64(i + 1)}, rec); err != nil {
			t.Fatal(err)
		}
	}
	var markers []string // usage:*:applied*
	for _, k := range testredis.Keys(t, rdb, prefix+"usage:") {
		if strings.Contains(strings.TrimPrefix(k, prefix+"usage:"), ":applied") {
			markers = append(markers, k)
		}
	}
	if len(markers) != keys+accounts+1 {
		t.Errorf("got %d bookkeeping keys after %d one-request batches, want %d (one per key and account, one for the day)", len(markers), batches, keys+accounts+1)
	}
	for _, m := range markers {
		if n := rdb.HLen(ctx, m).Val(); n != 1 {
			t.Errorf("%s holds %d writers, want 1", m, n)
		}
		if ttl := rdb.TTL(ctx, m).Val(); ttl <= UsageBatchMarkerTTL-time.Minute || ttl > UsageBatchMarkerTTL {
			t.Errorf("%s TTL %v, want about %v", m, ttl, UsageBatchMarkerTTL)
		}
	}
	if tot, _ := st.KeyTotals(ctx, "k0"); tot.Requests != batches/keys {
		t.Errorf("k0 requests: got %d, want %d", tot.Requests, batches/keys)
	}
}

func TestSilentUsageWritersAreForgottenWhenANewOneArrives(t *testing.T) {
	st, clk, rdb, _ := newStore(t)
	ctx := context.Background()
	rec := UsageRecord{KeyID: "k", Model: "m", Usage: Usage{Requests: 1}}
	for i := range 8 { // eight sidecar restarts, each a writer
		if err := st.RecordUsageBatch(ctx, BatchID{Writer: fmt.Sprintf("old-%d", i), Seq: 1}, rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "recent", Seq: 1}, rec); err != nil {
		t.Fatal(err)
	}
	clk.Advance(UsageBatchMarkerTTL - time.Hour)
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "recent", Seq: 2}, rec); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour) // the eight are now silent for longer than the TTL; "recent" is not
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "new", Seq: 1}, rec); err != nil {
		t.Fatal(err)
	}
	got, err := rdb.HKeys(ctx, st.keys.UsageApplied("key:k")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"new", "recent"}, slices.Sorted(slices.Values(got))); diff != "" {
		t.Errorf("writers kept (-want +got):\n%s", diff)
	}
	if tot, _ := st.KeyTotals(ctx, "k"); tot.Requests != 11 {
		t.Errorf("requests: got %d, want 11", tot.Requests)
	}
}

func TestUsageBatchesRedisCannotApplyAreRefused(t *testing.T) {
	st, clk, rdb, _ := newStore(t)
	ctx := context.Background()
	// Someone wrote a string where a key's total hash belongs.
	if err := rdb.Set(ctx, st.keys.KeyUsageTotal("broken"), "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1},
		UsageRecord{KeyID: "broken", AccountID: "a", Model: "m", Usage: Usage{Requests: 1}})
	if !errors.Is(err, ErrUsageRefused) {
		t.Fatalf("got %v, want %v", err, ErrUsageRefused)
	}
	// The other group of the batch was applied; a retry does not count it again.
	_ = st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 1}, UsageRecord{KeyID: "broken", AccountID: "a", Model: "m", Usage: Usage{Requests: 1}})
	if u, _ := st.AccountUsage(ctx, "a", clk.Now()); u.Requests != 1 {
		t.Errorf("account requests: got %d, want 1", u.Requests)
	}
	for _, u := range []Usage{{InputTokens: -1}, {OutputTokens: MaxUsageValue + 1}} {
		if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 2}, UsageRecord{KeyID: "k", Usage: u}); !errors.Is(err, ErrUsageRefused) {
			t.Errorf("usage %+v: got %v, want %v", u, err, ErrUsageRefused)
		}
	}
}

// Usage batches run the script by its hash; a Redis that does not have it (restarted, or
// SCRIPT FLUSH) answers NOSCRIPT, and the groups it refused are sent again with the script
// itself: the batch is written, once, in one more round trip, and later batches are back to
// one round trip.
func TestAUsageBatchIsWrittenOnceWhenRedisForgotTheScript(t *testing.T) {
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	hook := &countHook{}
	rdb.AddHook(hook)
	ctx := context.Background()
	st, err := Open(ctx, rdb, Options{Sealer: sealer(t, testEncKey)})
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	rec := UsageRecord{KeyID: "k1", AccountID: "a1", Model: "m", At: day, Usage: Usage{Requests: 1, InputTokens: 10}}
	for seq := uint64(1); seq <= 3; seq++ {
		if seq < 3 {
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		} else { // the script is loaded now: no flush, one round trip
			hook.reset()
		}
		if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: seq}, rec); err != nil {
			t.Fatalf("batch %d: %v", seq, err)
		}
	}
	if got := hook.roundTrips(); got != 1 {
		t.Errorf("round trips of a batch once Redis has the script: got %d, want 1", got)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordUsageBatch(ctx, BatchID{Writer: "w", Seq: 3}, rec); err != nil { // a retry
		t.Fatal(err)
	}
	got, err := st.KeyTotals(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Usage{Requests: 3, InputTokens: 30}); got != want {
		t.Errorf("k1 total: got %+v, want %+v", got, want)
	}
	m, err := st.KeyUsage(ctx, "k1", day)
	if err != nil || m["m"] != (Usage{Requests: 3, InputTokens: 30}) {
		t.Errorf("k1 day: got %+v (%v), want 3 requests, 30 input tokens", m["m"], err)
	}
}
