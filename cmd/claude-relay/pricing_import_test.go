package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/claude-relay/claude-relay/config"
)

const importFixture = "../../config/priceimport/testdata/model_prices_excerpt.json"

// importDir is a configuration directory with one route, and the path import writes.
func importDir(t *testing.T, extra string) (dir, target string) {
	t.Helper()
	dir = t.TempDir()
	src := "pool \"p\" {}\nroute \"r\" {\n  paths = [\"/v1/messages\"]\n  pool  = \"p\"\n}\n" + extra
	if err := os.WriteFile(filepath.Join(dir, "relay.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, filepath.Join(dir, "pricing-imported.hcl")
}

func runPriceImport(t *testing.T, o importOptions, args ...string) (int, string, string) {
	t.Helper()
	if o.getenv == nil {
		o.getenv = func(string) string { return "" }
	}
	var stdout, stderr bytes.Buffer
	code := runPricingWith(context.Background(), append([]string{"import"}, args...), o, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestPricingImportShowsTheDiffAndWritesOnlyWithWrite(t *testing.T) {
	dir, target := importDir(t, "")
	code, out, errOut := runPriceImport(t, importOptions{}, importFixture, "--config-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"+++ " + target, "+pricing \"claude-opus-4-7\" {", "8 Anthropic models", "1 price(s) to check", "nothing written"} {
		if !strings.Contains(out, want) {
			t.Errorf("got\n%s\nwant it to contain %q", out, want)
		}
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("without --write: stat %s: got %v, want not exist", target, err)
	}

	if code, out, errOut = runPriceImport(t, importOptions{}, "--write", importFixture, "--config-dir", dir); code != 0 || !strings.Contains(out, "wrote "+target) {
		t.Fatalf("--write: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, _ = runPriceImport(t, importOptions{}, importFixture, "--config-dir", dir); code != 0 || !strings.Contains(out, "is up to date") {
		t.Errorf("again: exit %d, stdout %q, want up to date", code, out)
	}
	snap, srcs, diags := config.Load(dir)
	if diags.HasErrors() {
		t.Fatal(srcs.FormatDiagnostics(diags))
	}
	rt, err := config.Compile(snap)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := rt.Price("claude-opus-4-7"); p.Model != "claude-opus-4-7" || !strings.HasPrefix(srcs.PriceOrigin(p.Model), target+":") {
		t.Errorf("claude-opus-4-7: priced by %q from %q, want the imported row", p.Model, srcs.PriceOrigin(p.Model))
	}
	if p, _ := rt.Price("claude-opus-4-8"); srcs.PriceOrigin(p.Model) != config.OriginBuiltIn {
		t.Errorf("claude-opus-4-8: got origin %q, want the built-in row", srcs.PriceOrigin(p.Model))
	}

	// A changed table shows as a change of the rows it touches.
	table, err := os.ReadFile(importFixture)
	if err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(t.TempDir(), "prices.json")
	os.WriteFile(changed, bytes.Replace(table, []byte(`"output_cost_per_token": 1e-05`), []byte(`"output_cost_per_token": 1.2e-05`), 1), 0o644)
	code, out, _ = runPriceImport(t, importOptions{getenv: func(k string) string {
		if k == "CLAUDE_RELAY_CONFIG_DIR" {
			return dir
		}
		return ""
	}}, changed)
	if code != 0 || !strings.Contains(out, "-  output         = 10\n+  output         = 12\n") {
		t.Errorf("changed table: exit %d, got\n%s\nwant the one output price changed", code, out)
	}
}

func TestPricingImportWritesNothingTheDirectoryWouldRefuse(t *testing.T) {
	dir, target := importDir(t, "pricing \"claude-opus-4-7\" {\n  input = 1\n  output = 1\n  cache_write_5m = 1\n  cache_write_1h = 1\n  cache_read = 1\n}\n")
	code, _, errOut := runPriceImport(t, importOptions{}, "--write", importFixture, "--config-dir", dir)
	if code != 1 || !strings.Contains(errOut, "Duplicate pricing block") || !strings.Contains(errOut, "nothing written") {
		t.Errorf("exit %d, stderr %q; want 1, the duplicate named and nothing written", code, errOut)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("stat %s: got %v, want not exist", target, err)
	}
}

func TestPricingImportFetchesHTTPSOnlyWithinLimits(t *testing.T) {
	table, err := os.ReadFile(importFixture)
	if err != nil {
		t.Fatal(err)
	}
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(table) }))
	t.Cleanup(plain.Close)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/prices.json":
			w.Write(table)
		case "/to-http":
			http.Redirect(w, r, plain.URL+"/prices.json", http.StatusFound)
		case "/to-https":
			http.Redirect(w, r, "/prices.json", http.StatusFound)
		case "/huge":
			w.Write(bytes.Repeat([]byte(" "), importMaxBytes+1))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	dir, _ := importDir(t, "")
	o := importOptions{client: srv.Client()}
	tests := []struct {
		name, url string
		code      int
		want      string
	}{
		{"https", srv.URL + "/prices.json", 0, "8 Anthropic models"},
		{"a redirect that stays on https", srv.URL + "/to-https", 0, "8 Anthropic models"},
		{"a redirect to http", srv.URL + "/to-http", 1, "refused a redirect to " + plain.URL + "/prices.json: not https"},
		{"an http URL", plain.URL + "/prices.json", 1, "only https:// URLs are fetched"},
		{"not found", srv.URL + "/nope", 1, "404 Not Found"},
		{"too large", srv.URL + "/huge", 1, "larger than 32 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runPriceImport(t, o, tt.url, "--config-dir", dir)
			if code != tt.code || !strings.Contains(out+errOut, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, out, errOut, tt.code, tt.want)
			}
		})
	}
}

func TestPricingImportUsage(t *testing.T) {
	for _, args := range [][]string{{"import"}, {"import", "a", "b", "--config-dir", "x"}, {"export"}} {
		var stdout, stderr bytes.Buffer
		if code := runPricingWith(context.Background(), args, importOptions{getenv: func(string) string { return "" }}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage: claude-relay pricing import") {
			t.Errorf("%v: exit %d stderr %q, want 2 and the usage", args, code, stderr.String())
		}
	}
	code, _, errOut := runPriceImport(t, importOptions{}, importFixture)
	if code != 2 || !strings.Contains(errOut, "--config-dir DIR (or CLAUDE_RELAY_CONFIG_DIR)") {
		t.Errorf("no config dir: exit %d stderr %q", code, errOut)
	}
}
