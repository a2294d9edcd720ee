package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/priceimport"
	"github.com/claude-relay/claude-relay/internal/atomicfile"
)

const pricingUsage = `usage: claude-relay pricing import FILE|URL [--write] [--config-dir DIR]

Reads a price table in LiteLLM's model_prices_and_context_window.json format (a file, or an
https:// URL such as
https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json),
keeps the Anthropic API's models and renders them as pricing blocks, one exact model name
each, into DIR/pricing-imported.hcl. It prints the diff against that file and checks that
the directory still loads with it; nothing is written without --write. A running control
plane reloads the directory by itself (or on SIGHUP). Imported rows are matched before the
built-in table, which keeps pricing every model the import does not list.

  --write           write DIR/pricing-imported.hcl
  --config-dir DIR  the HCL configuration directory (default CLAUDE_RELAY_CONFIG_DIR)
`

// Limits on what pricing import reads.
const (
	importFileName = "pricing-imported.hcl"
	importMaxBytes = 32 << 20 // LiteLLM's whole table is about 1.6 MB
	importTimeout  = 30 * time.Second
	importMaxHops  = 5
)

// importOptions are what tests replace.
type importOptions struct {
	client *http.Client // nil: one with importTimeout and the https-only redirect rule
	getenv func(string) string
}

func runPricing(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runPricingWith(ctx, args, importOptions{getenv: os.Getenv}, stdout, stderr)
}

func runPricingWith(ctx context.Context, args []string, o importOptions, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, pricingUsage)
		return 0
	}
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprint(stderr, pricingUsage)
		return 2
	}
	fs := flag.NewFlagSet("pricing import", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	write := fs.Bool("write", false, "")
	dir := fs.String("config-dir", "", "")
	fs.StringVar(dir, "config", "", "")
	var pos []string
	for rest := args[1:]; ; { // flags may come before or after the source
		if err := fs.Parse(rest); errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, pricingUsage)
			return 0
		} else if err != nil {
			fmt.Fprintf(stderr, "claude-relay pricing import: %v\n\n%s", err, pricingUsage)
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) != 1 {
		fmt.Fprint(stderr, pricingUsage)
		return 2
	}
	if *dir == "" {
		*dir = o.getenv("CLAUDE_RELAY_CONFIG_DIR")
	}
	if *dir == "" {
		fmt.Fprintf(stderr, "claude-relay pricing import: name the configuration directory with --config-dir DIR (or CLAUDE_RELAY_CONFIG_DIR)\n")
		return 2
	}
	if err := importPrices(ctx, pos[0], *dir, *write, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "claude-relay pricing import: %v\n", err)
		return 1
	}
	return 0
}

// importPrices reads src, renders DIR/pricing-imported.hcl, checks the directory loads with
// it, prints the diff and, with write, writes it.
func importPrices(ctx context.Context, src, dir string, write bool, o importOptions, stdout, stderr io.Writer) error {
	body, err := readPriceSource(ctx, src, o.client)
	if err != nil {
		return err
	}
	rows, err := priceimport.Parse(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	rendered := priceimport.Render(rows, src)
	target := filepath.Join(dir, importFileName)
	old, err := os.ReadFile(target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", target, err)
	}
	if err := checkDirWith(dir, target, rendered, stderr); err != nil {
		return err
	}
	checks := 0
	for _, r := range rows {
		checks += len(r.Warnings)
	}
	if bytes.Equal(old, rendered) {
		fmt.Fprintf(stdout, "%s is up to date (%d Anthropic models from %s)\n", target, len(rows), src)
		return nil
	}
	writeLineDiff(stdout, target, target+" (imported)", string(old), string(rendered))
	fmt.Fprintf(stdout, "%d Anthropic models from %s", len(rows), src)
	if checks > 0 {
		fmt.Fprintf(stdout, "; %d price(s) to check (the CHECK comments)", checks)
	}
	fmt.Fprintln(stdout)
	if !write {
		fmt.Fprintf(stdout, "nothing written; run again with --write to write %s\n", target)
		return nil
	}
	if err := atomicfile.WriteFile(target, rendered, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	fmt.Fprintf(stdout, "wrote %s; a running control plane reloads it (or send it SIGHUP)\n", target)
	return nil
}

// readPriceSource reads a file, or an https:// URL with a timeout, at most importMaxHops
// redirects that stay on https, and importMaxBytes.
func readPriceSource(ctx context.Context, src string, client *http.Client) ([]byte, error) {
	u, err := url.Parse(src)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		f, err := os.Open(src)
		if err != nil {
			return nil, fmt.Errorf("read the price table: %w", err)
		}
		defer f.Close()
		return readCapped(f, src)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("%s: only https:// URLs are fetched (a price table decides what people are charged); download it and pass the file", src)
	}
	if client == nil {
		client = &http.Client{Timeout: importTimeout}
	}
	c := *client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" {
			return fmt.Errorf("refused a redirect to %s: not https", req.URL.Redacted())
		}
		if len(via) >= importMaxHops {
			return fmt.Errorf("stopped after %d redirects", importMaxHops)
		}
		return nil
	}
	if c.Timeout == 0 {
		c.Timeout = importTimeout
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", src, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the price table: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: %s", src, resp.Status)
	}
	return readCapped(resp.Body, src)
}

func readCapped(r io.Reader, src string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, importMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	if len(b) > importMaxBytes {
		return nil, fmt.Errorf("%s is larger than %d MiB; not a price table", src, importMaxBytes>>20)
	}
	return b, nil
}

// checkDirWith loads dir's *.hcl files with target's content replaced by content, so that
// nothing is written the control plane would refuse.
func checkDirWith(dir, target string, content []byte, stderr io.Writer) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read the configuration directory: %w", err)
	}
	files := map[string][]byte{target: content}
	for _, e := range entries {
		name := filepath.Join(dir, e.Name())
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".hcl") || strings.HasPrefix(e.Name(), ".") || name == target {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		files[name] = b
	}
	snap, srcs, diags := config.LoadFiles(files)
	if diags.HasErrors() {
		srcs.WriteDiagnostics(stderr, diags)
		return fmt.Errorf("%s would not load with the imported prices; nothing written", dir)
	}
	if _, err := config.Compile(snap); err != nil {
		return fmt.Errorf("%s would not load with the imported prices (%w); nothing written", dir, err)
	}
	return nil
}
