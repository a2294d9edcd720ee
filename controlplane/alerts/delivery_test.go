package alerts

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

var hookEnv = map[string]string{"HOOK_SECRET": testSecret}

func TestAReceiversFailuresAreRetriedUnderTheSameWebhookID(t *testing.T) {
	rcv := newReceiver(t)
	rcv.failFirst.Store(2)
	st, _, _ := openStore(t)
	svc := newTestService(t, st, map[string]config.Alert{"ops": webhookAlert(rcv.srv.URL)}, hookEnv)
	run(t, svc)
	svc.Outbox().Raise(context.Background(), parked("acct-1"))
	testutil.Eventually(t, 5*time.Second, "the third attempt", func() bool { return len(rcv.requests()) == 3 })
	reqs := rcv.requests()
	id := reqs[0].header.Get("webhook-id")
	for _, r := range reqs {
		if r.header.Get("webhook-id") != id {
			t.Fatalf("webhook-id changed across retries: %q, %q", id, r.header.Get("webhook-id"))
		}
	}
	var msgs []Message
	testutil.Eventually(t, 5*time.Second, "the message marked sent", func() bool {
		msgs, _ = svc.Outbox().Messages(context.Background(), 10)
		return len(msgs) == 1 && msgs[0].Status == StatusSent
	})
	if msgs[0].Attempts != 3 || msgs[0].LastError != "" {
		t.Fatalf("message = %+v", msgs[0])
	}
	if sent, retried := svc.sent.With("ops").Value(), svc.failed.With("ops", "retry").Value(); sent != 1 || retried != 2 {
		t.Fatalf("metrics: sent %v, failed{retry} %v; want 1 and 2", sent, retried)
	}
}

func TestAnUndeliverableMessageIsKeptWithItsError(t *testing.T) {
	rcv := newReceiver(t)
	rcv.failFirst.Store(1000)
	st, _, _ := openStore(t)
	svc := newTestService(t, st, map[string]config.Alert{"ops": webhookAlert(rcv.srv.URL)}, hookEnv, func(o *Options) { o.MaxAttempts = 3 })
	run(t, svc)
	svc.Outbox().Raise(context.Background(), parked("acct-1"))
	var msgs []Message
	testutil.Eventually(t, 5*time.Second, "the message given up", func() bool {
		msgs, _ = svc.Outbox().Messages(context.Background(), 10)
		return len(msgs) == 1 && msgs[0].Status == StatusFailed
	})
	if msgs[0].Attempts != 3 || !strings.Contains(msgs[0].LastError, "500") {
		t.Fatalf("message = %+v", msgs[0])
	}
	if n, _ := svc.Outbox().Pending(context.Background()); n != 0 {
		t.Fatalf("pending = %d, want 0", n)
	}
	if got := len(rcv.requests()); got != 3 {
		t.Fatalf("attempts at the receiver = %d, want 3", got)
	}
}

func TestPendingMessagesSurviveAControlPlaneRestart(t *testing.T) {
	rcv := newReceiver(t)
	rcv.failFirst.Store(1)
	st, rdb, prefix := openStore(t)
	alerts := map[string]config.Alert{"ops": webhookAlert(rcv.srv.URL)}
	first := newTestService(t, st, alerts, hookEnv, func(o *Options) { o.RetryBase = time.Hour })
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); first.Run(ctx) }()
	first.Outbox().Raise(context.Background(), parked("acct-1"))
	testutil.Eventually(t, 5*time.Second, "the failed first attempt", func() bool { return len(rcv.requests()) == 1 })
	stop()
	<-done
	if n, _ := first.Outbox().Pending(context.Background()); n != 1 {
		t.Fatalf("pending after the first control plane stopped = %d, want 1", n)
	}
	// A new process on the same Redis, whose clock is past the retry time.
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	second := newTestService(t, openStoreOn(t, rdb, prefix), alerts, hookEnv, func(o *Options) { o.Now = later })
	run(t, second)
	testutil.Eventually(t, 5*time.Second, "the retry from the second control plane", func() bool { return len(rcv.requests()) == 2 })
	r := rcv.requests()
	if r[0].header.Get("webhook-id") != r[1].header.Get("webhook-id") {
		t.Fatal("the retry after the restart is a different message")
	}
}

func TestTwoControlPlanesDeliverEachMessageOnce(t *testing.T) {
	rcv := newReceiver(t)
	st, rdb, prefix := openStore(t)
	alerts := map[string]config.Alert{"ops": webhookAlert(rcv.srv.URL)}
	a := newTestService(t, st, alerts, hookEnv)
	b := newTestService(t, openStoreOn(t, rdb, prefix), alerts, hookEnv)
	run(t, a)
	run(t, b)
	for i := range 5 {
		// Both control planes observe the same condition; it is recorded once.
		a.Outbox().Raise(context.Background(), parked(fmt.Sprint("acct-", i)))
		b.Outbox().Raise(context.Background(), parked(fmt.Sprint("acct-", i)))
	}
	testutil.Eventually(t, 5*time.Second, "a delivery", func() bool { return len(rcv.requests()) >= 1 })
	time.Sleep(500 * time.Millisecond) // several ticks of both
	reqs := rcv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d deliveries, want 1", len(reqs))
	}
	if p := decodePayload(t, reqs[0].body); len(p.Data.Events) != 5 {
		t.Fatalf("events in the message = %d, want 5", len(p.Data.Events))
	}
	if a.Leader() == b.Leader() {
		t.Fatalf("leaders: a %v, b %v; want exactly one", a.Leader(), b.Leader())
	}
}

func TestFiftyAccountsParkedAtOnceAreOneMessageAndLaterOnesWaitForTheCooldown(t *testing.T) {
	rcv := newReceiver(t)
	st, _, _ := openStore(t)
	svc := newTestService(t, st, map[string]config.Alert{"ops": webhookAlert(rcv.srv.URL)}, hookEnv)
	run(t, svc)
	ctx := context.Background()
	start := time.Now()
	for i := range 50 {
		svc.Outbox().Raise(ctx, parked(fmt.Sprintf("acct-%02d", i)))
	}
	testutil.Eventually(t, 5*time.Second, "the first message", func() bool { return len(rcv.requests()) == 1 })
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("first message after %v, want within 5s", d)
	}
	first := decodePayload(t, rcv.requests()[0].body)
	if len(first.Data.Events) != 50 {
		t.Fatalf("first message lists %d accounts, want 50", len(first.Data.Events))
	}
	text := first.Data.Text
	if !strings.Contains(text, "50 subjects") || !strings.Contains(text, "and 30 more") {
		t.Fatalf("text:\n%s", text)
	}
	// Two more within the cooldown: held, then sent together once it has passed.
	sentAt := time.Now()
	svc.Outbox().Raise(ctx, parked("acct-50"))
	svc.Outbox().Raise(ctx, parked("acct-51"))
	testutil.Eventually(t, 5*time.Second, "the coalesced second message", func() bool { return len(rcv.requests()) == 2 })
	if d := time.Since(sentAt); d < 200*time.Millisecond {
		t.Fatalf("second message after %v, want after the 300ms cooldown", d)
	}
	if second := decodePayload(t, rcv.requests()[1].body); len(second.Data.Events) != 2 {
		t.Fatalf("second message lists %d accounts, want 2", len(second.Data.Events))
	}
}

func TestAnAllClearFollowsItsRaiseOnce(t *testing.T) {
	rcv := newReceiver(t)
	st, _, _ := openStore(t)
	crit := webhookAlert(rcv.srv.URL)
	crit.MinSeverity = config.SeverityCritical
	svc := newTestService(t, st, map[string]config.Alert{"ops": webhookAlert(rcv.srv.URL, config.EventAccountParked), "pager": crit}, hookEnv)
	run(t, svc)
	ctx := context.Background()
	out := svc.Outbox()
	if ok, _ := out.Clear(ctx, parked("acct-1")); ok {
		t.Fatal("an all-clear without a raise was recorded")
	}
	out.Raise(ctx, parked("acct-1"))
	if ok, _ := out.Raise(ctx, parked("acct-1")); ok {
		t.Fatal("a condition already raised was raised again")
	}
	testutil.Eventually(t, 5*time.Second, "the raise", func() bool { return len(rcv.requests()) == 1 })
	back := parked("acct-1")
	back.Severity, back.Summary = config.SeverityInfo, "back in rotation"
	if ok, _ := out.Clear(ctx, back); !ok {
		t.Fatal("the all-clear was not recorded")
	}
	out.Clear(ctx, back)
	testutil.Eventually(t, 5*time.Second, "the all-clear", func() bool { return len(rcv.requests()) == 2 })
	time.Sleep(200 * time.Millisecond)
	reqs := rcv.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d deliveries, want 2 (the pager alert wants critical only)", len(reqs))
	}
	p := decodePayload(t, reqs[1].body)
	if p.Type != "relay.alert.account_parked.resolved" || !p.Data.Resolved || p.Data.Severity != config.SeverityWarning || p.Data.Events[0].Summary != "back in rotation" {
		t.Fatalf("all-clear = %+v", p)
	}
}

func TestErrorsNeverShowASecretURL(t *testing.T) {
	rcv := newReceiver(t)
	rcv.answer = `{"errcode":310000,"errmsg":"keywords not in content"}`
	st, _, _ := openStore(t)
	env := map[string]string{"DING_URL": rcv.srv.URL + "/robot/send?access_token=dingtoken", "DEAD_URL": "http://127.0.0.1:1/hook?key=deadtoken",
		"PUBLIC_URL": "http://hooks.example.com/x?key=publictoken"}
	alerts := map[string]config.Alert{
		"ding":   {Kind: config.AlertDingTalk, Target: config.Secret{Env: "DING_URL"}, MinSeverity: "info", Cooldown: "1m"},
		"dead":   {Kind: config.AlertWeCom, Target: config.Secret{Env: "DEAD_URL"}, MinSeverity: "info", Cooldown: "1m"},
		"public": {Kind: config.AlertSlack, Target: config.Secret{Env: "PUBLIC_URL"}, MinSeverity: "info", Cooldown: "1m"},
		"unset":  {Kind: config.AlertSlack, Target: config.Secret{Env: "UNSET_URL"}, MinSeverity: "info", Cooldown: "1m"},
	}
	svc := newTestService(t, st, alerts, env)
	for _, name := range []string{"ding", "dead", "public", "unset"} {
		m, err := svc.Test(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if m.Status != StatusFailed || m.LastError == "" {
			t.Fatalf("%s: %+v", name, m)
		}
		for _, secret := range []string{"token", "127.0.0.1:1", "example.com"} {
			if strings.Contains(m.LastError, secret) {
				t.Errorf("%s: error shows %q: %s", name, secret, m.LastError)
			}
		}
		t.Logf("%s: %s", name, m.LastError)
	}
	if _, err := svc.Test(context.Background(), "nope"); err == nil {
		t.Fatal("a test of an unknown alert succeeded")
	}
}

func TestAMessageWhoseAlertBlockWasRemovedIsKeptAsFailed(t *testing.T) {
	rcv := newReceiver(t)
	st, _, _ := openStore(t)
	blocks := map[string]config.Alert{"ops": webhookAlert(rcv.srv.URL)}
	var mu sync.Mutex
	svc := newTestService(t, st, nil, hookEnv, func(o *Options) {
		o.Alerts = func() map[string]config.Alert { mu.Lock(); defer mu.Unlock(); return blocks }
		o.Gather = time.Hour // routed, then the block goes before it is due
	})
	ctx := context.Background()
	svc.Outbox().Raise(ctx, parked("acct-1"))
	svc.Step(ctx)
	mu.Lock()
	blocks = map[string]config.Alert{}
	mu.Unlock()
	svc.opts.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	svc.Step(ctx)
	msgs, err := svc.Outbox().Messages(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Status != StatusFailed || !strings.Contains(msgs[0].LastError, `alert block "ops" is no longer in the configuration`) {
		t.Fatalf("messages = %+v", msgs)
	}
	if len(rcv.requests()) != 0 {
		t.Fatal("a message was sent to a removed destination")
	}
}
