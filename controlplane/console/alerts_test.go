package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/alerts"
	"github.com/claude-relay/claude-relay/store"
)

func TestAlertsPageListsDeliveriesAndSendsATest(t *testing.T) {
	var hits atomic.Int32
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hits.Add(1)
		_, _ = io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`)
	}))
	defer rcv.Close()
	env := map[string]string{"TEAM_URL": rcv.URL + "/hook?key=team-secret-key", "DOWN_URL": "http://127.0.0.1:1/?key=down-secret-key"}
	blocks := map[string]config.Alert{
		"team": {Kind: config.AlertWeCom, Target: config.Secret{Env: "TEAM_URL"}, MinSeverity: "warning", Cooldown: "5m"},
		"down": {Kind: config.AlertWeCom, Target: config.Secret{Env: "DOWN_URL"}, MinSeverity: "info", Cooldown: "5m"},
	}
	s := newSiteWith(t, siteOptions{alerts: func(st *store.Store) *alerts.Service {
		svc, err := alerts.New(alerts.Options{Store: st, Alerts: func() map[string]config.Alert { return blocks },
			Lookup: func(n string) (string, bool) { v, ok := env[n]; return v, ok }})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}})
	b := s.loggedIn()
	page := b.get("/ui/alerts")
	page.shows(t, "the alerts page", `id="test-team"`, `id="test-down"`, "No messages yet.")
	sent := b.post("/ui/alerts/team/test", url.Values{"csrf": {page.csrf(t)}})
	if sent.status != http.StatusSeeOther || hits.Load() != 1 {
		t.Fatalf("send test: got %d with %d deliveries, want 303 and 1", sent.status, hits.Load())
	}
	after := b.get(sent.header.Get("Location"))
	if !strings.Contains(after.body, "A test message was sent to team.") || !strings.Contains(after.body, `msg-sent`) {
		t.Errorf("after the test the page does not show it sent\n%s", after.body)
	}
	failed := b.get(b.post("/ui/alerts/down/test", url.Values{"csrf": {page.csrf(t)}}).header.Get("Location"))
	if !strings.Contains(failed.body, "The test message to down failed") || !strings.Contains(failed.body, "connection refused") {
		t.Errorf("a failed test is not shown with its error\n%s", failed.body)
	}
	for _, secret := range []string{"secret-key", rcv.URL} {
		if strings.Contains(failed.body, secret) {
			t.Errorf("the alerts page shows %q", secret)
		}
	}
	if p := b.post("/ui/alerts/nope/test", url.Values{"csrf": {page.csrf(t)}}); p.status != http.StatusNotFound {
		t.Errorf("testing an unknown alert: got %d, want 404", p.status)
	}
	if p := b.post("/ui/alerts/team/test", url.Values{}); p.status != http.StatusForbidden || hits.Load() != 1 {
		t.Errorf("a test without the CSRF token: got %d (%d deliveries), want 403 and no delivery", p.status, hits.Load())
	}
}

func TestAlertsPageWithoutAlertsSaysSo(t *testing.T) {
	b := newSite(t, 0).browser()
	b.login()
	if p := b.get("/ui/alerts"); p.status != http.StatusOK || !strings.Contains(p.body, "sends no alerts") {
		t.Errorf("alerts page without alerts: got %d\n%s", p.status, p.body)
	}
}

func TestAccountsPageShowsSubscriptionWindowsAndCaps(t *testing.T) {
	s := newSite(t, 0)
	ctx := context.Background()
	a, err := s.admin.AddAccount(ctx, adminapi.AddAccountRequest{Name: "max plan", APIKey: "sk-ant-api03-windows",
		Caps: &adminapi.AccountCaps{MaxConcurrency: 4, CostPerDayUSD: 25, TokensPer5h: 2_000_000}})
	if err != nil {
		t.Fatal(err)
	}
	now := s.clock.Now().UTC()
	reading := store.Windows{Status: "allowed_warning", Claim: "five_hour", ObservedAt: now,
		FiveHour: &store.Window{Utilization: 0.93, Reset: now.Add(2 * time.Hour), Status: "allowed_warning"},
		SevenDay: &store.Window{Utilization: 0.41, Reset: now.Add(90 * time.Hour), Status: "allowed"}}
	if err := s.st.Client().HSet(ctx, s.st.Schema().AccountWindows(), a.ID, reading.Encode()).Err(); err != nil {
		t.Fatal(err)
	}
	b := s.loggedIn()
	p := b.get("/ui/accounts")
	p.shows(t, "the accounts page", "5 h <meter", `value="0.930"`, "93%", "7 d <meter", "41%", "window-allowed_warning",
		"caps: 4 at once, 2,000,000 tokens / 5 h, $25.00 / day", "5 h resets <time")
}
