package crs_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/migrate/crs"
	"github.com/claude-relay/claude-relay/internal/migrate/crs/crstest"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

const crsKey = "CRS-ENCRYPTION-KEY-32-CHARACTERS"

var decrypter = sync.OnceValues(func() (*crs.Decrypter, error) { return crs.NewDecrypter(crsKey) })

func dec(t testing.TB) *crs.Decrypter {
	t.Helper()
	d, err := decrypter()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// crsRedis starts a Redis of its own for a CRS installation and returns a client of it and
// a writer that fills it the way CRS does; both close with the test.
func crsRedis(tb testing.TB) (*redis.Client, *crstest.Writer) {
	tb.Helper()
	srv := testredis.StartServer(tb)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	tb.Cleanup(func() { rdb.Close() })
	return rdb, &crstest.Writer{RDB: rdb, EncryptionKey: crsKey}
}

// readPlan reads the CRS installation in rdb and plans its import with the default options.
func readPlan(t *testing.T, rdb *redis.Client) *crs.Plan {
	t.Helper()
	ds, err := crs.Read(context.Background(), rdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := crs.Build(ds, dec(t), crs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func i64(v int64) *int64     { return &v }
func usd(v float64) *float64 { return &v }

func TestReadOnlyClientRefusesEveryWrite(t *testing.T) {
	ctx := context.Background()
	srv := testredis.StartServer(t)
	rdb, err := crs.ConnectReadOnly(ctx, "redis://"+srv.Addr()+"/0")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if err := rdb.Set(ctx, "apikey:x", "1", 0).Err(); !errors.Is(err, crs.ErrWriteRefused) {
		t.Errorf("SET: got %v, want ErrWriteRefused", err)
	}
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HGetAll(ctx, "apikey:x")
		p.HSet(ctx, "apikey:x", "a", "b")
		return nil
	})
	if !errors.Is(err, crs.ErrWriteRefused) {
		t.Errorf("pipeline with HSET: got %v, want ErrWriteRefused", err)
	}
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer plain.Close()
	if n, _ := plain.DBSize(ctx).Result(); n != 0 {
		t.Errorf("the CRS Redis has %d keys, want none written", n)
	}
}

func TestLimitsMapToTheClosestStricterRule(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string]string
		want   store.KeyLimits
		note   string // a stricter-rule note the plan must carry ("" for none)
	}{
		{"per minute is exact", map[string]string{"rateLimitWindow": "1", "rateLimitRequests": "30", "tokenLimit": "90000"},
			store.KeyLimits{RequestsPerMinute: i64(30), TokensPerMinute: i64(90000)}, ""},
		{"requests per hour become per minute", map[string]string{"rateLimitWindow": "60", "rateLimitRequests": "600"},
			store.KeyLimits{RequestsPerMinute: i64(10)}, "600 requests per 60 min → requests_per_minute 10"},
		{"rare requests become per day", map[string]string{"rateLimitWindow": "60", "rateLimitRequests": "10"},
			store.KeyLimits{RequestsPerDay: i64(10)}, "10 requests per 60 min → requests_per_day 10"},
		{"tokens per window become per day", map[string]string{"rateLimitWindow": "300", "tokenLimit": "500000", "rateLimitCost": "3"},
			store.KeyLimits{TokensPerDay: i64(500000)}, "tokenLimit 500000 per 300 min → tokens_per_day 500000"},
		{"cost per window becomes per day", map[string]string{"rateLimitWindow": "300", "rateLimitCost": "2.5"},
			store.KeyLimits{CostPerDayUSD: usd(2.5)}, "rateLimitCost $2.5 per 300 min → the next longer cost window"},
		{"the stricter of two day costs wins", map[string]string{"rateLimitWindow": "1440", "rateLimitCost": "4", "dailyCostLimit": "3"},
			store.KeyLimits{CostPerDayUSD: usd(3)}, ""},
		{"direct limits", map[string]string{"concurrencyLimit": "2", "totalCostLimit": "100", "weeklyOpusCostLimit": "20"},
			store.KeyLimits{Concurrency: i64(2), CostTotalUSD: usd(100), CostPerWeekUSD: usd(20)}, ""},
		{"no window, no rate limit (as in CRS)", map[string]string{"rateLimitRequests": "5"}, store.KeyLimits{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := crs.Record{"id": "k1", "name": "k", "apiKey": strings.Repeat("ab", 32), "isActive": "true"}
			maps.Copy(rec, tt.fields)
			p, err := crs.Build(&crs.Dataset{Keys: []crs.Record{rec}}, dec(t), crs.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, p.Keys[0].Spec.Rules.Limits); diff != "" {
				t.Errorf("limits (-want +got):\n%s", diff)
			}
			var stricter []string
			for _, n := range p.Notes() {
				if n.Category == crs.NoteStricter {
					stricter = append(stricter, n.Message)
				}
			}
			if tt.note == "" && len(stricter) > 0 || tt.note != "" && !strings.Contains(strings.Join(stricter, "\n"), tt.note) {
				t.Errorf("stricter notes %q, want %q", stricter, tt.note)
			}
		})
	}
}

func TestAccountInSeveralGroupsIsPlacedInOneAndReported(t *testing.T) {
	ctx := context.Background()
	rdb, w := crsRedis(t)
	a, _ := w.AddConsoleAccount(ctx, "shared", "https://relay.example.com", "sk-ant-api03-shared-0123456789abcdef", nil, nil)
	b, _ := w.AddConsoleAccount(ctx, "only-b", "https://relay.example.com/v1/messages", "sk-ant-api03-onlyb-0123456789abcdef", nil, nil)
	w.AddGroup(ctx, "ga", "claude", a)
	w.AddGroup(ctx, "gb", "claude", a, b)
	p := readPlan(t, rdb)
	groups := map[string]string{}
	for _, ap := range p.Accounts {
		groups[ap.Spec.Name] = ap.Spec.Group
		if ap.Spec.BaseURL != "https://relay.example.com" {
			t.Errorf("%s: base URL %q, want https://relay.example.com", ap.Spec.Name, ap.Spec.BaseURL)
		}
	}
	// "shared" goes where it keeps a group from being empty: ga.
	if groups["shared"] != "ga" || groups["only-b"] != "gb" {
		t.Errorf("got groups %v, want shared in ga and only-b in gb", groups)
	}
	var found bool
	for _, n := range p.Notes() {
		found = found || n.Category == crs.NoteStricter && strings.Contains(n.Message, "placed in ga only") && strings.Contains(n.Message, "gb")
	}
	if !found {
		t.Errorf("no note says the shared account left gb: %+v", p.Notes())
	}
}

func TestImportResumesAfterAnInterruptionAndASecondRunChangesNothing(t *testing.T) {
	ctx := context.Background()
	crsRDB, w := crsRedis(t)
	acct, _ := w.AddConsoleAccount(ctx, "console", "https://api.anthropic.com", "sk-ant-api03-console-0123456789abcdef", nil, nil)
	const n = 1200 // more than one chunk of the import
	ids := make([]string, n)
	for i := range ids {
		id, _, err := w.AddKey(ctx, map[string]string{"name": fmt.Sprint("key-", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
		if i%100 == 0 {
			if err := w.Record(ctx, id, acct, "claude-sonnet-4-5", time.Now().Add(-time.Hour), crstest.Usage{Input: 100, Output: 10, RealCost: 0.01, RatedCost: 0.01}); err != nil {
				t.Fatal(err)
			}
		}
	}
	plan := readPlan(t, crsRDB)
	rdb, prefix := testredis.New(t)
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix})
	// Interrupted after the first chunk of keys.
	cctx, cancel := context.WithCancel(ctx)
	_, err := crs.Apply(cctx, st, plan, []byte(crsKey), func(p crs.Progress) {
		if p.Stage == "keys" {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: got %v, want context.Canceled", err)
	}
	res, err := crs.Apply(ctx, st, plan, []byte(crsKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.KeysCreated+res.KeysExisting != n || res.KeysCreated == 0 || res.KeysExisting == 0 || res.AccountsExisting != 1 {
		t.Errorf("resumed run: got %+v, want the rest of %d keys created and the account found", res, n)
	}
	if left, _ := st.LegacyKeysLeft(ctx); left != n {
		t.Errorf("got %d legacy keys, want %d", left, n)
	}
	var total store.Usage
	imported, _ := st.ImportedKeyIDs(ctx)
	for _, id := range ids {
		u, _ := st.KeyTotals(ctx, imported["crs:"+id])
		total = total.Add(u)
	}
	if total.Requests != n/100 || total.CostMicroUSD != n/100*10_000 {
		t.Errorf("usage after the resumed run: %+v, want %d requests and $%.2f", total, n/100, float64(n/100)*0.01)
	}
	before := testredis.Dump(t, rdb, prefix)
	res, err = crs.Apply(ctx, st, plan, []byte(crsKey), nil)
	if err != nil || res.KeysCreated != 0 || res.AccountsAdded != 0 || res.Seeded != 0 {
		t.Errorf("third run: %+v, %v; want nothing new", res, err)
	}
	after := testredis.Dump(t, rdb, prefix)
	for k, v := range after {
		if before[k] != v {
			t.Errorf("a run after a complete one changed %s", k)
		}
	}
	if len(after) != len(before) {
		t.Errorf("a run after a complete one went from %d to %d keys", len(before), len(after))
	}
}

func TestCRSDaysLandOnUTCDaysExactlyByHourElseByTheirMidpoint(t *testing.T) {
	ctx := context.Background()
	crsRDB, w := crsRedis(t) // UTC+8
	exact, _, _ := w.AddKey(ctx, map[string]string{"name": "exact"})
	shifted, _, _ := w.AddKey(ctx, map[string]string{"name": "shifted"})
	// CRS day 2026-11-20 (UTC+8) runs from 2026-11-19 16:00 to 2026-11-20 16:00 UTC.
	early := time.Date(2026, 11, 19, 18, 0, 0, 0, time.UTC) // 02:00 local
	late := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)  // 20:00 local
	u := crstest.Usage{Input: 100, Output: 10, RealCost: 0.5, RatedCost: 0.5}
	for _, id := range []string{exact, shifted} {
		for _, at := range []time.Time{early, late} {
			if err := w.Record(ctx, id, "", "claude-sonnet-4-5", at, u); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The shifted key's early hour has expired in CRS (hourly hashes live 7 days).
	crsRDB.Del(ctx, "usage:"+shifted+":model:hourly:claude-sonnet-4-5:2026-11-20:02")
	plan := readPlan(t, crsRDB)
	if plan.KeyDays != 2 || plan.DaysByHour != 1 {
		t.Errorf("got %d days, %d split by hour; want 2 and 1", plan.KeyDays, plan.DaysByHour)
	}
	rdb, prefix := testredis.New(t)
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix})
	if _, err := crs.Apply(ctx, st, plan, []byte(crsKey), nil); err != nil {
		t.Fatal(err)
	}
	ids, _ := st.ImportedKeyIDs(ctx)
	one := store.Usage{Requests: 1, InputTokens: 100, OutputTokens: 10, CostMicroUSD: 500_000}
	for _, tt := range []struct {
		key      string
		day19    store.Usage
		day20    store.Usage
		whyFirst string
	}{
		{exact, one, one, "by hour: one request on each UTC day"},
		{shifted, store.Usage{}, one.Add(one), "by midpoint: local noon is 04:00 UTC on the 20th"},
	} {
		d19, _ := st.KeyUsage(ctx, ids["crs:"+tt.key], early)
		d20, _ := st.KeyUsage(ctx, ids["crs:"+tt.key], late)
		if d19["claude-sonnet-4-5"] != tt.day19 || d20["claude-sonnet-4-5"] != tt.day20 {
			t.Errorf("%s: got 19th %+v, 20th %+v; want %+v, %+v", tt.whyFirst, d19["claude-sonnet-4-5"], d20["claude-sonnet-4-5"], tt.day19, tt.day20)
		}
	}
}
