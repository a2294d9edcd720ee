package sidecar_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

// openStore opens the real store on rdb under prefix.
func openStore(t *testing.T, rdb redis.UniversalClient, prefix string) *store.Store {
	t.Helper()
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix})
	return st
}

// counterValue reads one counter of a registry (registering it again returns the same one).
func counterValue(reg *metrics.Registry, name, help string, labels ...string) float64 {
	var names []string
	for i := 0; i < len(labels); i += 2 {
		names = append(names, labels[i])
	}
	var values []string
	for i := 1; i < len(labels); i += 2 {
		values = append(values, labels[i])
	}
	return reg.Counter(name, help, names...).With(values...).Value()
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// TestNegativeUpstreamUsageIsClampedAndLaterUsageIsRecorded: an upstream reporting a negative
// token count neither reaches the store (which would refuse the batch) nor stops the usage
// behind it; the count is clamped, counted and logged.
func TestNegativeUpstreamUsageIsClampedAndLaterUsageIsRecorded(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.up.Enqueue(
		fakeupstream.Script{Usage: &fakeupstream.Usage{InputTokens: -5000, OutputTokens: 7}},
		fakeupstream.Script{Usage: &fakeupstream.Usage{InputTokens: 11, OutputTokens: 5}},
	)
	for _, body := range []string{streamBody, jsonBody} {
		resp := h.post("/v1/messages", h.key, body, nil)
		if b := readAll(t, resp.Body); resp.StatusCode != http.StatusOK {
			t.Fatalf("got %d %s, want 200", resp.StatusCode, b)
		}
	}
	got := h.waitUsage("claude-sonnet-4-5-20250929", 2)
	if got.InputTokens != 11 || got.OutputTokens != 12 {
		t.Errorf("got %+v, want 11 input tokens (the negative count clamped to 0) and 12 output", got)
	}
	resp, err := http.Get(h.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if m := readAll(t, resp.Body); !strings.Contains(m, `claude_relay_usage_invalid_total{field="input_tokens"} 1`) {
		t.Errorf("metrics lack claude_relay_usage_invalid_total{field=\"input_tokens\"} 1:\n%s", m)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "out of range; clamped") || !strings.Contains(logs, "fields=input_tokens") {
		t.Errorf("logs lack the clamped usage warning:\n%s", logs)
	}
}

// TestRefusedUsageBatchIsQuarantinedAndLaterRecordsAreWritten: a batch the store refuses (a
// negative count in a spool an older version wrote) is set aside in the quarantine file and
// never retried; the batches behind it and new records are written.
func TestRefusedUsageBatchIsQuarantinedAndLaterRecordsAreWritten(t *testing.T) {
	rdb, prefix := testredis.New(t)
	st := openStore(t, rdb, prefix)
	dir := t.TempDir()
	spool := filepath.Join(dir, "usage-spool.jsonl")
	now := time.Now().UTC()
	var lines []byte
	for _, b := range []struct {
		name string
		rec  store.UsageRecord
	}{
		{"bad-batch-from-an-old-spool", store.UsageRecord{KeyID: "k-bad", AccountID: "a", Model: "m", At: now, Usage: store.Usage{Requests: 1, InputTokens: -5000}}},
		{"good-batch-behind-it", store.UsageRecord{KeyID: "k-spooled", AccountID: "a", Model: "m", At: now, Usage: store.Usage{Requests: 1, InputTokens: 3}}},
	} {
		line, err := json.Marshal(map[string]any{"batch": b.name, "records": []store.UsageRecord{b.rec}})
		if err != nil {
			t.Fatal(err)
		}
		lines = append(append(lines, line...), '\n')
	}
	if err := os.WriteFile(spool, lines, 0o600); err != nil {
		t.Fatal(err)
	}

	reg := metrics.NewRegistry()
	logs := &testutil.Buffer{}
	rec := sidecar.NewRecorder(st, sidecar.RecorderOptions{Logger: hclog.New(&hclog.LoggerOptions{Output: logs}), Metrics: reg, SpoolPath: spool})
	ctx, cancel := context.WithCancel(context.Background())
	go rec.Run(ctx, 2*time.Second)
	rec.Record(sidecar.UsageRecord{KeyID: "k-live", AccountID: "a", Model: "m", At: now, Counts: sidecar.Counts{TokenCounts: config.TokenCounts{Input: 4, Output: 2}}})

	ctxb := context.Background()
	testutil.Eventually(t, 10*time.Second, "the condition", func() bool {
		s, _ := st.KeyTotals(ctxb, "k-spooled")
		l, _ := st.KeyTotals(ctxb, "k-live")
		return s.Requests == 1 && l.Requests == 1
	})
	cancel()
	rec.Wait()

	if bad, _ := st.KeyTotals(ctxb, "k-bad"); bad != (store.Usage{}) {
		t.Errorf("refused batch: got %+v counted, want nothing", bad)
	}
	if a, _ := st.AccountUsage(ctxb, "a", now); a.Requests != 2 || a.InputTokens != 7 {
		t.Errorf("account: got %+v, want the two good records only", a)
	}
	q := readLines(t, filepath.Join(dir, "usage-quarantine.jsonl"))
	if len(q) != 1 || !strings.Contains(q[0], `"bad-batch-from-an-old-spool"`) || !strings.Contains(q[0], "negative input_tokens") || !strings.Contains(q[0], `"k-bad"`) {
		t.Errorf("quarantine file: got %q, want the refused batch with its records and the reason", q)
	}
	if got := counterValue(reg, "claude_relay_usage_quarantined_total", "Usage records in batches the store refused, set aside in the quarantine file instead of being retried."); got != 1 {
		t.Errorf("claude_relay_usage_quarantined_total: got %v, want 1", got)
	}
	if got := counterValue(reg, "claude_relay_redis_errors_total", "Redis operations that failed.", "op", "record_usage"); got != 0 {
		t.Errorf("record_usage errors: got %v, want 0 (a refusal is not retried)", got)
	}
	if _, err := os.Stat(spool); !os.IsNotExist(err) {
		t.Errorf("spool after a clean stop: got %v, want no file (nothing left to replay)", err)
	}
	if !strings.Contains(logs.String(), "refused by the store; set aside") {
		t.Errorf("logs lack the quarantine line:\n%s", logs.String())
	}
}

// TestSpooledBatchThatLandedBeforeIsNotCountedTwice: a batch whose write reached Redis but
// whose answer did not (so it was spooled at shutdown) is recognised when the spool is
// replayed by the next process.
func TestSpooledBatchThatLandedBeforeIsNotCountedTwice(t *testing.T) {
	rdb, prefix := testredis.New(t)
	st := openStore(t, rdb, prefix)
	ctx := context.Background()
	now := time.Now().UTC()
	recs := []store.UsageRecord{{KeyID: "k", AccountID: "a", Model: "m", At: now, Usage: store.Usage{Requests: 1, OutputTokens: 9}}}
	// The previous process wrote batch 7, lost the answer and spooled it; batch 8 never left.
	if err := st.RecordUsageBatch(ctx, store.BatchID{Writer: "previous-process", Seq: 7}, recs...); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(t.TempDir(), "usage-spool.jsonl")
	var lines []byte
	for _, seq := range []uint64{7, 8} {
		line, _ := json.Marshal(map[string]any{"writer": "previous-process", "seq": seq, "records": recs})
		lines = append(append(lines, line...), '\n')
	}
	if err := os.WriteFile(spool, lines, 0o600); err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	rec := sidecar.NewRecorder(st, sidecar.RecorderOptions{Metrics: reg, SpoolPath: spool})
	rctx, cancel := context.WithCancel(ctx)
	go rec.Run(rctx, 2*time.Second)
	testutil.Eventually(t, 10*time.Second, "the condition", func() bool {
		return counterValue(reg, "claude_relay_usage_records_written_total", "Usage records written to Redis.") == 2
	})
	cancel()
	rec.Wait()
	if got, _ := st.KeyTotals(ctx, "k"); got.Requests != 2 || got.OutputTokens != 18 {
		t.Errorf("got %+v, want 2 requests and 18 output tokens (batch 7 once, batch 8 once)", got)
	}
}

// TestUsageRetryBackoffGrowsWhileRedisIsDown: a batch that cannot be written is retried
// after 100 ms, 200 ms, 400 ms, … (up to 10 s), not every 100 ms; nothing is lost when
// Redis comes back.
func TestUsageRetryBackoffGrowsWhileRedisIsDown(t *testing.T) {
	srv := testredis.StartServer(t)
	// One dial per attempt, so an attempt takes no time next to the backoff.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond, DialerRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	st := openStore(t, rdb, "crs-test:backoff:")
	srv.Stop()

	reg := metrics.NewRegistry()
	rec := sidecar.NewRecorder(st, sidecar.RecorderOptions{Metrics: reg})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); rec.Wait() }()
	go rec.Run(ctx, time.Second)
	rec.Record(sidecar.UsageRecord{KeyID: "k", Model: "m", At: time.Now(), Counts: sidecar.Counts{TokenCounts: config.TokenCounts{Input: 1}}})

	// Note when each failed attempt is counted, for a while.
	var at []time.Time
	last := 0.0
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if v := counterValue(reg, "claude_relay_redis_errors_total", "Redis operations that failed.", "op", "record_usage"); v > last {
			at = append(at, time.Now())
			last = v
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(at) < 4 {
		t.Fatalf("got %d failed attempts in 2.5 s, want at least 4", len(at))
	}
	// Lower bounds only: a busy machine makes the gaps longer, never shorter.
	for i, want := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond} {
		if gap := at[i+2].Sub(at[i+1]); gap < want*9/10 {
			t.Errorf("gap before attempt %d: got %v, want at least %v (the backoff doubles)", i+3, gap, want)
		}
	}
	if len(at) > 8 {
		t.Errorf("got %d attempts in 2.5 s, want at most 8 (100 ms, 200, 400, 800, … apart)", len(at))
	}
	srv.Start()
	testutil.Eventually(t, 15*time.Second, "the condition", func() bool {
		u, err := st.KeyTotals(context.Background(), "k")
		return err == nil && u.Requests == 1
	})
}
