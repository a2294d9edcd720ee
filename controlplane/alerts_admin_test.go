package controlplane

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane/alerts"
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
	wantStatus(t, r, http.StatusOK)
	var m alerts.Message
	r.decode(t, &m)
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
	wantStatus(t, r, http.StatusOK)
	var st alerts.Status
	r.decode(t, &st)
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
