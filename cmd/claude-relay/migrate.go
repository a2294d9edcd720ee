package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"filippo.io/age"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/app"
	"github.com/claude-relay/claude-relay/internal/migrate/backup"
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
	pluginDir := pluginDirFlag(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, importUsage+"\nflags of import crs:\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *from == "" || *keyFile == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "claude-relay import crs: --from and --crs-encryption-key-file are required")
		fs.Usage()
		return 2
	}
	fail := failer(stderr, "import crs")
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

const exportUsage = `usage: claude-relay export --to FILE (--age-recipient age1… | --passphrase-file PATH)

Writes this installation's relay keys (their records: hashes, never a secret), upstream
accounts, usage history and admin audit log to FILE (mode 0600), for claude-relay import
backup on another host. Account credentials, refresh tokens, proxy URLs, the key pepper and
any CRS key still in use are sealed with age to the recipient or the passphrase; the rest is
readable (gzip JSON). REDIS_* and CRS_SECURITY__ENCRYPTION_KEY as for the relay.
`

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "the backup file to write")
	recipient := fs.String("age-recipient", "", "seal the secrets to this age X25519 recipient (age1…)")
	passFile := fs.String("passphrase-file", "", "seal the secrets with the passphrase in this file (age scrypt)")
	pluginDir := pluginDirFlag(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, exportUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *to == "" || (*recipient == "") == (*passFile == "") {
		fmt.Fprintln(stderr, "claude-relay export: --to and one of --age-recipient or --passphrase-file are required")
		fs.Usage()
		return 2
	}
	fail := failer(stderr, "export")
	var r age.Recipient
	if *recipient != "" {
		x, err := age.ParseX25519Recipient(*recipient)
		if err != nil {
			return fail("--age-recipient: %v", err)
		}
		r = x
	} else {
		pass, err := readSecretFile(*passFile)
		if err != nil {
			return fail("%v", err)
		}
		s, err := age.NewScryptRecipient(string(pass))
		if err != nil {
			return fail("%v", err)
		}
		r = s
	}
	b, code := openStore(ctx, *pluginDir, stderr, "export")
	if b == nil {
		return code
	}
	defer b.Close()
	tmp := *to + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fail("%v", err)
	}
	sum, err := backup.Export(ctx, b.Store, f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, *to)
	}
	if err != nil {
		os.Remove(tmp)
		return fail("%v", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d keys, %d accounts, %d key-days and %d account-days of usage, %d audit entries\n",
		*to, sum.Keys, sum.Accounts, sum.KeyDays, sum.AccountDays, sum.Audit)
	return 0
}

func runImportBackup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "the backup file claude-relay export wrote")
	idFile := fs.String("age-identity-file", "", "age identity file (AGE-SECRET-KEY-1…) of the recipient the backup was sealed to")
	passFile := fs.String("passphrase-file", "", "file holding the passphrase the backup was sealed with")
	dryRun := fs.Bool("dry-run", false, "open the backup and print what it holds; nothing is written")
	pluginDir := pluginDirFlag(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, importUsage+"\nflags of import backup:\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *from == "" || (*idFile == "") == (*passFile == "") {
		fmt.Fprintln(stderr, "claude-relay import backup: --from and one of --age-identity-file or --passphrase-file are required")
		fs.Usage()
		return 2
	}
	fail := failer(stderr, "import backup")
	var ids []age.Identity
	if *idFile != "" {
		raw, err := os.ReadFile(*idFile)
		if err != nil {
			return fail("%v", err)
		}
		if ids, err = age.ParseIdentities(bytes.NewReader(raw)); err != nil {
			return fail("--age-identity-file: %v", err)
		}
	} else {
		pass, err := readSecretFile(*passFile)
		if err != nil {
			return fail("%v", err)
		}
		id, err := age.NewScryptIdentity(string(pass))
		if err != nil {
			return fail("%v", err)
		}
		ids = []age.Identity{id}
	}
	in, err := os.Open(*from)
	if err != nil {
		return fail("%v", err)
	}
	defer in.Close()
	f, sec, err := backup.Read(in, ids...)
	if err != nil {
		return fail("%v", err)
	}
	sum := f.Summary()
	fmt.Fprintf(stdout, "backup %s of %s: %d keys, %d accounts, %d key-days and %d account-days of usage, %d audit entries\n",
		f.ID, f.CreatedAt.Format(time.RFC3339), sum.Keys, sum.Accounts, sum.KeyDays, sum.AccountDays, sum.Audit)
	if *dryRun {
		fmt.Fprintln(stdout, "dry run: nothing was written")
		return 0
	}
	b, code := openStore(ctx, *pluginDir, stderr, "import backup")
	if b == nil {
		return code
	}
	defer b.Close()
	got, err := backup.Import(ctx, b.Store, f, sec)
	fmt.Fprintf(stdout, "restored %d keys, %d accounts, %d audit entries (what existed was kept); usage of %d key-days and %d account-days applied once\n",
		got.Keys, got.Accounts, got.Audit, got.KeyDays, got.AccountDays)
	if err != nil {
		return fail("not finished; fix the cause and run it again (it resumes):\n%v", err)
	}
	fmt.Fprintln(stdout, "restart the relay processes so they load the restored key pepper")
	return 0
}

// openStore opens this installation's store the way the relay does.
func openStore(ctx context.Context, pluginDir string, stderr io.Writer, cmd string) (*app.Base, int) {
	env, err := app.LoadEnv()
	if err != nil {
		fmt.Fprintf(stderr, "claude-relay %s: invalid environment:\n%v\n", cmd, err)
		return nil, 1
	}
	if pluginDir != "" {
		env.PluginDir = pluginDir
	}
	b, err := app.OpenTool(ctx, env, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "claude-relay %s: %v\n", cmd, err)
		return nil, 1
	}
	return b, 0
}
