package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Alert destinations: the attribute of an alert block that names where its messages go.
const (
	AlertWebhook  = "webhook"
	AlertSlack    = "slack"
	AlertFeishu   = "feishu"
	AlertDingTalk = "dingtalk"
	AlertWeCom    = "wecom"
	AlertTelegram = "telegram"
)

// AlertKinds lists the destinations in the order diagnostics name them.
func AlertKinds() []string {
	return []string{AlertWebhook, AlertSlack, AlertFeishu, AlertDingTalk, AlertWeCom, AlertTelegram}
}

// Alert event names, as the operator lists them in events = [...]. Each has an all-clear
// (the same name, resolved), sent to the same destinations.
const (
	EventAccountParked      = "account_parked"
	EventOAuthRefreshFailed = "oauth_refresh_failed"
	EventBudgetThreshold    = "budget_threshold"
	EventBudgetReached      = "budget_reached"
	EventConfigRefused      = "config_refused"
	EventSidecarNack        = "sidecar_nack"
	EventPluginFailed       = "plugin_failed"
	EventSubscriptionWindow = "subscription_window"
	// EventTest is what `admin alerts test` sends; it cannot be listed in events.
	EventTest = "test"
)

// AlertEvents lists every event an alert block may name.
func AlertEvents() []string {
	return []string{EventAccountParked, EventOAuthRefreshFailed, EventBudgetThreshold, EventBudgetReached,
		EventConfigRefused, EventSidecarNack, EventPluginFailed, EventSubscriptionWindow}
}

// Alert severities, lowest first.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// SeverityRank orders severities: info 1, warning 2, critical 3, anything else 0.
func SeverityRank(s string) int {
	return slices.Index([]string{SeverityInfo, SeverityWarning, SeverityCritical}, s) + 1
}

// Defaults of an alert block.
const (
	DefaultAlertMinSeverity = SeverityInfo
	DefaultAlertCooldown    = "5m"
	// DefaultAlertWindowThreshold is the subscription-window utilization (a share of the
	// window) at or above which subscription_window is raised.
	DefaultAlertWindowThreshold = 0.8
	DefaultTelegramAPI          = "https://api.telegram.org"
)

// Alert is one alert block: a destination and the events it wants. Destination URLs that
// embed a token (Slack, Feishu, DingTalk, WeCom), signing secrets and the Telegram bot
// token are secret fields: only their variable names are here.
type Alert struct {
	// Kind is one of the Alert* destination constants.
	Kind string `json:"kind"`
	// URL is the generic webhook's address (not a secret: the signature protects it).
	URL string `json:"url,omitempty"`
	// Target is the secret URL (Slack, Feishu, DingTalk, WeCom) or the Telegram bot token.
	Target Secret `json:"target,omitzero"`
	// Secret signs messages: the Standard Webhooks whsec_ secret, or the Feishu or DingTalk
	// robot's signing secret.
	Secret Secret `json:"secret,omitzero"`
	// ChatID is the Telegram chat messages go to.
	ChatID string `json:"chat_id,omitempty"`
	// APIURL is the Telegram Bot API base URL (DefaultTelegramAPI).
	APIURL string `json:"api_url,omitempty"`
	// Events are the event names wanted; nil means every event.
	Events []string `json:"events,omitempty"`
	// MinSeverity drops events below it.
	MinSeverity string `json:"min_severity"`
	// Cooldown is a Go duration: after a message for an event, further ones for it are
	// gathered for this long and sent as one.
	Cooldown string `json:"cooldown"`
	// WindowThreshold is the share (0 < x <= 1) of an account's 5-hour or 7-day
	// subscription window at or above which this block hears subscription_window.
	WindowThreshold float64 `json:"window_threshold"`
}

// Wants reports whether the alert takes an event of that name and severity.
func (a Alert) Wants(event, severity string) bool {
	if event == EventTest {
		return true
	}
	if a.Events != nil && !slices.Contains(a.Events, event) {
		return false
	}
	return SeverityRank(severity) >= SeverityRank(a.MinSeverity)
}

type alertHCL struct {
	Webhook     *string        `hcl:"webhook,optional"`
	Slack       *hcl.Attribute `hcl:"slack,optional"`
	Feishu      *hcl.Attribute `hcl:"feishu,optional"`
	DingTalk    *hcl.Attribute `hcl:"dingtalk,optional"`
	WeCom       *hcl.Attribute `hcl:"wecom,optional"`
	Telegram    *hcl.Attribute `hcl:"telegram,optional"`
	Secret      *hcl.Attribute `hcl:"secret,optional"`
	ChatID      *string        `hcl:"chat_id,optional"`
	APIURL      *string        `hcl:"api_url,optional"`
	Events      *[]string      `hcl:"events,optional"`
	MinSeverity *string        `hcl:"min_severity,optional"`
	Cooldown    *string        `hcl:"cooldown,optional"`
	WindowThr   *float64       `hcl:"window_threshold,optional"`
}

// alert builds an alert block's Alert; the validator checks what the block says.
func (b *builder) alert(name string, info *blockInfo, h *alertHCL) {
	a := Alert{
		URL:             deref(h.Webhook),
		ChatID:          deref(h.ChatID),
		APIURL:          deref(h.APIURL),
		MinSeverity:     DefaultAlertMinSeverity,
		Cooldown:        DefaultAlertCooldown,
		WindowThreshold: DefaultAlertWindowThreshold,
	}
	secrets := map[string]*hcl.Attribute{AlertSlack: h.Slack, AlertFeishu: h.Feishu, AlertDingTalk: h.DingTalk, AlertWeCom: h.WeCom, AlertTelegram: h.Telegram}
	var kinds []string
	if h.Webhook != nil {
		kinds = append(kinds, AlertWebhook)
	}
	for _, k := range AlertKinds()[1:] {
		if attr := secrets[k]; attr != nil {
			kinds = append(kinds, k)
			a.Target = b.secret(info, attr)
		}
	}
	if len(kinds) == 1 {
		a.Kind = kinds[0]
	} else if len(kinds) > 1 {
		b.attrError(info, kinds[1], "More than one destination", fmt.Sprintf("An alert block sends to one destination, and this one names %s; write one alert block per destination.", strings.Join(kinds, " and ")))
	}
	a.Secret = b.secret(info, h.Secret)
	if a.Kind == AlertTelegram && a.APIURL == "" {
		a.APIURL = DefaultTelegramAPI
	}
	if h.Events != nil {
		a.Events = slices.Clone(*h.Events)
		if len(a.Events) == 0 {
			b.attrError(info, "events", "Empty event list", "events = [] would send nothing; list event names, or remove the attribute to send every event.")
		}
	}
	setIf(&a.MinSeverity, h.MinSeverity)
	setIf(&a.Cooldown, h.Cooldown)
	setIf(&a.WindowThreshold, h.WindowThr)
	if b.snap.Alerts == nil {
		b.snap.Alerts = make(map[string]Alert)
	}
	b.snap.Alerts[name] = a
}

// alert checks one alert block.
func (v *validator) alert(name string, a Alert) {
	l := func(attr string) location { return at(blockAlert, name, attr) }
	switch a.Kind {
	case "":
		v.add(l(""), "Alert without a destination", fmt.Sprintf("An alert block needs one destination: %s.", quoteList(AlertKinds())))
	case AlertWebhook:
		if err := CheckReceiverURL(a.URL); err != nil {
			v.add(l(AlertWebhook), "Invalid webhook URL", err.Error()+".")
		}
	case AlertTelegram:
		if a.ChatID == "" {
			v.add(l(""), "Telegram alert without chat_id", "A telegram alert needs chat_id: the chat, group or channel the bot writes to.")
		}
	}
	if a.APIURL != "" {
		if err := CheckReceiverURL(a.APIURL); err != nil {
			v.add(l("api_url"), "Invalid api_url", err.Error()+".")
		}
	}
	if !a.Secret.IsZero() && a.Kind != AlertWebhook && a.Kind != AlertFeishu && a.Kind != AlertDingTalk && a.Kind != "" {
		v.add(l("secret"), "Secret not used", fmt.Sprintf("A %s destination signs nothing: secret applies to webhook, feishu and dingtalk.", a.Kind))
	}
	for i, e := range a.Events {
		if !slices.Contains(AlertEvents(), e) {
			v.add(atElem(blockAlert, name, "events", i), "Unknown event", fmt.Sprintf("Event %q is not one of %s.", e, quoteList(AlertEvents())))
		}
	}
	if SeverityRank(a.MinSeverity) == 0 {
		v.add(l("min_severity"), "Unknown severity", fmt.Sprintf("min_severity %q is not one of %s.", a.MinSeverity, quoteList([]string{SeverityInfo, SeverityWarning, SeverityCritical})))
	}
	v.duration(l("cooldown"), a.Cooldown, true)
	if !(a.WindowThreshold > 0 && a.WindowThreshold <= 1) {
		v.add(l("window_threshold"), "Invalid window_threshold", fmt.Sprintf("window_threshold %g is a share of a subscription window: more than 0 and at most 1 (e.g. 0.9 for 90 %%).", a.WindowThreshold))
	}
}

// CheckReceiverURL accepts an https:// URL, or an http:// one whose host is a loopback or
// private address (or localhost): alerts carry account names and errors, which should not
// cross the internet in clear text.
func CheckReceiverURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("a receiver URL must be https://host/… (or http:// on a loopback or private network)")
	}
	if u.Scheme == "https" {
		return nil
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		std := net.IP(ip.AsSlice())
		if ip.IsLoopback() || ip.IsPrivate() || std.IsLinkLocalUnicast() {
			return nil
		}
	}
	return fmt.Errorf("http:// is accepted only for a loopback or private address (10/8, 172.16/12, 192.168/16, fc00::/7, localhost); use https:// for %s", host)
}
