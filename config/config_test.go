package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testEnv is the environment env() sees in the golden tests.
func testEnv(name string) (string, bool) {
	v, ok := map[string]string{
		"RELAY_TEST_MAX_BODY": "1048576",
		"RELAY_TEST_STRATEGY": "least_loaded",
		"RELAY_TEST_EMPTY":    "",
		// Never read: env() refuses the relay's own secrets.
		"CRS_SECURITY__ENCRYPTION_KEY": "0123456789abcdef0123456789abcdef",
		// Read, but never printed in a diagnostic.
		"RELAY_TEST_STRATEGY_TYPO": "least_lodaed",
		// Secret fields of alert blocks: checked set, never kept.
		"RELAY_TEST_HOOK_SECRET":    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"RELAY_TEST_FEISHU_URL":     "https://open.feishu.cn/open-apis/bot/v2/hook/secret-hook-id",
		"RELAY_TEST_FEISHU_SIGN":    "feishu-signing-secret",
		"RELAY_TEST_TELEGRAM_TOKEN": "123456:bot-token",
	}[name]
	return v, ok
}

// goldenInputs lists the *.hcl files and the directories in dir.
func goldenInputs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".hcl") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	if len(out) == 0 {
		t.Fatalf("no test inputs in %s", dir)
	}
	return out
}

func goldenName(input, ext string) string {
	return strings.TrimSuffix(input, ".hcl") + ext
}

// checkGolden compares got with the golden file, or rewrites it with -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./config -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func snapshotJSON(t *testing.T, s *Snapshot) []byte {
	t.Helper()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func TestValidConfigsCompileToGoldenSnapshots(t *testing.T) {
	for _, input := range goldenInputs(t, filepath.Join("testdata", "valid")) {
		t.Run(filepath.Base(input), func(t *testing.T) {
			snap, srcs, diags := Loader{LookupEnv: testEnv}.Load(input)
			if diags.HasErrors() {
				t.Fatalf("got errors, want none:\n%s", srcs.FormatDiagnostics(diags))
			}
			if _, err := Compile(snap); err != nil {
				t.Fatalf("Compile of a loaded snapshot: got %v, want nil", err)
			}
			checkGolden(t, goldenName(input, ".golden.json"), snapshotJSON(t, snap))
		})
	}
}

func TestDefaultConfigMatchesGolden(t *testing.T) {
	snap, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(snap); err != nil {
		t.Fatalf("Compile(Default()): got %v, want nil", err)
	}
	checkGolden(t, filepath.Join("testdata", "default.golden.json"), snapshotJSON(t, snap))
}

func TestInvalidConfigsReportGoldenDiagnostics(t *testing.T) {
	for _, input := range goldenInputs(t, filepath.Join("testdata", "invalid")) {
		t.Run(filepath.Base(input), func(t *testing.T) {
			snap, srcs, diags := Loader{LookupEnv: testEnv}.Load(input)
			if !diags.HasErrors() {
				t.Fatal("got no errors, want some")
			}
			if snap != nil {
				t.Errorf("got a snapshot despite errors, want nil")
			}
			for _, d := range diags {
				if d.Severity == hcl.DiagError && d.Subject == nil {
					t.Errorf("error %q has no source range", d.Summary)
				}
			}
			var buf bytes.Buffer
			if err := srcs.WriteDiagnostics(&buf, diags); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, goldenName(input, ".golden.txt"), buf.Bytes())
		})
	}
}

// TestManyErrorsAreAllReported guards the golden file of many_errors.hcl
// against losing diagnostics silently when it is regenerated.
func TestManyErrorsAreAllReported(t *testing.T) {
	_, _, diags := Loader{LookupEnv: testEnv}.Load(filepath.Join("testdata", "invalid", "many_errors.hcl"))
	var got []string
	for _, d := range diags {
		got = append(got, d.Summary)
	}
	want := []string{
		"Invalid CIDR",               // trusted_proxies
		"Invalid body size",          // max_body_bytes = 0
		"Invalid CIDR",               // allowlist element
		"Negative limit",             // concurrency
		"Empty model list",           // models = []
		"Unknown strategy",           // strategy
		"Invalid failover",           // max_attempts = 0
		"Invalid path",               // "messages"
		"Invalid method",             // "GET /"
		"Unknown policy",             // policy
		"Invalid duration",           // timeout
		"Unsupported argument",       // retries
		"Path claimed by two routes", // route copy
		"Unknown pool",               // route copy
		"Empty method list",          // route nothing
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diagnostic summaries (-want +got):\n%s", diff)
	}
}

func TestDiagnosticsPointAtFileLineColumn(t *testing.T) {
	files := map[string][]byte{"main.hcl": []byte("pool \"p\" {}\nroute \"r\" {\n  paths = [\"/v1/messages\"]\n  pool  = \"q\"\n}\n")}
	_, srcs, diags := LoadFiles(files)
	got := srcs.FormatDiagnostics(diags)
	for _, want := range []string{"on main.hcl:4:11, in route \"r\":", "   4:   pool  = \"q\"", "There is no pool named \"q\""} {
		if !strings.Contains(got, want) {
			t.Errorf("got %q, want it to contain %q", got, want)
		}
	}
}

func TestEnvFunction(t *testing.T) {
	tests := []struct {
		name    string
		expr    string
		want    int64
		wantErr string
	}{
		{"set variable", `env("RELAY_TEST_MAX_BODY")`, 1048576, ""},
		{"default when unset", `env("RELAY_TEST_UNSET", "2048")`, 2048, ""},
		{"default when empty", `env("RELAY_TEST_EMPTY", "4096")`, 4096, ""},
		{"variable wins over default", `env("RELAY_TEST_MAX_BODY", "1")`, 1048576, ""},
		{"unset without default", `env("RELAY_TEST_UNSET")`, 0, "environment variable RELAY_TEST_UNSET is not set"},
		{"too many arguments", `env("A", "b", "c")`, 0, "at most one default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "server { max_body_bytes = " + tt.expr + " }\n"
			snap, srcs, diags := Loader{LookupEnv: testEnv}.LoadFiles(map[string][]byte{"env.hcl": []byte(src)})
			if tt.wantErr != "" {
				if got := srcs.FormatDiagnostics(diags); !strings.Contains(got, tt.wantErr) {
					t.Fatalf("got %q, want an error containing %q", got, tt.wantErr)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatalf("got errors:\n%s", srcs.FormatDiagnostics(diags))
			}
			if got := snap.Server.MaxBodyBytes; got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMissingPricingIsInheritedFromDefault(t *testing.T) {
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	snap, srcs, diags := LoadFiles(map[string][]byte{"a.hcl": []byte("pool \"p\" {}\nroute \"r\" {\n  paths = [\"/x\"]\n  pool = \"p\"\n}\n")})
	if diags.HasErrors() {
		t.Fatal(srcs.FormatDiagnostics(diags))
	}
	if diff := cmp.Diff(def.Pricing, snap.Pricing); diff != "" {
		t.Errorf("pricing (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(def.Fallback, snap.Fallback); diff != "" {
		t.Errorf("fallback (-want +got):\n%s", diff)
	}
}

func TestConfigWithoutRoutesWarns(t *testing.T) {
	snap, _, diags := LoadFiles(map[string][]byte{"a.hcl": []byte("pool \"p\" {}\n")})
	if diags.HasErrors() || snap == nil {
		t.Fatalf("got errors %v, want a snapshot", diags)
	}
	if len(diags) != 1 || diags[0].Severity != hcl.DiagWarning || diags[0].Summary != "No routes" {
		t.Errorf("got %v, want one \"No routes\" warning", diags)
	}
}

func TestLoadRefusesDirectoryWithoutHCLFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"empty directory", dir, "holds no *.hcl files"},
		{"missing path", filepath.Join(dir, "nope"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, srcs, diags := Load(tt.path)
			if snap != nil || !diags.HasErrors() {
				t.Fatalf("got snapshot %v and %v, want an error", snap, diags)
			}
			if got := srcs.FormatDiagnostics(diags); !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

func TestSnapshotSurvivesJSONRoundTrip(t *testing.T) {
	snap, srcs, diags := Loader{LookupEnv: testEnv}.Load(filepath.Join("testdata", "valid", "full.hcl"))
	if diags.HasErrors() {
		t.Fatal(srcs.FormatDiagnostics(diags))
	}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(snap, &back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if _, err := Compile(&back); err != nil {
		t.Errorf("Compile after round trip: got %v, want nil", err)
	}
}

func TestGlobMatching(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"claude-sonnet-4-5*", "claude-sonnet-4-5-20250929", true},
		{"claude-sonnet-4-5*", "claude-sonnet-4-5", true},
		{"claude-sonnet-4-5*", "claude-sonnet-4-20250514", false},
		{"claude-*-4-5*", "claude-haiku-4-5-20251001", true},
		{"*haiku*", "claude-3-5-haiku-latest", true},
		{"*", "", true},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "acb", false},
		{"ab*ba", "aba", false},
		{"[x]*", "[x]y", true},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"~"+tt.s, func(t *testing.T) {
			if got := MatchGlob(tt.pattern, tt.s); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPolicyAllowsModelByGlob(t *testing.T) {
	p := &Policy{Models: []string{"claude-sonnet-*", "claude-haiku-*"}}
	tests := []struct {
		policy *Policy
		model  string
		want   bool
	}{
		{p, "claude-sonnet-4-5", true},
		{p, "claude-haiku-4-5", true},
		{p, "claude-opus-4-5", false},
		{&Policy{}, "claude-opus-4-5", true},
		{nil, "claude-opus-4-5", true},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			if got := tt.policy.AllowsModel(tt.model); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// pricingBase is a configuration with a route, for the pricing tests to add to.
const pricingBase = "pool \"p\" {}\nroute \"r\" {\n  paths = [\"/x\"]\n  pool = \"p\"\n}\n"

func loadPricing(t *testing.T, files map[string]string) (*Runtime, *Sources) {
	t.Helper()
	in := map[string][]byte{"a.hcl": []byte(pricingBase)}
	for name, src := range files {
		in[name] = []byte(src)
	}
	snap, srcs, diags := LoadFiles(in)
	if diags.HasErrors() {
		t.Fatal(srcs.FormatDiagnostics(diags))
	}
	rt, err := Compile(snap)
	if err != nil {
		t.Fatal(err)
	}
	return rt, srcs
}

func TestOneOperatorPriceKeepsEveryBuiltInPrice(t *testing.T) {
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	defRT, err := Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	rt, srcs := loadPricing(t, map[string]string{"prices.hcl": "pricing \"claude-experimental-9*\" {\n  input = 7\n  output = 35\n  cache_write_5m = 8.75\n  cache_write_1h = 14\n  cache_read = 0.7\n}\n"})
	for _, model := range []string{"claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-3-5-haiku-20241022", "claude-opus-4-1-20250805"} {
		want, wantKnown := defRT.Price(model)
		got, known := rt.Price(model)
		if !wantKnown || !known || got != want {
			t.Errorf("%s: got %+v (known %v), want the built-in %+v", model, got, known, want)
		}
	}
	if got, known := rt.Price("claude-experimental-9-1"); !known || got.Input != 7 {
		t.Errorf("operator price: got %+v (known %v), want input 7", got, known)
	}
	if got := len(rt.Snapshot.Pricing); got != len(def.Pricing)+1 {
		t.Errorf("got %d rows, want the %d built-in ones plus one", got, len(def.Pricing))
	}
	if got := srcs.PriceOrigin("claude-experimental-9*"); got != "prices.hcl:1" {
		t.Errorf("origin of the operator row: got %q, want prices.hcl:1", got)
	}
	if got := srcs.PriceOrigin("claude-sonnet-4-5*"); got != OriginBuiltIn {
		t.Errorf("origin of a built-in row: got %q, want %q", got, OriginBuiltIn)
	}
}

func TestOperatorPriceWinsOverBuiltInForTheModelsItMatches(t *testing.T) {
	rt, srcs := loadPricing(t, map[string]string{"prices.hcl": `
pricing "claude-sonnet-4-5*" { # the same glob as a built-in row replaces it
  input = 1
  output = 2
  cache_write_5m = 3
  cache_write_1h = 4
  cache_read = 5
}
pricing "claude-haiku-*" { # a broader glob wins too: operator rows are matched first
  input = 9
  output = 9
  cache_write_5m = 9
  cache_write_1h = 9
  cache_read = 9
}
`})
	if got, _ := rt.Price("claude-sonnet-4-5-20250929"); got.Input != 1 || got.CacheRead != 5 {
		t.Errorf("sonnet 4.5: got %+v, want the operator's row", got)
	}
	if got, _ := rt.Price("claude-haiku-4-5"); got.Input != 9 {
		t.Errorf("haiku 4.5: got %+v, want the operator's broader row", got)
	}
	if got, _ := rt.Price("claude-opus-4-1"); got.Input != 15 {
		t.Errorf("opus 4.1: got %+v, want the built-in row", got)
	}
	n := 0
	for _, p := range rt.Snapshot.Pricing {
		if p.Model == "claude-sonnet-4-5*" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("got %d rows for claude-sonnet-4-5*, want 1", n)
	}
	if got := srcs.PriceOrigin("claude-sonnet-4-5*"); got != "prices.hcl:2" {
		t.Errorf("origin: got %q, want prices.hcl:2", got)
	}
}

func TestPricingDefaultsFalseReplacesTheBuiltInTable(t *testing.T) {
	rt, srcs := loadPricing(t, map[string]string{"prices.hcl": `
pricing_defaults = false
pricing "claude-*" {
  input = 1
  output = 2
  cache_write_5m = 3
  cache_write_1h = 4
  cache_read = 5
}
`})
	if got := len(rt.Snapshot.Pricing); got != 1 {
		t.Errorf("got %d rows, want the operator's one", got)
	}
	if _, known := rt.Price("gpt-4"); known {
		t.Error("an unmatched model is known; want the fallback")
	}
	if got := srcs.PriceOrigin(""); got != OriginBuiltIn {
		t.Errorf("fallback origin: got %q, want the built-in fallback", got)
	}
}

func TestPricingDefaultsRefusals(t *testing.T) {
	tests := []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"set twice", map[string][]byte{"a.hcl": []byte(pricingBase + "pricing_defaults = false\n"), "b.hcl": []byte("pricing_defaults = true\n")}, "pricing_defaults is already set at a.hcl:6:1"},
		{"not a bool", map[string][]byte{"a.hcl": []byte(pricingBase + "pricing_defaults = \"no\"\n")}, "a bool is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srcs, diags := LoadFiles(tt.files)
			if got := srcs.FormatDiagnostics(diags); !diags.HasErrors() || !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want an error containing %q", got, tt.want)
			}
		})
	}
	_, srcs, diags := LoadFiles(map[string][]byte{"a.hcl": []byte(pricingBase + "pricing_defaults = false\n")})
	if diags.HasErrors() || !strings.Contains(srcs.FormatDiagnostics(diags), "prices every model at pricing_fallback") {
		t.Errorf("got %q, want a warning that every model is priced at the fallback", srcs.FormatDiagnostics(diags))
	}
}
