package priceimport

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func parseFixture(t *testing.T) []Row {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "model_prices_excerpt.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestImportKeepsAnthropicAPIModelsOnly(t *testing.T) {
	var got []string
	for _, r := range parseFixture(t) {
		got = append(got, r.Price.Model)
	}
	want := []string{"claude-3-haiku-20240307", "claude-4-sonnet-20250514", "claude-haiku-4-5", "claude-haiku-4-5-20251001", "claude-opus-4-5", "claude-opus-4-7", "claude-sonnet-4-5", "claude-sonnet-5"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("models (-want +got):\n%s", diff)
	}
}

func TestImportConvertsPerTokenPricesAndTiers(t *testing.T) {
	rows := map[string]Row{}
	for _, r := range parseFixture(t) {
		rows[r.Price.Model] = r
	}
	sonnet := config.Price{Model: "claude-sonnet-4-5", Input: 3, Output: 15, CacheWrite5m: 3.75, CacheWrite1h: 6, CacheRead: 0.3,
		LongContext: config.PriceTier{AboveInputTokens: 200000, Input: 6, Output: 22.5, CacheWrite5m: 7.5, CacheWrite1h: 12, CacheRead: 0.6}}
	if diff := cmp.Diff(sonnet, rows["claude-sonnet-4-5"].Price); diff != "" {
		t.Errorf("claude-sonnet-4-5 (-want +got):\n%s", diff)
	}
	old := rows["claude-4-sonnet-20250514"]
	if diff := cmp.Diff([]string{"cache_write_1h", "long_context.cache_write_1h"}, old.Derived); diff != "" {
		t.Errorf("derived prices (-want +got):\n%s", diff)
	}
	if old.Price.CacheWrite1h != 6 || old.Price.LongContext.CacheWrite1h != 12 {
		t.Errorf("derived 1-hour writes: got %v and %v, want 6 and 12 (2x input)", old.Price.CacheWrite1h, old.Price.LongContext.CacheWrite1h)
	}
	if w := rows["claude-3-haiku-20240307"].Warnings; len(w) != 1 || !strings.Contains(w[0], "cache_write_1h is 6, 24x the input price") {
		t.Errorf("claude-3-haiku warnings: got %q, want the 24x 1-hour write flagged", w)
	}
}

func TestImportRendersGoldenHCLThatLoads(t *testing.T) {
	got := Render(parseFixture(t), "testdata/model_prices_excerpt.json")
	golden := filepath.Join("testdata", "pricing-imported.golden.hcl")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("rendered HCL (-want +got):\n%s", diff)
	}
	snap, srcs, diags := config.LoadFiles(map[string][]byte{
		"main.hcl":             []byte("pool \"p\" {}\nroute \"r\" {\n  paths = [\"/x\"]\n  pool = \"p\"\n}\n"),
		"pricing-imported.hcl": got,
	})
	if diags.HasErrors() {
		t.Fatalf("the rendered file does not load:\n%s", srcs.FormatDiagnostics(diags))
	}
	rt, err := config.Compile(snap)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := rt.Price("claude-opus-4-7"); srcs.PriceOrigin(p.Model) != "pricing-imported.hcl:"+lineOf(string(got), `pricing "claude-opus-4-7"`) {
		t.Errorf("claude-opus-4-7 is priced by %q from %s, want the imported row", p.Model, srcs.PriceOrigin(p.Model))
	}
	if p, known := rt.Price("claude-opus-4-8"); !known || p.Model != "claude-opus-4-8*" {
		t.Errorf("claude-opus-4-8 (not in the import): got %q, want the built-in row", p.Model)
	}
}

func lineOf(s, sub string) string {
	i := strings.Index(s, sub)
	if i < 0 {
		return "?"
	}
	return strconv.Itoa(strings.Count(s[:i], "\n") + 1)
}

func TestImportRefusals(t *testing.T) {
	tests := []struct {
		name, in string
		want     error
		wantText string
	}{
		{"not json", "<html>", nil, "LiteLLM's model_prices_and_context_window.json format"},
		{"no anthropic models", `{"gpt-4":{"litellm_provider":"openai","input_cost_per_token":1e-6,"output_cost_per_token":2e-6}}`, ErrNoModels, ""},
		{"anthropic without prices", `{"claude-x":{"litellm_provider":"anthropic"}}`, ErrNoModels, ""},
		{"a label HCL could not hold", `{"claude-\"x\n":{"litellm_provider":"anthropic","input_cost_per_token":1e-6,"output_cost_per_token":2e-6}}`, ErrNoModels, ""},
		{"a negative price", `{"claude-x":{"litellm_provider":"anthropic","input_cost_per_token":-1e-6,"output_cost_per_token":2e-6}}`, ErrNoModels, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in))
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("got %v, want %v %q", err, tt.want, tt.wantText)
			}
		})
	}
}
