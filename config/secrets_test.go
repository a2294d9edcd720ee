package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// secretValue is what every variable holds in these tests: a value that must never be
// printed.
const secretValue = "s3cret-0123456789abcdef0123456789"

// recordingEnv answers every name with secretValue and records which names were read.
type recordingEnv struct {
	mu   sync.Mutex
	read []string
}

func (r *recordingEnv) lookup(name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.read = append(r.read, name)
	return secretValue, true
}

func (r *recordingEnv) wasRead(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.read {
		if n == name {
			return true
		}
	}
	return false
}

// diagText is everything a diagnostic can show: the formatted text (source lines included)
// and the raw summaries and details the admin API sends.
func diagText(srcs *Sources, diags hcl.Diagnostics) string {
	var b strings.Builder
	b.WriteString(srcs.FormatDiagnostics(diags))
	for _, d := range diags {
		fmt.Fprintf(&b, "\n%s\n%s", d.Summary, d.Detail)
	}
	return b.String()
}

func TestEnvRefusesRelaySecrets(t *testing.T) {
	names := append([]string{"CRS_SECURITY__ENCRYPTION_KEY", "CRS_SECURITY__JWT_SECRET", "CRS_SECURITY__JWT_SECRET_PREVIOUS",
		"CRS_SECURITY__ENCRYPTION_KEY_PREVIOUS", "CRS_SECURITY__ANYTHING_NEW", "crs_security__encryption_key", "redis_password"},
		RelaySecretVariables()...)
	for _, name := range names {
		for _, form := range []string{`env(%q)`, `env(%q, "fallback")`} {
			expr := fmt.Sprintf(form, name)
			t.Run(expr, func(t *testing.T) {
				env := &recordingEnv{}
				src := "policy \"team\" {\n  models = [" + expr + "]\n}\n"
				snap, srcs, diags := Loader{LookupEnv: env.lookup}.LoadFiles(map[string][]byte{"secret.hcl": []byte(src)})
				if snap != nil || !diags.HasErrors() {
					t.Fatalf("got a snapshot (%v) and no error, want %s refused", snap != nil, name)
				}
				text := diagText(srcs, diags)
				if !strings.Contains(text, "on secret.hcl:2:") || !strings.Contains(text, "relay's own secrets") {
					t.Errorf("got diagnostics %q, want a refusal at secret.hcl:2:col naming the relay's own secrets", text)
				}
				if strings.Contains(text, secretValue) {
					t.Errorf("diagnostics print the variable's value: %q", text)
				}
				if env.wasRead(name) {
					t.Errorf("env() read %s, want it refused without reading it", name)
				}
			})
		}
	}
}

func TestEnvStillReadsOtherVariables(t *testing.T) {
	for _, name := range []string{"RELAY_MODELS", "REDIS_HOST", "CRS_SECURITY", "MY_CRS_SECURITY__X", "ANTHROPIC_BASE_URL"} {
		if IsRelaySecret(name) {
			t.Errorf("IsRelaySecret(%q) = true, want false", name)
		}
	}
	env := &recordingEnv{}
	snap, srcs, diags := Loader{LookupEnv: env.lookup}.LoadFiles(map[string][]byte{"ok.hcl": []byte("policy \"team\" {\n  models = [env(\"RELAY_MODELS\")]\n}\n")})
	if diags.HasErrors() {
		t.Fatalf("got errors:\n%s", srcs.FormatDiagnostics(diags))
	}
	if got := snap.Policies["team"].Models; len(got) != 1 || got[0] != secretValue {
		t.Errorf("got models %q, want the variable's value", got)
	}
}

func TestDiagnosticsNeverPrintEnvValues(t *testing.T) {
	src := `server {
  max_body_bytes  = env("A")
  trusted_proxies = [env("B")]
}
policy "p" {
  models      = env("C")
  concurrency = env("D")
}
pool "claude" {
  strategy   = env("E")
  failover   = { max_attempts = env("F"), on = [env("G")] }
  sticky_ttl = env("H")
}
route "r" {
  paths   = [env("I"), "v1/${env("J")}"]
  pool    = env("K")
  timeout = env("L")
}
`
	for _, value := range []string{secretValue, "-5", "x", `quote"and\back`, "claude"} {
		t.Run(value, func(t *testing.T) {
			lookup := func(string) (string, bool) { return value, true }
			_, srcs, diags := Loader{LookupEnv: lookup}.LoadFiles(map[string][]byte{"env.hcl": []byte(src)})
			if !diags.HasErrors() {
				t.Fatal("got no errors, want some")
			}
			for _, d := range diags {
				for _, s := range []string{d.Summary, d.Detail} {
					if value == secretValue && strings.Contains(s, value) || strings.Contains(s, fmt.Sprintf("%q", value)) {
						t.Errorf("diagnostic %q prints the env value: %q", d.Summary, s)
					}
				}
			}
			if value == secretValue {
				if text := srcs.FormatDiagnostics(diags); strings.Contains(text, value) {
					t.Errorf("formatted diagnostics print the env value:\n%s", text)
				}
			}
		})
	}
	t.Run("the message still says what is wrong", func(t *testing.T) {
		lookup := func(string) (string, bool) { return secretValue, true }
		_, srcs, diags := Loader{LookupEnv: lookup}.LoadFiles(map[string][]byte{"env.hcl": []byte(src)})
		text := srcs.FormatDiagnostics(diags)
		for _, want := range []string{
			`Strategy <value of env("E")> is not one of "sticky_least_loaded"`,
			`There is no pool named <value of env("K")>; declared: "claude".`,
			`path "v1/<value of env("J")>" must start with "/"`,
			`on env.hcl:10:16, in pool "claude":`,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("got diagnostics:\n%s\nwant them to contain %q", text, want)
			}
		}
	})
}

func TestReplaceWordLeavesLongerWords(t *testing.T) {
	tests := []struct{ s, old, want string }{
		{"got 1.", "1", "got X."},
		{"got 10, 1 and 21", "1", "got 10, X and 21"},
		{"Strategy x is not", "x", "Strategy X is not"},
		{"path \"/v1/abc\"", "abc", "path \"/v1/X\""},
		{"a-b", "-", "aXb"},
	}
	for _, tt := range tests {
		if got := replaceWord(tt.s, tt.old, "X"); got != tt.want {
			t.Errorf("replaceWord(%q, %q): got %q, want %q", tt.s, tt.old, got, tt.want)
		}
	}
}

// testSecretHCL is a block with one secret field, standing in for the alerts' webhook
// blocks until a real secret field exists.
type testSecretHCL struct {
	Token *hcl.Attribute `hcl:"token"`
	Name  *string        `hcl:"name,optional"`
}

// decodeTestSecret loads src's single test_secret block through the builder, the way load
// decodes real blocks, and returns the secret and the diagnostics as printed.
func decodeTestSecret(t *testing.T, src string, lookup func(string) (string, bool)) (Secret, hcl.Diagnostics, *Sources) {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), "secret.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	content, diags := f.Body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "test_secret"}}})
	if diags.HasErrors() || len(content.Blocks) != 1 {
		t.Fatalf("test input: %v", diags)
	}
	l := Loader{LookupEnv: lookup}
	b := newBuilder(l.evalContext(), l.lookup())
	blk := content.Blocks[0]
	info := &blockInfo{body: blk.Body, defRange: blk.DefRange, labelRange: blk.DefRange}
	var v testSecretHCL
	b.addBlockDiags(info, gohcl.DecodeBody(blk.Body, b.ctx, &v))
	s := b.secret(info, v.Token)
	srcs := &Sources{files: map[string]*hcl.File{"secret.hcl": f}}
	redactEnv(b.diags, envUses([]*hcl.File{f}, b.ctx))
	srcs.mask(b.masked)
	return s, b.diags, srcs
}

func TestSecretFieldKeepsOnlyTheVariableName(t *testing.T) {
	env := &recordingEnv{}
	s, diags, srcs := decodeTestSecret(t, "test_secret {\n  token = env(\"ALERTS_WEBHOOK_SECRET\")\n}\n", env.lookup)
	if diags.HasErrors() {
		t.Fatalf("got errors:\n%s", srcs.FormatDiagnostics(diags))
	}
	if s.Env != "ALERTS_WEBHOOK_SECRET" {
		t.Fatalf("got %+v, want the variable's name", s)
	}
	b, err := json.Marshal(struct{ Token Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"Token":{"env":"ALERTS_WEBHOOK_SECRET"}}`; got != want {
		t.Errorf("snapshot JSON: got %s, want %s", got, want)
	}
	for _, printed := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s)} {
		if strings.Contains(printed, secretValue) {
			t.Errorf("printing the secret shows its value: %q", printed)
		}
	}
	v, err := s.Resolve(env.lookup)
	if err != nil || v != secretValue {
		t.Errorf("Resolve: got %q, %v, want the value", v, err)
	}
}

func TestSecretFieldRefusals(t *testing.T) {
	tests := []struct {
		name, expr, want string
	}{
		{"literal", `"` + secretValue + `"`, "Secret written in the configuration"},
		{"template", `"prefix-${env("X")}"`, "Secret written in the configuration"},
		{"env with a default", `env("X", "` + secretValue + `")`, "Secret written in the configuration"},
		{"relay secret", `env("CRS_SECURITY__ENCRYPTION_KEY")`, "relay's own secrets"},
		{"unset", `env("UNSET_SECRET")`, "UNSET_SECRET, which is not set"},
	}
	lookup := func(name string) (string, bool) {
		if name == "UNSET_SECRET" {
			return "", false
		}
		return secretValue, true
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "test_secret {\n  token = " + tt.expr + "\n}\n"
			s, diags, srcs := decodeTestSecret(t, src, lookup)
			if !diags.HasErrors() || !s.IsZero() {
				t.Fatalf("got %+v and no error, want a refusal", s)
			}
			text := diagText(srcs, diags)
			if !strings.Contains(text, tt.want) || !strings.Contains(text, "on secret.hcl:2:11") {
				t.Errorf("got %q, want %q at secret.hcl:2:11", text, tt.want)
			}
			if strings.Contains(text, secretValue) {
				t.Errorf("diagnostics print the secret:\n%s", text)
			}
		})
	}
}
