package alerts

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

func decodePayload(t *testing.T, b []byte) WebhookPayload {
	t.Helper()
	var p WebhookPayload
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("payload %s: %v", b, err)
	}
	return p
}

func TestWebhookMessagesVerifyWithTheStandardWebhooksLibrary(t *testing.T) {
	rcv := newReceiver(t)
	st, _, _ := openStore(t)
	svc := newTestService(t, st, map[string]config.Alert{"ops": webhookAlert(rcv.srv.URL + "/relay")}, map[string]string{"HOOK_SECRET": testSecret})
	run(t, svc)
	if ok, err := svc.Outbox().Raise(context.Background(), parked("acct-1")); err != nil || !ok {
		t.Fatalf("Raise = %v, %v", ok, err)
	}
	testutil.Eventually(t, 5*time.Second, "the webhook", func() bool { return len(rcv.requests()) == 1 })
	r := rcv.requests()[0]
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(r.body, r.header); err != nil {
		t.Fatalf("reference verification: %v (headers %v)", err, r.header)
	}
	p := decodePayload(t, r.body)
	if p.Type != "relay.alert.account_parked" || len(p.Data.Events) != 1 || p.Data.Events[0].Subject != "acct-1" || p.Data.Severity != config.SeverityWarning {
		t.Fatalf("payload = %+v", p)
	}
	if got := r.header.Get("webhook-id"); got != p.Data.ID || !strings.HasPrefix(got, "msg_") {
		t.Fatalf("webhook-id %q, message id %q", got, p.Data.ID)
	}
}

// TestSignatureMatchesTheSpecificationsExample checks the signer against the example the
// Standard Webhooks specification and its libraries use.
func TestSignatureMatchesTheSpecificationsExample(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	got := SignStandardWebhook(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`))
	if want := "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestChatDestinationsGetTheirDocumentedPayloads(t *testing.T) {
	rcv := newReceiver(t)
	base := rcv.srv.URL
	env := map[string]string{
		"SLACK_URL": base + "/services/T0/B0/slacktoken", "FEISHU_URL": base + "/open-apis/bot/v2/hook/feishutoken",
		"FEISHU_SIGN": "feishu-secret", "DING_URL": base + "/robot/send?access_token=dingtoken", "DING_SIGN": "SECding",
		"WECOM_URL": base + "/cgi-bin/webhook/send?key=wecomkey", "TG_TOKEN": "123:tgtoken",
	}
	mk := func(kind, target, secret string) config.Alert {
		a := config.Alert{Kind: kind, Target: config.Secret{Env: target}, MinSeverity: config.SeverityInfo, Cooldown: "1m"}
		if secret != "" {
			a.Secret = config.Secret{Env: secret}
		}
		return a
	}
	tg := mk(config.AlertTelegram, "TG_TOKEN", "")
	tg.ChatID, tg.APIURL = "-10042", base
	alerts := map[string]config.Alert{
		"slack": mk(config.AlertSlack, "SLACK_URL", ""), "feishu": mk(config.AlertFeishu, "FEISHU_URL", "FEISHU_SIGN"),
		"ding": mk(config.AlertDingTalk, "DING_URL", "DING_SIGN"), "wecom": mk(config.AlertWeCom, "WECOM_URL", ""), "tg": tg,
	}
	st, _, _ := openStore(t)
	svc := newTestService(t, st, alerts, env)
	run(t, svc)
	if _, err := svc.Outbox().Raise(context.Background(), parked("acct-7")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "five deliveries", func() bool { return len(rcv.requests()) == 5 })
	for _, r := range rcv.requests() {
		var body map[string]any
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatalf("%s: %v", r.path, err)
		}
		text := ""
		switch {
		case strings.HasPrefix(r.path, "/services/"):
			text, _ = body["text"].(string)
		case strings.HasPrefix(r.path, "/open-apis/"):
			checkFeishu(t, body, "feishu-secret")
			text, _ = body["content"].(map[string]any)["text"].(string)
		case r.path == "/robot/send":
			checkDingTalk(t, r.query, "SECding")
			if body["msgtype"] != "text" {
				t.Errorf("dingtalk msgtype = %v", body["msgtype"])
			}
			text, _ = body["text"].(map[string]any)["content"].(string)
		case r.path == "/cgi-bin/webhook/send":
			if body["msgtype"] != "text" || !strings.Contains(r.query, "key=wecomkey") {
				t.Errorf("wecom = %v %s", body, r.query)
			}
			text, _ = body["text"].(map[string]any)["content"].(string)
		case r.path == "/bot123:tgtoken/sendMessage":
			if body["chat_id"] != "-10042" {
				t.Errorf("telegram chat_id = %v", body["chat_id"])
			}
			text, _ = body["text"].(string)
		default:
			t.Fatalf("unexpected request %s", r.path)
		}
		if !strings.Contains(text, "account_parked") || !strings.Contains(text, "acct-7: parked as unauthorized (401)") {
			t.Errorf("%s: text %q", r.path, text)
		}
	}
}

// checkFeishu verifies Feishu's documented signature: base64(HMAC-SHA256 keyed with
// timestamp+"\n"+secret over an empty message), timestamp in seconds.
func checkFeishu(t *testing.T, body map[string]any, secret string) {
	t.Helper()
	ts, _ := body["timestamp"].(string)
	mac := hmac.New(sha256.New, []byte(ts+"\n"+secret))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); body["sign"] != want || body["msg_type"] != "text" {
		t.Errorf("feishu body %v, want sign %s", body, want)
	}
	var sec int64
	fmt.Sscan(ts, &sec)
	if d := time.Since(time.Unix(sec, 0)); d < 0 || d > time.Minute {
		t.Errorf("feishu timestamp %s is not now in seconds", ts)
	}
}

// checkDingTalk verifies DingTalk's documented signature: URL parameters timestamp (ms) and
// sign = base64(HMAC-SHA256 keyed with the secret over timestamp+"\n"+secret).
func checkDingTalk(t *testing.T, rawQuery, secret string) {
	t.Helper()
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		t.Fatal(err)
	}
	ts := q.Get("timestamp")
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "\n" + secret))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); q.Get("sign") != want || q.Get("access_token") != "dingtoken" {
		t.Errorf("dingtalk query %v, want sign %s", q, want)
	}
	var ms int64
	fmt.Sscan(ts, &ms)
	if d := time.Since(time.UnixMilli(ms)); d < 0 || d > time.Minute {
		t.Errorf("dingtalk timestamp %s is not now in milliseconds", ts)
	}
}

func TestLongMessagesFitEachServicesLimit(t *testing.T) {
	m := &Message{ID: "msg_1", Alert: "a", Event: config.EventAccountParked, Severity: config.SeverityWarning}
	for i := range 60 {
		m.add(Event{Subject: fmt.Sprintf("账户-%02d", i), Severity: "warning", Summary: strings.Repeat("parked <as> unauthorized & more ", 12)})
	}
	sec := secrets{target: "https://example.com/x"}
	for kind, limit := range map[string]int{config.AlertWeCom: wecomMaxBytes, config.AlertTelegram: telegramMaxBytes} {
		req, err := format(config.Alert{Kind: kind, ChatID: "1", APIURL: "https://api.telegram.org"}, sec, m, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Text any `json:"text"`
		}
		json.Unmarshal(req.body, &body)
		text, ok := body.Text.(string)
		if !ok {
			text = body.Text.(map[string]any)["content"].(string)
		}
		if len(text) > limit || !utf8.ValidString(text) || !strings.HasSuffix(text, "…") {
			t.Errorf("%s: %d bytes (limit %d), valid UTF-8 %v", kind, len(text), limit, utf8.ValidString(text))
		}
	}
	req, _ := format(config.Alert{Kind: config.AlertSlack}, sec, m, time.Now())
	if strings.Contains(string(req.body), "<as>") || !strings.Contains(string(req.body), "&lt;as&gt; unauthorized &amp; more") {
		t.Errorf("slack text not escaped: %.200s", req.body)
	}
}
