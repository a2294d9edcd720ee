package alerts

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
)

// raisedNames returns the raised conditions as "<event>|<subject>" → severity.
func raisedNames(t *testing.T, o *Outbox) map[string]string {
	t.Helper()
	r, err := o.Raised(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, e := range r {
		out[k] = e.Severity
	}
	return out
}

// lastEvent returns the newest event in the stream.
func lastEvent(t *testing.T, o *Outbox) Event {
	t.Helper()
	ev, err := o.RecentEvents(context.Background(), 1)
	if err != nil || len(ev) != 1 {
		t.Fatalf("RecentEvents = %v, %v", ev, err)
	}
	return ev[0]
}

func observe(t *testing.T, src Source, o *Outbox) {
	t.Helper()
	if err := src.Observe(context.Background(), o); err != nil {
		t.Fatalf("%s: %v", src.Name, err)
	}
}

func TestLongOrHardParksRaiseAccountParkedAndTheReturnClearsIt(t *testing.T) {
	st, rdb, _ := openStore(t)
	ctx := context.Background()
	now := time.Now()
	ms := func(d time.Duration) string { return fmt.Sprint(now.Add(d).UnixMilli()) }
	parks := st.Schema().AccountsParked()
	rdb.HSet(ctx, parks,
		"short", ms(time.Minute)+"|rate_limited|429|rate limited",
		"long", ms(time.Hour)+"|rate_limited|429|weekly limit",
		"revoked", "0|unauthorized|401|invalid x-api-key",
		"flaky/opus", ms(time.Minute)+"|failing|500|3 errors in 60s")
	o := NewOutbox(st, nil)
	src := ParkSource(st, ParkOptions{})
	observe(t, src, o)
	got := raisedNames(t, o)
	want := map[string]string{"account_parked|long": "warning", "account_parked|revoked": "critical", "account_parked|flaky": "warning"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("raised %v, want %v", got, want)
	}
	observe(t, src, o) // nothing new
	if ev, _ := o.RecentEvents(ctx, 10); len(ev) != 3 {
		t.Fatalf("%d events after a second look, want 3", len(ev))
	}
	rdb.HDel(ctx, parks, "revoked")
	observe(t, src, o)
	e := lastEvent(t, o)
	if !e.Resolved || e.Subject != "revoked" || e.Severity != config.SeverityCritical || e.Summary != "back in rotation" {
		t.Fatalf("all-clear = %+v", e)
	}
}

func TestKeysCrossingEightyPercentAndTheirCostLimitsOfAnyWindowRaiseBudgetEvents(t *testing.T) {
	st, rdb, _ := openStore(t)
	ctx := context.Background()
	usd := func(v float64) *float64 { return &v }
	snap := &config.Snapshot{Policies: map[string]config.Policy{"team": {CostPerDayUSD: 100, CostPerWeekUSD: 5}}}
	lim := limits.New(rdb, st.Schema(), limits.Options{})
	t.Cleanup(lim.Close)
	key := func(spec store.KeySpec, spent float64) store.Key {
		k, _, err := st.CreateKey(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		base := (*config.Policy)(nil)
		if p, ok := snap.Policies[k.Policy]; ok {
			base = &p
		}
		// Charged as a sidecar charges a request: admitted, then finished with its cost.
		lease, refusal, err := lim.Admit(ctx, k.ID, limits.FromPolicy(base.WithKeyLimits(config.KeyLimits(k.Rules.Limits))))
		if err != nil || refusal != nil {
			t.Fatalf("admit %s: %v %+v", k.Name, err, refusal)
		}
		if err := lease.Finish(ctx, limits.Usage{CostMicroUSD: int64(spent * 1e6)}); err != nil {
			t.Fatal(err)
		}
		return k
	}
	day := key(store.KeySpec{Name: "own-day", Owner: "ana", Rules: store.KeyRules{Limits: store.KeyLimits{CostPerDayUSD: usd(10)}}}, 8.5)
	week := key(store.KeySpec{Name: "policy-week", Policy: "team"}, 5.25)
	total := key(store.KeySpec{Name: "lifetime", Rules: store.KeyRules{Limits: store.KeyLimits{CostTotalUSD: usd(20), CostPerMonthUSD: usd(100)}}}, 17)
	key(store.KeySpec{Name: "monthly", Rules: store.KeyRules{Limits: store.KeyLimits{CostPerMonthUSD: usd(10)}}}, 1)
	key(store.KeySpec{Name: "unlimited"}, 1000)
	o := NewOutbox(st, nil)
	src := BudgetSource(st, func() *config.Snapshot { return snap }, DefaultBudgetThreshold, DefaultBudgetEvery, nil)
	observe(t, src, o)
	want := map[string]string{
		"budget_threshold|" + day.ID: "warning", "budget_threshold|" + week.ID: "warning", "budget_reached|" + week.ID: "critical",
		"budget_threshold|" + total.ID: "warning",
	}
	if got := raisedNames(t, o); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("raised %v, want %v", got, want)
	}
	raised, _ := o.Raised(ctx)
	for id, words := range map[string]string{
		day.ID:   `key "own-day" (owner "ana") spent $8.50 of its $10.00 cost_per_day_usd limit today (85%)`,
		week.ID:  "$5.25 of its $5.00 cost_per_week_usd limit this week (105%)",
		total.ID: "$17.00 of its $20.00 cost_total_usd limit in total (85%)",
	} {
		if s := raised["budget_threshold|"+id].Summary; !strings.Contains(s, words) {
			t.Errorf("summary %q lacks %q", s, words)
		}
	}
	// A higher limit is the all-clear of the reached one.
	snap = &config.Snapshot{Policies: map[string]config.Policy{"team": {CostPerDayUSD: 100, CostPerWeekUSD: 6}}}
	observe(t, src, o)
	if e := lastEvent(t, o); !e.Resolved || e.Name != config.EventBudgetReached || e.Subject != week.ID {
		t.Fatalf("last event = %+v, want budget_reached's all-clear", e)
	}
}

func TestAFailingOAuthRefreshRaisesAndTheNextSuccessClears(t *testing.T) {
	st, _, _ := openStore(t)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	a, err := st.AddAccount(ctx, store.AccountSpec{Name: "sub", Type: store.AccountTypeClaudeOAuth, Credential: "sk-ant-oat01-access", RefreshToken: "sk-ant-ort01-refresh", TokenExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}
	o := NewOutbox(st, nil)
	src := RefreshSource(st)
	observe(t, src, o)
	if got := raisedNames(t, o); len(got) != 0 {
		t.Fatalf("raised %v before any failure", got)
	}
	if err := st.SetRefreshFailure(ctx, a.ID, "token endpoint answered 400: invalid_grant", time.Now(), time.Now().Add(time.Minute), 1); err != nil {
		t.Fatal(err)
	}
	observe(t, src, o)
	e := lastEvent(t, o)
	if e.Name != config.EventOAuthRefreshFailed || e.Subject != a.ID || e.Severity != config.SeverityCritical || e.Resolved {
		t.Fatalf("event = %+v", e)
	}
	if err := st.SetOAuthTokens(ctx, a.ID, "sk-ant-oat01-new", "sk-ant-ort01-new", &exp); err != nil {
		t.Fatal(err)
	}
	observe(t, src, o)
	if e := lastEvent(t, o); !e.Resolved || e.Summary != "token refreshed" {
		t.Fatalf("all-clear = %+v", e)
	}
}

func TestSidecarNacksAndFailingPluginsRaiseUntilFixed(t *testing.T) {
	st, _, _ := openStore(t)
	sidecars := []configapi.Sidecar{
		{ID: "sc-1", Version: 4, NackVersion: 5, LastError: "route x: pool y unknown",
			Health: &configapi.Health{Components: map[string]configapi.Component{"plugin.auth": {Status: "error", Error: "plugin exited 3 times in 60s"}, "redis": {Status: "error"}}}},
		{ID: "sc-2", Version: 5, NackVersion: 3, LastError: "old refusal"},
	}
	own := configapi.Health{Components: map[string]configapi.Component{"plugin.crypto": {Status: "ok"}}}
	o := NewOutbox(st, nil)
	src := SidecarSource(func(context.Context) ([]configapi.Sidecar, error) { return sidecars, nil },
		func(context.Context) configapi.Health { return own })
	observe(t, src, o)
	want := map[string]string{"sidecar_nack|sc-1": "critical", "plugin_failed|sidecar sc-1: plugin.auth": "critical"}
	if got := raisedNames(t, o); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("raised %v, want %v", got, want)
	}
	sidecars[0].Version, sidecars[0].Health = 5, nil
	own.Components["plugin.crypto"] = configapi.Component{Status: "error", Error: "no healthy instance"}
	observe(t, src, o)
	want = map[string]string{"plugin_failed|control plane: plugin.crypto": "critical"}
	if got := raisedNames(t, o); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("raised %v, want %v", got, want)
	}
}

func TestARefusedReloadRaisesConfigRefusedOnceAndTheNextGoodOneClears(t *testing.T) {
	st, _, _ := openStore(t)
	o := NewOutbox(st, nil)
	hook := ConfigReloads(o, "host:/etc/claude-relay", nil)
	ctx := context.Background()
	hook(ctx, false, "")
	hook(ctx, true, "relay.hcl:3,1-2: Unsupported block type")
	hook(ctx, true, "relay.hcl:3,1-2: Unsupported block type")
	hook(ctx, false, "")
	hook(ctx, false, "")
	ev, err := o.RecentEvents(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 2 || ev[1].Resolved || !ev[0].Resolved || ev[1].Subject != "host:/etc/claude-relay" {
		t.Fatalf("events = %+v, want one raise then one all-clear", ev)
	}
}

func TestATamperedAccountRaisesAccountParked(t *testing.T) {
	st, rdb, _ := openStore(t)
	ctx := context.Background()
	a, err := st.AddAccount(ctx, store.AccountSpec{Name: "team-key", BaseURL: "https://api.anthropic.com", Credential: "sk-ant-api03-secret"})
	if err != nil {
		t.Fatal(err)
	}
	o := NewOutbox(st, nil)
	clock := time.Now()
	src := ParkSource(st, ParkOptions{Now: func() time.Time { return clock }})
	observe(t, src, o)
	if got := raisedNames(t, o); len(got) != 0 {
		t.Fatalf("raised %v before tampering", got)
	}
	rdb.HSet(ctx, st.Schema().Account(a.ID), "base_url", "https://attacker.example")
	clock = clock.Add(tamperEvery)
	observe(t, src, o)
	e := lastEvent(t, o)
	if e.Subject != a.ID || e.Severity != config.SeverityCritical || !strings.Contains(e.Summary, `"team-key" tampered`) {
		t.Fatalf("event = %+v", e)
	}
}

func TestASubscriptionWindowAboveEachBlocksThresholdRaisesForThatBlockAndClearsWhenItResets(t *testing.T) {
	st, rdb, _ := openStore(t)
	ctx := context.Background()
	a, err := st.AddAccount(ctx, store.AccountSpec{Name: "max-plan", BaseURL: "https://api.anthropic.com", Credential: "sk-ant-api03-x"})
	if err != nil {
		t.Fatal(err)
	}
	cool, err := st.AddAccount(ctx, store.AccountSpec{Name: "quiet", BaseURL: "https://api.anthropic.com", Credential: "sk-ant-api03-y"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var later atomic.Int64 // the source's clock: start + later
	clock := func() time.Time { return start.Add(time.Duration(later.Load())) }
	write := func(id string, w store.Windows) {
		w.ObservedAt = clock()
		if err := rdb.HSet(ctx, st.Schema().AccountWindows(), id, w.Encode()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	write(a.ID, store.Windows{FiveHour: &store.Window{Utilization: 0.85, Reset: start.Add(time.Hour)},
		SevenDay: &store.Window{Utilization: 0.4, Reset: start.Add(72 * time.Hour)}})
	write(cool.ID, store.Windows{FiveHour: &store.Window{Utilization: 0.79, Reset: start.Add(time.Hour)}})
	rcvLow, rcvHigh := newReceiver(t), newReceiver(t)
	alertsCfg := map[string]config.Alert{"low": webhookAlert(rcvLow.srv.URL, config.EventSubscriptionWindow), "high": webhookAlert(rcvHigh.srv.URL, config.EventSubscriptionWindow)}
	low, high := alertsCfg["low"], alertsCfg["high"]
	low.WindowThreshold, high.WindowThreshold = 0.8, 0.9
	alertsCfg["low"], alertsCfg["high"] = low, high
	src := WindowSource(st, func() map[string]config.Alert { return alertsCfg }, clock)
	src.Every = 20 * time.Millisecond
	svc := newTestService(t, st, alertsCfg, map[string]string{"HOOK_SECRET": testSecret}, func(o *Options) { o.Sources = []Source{src} })
	run(t, svc)
	testutil.Eventually(t, 5*time.Second, "the 0.8 block's message", func() bool { return len(rcvLow.requests()) == 1 })
	body := string(rcvLow.requests()[0].body)
	if !strings.Contains(body, `\"max-plan\": 5h subscription window at 85% (threshold 80%)`) || strings.Contains(body, cool.ID) {
		t.Fatalf("message = %s", body)
	}
	want := map[string]string{"subscription_window|" + a.ID + "|0.8": "warning"}
	if got := raisedNames(t, svc.Outbox()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("raised %v, want %v", got, want)
	}
	// The 7-day window used up: the 0.9 block hears it, as critical.
	write(a.ID, store.Windows{SevenDay: &store.Window{Utilization: 1.01, Reset: start.Add(72 * time.Hour), Status: "rejected"}})
	testutil.Eventually(t, 5*time.Second, "the 0.9 block's message", func() bool { return len(rcvHigh.requests()) == 1 })
	if body := string(rcvHigh.requests()[0].body); !strings.Contains(body, "7d subscription window at 101% (threshold 90%)") || !strings.Contains(body, `"severity":"critical"`) {
		t.Fatalf("message = %s", body)
	}
	// The window resets: both conditions clear, each block hears its own all-clear.
	later.Store(int64(73 * time.Hour))
	testutil.Eventually(t, 5*time.Second, "both all-clears", func() bool { return len(rcvLow.requests()) == 2 && len(rcvHigh.requests()) == 2 })
	for _, r := range []*receiver{rcvLow, rcvHigh} {
		if body := string(r.requests()[1].body); !strings.Contains(body, "relay.alert.subscription_window.resolved") || !strings.Contains(body, "the window reset") {
			t.Fatalf("all-clear = %s", body)
		}
	}
	if got := raisedNames(t, svc.Outbox()); len(got) != 0 {
		t.Fatalf("still raised: %v", got)
	}
}

func TestAnAccountOverloadedThreeTimesInTenMinutesRaisesAccountParkedThoughEachParkIsShort(t *testing.T) {
	st, rdb, _ := openStore(t)
	ctx := context.Background()
	a, err := st.AddAccount(ctx, store.AccountSpec{Name: "busy", BaseURL: "https://api.anthropic.com", Credential: "sk-ant-api03-x"})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	opts := ParkOptions{Now: func() time.Time { return clock }}
	o := NewOutbox(st, nil)
	parks := st.Schema().AccountsParked()
	overload := func(src Source) {
		t.Helper()
		// A 529 parks the account for 15 s (the scheduler's default); the source sees it, then
		// the park ends before the next one.
		rdb.HSet(ctx, parks, a.ID, fmt.Sprint(clock.Add(15*time.Second).UnixMilli())+"|overloaded|529|Overloaded")
		observe(t, src, o)
		observe(t, src, o) // the same park seen again is not a new overload
		rdb.HDel(ctx, parks, a.ID)
		clock = clock.Add(time.Minute)
		observe(t, src, o)
	}
	src := ParkSource(st, opts)
	overload(src)
	overload(src)
	if got := raisedNames(t, o); len(got) != 0 {
		t.Fatalf("raised %v after two short overloads", got)
	}
	// The third comes after the alerts lock moved to another control plane: the count is
	// in Redis, so the new holder's source goes on from two.
	src = ParkSource(st, opts)
	overload(src)
	e := lastEvent(t, o)
	if e.Name != config.EventAccountParked || e.Subject != a.ID || e.Resolved || e.Severity != config.SeverityWarning ||
		!strings.Contains(e.Summary, `"busy" overloaded (529) 3 times in the last 10m0s`) {
		t.Fatalf("event = %+v", e)
	}
	if ev, _ := o.RecentEvents(ctx, 10); len(ev) != 1 {
		t.Fatalf("%d events, want the one raise", len(ev))
	}
	// Once the first overloads age out of the window: back in rotation.
	clock = clock.Add(DefaultOverloadWindow - 90*time.Second)
	observe(t, src, o)
	if e := lastEvent(t, o); !e.Resolved || e.Subject != a.ID || e.Summary != "back in rotation" {
		t.Fatalf("all-clear = %+v", e)
	}
	if n, _ := rdb.HLen(ctx, st.Schema().AlertsOverloads()).Result(); n != 1 {
		t.Fatalf("%d overload sightings kept, want the one still in the window", n)
	}
}
