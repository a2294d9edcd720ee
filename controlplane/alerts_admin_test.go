package controlplane

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane/alerts"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

func TestAdminAlertsTestsADestinationAndListsItWithoutSecrets(t *testing.T) {
	var hits atomic.Int32
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hits.Add(1)
		io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`)
	}))
	defer rcv.Close()
	env := map[string]string{"WECOM_URL": rcv.URL + "/cgi-bin/webhook/send?key=wecom-secret-key", "DOWN_URL": "http://127.0.0.1:1/?key=down-secret-key"}
	blocks := map[string]config.Alert{
		"team": {Kind: config.AlertWeCom, Target: config.Secret{Env: "WECOM_URL"}, MinSeverity: "warning", Cooldown: "5m"},
		"down": {Kind: config.AlertWeCom, Target: config.Secret{Env: "DOWN_URL"}, MinSeverity: "info", Cooldown: "5m"},
	}
	h := newHarness(t, func(o *Options) {
		svc, err := alerts.New(alerts.Options{Store: o.Store, Alerts: func() map[string]config.Alert { return blocks },
			Lookup: func(n string) (string, bool) { v, ok := env[n]; return v, ok }})
		if err != nil {
			t.Fatal(err)
		}
		o.Alerts = svc
	})
	token := h.login()

	r := h.do("POST", "/admin/alerts/team/test", token, nil)
	m := wantDecoded[alerts.Message](t, r, http.StatusOK)
	if m.Status != alerts.StatusSent || hits.Load() != 1 {
		t.Fatalf("test message = %+v, receiver hits %d", m, hits.Load())
	}
	r = h.do("POST", "/admin/alerts/down/test", token, nil)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &m)
	if m.Status != alerts.StatusFailed || !strings.Contains(m.LastError, "connection refused") {
		t.Fatalf("failed test message = %+v", m)
	}
	wantStatus(t, h.do("POST", "/admin/alerts/nope/test", token, nil), http.StatusNotFound)

	r = h.do("GET", "/admin/alerts", token, nil)
	st := wantDecoded[alerts.Status](t, r, http.StatusOK)
	if len(st.Alerts) != 2 || st.Alerts[1].Name != "team" || st.Alerts[1].Kind != "wecom" || len(st.Messages) != 2 {
		t.Fatalf("status = %+v", st)
	}
	for _, secret := range []string{"secret-key", "127.0.0.1:1", rcv.URL} {
		if strings.Contains(string(r.body), secret) {
			t.Errorf("GET /admin/alerts shows %q: %s", secret, r.body)
		}
	}
	if !strings.Contains(h.logs.String(), "action=alert.test") {
		t.Error("the test is not in the audit log")
	}
}

// TestAFailingOAuthRefreshReachesTheWebhookAndSoDoesItsRecovery fails a refresh against a
// fake token endpoint (invalid_grant) and shows the alert, then the all-clear after a
// successful manual refresh, at a Slack-shaped receiver within seconds: recorded by the
// refresh itself (no source runs here).
func TestAFailingOAuthRefreshReachesTheWebhookAndSoDoesItsRecovery(t *testing.T) {
	var mu sync.Mutex
	var texts []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Text string }
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		texts = append(texts, body.Text)
		mu.Unlock()
	}))
	defer rcv.Close()
	received := func(sub string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(texts, func(s string) bool { return strings.Contains(s, sub) })
	}
	fake := newFakeOAuth(t)
	blocks := map[string]config.Alert{"chat": {Kind: config.AlertSlack, Target: config.Secret{Env: "SLACK_URL"}, MinSeverity: "info", Cooldown: "1s"}}
	var svc *alerts.Service
	h := newHarness(t, func(o *Options) {
		o.OAuth = fake.config()
		var err error
		svc, err = alerts.New(alerts.Options{Store: o.Store, Alerts: func() map[string]config.Alert { return blocks },
			Lookup: func(string) (string, bool) { return rcv.URL + "/services/T/B/x", true },
			Tick:   50 * time.Millisecond, Gather: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		o.Alerts = svc
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()
	defer func() { cancel(); <-done }()

	token := h.login()
	id := addOAuthAccount(t, h, fake, time.Minute)
	fake.failRefresh.Store(true)
	wantStatus(t, h.do("POST", "/admin/accounts/"+id+"/refresh", token, nil), http.StatusBadGateway)
	testutil.Eventually(t, 5*time.Second, "oauth_refresh_failed at the receiver", func() bool { return received("oauth_refresh_failed (critical): " + id) })
	if !received("invalid_grant") {
		t.Errorf("the alert does not say why: %q", texts)
	}
	fake.failRefresh.Store(false)
	wantStatus(t, h.do("POST", "/admin/accounts/"+id+"/refresh", token, nil), http.StatusOK)
	testutil.Eventually(t, 5*time.Second, "the all-clear", func() bool { return received("resolved: oauth_refresh_failed: " + id) })
}
