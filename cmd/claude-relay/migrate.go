package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/app"
	"github.com/claude-relay/claude-relay/internal/migrate/crs"
)

const importUsage = `usage: claude-relay import crs --from redis://[:password@]host:port/db --crs-encryption-key-file PATH [--dry-run] [flags]
       claude-relay import backup --from FILE (--age-identity-file PATH | --passphrase-file PATH) [--dry-run]

import crs moves a Claude Relay Service installation in: it reads CRS's Redis read-only
(it never writes there) and writes keys, accounts, groups and usage history into this
installation's store (REDIS_* and CRS_SECURITY__ENCRYPTION_KEY as for the relay). Members
keep their cr_ keys. The plan — counts, how CRS maps, every rule mapped to a stricter one
and everything not imported with the reason — is printed first; --dry-run stops there.
Running it again changes nothing; an interrupted run resumes. Restart the sidecars after
it, so they load the CRS key the imported secrets are checked with until first use.

import backup restores a file written by claude-relay export (see claude-relay export -h).
`

// runImport runs `claude-relay import …`.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, importUsage)
		return 2
	}
	switch args[0] {
	case "crs":
		return runImportCRS(ctx, args[1:], stdout, stderr)
	case "backup":
		return runImportBackup(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, importUsage)
		return 0
	}
	fmt.Fprintf(stderr, "claude-relay import: unknown source %q\n\n%s", args[0], importUsage)
	return 2
}

func runImportCRS(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import crs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "the CRS Redis: redis://[:password@]host:port/db (or rediss://); only read")
	keyFile := fs.String("crs-encryption-key-file", "", "file holding CRS's ENCRYPTION_KEY (its keys' hashes and account envelopes were made with it)")
	dryRun := fs.Bool("dry-run", false, "print the plan and stop; nothing is written")
	tz := fs.Int("crs-timezone-offset", 8, "CRS's TIMEZONE_OFFSET in hours: the timezone of its daily usage keys (CRS reads 0 as 8)")
	apiURL := fs.String("crs-claude-api-url", "https://api.anthropic.com/v1/messages", "CRS's CLAUDE_API_URL, where its Claude OAuth accounts were sent")
	configDir := fs.String("config-dir", "", "HCL configuration whose price table prices account usage (default CLAUDE_RELAY_CONFIG_DIR, else built-in)")
	pluginDir := fs.String("plugin-dir", "", "provider plugin directory (default CLAUDE_RELAY_PLUGIN_DIR, else plugins/ beside the binary)")
	fs.Usage = func() {
		fmt.Fprint(stderr, importUsage+"\nflags of import crs:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *from == "" || *keyFile == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "claude-relay import crs: --from and --crs-encryption-key-file are required")
		fs.Usage()
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "claude-relay import crs: "+format+"\n", a...)
		return 1
	}
	crsKey, err := readSecretFile(*keyFile)
	if err != nil {
		return fail("%v", err)
	}
	env, err := app.LoadEnv()
	if err != nil {
		return fail("invalid environment:\n%v", err)
	}
	if *pluginDir != "" {
		env.PluginDir = *pluginDir
	}
	if *configDir == "" {
		*configDir = env.ConfigDir
	}
	pricer, err := loadPricing(*configDir)
	if err != nil {
		return fail("%v", err)
	}
	src, err := crs.ConnectReadOnly(ctx, *from)
	if err != nil {
		return fail("%v", err)
	}
	defer src.Close()
	start := time.Now()
	fmt.Fprintf(stdout, "reading Claude Relay Service at %s (read-only)\n", src.Options().Addr)
	ds, err := crs.Read(ctx, src, func(n int) { fmt.Fprintf(stdout, "  scanned %d CRS keys\n", n) })
	if err != nil {
		return fail("%v", err)
	}
	dec, err := crs.NewDecrypter(string(crsKey))
	if err != nil {
		return fail("%v", err)
	}
	plan, err := crs.Build(ds, dec, crs.Options{TimezoneOffset: *tz, ClaudeAPIURL: *apiURL, Pricer: pricer})
	if err != nil {
		return fail("%v", err)
	}
	plan.Write(stdout)
	if *dryRun {
		fmt.Fprintf(stdout, "\ndry run: nothing was written (%s)\n", time.Since(start).Round(time.Millisecond))
		return 0
	}
	b, err := app.OpenTool(ctx, env, stderr)
	if err != nil {
		return fail("%v", err)
	}
	defer b.Close()
	fmt.Fprintf(stdout, "\nimporting\n")
	bar := newProgress(stdout)
	res, err := crs.Apply(ctx, b.Store, plan, crsKey, func(p crs.Progress) { bar.step(p.Done, p.Total, p.Stage) })
	bar.done()
	fmt.Fprintf(stdout, "accounts: %d added, %d imported before; keys: %d created, %d imported before; %d total-cost counters seeded; %d usage records offered (%s)\n",
		res.AccountsAdded, res.AccountsExisting, res.KeysCreated, res.KeysExisting, res.Seeded, res.UsageRecords, time.Since(start).Round(time.Millisecond))
	if err != nil {
		return fail("not finished; fix the cause and run it again (it resumes):\n%v", err)
	}
	if left, err := b.Store.LegacyKeysLeft(ctx); err == nil && left > 0 {
		fmt.Fprintf(stdout, "%d keys wait for their first use under their CRS hash: restart the sidecars (one at a time) so they load the CRS key\n", left)
	}
	return 0
}

// readSecretFile reads a secret from a file, without a trailing newline.
func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}

// loadPricing compiles the HCL configuration (or the built-in default) for its price table.
func loadPricing(dir string) (*config.Runtime, error) {
	var snap *config.Snapshot
	if dir == "" {
		s, err := config.Default()
		if err != nil {
			return nil, err
		}
		snap = s
	} else {
		s, src, diags := config.Load(dir)
		if diags.HasErrors() {
			var buf bytes.Buffer
			src.WriteDiagnostics(&buf, diags)
			return nil, fmt.Errorf("configuration %s (for its prices):\n%s", dir, buf.String())
		}
		snap = s
	}
	return config.Compile(snap)
}

func runImportBackup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "claude-relay import backup: not built yet")
	return 1
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "claude-relay export: not built yet")
	return 1
}
