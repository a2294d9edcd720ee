package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/claude-relay/claude-relay/config"
)

// request is one HTTP POST to a destination, built by a formatter.
type request struct {
	url    string
	header http.Header
	body   []byte
}

// secrets are a destination's resolved secret fields.
type secrets struct {
	target string // the secret URL or the Telegram bot token
	secret string // the signing secret
}

// resolve reads the alert's secret fields from the environment through lookup. An error
// names the variable, never a value.
func resolve(a config.Alert, lookup func(string) (string, bool)) (secrets, error) {
	var s secrets
	var err error
	if s.target, err = a.Target.Resolve(lookup); err != nil {
		return s, err
	}
	if s.secret, err = a.Secret.Resolve(lookup); err != nil {
		return s, err
	}
	return s, nil
}

// format builds the request a destination documents for the message, signed where the
// destination signs, at now.
func format(a config.Alert, s secrets, m *Message, now time.Time) (request, error) {
	switch a.Kind {
	case config.AlertWebhook:
		return formatWebhook(a.URL, s.secret, m, now)
	case config.AlertSlack:
		return jsonRequest(s.target, map[string]any{"text": slackEscape(m.Text())})
	case config.AlertFeishu:
		return formatFeishu(s.target, s.secret, m, now)
	case config.AlertDingTalk:
		return formatDingTalk(s.target, s.secret, m, now)
	case config.AlertWeCom:
		return jsonRequest(s.target, map[string]any{"msgtype": "text", "text": map[string]string{"content": clip(m.Text(), wecomMaxBytes)}})
	case config.AlertTelegram:
		return jsonRequest(strings.TrimSuffix(a.APIURL, "/")+"/bot"+s.target+"/sendMessage",
			map[string]any{"chat_id": a.ChatID, "text": clip(m.Text(), telegramMaxBytes), "disable_web_page_preview": true})
	}
	return request{}, fmt.Errorf("unknown destination %q", a.Kind)
}

// Message size limits the services document: WeCom text content 2048 bytes, Telegram
// 4096 characters (bytes bound characters).
const (
	wecomMaxBytes    = 2048
	telegramMaxBytes = 4096
)

// clip cuts s to at most n bytes on a character boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// slackEscape escapes the three characters Slack's text formatting reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// jsonRequest encodes v as the body, without HTML escaping (summaries hold < > &).
func jsonRequest(u string, v any) (request, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return request{}, fmt.Errorf("encode payload: %w", err)
	}
	return request{url: u, header: http.Header{"Content-Type": {"application/json"}}, body: bytes.TrimSuffix(buf.Bytes(), []byte("\n"))}, nil
}

// WebhookPayload is the generic webhook's body: the Standard Webhooks envelope (type,
// timestamp, data).
type WebhookPayload struct {
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      WebhookData `json:"data"`
}

// WebhookData is a message as the generic webhook receives it.
type WebhookData struct {
	// ID is the message id, also the webhook-id header: the same on every retry.
	ID       string    `json:"id"`
	Alert    string    `json:"alert"`
	Event    string    `json:"event"`
	Severity string    `json:"severity"`
	Resolved bool      `json:"resolved"`
	Events   []Event   `json:"events"`
	Created  time.Time `json:"created"`
	// Text is the message as the chat destinations show it.
	Text string `json:"text"`
}

// formatWebhook signs per Standard Webhooks: webhook-id is the message id (the same on every
// retry, so receivers de-duplicate), webhook-timestamp the attempt's unix seconds, and
// webhook-signature "v1," + base64(HMAC-SHA256(key, id.timestamp.body)) with key the
// base64 after whsec_.
func formatWebhook(u, secret string, m *Message, now time.Time) (request, error) {
	data := WebhookData{ID: m.ID, Alert: m.Alert, Event: m.Event, Severity: m.Severity, Resolved: m.Resolved,
		Events: m.Events, Created: m.Created, Text: m.Text()}
	typ := "relay.alert." + m.Event
	if m.Resolved {
		typ += ".resolved"
	}
	if m.Event == config.EventTest {
		typ = "relay.alert.test"
	}
	req, err := jsonRequest(u, WebhookPayload{Type: typ, Timestamp: now.UTC(), Data: data})
	if err != nil {
		return req, err
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	req.header.Set("webhook-id", m.ID)
	req.header.Set("webhook-timestamp", ts)
	if secret != "" {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		if err != nil || len(key) == 0 {
			return request{}, errors.New("the webhook secret must be whsec_ followed by base64 (as Standard Webhooks libraries generate)")
		}
		req.header.Set("webhook-signature", "v1,"+SignStandardWebhook(key, m.ID, ts, req.body))
	}
	return req, nil
}

// SignStandardWebhook is the Standard Webhooks v1 signature (base64, without "v1,").
func SignStandardWebhook(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, timestamp)
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// formatFeishu builds a Feishu/Lark custom bot text message; with a secret, timestamp (unix
// seconds) and sign = base64(HMAC-SHA256 keyed with timestamp+"\n"+secret over nothing).
func formatFeishu(u, secret string, m *Message, now time.Time) (request, error) {
	body := map[string]any{"msg_type": "text", "content": map[string]string{"text": m.Text()}}
	if secret != "" {
		ts := strconv.FormatInt(now.Unix(), 10)
		mac := hmac.New(sha256.New, []byte(ts+"\n"+secret))
		body["timestamp"] = ts
		body["sign"] = base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	return jsonRequest(u, body)
}

// formatDingTalk builds a DingTalk custom robot text message; with a secret, the URL gains
// timestamp (unix ms) and sign = base64(HMAC-SHA256 keyed with secret over
// timestamp+"\n"+secret), URL-encoded.
func formatDingTalk(u, secret string, m *Message, now time.Time) (request, error) {
	if secret != "" {
		ts := strconv.FormatInt(now.UnixMilli(), 10)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(ts + "\n" + secret))
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + "timestamp=" + ts + "&sign=" + url.QueryEscape(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return jsonRequest(u, map[string]any{"msgtype": "text", "text": map[string]string{"content": m.Text()}})
}

// maxAnswer caps how much of a destination's answer is read.
const maxAnswer = 64 << 10

// send posts the request and judges the answer: a 2xx whose JSON, if any, carries no error
// code (Feishu's code, DingTalk's and WeCom's errcode, Telegram's ok). Errors never hold the
// URL, which may embed a token.
func send(ctx context.Context, client *http.Client, kind string, req request) error {
	if err := config.CheckReceiverURL(req.url); err != nil {
		if kind == config.AlertWebhook {
			return err
		}
		return errors.New("the destination URL must be https:// (or http:// on a loopback or private address)")
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, req.url, bytes.NewReader(req.body))
	if err != nil {
		return errors.New("the destination URL cannot be used")
	}
	hr.Header = req.header
	hr.Header.Set("User-Agent", "claude-relay-alerts")
	resp, err := client.Do(hr)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL
		}
		if kind == config.AlertWebhook {
			return fmt.Errorf("post: %w", err)
		}
		// The address of a secret URL is not shown either.
		msg := strings.ReplaceAll(err.Error(), hr.URL.Host, "<destination>")
		return fmt.Errorf("post: %s", strings.ReplaceAll(msg, hr.URL.Hostname(), "<destination>"))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the destination answered %d: %s", resp.StatusCode, snippet(body))
	}
	return judgeAnswer(kind, body)
}

// judgeAnswer finds the error a chat service reports inside a 200.
func judgeAnswer(kind string, body []byte) error {
	var ans struct {
		Code    *int   `json:"code"`
		ErrCode *int   `json:"errcode"`
		OK      *bool  `json:"ok"`
		Msg     string `json:"msg"`
		ErrMsg  string `json:"errmsg"`
		Desc    string `json:"description"`
	}
	if kind == config.AlertWebhook || kind == config.AlertSlack || json.Unmarshal(body, &ans) != nil {
		return nil
	}
	switch {
	case ans.Code != nil && *ans.Code != 0:
		return fmt.Errorf("the destination refused the message: code %d: %s", *ans.Code, snippet([]byte(ans.Msg)))
	case ans.ErrCode != nil && *ans.ErrCode != 0:
		return fmt.Errorf("the destination refused the message: errcode %d: %s", *ans.ErrCode, snippet([]byte(ans.ErrMsg)))
	case ans.OK != nil && !*ans.OK:
		return fmt.Errorf("the destination refused the message: %s", snippet([]byte(ans.Desc)))
	}
	return nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
