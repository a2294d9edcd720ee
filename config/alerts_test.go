package config

import (
	"encoding/json"
	"strings"
	"testing"
)

func loadAlerts(t *testing.T, src string) (*Snapshot, string) {
	t.Helper()
	env := map[string]string{"OPS_SECRET": "whsec_c2VjcmV0LXZhbHVlLTAxMjM0NTY3ODk=", "SLACK_URL": "https://hooks.slack.com/services/T0/B0/tokentoken", "TG_TOKEN": "123:abc"}
	l := Loader{LookupEnv: func(n string) (string, bool) { v, ok := env[n]; return v, ok }}
	snap, srcs, diags := l.LoadFiles(map[string][]byte{"a.hcl": []byte(src)})
	return snap, srcs.FormatDiagnostics(diags)
}

func TestAlertBlocksCompileWithSecretsAsVariableNames(t *testing.T) {
	snap, diags := loadAlerts(t, `
alert "ops" {
  webhook = "https://hooks.example.com/relay"
  secret  = env("OPS_SECRET")
  events  = ["account_parked", "oauth_refresh_failed", "budget_threshold", "config_refused"]
}
alert "chat" {
  slack        = env("SLACK_URL")
  min_severity = "critical"
  cooldown     = "1m"
  window_threshold = 0.95
}
alert "tg" {
  telegram = env("TG_TOKEN")
  chat_id  = "-100123"
}
alert "lan" { webhook = "http://10.1.2.3:8080/hook" }
`)
	if snap == nil {
		t.Fatalf("refused:\n%s", diags)
	}
	ops := snap.Alerts["ops"]
	if ops.Kind != AlertWebhook || ops.Secret.Env != "OPS_SECRET" || len(ops.Events) != 4 || ops.Cooldown != DefaultAlertCooldown || ops.MinSeverity != SeverityInfo || ops.WindowThreshold != DefaultAlertWindowThreshold {
		t.Fatalf("ops = %+v", ops)
	}
	if c := snap.Alerts["chat"]; c.Kind != AlertSlack || c.Target.Env != "SLACK_URL" || c.Events != nil || !c.Wants(EventConfigRefused, SeverityCritical) || c.Wants(EventConfigRefused, SeverityWarning) || c.WindowThreshold != 0.95 {
		t.Fatalf("chat = %+v", c)
	}
	if tg := snap.Alerts["tg"]; tg.Kind != AlertTelegram || tg.APIURL != DefaultTelegramAPI || tg.ChatID != "-100123" {
		t.Fatalf("tg = %+v", tg)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"whsec_", "tokentoken", "123:abc"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("snapshot holds secret %q: %s", secret, b)
		}
	}
	if _, err := Compile(snap); err != nil {
		t.Fatalf("Compile: %v", err)
	}
}

func TestAlertBlockMistakesAreDiagnosedWithoutSecrets(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"two destinations", `alert "x" {
  webhook = "https://a.example/"
  slack   = env("SLACK_URL")
}`, "More than one destination"},
		{"no destination", `alert "x" { events = ["account_parked"] }`, "Alert without a destination"},
		{"unknown event", `alert "x" {
  webhook = "https://a.example/"
  events  = ["account_parkd"]
}`, `Event "account_parkd" is not one of`},
		{"public http", `alert "x" { webhook = "http://hooks.example.com/x" }`, "http:// is accepted only for a loopback or private address"},
		{"literal secret", `alert "x" {
  slack = "https://hooks.slack.com/services/T0/B0/literaltoken"
}`, "Secret written in the configuration"},
		{"bad severity", `alert "x" {
  webhook      = "https://a.example/"
  min_severity = "loud"
}`, "Unknown severity"},
		{"telegram without chat", `alert "x" { telegram = env("TG_TOKEN") }`, "Telegram alert without chat_id"},
		{"bad cooldown", `alert "x" {
  webhook  = "https://a.example/"
  cooldown = "soon"
}`, "Invalid duration"},
		{"window threshold zero", `alert "x" {
  webhook          = "https://a.example/"
  window_threshold = 0
}`, "Invalid window_threshold"},
		{"window threshold as a percentage", `alert "x" {
  webhook          = "https://a.example/"
  window_threshold = 90
}`, "more than 0 and at most 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap, diags := loadAlerts(t, tc.src)
			if snap != nil {
				t.Fatalf("accepted, want %q", tc.want)
			}
			if !strings.Contains(diags, tc.want) {
				t.Fatalf("diagnostics lack %q:\n%s", tc.want, diags)
			}
			if strings.Contains(diags, "literaltoken") || strings.Contains(diags, "tokentoken") {
				t.Fatalf("diagnostics show a secret:\n%s", diags)
			}
		})
	}
}
