package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestConfigCheckPricesPrintsTheEffectiveTableWithOrigins(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "relay.hcl"), []byte(`pool "p" {}
route "messages" {
  paths = ["/v1/messages"]
  pool  = "p"
}

pricing "claude-sonnet-4-5*" {
  input          = 2
  output         = 10
  cache_write_5m = 2.5
  cache_write_1h = 4
  cache_read     = 0.2
}
`), 0o644)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"config", "check", "--prices", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d\nstderr: %s", code, stderr.String())
	}
	out := stdout.String()
	rows := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^claude-sonnet-4-5\*\s+2\s+10\s+2\.5\s+4\s+0\.2\s+` + regexp.QuoteMeta(filepath.Join(dir, "relay.hcl")) + `:7$`),
		regexp.MustCompile(`(?m)^claude-haiku-4-5\*\s+1\s+5\s+1\.25\s+2\s+0\.1\s+built-in$`),
		regexp.MustCompile(`(?m)^\(fallback: any other model\)\s+15\s+75\s+18\.75\s+30\s+1\.5\s+built-in$`),
	}
	for _, re := range rows {
		if !re.MatchString(out) {
			t.Errorf("got\n%s\nwant a line matching %s", out, re)
		}
	}
	if strings.Count(out, "claude-sonnet-4-5*") != 1 {
		t.Errorf("got\n%s\nwant claude-sonnet-4-5* once: the operator's row replaces the built-in one", out)
	}
	if !strings.Contains(out, "configuration OK") {
		t.Errorf("got %q, want the OK line too", out)
	}
}
