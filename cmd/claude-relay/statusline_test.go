package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/plugins/auth-apikey/apikey"
	"github.com/claude-relay/claude-relay/sidecar"
	"github.com/claude-relay/claude-relay/sidecar/keyview"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

// statuslineRelay is a real sidecar (store on Redis, the relay-key auth provider, limits)
// whose key has spent $0.42 today under a $5/day policy, at now.
func statuslineRelay(t *testing.T, now time.Time) (url, key string) {
	t.Helper()
	ctx := context.Background()
	rdb, prefix := testredis.New(t)
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix})
	k, secret, err := st.CreateKey(ctx, store.KeySpec{Name: "dev laptop", Policy: "team"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RecordUsage(ctx, store.UsageRecord{KeyID: k.ID, AccountID: "a", Model: "claude-sonnet-4-5", At: now,
		Usage: store.Usage{Requests: 7, InputTokens: 90_000, OutputTokens: 10_000, CostMicroUSD: 420_000}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SeedKeyLimitCounter(ctx, k.ID, "cost_per_day_usd", now.UTC().Truncate(24*time.Hour), 420_000); err != nil {
		t.Fatal(err)
	}
	snap, _, diags := config.LoadFiles(map[string][]byte{"relay.hcl": []byte(`
policy "team" { cost_per_day_usd = 5 }
pool "claude" {}
route "messages" {
  paths = ["/v1/messages"]
  pool  = "claude"
}
`)})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	clock := func() time.Time { return now }
	srv := sidecar.New(sidecar.Options{
		Auth:   sidecar.NewCachedAuth(apikey.FromStore(st, "test", time.Minute, time.Second), st, hclog.NewNullLogger(), time.Minute, time.Second),
		Keys:   st,
		Limits: limits.New(rdb, st.Schema(), limits.Options{Now: clock}),
		Now:    clock,
	})
	if err := srv.Apply(snap); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs.URL, secret
}

func runLine(t *testing.T, sl statusline) string {
	t.Helper()
	in, err := os.ReadFile(filepath.Join("testdata", "statusline-input.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sl.stdin, sl.stdout = bytes.NewReader(in), &out
	if sl.ttl == 0 {
		sl.ttl = 5 * time.Second
	}
	if sl.timeout == 0 {
		sl.timeout = 800 * time.Millisecond
	}
	sl.run(context.Background())
	return strings.TrimSuffix(out.String(), "\n")
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestStatuslinePrintsSpendAgainstTheTightestLimitFromARecordedSession(t *testing.T) {
	now := time.Now().UTC().Truncate(24 * time.Hour).Add(13*time.Hour + 7*time.Minute)
	url, key := statuslineRelay(t, now)
	cache := t.TempDir()
	for _, env := range []map[string]string{
		{"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": key},
		{"ANTHROPIC_BASE_URL": url + "/", "ANTHROPIC_AUTH_TOKEN": key},
	} {
		got := runLine(t, statusline{env: envOf(env), cacheDir: cache, now: func() time.Time { return now }})
		if want := "$0.42 today · 8% of $5/day · resets 00:00 UTC"; got != want {
			t.Errorf("env %v: got %q, want %q", env, got, want)
		}
	}
	files, _ := filepath.Glob(filepath.Join(cache, "statusline-*.json"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), key) || strings.Contains(f, key) {
			t.Errorf("the cache %s holds the relay key", f)
		}
		if fi, _ := os.Stat(f); fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("cache %s mode %v, want private", f, fi.Mode().Perm())
		}
	}
}

func TestStatuslineFailurePathsStillPrintAUsefulLine(t *testing.T) {
	now := time.Now().UTC().Truncate(24 * time.Hour).Add(13*time.Hour + 7*time.Minute)
	url, key := statuslineRelay(t, now)
	cache := t.TempDir()
	clock := now
	sl := statusline{env: envOf(map[string]string{"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": key}), cacheDir: cache, now: func() time.Time { return clock }}
	if got := runLine(t, sl); !strings.HasPrefix(got, "$0.42 today") {
		t.Fatalf("first run: got %q", got)
	}

	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // a port nothing listens on
	gone := statusline{env: envOf(map[string]string{"ANTHROPIC_BASE_URL": down.URL, "ANTHROPIC_API_KEY": key}), cacheDir: cache, now: sl.now}
	if got := runLine(t, gone); got != "claude-relay: relay unreachable at "+strings.TrimPrefix(down.URL, "http://") {
		t.Errorf("unreachable, nothing cached: got %q", got)
	}

	// The relay goes away: within the TTL the cached answer is printed as is; after it, with
	// its age.
	sl.env = envOf(map[string]string{"ANTHROPIC_BASE_URL": down.URL, "ANTHROPIC_API_KEY": key})
	// (the cache is keyed by base URL: copy the answer over to the dead address's entry)
	v, at, ok := statusline{cacheDir: cache}.readCache(url, key)
	if !ok {
		t.Fatal("no cached answer after a successful run")
	}
	sl.writeCache(down.URL, key, v, at)
	clock = now.Add(2 * time.Second)
	if got := runLine(t, sl); got != "$0.42 today · 8% of $5/day · resets 00:00 UTC" {
		t.Errorf("within the TTL: got %q", got)
	}
	clock = now.Add(10 * time.Minute)
	if got, want := runLine(t, sl), "$0.42 today · 8% of $5/day · resets 00:00 UTC (as of "+now.Format("15:04")+" UTC; relay unreachable)"; got != want {
		t.Errorf("relay away after the TTL: got %q, want %q", got, want)
	}

	bad := statusline{env: envOf(map[string]string{"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "cr_" + strings.Repeat("0", 64)}), cacheDir: cache, now: sl.now}
	if got := runLine(t, bad); !strings.HasPrefix(got, "claude-relay: relay key refused: ") {
		t.Errorf("a refused key: got %q", got)
	}
	if got := runLine(t, statusline{env: envOf(nil), now: sl.now}); !strings.Contains(got, "ANTHROPIC_BASE_URL") {
		t.Errorf("no environment: got %q", got)
	}

	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hang.Close)
	slow := statusline{env: envOf(map[string]string{"ANTHROPIC_BASE_URL": hang.URL, "ANTHROPIC_API_KEY": key}), now: sl.now, timeout: 100 * time.Millisecond}
	start := time.Now()
	if got := runLine(t, slow); !strings.Contains(got, "unreachable") {
		t.Errorf("a relay that never answers: got %q", got)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a relay that never answers held the line for %v, want about the 100ms timeout", took)
	}
}

func TestStatuslineLineFormats(t *testing.T) {
	now := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		view string
		want string
	}{
		{"no limits", `{"limits":[],"spend":{"today":{"cost_usd":0.4},"this_month":{"cost_usd":12.5}}}`, "$0.40 today · $12.50 this month"},
		{"cost before tokens", `{"limits":[{"name":"tokens_per_day","unit":"tokens","limit":1000000,"used":900000},{"name":"cost_per_week_usd","unit":"usd","limit":50,"used":10,"resets_at":"2026-03-09T00:00:00Z"}],"spend":{"today":{"cost_usd":1}}}`, "$1 today · 20% of $50/week · resets Mon 00:00 UTC"},
		{"tokens only", `{"limits":[{"name":"tokens_per_day","unit":"tokens","limit":1500000,"used":150000,"resets_at":"2026-03-05T00:00:00Z"}],"spend":{"today":{"cost_usd":0}}}`, "$0.00 today · 10% of 1.5M tokens/day · resets 00:00 UTC"},
		{"under a cent", `{"limits":[],"spend":{"today":{"cost_usd":0.00222},"this_month":{"cost_usd":0.00222}}}`, "$0.0022 today · $0.0022 this month"},
		{"total never resets", `{"limits":[{"name":"cost_total_usd","unit":"usd","limit":100,"used":99.5}],"spend":{"today":{"cost_usd":2.25}}}`, "$2.25 today · 100% of $100 total"},
		{"month", `{"limits":[{"name":"cost_per_month_usd","unit":"usd","limit":20,"used":1,"resets_at":"2026-04-01T00:00:00Z"}],"spend":{"today":{"cost_usd":1}}}`, "$1 today · 5% of $20/month · resets 1 Apr 00:00 UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v keyview.View
			if err := json.Unmarshal([]byte(tt.view), &v); err != nil {
				t.Fatalf("view does not parse: %v\n%s", err, tt.view)
			}
			if got := formatLine(v, now); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStatuslineNamesTheWindowOfEveryKeyLimit(t *testing.T) {
	want := map[string]string{
		"cost_per_day_usd": "/day", "cost_per_week_usd": "/week", "cost_per_month_usd": "/month", "cost_total_usd": " total",
		"tokens_per_day": " tokens/day", "tokens_per_minute": " tokens/min", "requests_per_day": " requests/day", "requests_per_minute": " requests/min",
	}
	for d := range config.Limits() {
		if d.PerConversation || d.Counts == config.CountsInFlight {
			continue // not in the key's view
		}
		if got, ok := want[d.Name]; !ok || limitWindow(d.Name) != got {
			t.Errorf("limitWindow(%q): got %q, want %q", d.Name, limitWindow(d.Name), got)
		}
	}
	if got := limitWindow("unknown_limit"); got != "" {
		t.Errorf("limitWindow of an unknown limit: got %q, want \"\"", got)
	}
}
