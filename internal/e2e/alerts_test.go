package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/claude-relay/claude-relay/controlplane/alerts"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/store"
)

const e2eHookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// hookReceiver is an operator's webhook endpoint: it verifies each delivery with the
// Standard Webhooks library and keeps the payloads.
type hookReceiver struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	got  []alerts.WebhookPayload
	errs []string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	wh, err := standardwebhooks.NewWebhook(e2eHookSecret)
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{t: t}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := wh.Verify(body, r.Header); err != nil {
			h.errs = append(h.errs, err.Error())
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var p alerts.WebhookPayload
		if err := json.Unmarshal(body, &p); err != nil {
			h.errs = append(h.errs, err.Error())
		}
		h.got = append(h.got, p)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// find returns the first payload of that type whose events name subject.
func (h *hookReceiver) find(typ, subject string) (alerts.WebhookPayload, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.got {
		if p.Type != typ {
			continue
		}
		for _, e := range p.Data.Events {
			if strings.Contains(e.Subject, subject) {
				return p, true
			}
		}
	}
	return alerts.WebhookPayload{}, false
}

// TestAlertsReachTheOperatorsWebhookFromRealProcesses runs a control plane and a sidecar
// with an alert block: an account parked by the upstream's 401 and a broken HCL save each
// reach a signed webhook within seconds, and fixing the file sends the all-clear.
func TestAlertsReachTheOperatorsWebhookFromRealProcesses(t *testing.T) {
	in := newInstall(t)
	rcv := newHookReceiver(t)
	in.env = append(in.env, "E2E_HOOK_SECRET="+e2eHookSecret, "CLAUDE_RELAY_ALERT_BUDGET_INTERVAL=1s")
	def, err := readDefaultHCL()
	if err != nil {
		t.Fatal(err)
	}
	good := def + `
policy "tiny" { cost_per_day_usd = 0.000001 }

alert "ops" {
  webhook  = "` + rcv.srv.URL + `/relay"
  secret   = env("E2E_HOOK_SECRET")
  events   = ["account_parked", "oauth_refresh_failed", "budget_threshold", "config_refused", "subscription_window"]
  cooldown = "2s"
  window_threshold = 0.9
}
`
	in.writeConfig(good)
	ctx := context.Background()
	bad, err := in.st.AddAccount(ctx, store.AccountSpec{Name: "revoked", BaseURL: in.up.URL(), Credential: "sk-ant-api03-revoked", Priority: 1})
	if err != nil {
		t.Fatal(err)
	}
	accts, err := in.st.ListAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := 100
	for _, a := range accts { // the revoked account is tried first
		if a.ID != bad.ID {
			if _, err := in.st.UpdateAccount(ctx, a.ID, store.AccountUpdate{Priority: &last}); err != nil {
				t.Fatal(err)
			}
		}
	}
	budgetKey, budgetSecret, err := in.st.CreateKey(ctx, store.KeySpec{Name: "small-budget", Policy: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	cp := in.start("control", "control")
	sc := in.startSidecar("sidecar", "-control-plane", cp.url())

	// A key on a tiny daily budget spends it: budget_threshold comes at the next budget
	// check (every second here), checked last.
	budgetStart := time.Now()
	if ok, _, err := send(http.DefaultClient, sc, budgetSecret); !ok {
		t.Fatalf("request with the budget key: %v", err)
	}

	// The upstream answers the revoked account's credential with 401: the sidecar parks it
	// and fails over to the good account.
	start := time.Now()
	if ok, _, err := send(http.DefaultClient, sc, in.key); !ok {
		t.Fatalf("request: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "account_parked at the webhook", func() bool {
		_, ok := rcv.find("relay.alert.account_parked", bad.ID)
		return ok
	})
	t.Logf("account_parked arrived %v after the request", time.Since(start).Round(time.Millisecond))
	p, _ := rcv.find("relay.alert.account_parked", bad.ID)
	if p.Data.Severity != "critical" || !strings.Contains(p.Data.Events[0].Summary, "unauthorized (401)") {
		t.Errorf("account_parked payload: %+v", p.Data)
	}

	// A broken save: refused, alerted, and the all-clear once it is fixed.
	start = time.Now()
	in.writeConfig(good + "\nroute \"broken\" {\n")
	testutil.Eventually(t, 10*time.Second, "config_refused at the webhook", func() bool {
		_, ok := rcv.find("relay.alert.config_refused", in.config)
		return ok
	})
	t.Logf("config_refused arrived %v after the save", time.Since(start).Round(time.Millisecond))
	p, _ = rcv.find("relay.alert.config_refused", in.config)
	if !strings.Contains(p.Data.Events[0].Summary, "relay.hcl:") {
		t.Errorf("config_refused summary lacks the diagnostics: %q", p.Data.Events[0].Summary)
	}
	in.writeConfig(good)
	testutil.Eventually(t, 10*time.Second, "the config_refused all-clear", func() bool {
		_, ok := rcv.find("relay.alert.config_refused.resolved", in.config)
		return ok
	})
	// The good account's answer reports its 5-hour window at 92 %: above the block's 0.9.
	var goodAcct string
	for _, a := range accts {
		if a.ID != bad.ID {
			goodAcct = a.ID
		}
	}
	reset := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	start = time.Now()
	if ok, _, err := sendScripted(http.DefaultClient, sc, in.key, `{"unified":{"5h":{"utilization":0.92,"reset":"`+reset+`"}}}`); !ok {
		t.Fatalf("request with a window reading: %v", err)
	}
	testutil.Eventually(t, 15*time.Second, "subscription_window at the webhook", func() bool {
		_, ok := rcv.find("relay.alert.subscription_window", goodAcct)
		return ok
	})
	t.Logf("subscription_window arrived %v after the request", time.Since(start).Round(time.Millisecond))
	p, _ = rcv.find("relay.alert.subscription_window", goodAcct)
	if !strings.Contains(p.Data.Events[0].Summary, "5h subscription window at 92% (threshold 90%)") {
		t.Errorf("subscription_window summary: %q", p.Data.Events[0].Summary)
	}
	testutil.Eventually(t, 15*time.Second, "budget_threshold at the webhook", func() bool {
		_, ok := rcv.find("relay.alert.budget_threshold", budgetKey.ID)
		return ok
	})
	t.Logf("budget_threshold arrived %v after the request", time.Since(budgetStart).Round(time.Millisecond))
	if out := cp.out.String(); strings.Contains(out, "cannot deliver alerts") || strings.Contains(out, "cannot route alert events") {
		t.Errorf("the control plane failed to deliver or route (see its output)")
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.errs) > 0 {
		t.Errorf("deliveries that failed verification: %v", rcv.errs)
	}
}
