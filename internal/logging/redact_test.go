package logging

import (
	"strings"
	"testing"
)

const (
	relayKey = "cr_ab12" + "0123456789abcdef0123456789abcdef0123456789abcdef01234567" + "ef90"
	antKey   = "sk-ant-api03-" + "Zx9_yW8-vU7tS6rQ5pO4nM3lK2jI1hG0fEdCbA" + "WXYZ"
	jwt      = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZG1pbiJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

func TestRedactMasksSecrets(t *testing.T) {
	if len(relayKey) != 3+64 {
		t.Fatalf("test relay key has %d chars, want 67", len(relayKey))
	}
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"relay key", "auth ok key " + relayKey + " done", "auth ok key cr_ab12…ef90 done"},
		{"relay key in header", "x-api-key: " + relayKey, "x-api-key: cr_ab12…ef90"},
		{"two relay keys", relayKey + "," + relayKey, "cr_ab12…ef90,cr_ab12…ef90"},
		{"anthropic key", "upstream " + antKey + ".", "upstream sk-ant-…WXYZ."},
		{"bearer token", "Authorization header Bearer abc.def-123 sent", "Authorization header Bearer [redacted] sent"},
		{"bearer lower case", "bearer 0123456789abcdef", "bearer [redacted]"},
		{"bearer jwt", "Bearer " + jwt, "Bearer [redacted]"},
		{"bare jwt", "token=" + jwt + " ok", "token=[jwt] ok"},
		{"jwt without signature", "got eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. end", "got [jwt] end"},
		{"password key=value", "redis password=hunter2 host=x", "redis password=[redacted] host=x"},
		{"password quoted", `REDIS_PASSWORD="a b c" port=6379`, `REDIS_PASSWORD="[redacted]" port=6379`},
		{"quoted with escaped quote", `secret="a\"b" next=1`, `secret="[redacted]" next=1`},
		{"json secret", `{"client_secret":"s3cr3t","name":"x"}`, `{"client_secret":"[redacted]","name":"x"}`},
		{"json with spaces", `{"password" : "pw", "a": 1}`, `{"password" : "[redacted]", "a": 1}`},
		{"json escaped inside json", `{"@message":"body {\"api_key\":\"k123\"}"}`, `{"@message":"body {\"api_key\":\"[redacted]\"}"}`},
		{"access token", "access_token=abc123&expires=10", "access_token=[redacted]&expires=10"},
		{"refresh token", `"refresh_token": "rt-1"`, `"refresh_token": "[redacted]"`},
		{"authorization header", "Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [redacted]"},
		{"authorization bearer field", "authorization=\"Bearer xyz\"", "authorization=\"[redacted]\""},
		{"go struct", "{Name:bob Password:pw1}", "{Name:bob Password:[redacted]}"},
		{"api_key holding relay key keeps hint", "api_key=" + relayKey, "api_key=cr_ab12…ef90"},
		{"url password", "connect redis://default:p4ss@10.0.0.1:6379/0 failed", "connect redis://default:[redacted]@10.0.0.1:6379/0 failed"},
		{"encryption key env", "CRS_SECURITY__ENCRYPTION_KEY=0123456789abcdef0123456789abcdef", "CRS_SECURITY__ENCRYPTION_KEY=[redacted]"},
		{"jwt secret env", "CRS_SECURITY__JWT_SECRET=abc", "CRS_SECURITY__JWT_SECRET=[redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.in); got != tt.want {
				t.Errorf("Redact: got %q, want %q", got, tt.want)
			}
			if got := string(RedactBytes([]byte(tt.in))); got != tt.want {
				t.Errorf("RedactBytes: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRedactLeavesOrdinaryTextAlone(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"crowd underscore", "crowd_size=12 cr_=1 across_the_board"},
		{"short relay-like hex", "key_id=cr_deadbeef hint cr_ab12…ef90"},
		{"relay key too short", "cr_" + strings.Repeat("a", 31)},
		{"sk-ant prefix alone", "keys look like sk-ant-api03 and more"},
		{"bearer as a word", "send a Bearer token. The bearer authentication scheme."},
		{"already redacted", "Bearer [redacted] password=[redacted]"},
		{"eyJ prose", "eyJust a word. eyJ.x.y"},
		{"timestamps and urls", "2025-11-25T23:38:00.000Z [INFO]  relay: request: url=https://api.anthropic.com/v1/messages status=200"},
		{"secret-ish names", "secrets=3 password_hint=none tokens=5000 input_tokens=12 secret_ref=vault"},
		{"hex without prefix", strings.Repeat("0123456789abcdef", 4)},
		{"empty password", "password= next=1"},
		{"url without password", "redis://default@localhost:6379 https://user@example.com/a:b@c"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.in); got != tt.in {
				t.Errorf("got %q, want %q unchanged", got, tt.in)
			}
			b := []byte(tt.in)
			if got := RedactBytes(b); len(b) > 0 && &got[0] != &b[0] {
				t.Errorf("RedactBytes returned a copy, want the input slice itself")
			}
		})
	}
}

func TestRedactWithoutSecretsDoesNotAllocate(t *testing.T) {
	line := "2025-11-25T23:38:00.000Z [INFO]  sidecar.proxy: request relayed: route=messages model=claude-sonnet-4 status=200 account=acc_7 duration=1.2s bytes=5123 user=crowd_member url=https://api.anthropic.com/v1/messages\n"
	lineBytes := []byte(line)
	tests := []struct {
		name string
		f    func()
	}{
		{"string", func() { _ = Redact(line) }},
		{"bytes", func() { _ = RedactBytes(lineBytes) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(1000, tt.f); got != 0 {
				t.Errorf("got %v allocs, want 0", got)
			}
		})
	}
}

func BenchmarkRedact(b *testing.B) {
	clean := []byte("2025-11-25T23:38:00.000Z [INFO]  sidecar.proxy: request relayed: route=messages model=claude-sonnet-4 status=200 account=acc_7 duration=1.2s bytes=5123\n")
	dirty := []byte("2025-11-25T23:38:00.000Z [WARN]  sidecar.auth: bad key: key=" + relayKey + " authorization=\"Bearer " + jwt + "\"\n")
	var baseNs float64
	b.Run("baseline_copy", func(b *testing.B) {
		dst := make([]byte, len(clean))
		b.SetBytes(int64(len(clean)))
		for b.Loop() {
			copy(dst, clean)
		}
		baseNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	for _, bc := range []struct {
		name string
		in   []byte
	}{{"clean", clean}, {"with_secrets", dirty}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				_ = RedactBytes(bc.in)
			}
			if baseNs > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseNs, "x_copy")
			}
		})
	}
}

func TestSecretFieldsPassQuickFilter(t *testing.T) {
	for _, f := range secretFields {
		t.Run(f, func(t *testing.T) {
			in := f + "=value1"
			if got, want := Redact(in), f+"=[redacted]"; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}
