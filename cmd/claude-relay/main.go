// Command claude-relay is the Claude API relay: control plane, sidecar, dev mode and CLI.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/claude-relay/claude-relay/cmd/claude-relay/internal/admincli"
	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/app"
)

const usage = `claude-relay — a self-hosted relay for the Anthropic Messages API

Usage:
  claude-relay dev      [flags]   control plane + sidecar in one process (make run)
  claude-relay control  [flags]   the control plane: admin API, configuration
  claude-relay sidecar  [flags]   the data plane: relays client requests upstream
  claude-relay config check PATH  validate an HCL file or directory (like nginx -t);
                                  --prices also prints the effective price table
  claude-relay pricing import FILE|URL [--write]
                                  render LiteLLM's price table as pricing-imported.hcl (-h)
  claude-relay admin …            manage keys and accounts (claude-relay admin -h)
  claude-relay crypto rotate      re-encrypt stored credentials under the current key (-h)
  claude-relay doctor [flags]     check a running installation and say what to fix (-h)
  claude-relay import crs …       move a Claude Relay Service installation in (-h)
  claude-relay export --to FILE   write keys, accounts, usage and audit log to a backup (-h)
  claude-relay import backup …    restore such a backup into this installation (-h)
  claude-relay statusline         one line for Claude Code's status line: spend and limits (-h)
  claude-relay version            print the version

Flags of dev, control and sidecar:
  -listen ADDR      listen address (default HOST:PORT, control: CLAUDE_RELAY_CONTROL_ADDR)
  -config-dir DIR   HCL configuration directory (default CLAUDE_RELAY_CONFIG_DIR, else built-in)
  -data-dir DIR     local state: dev secrets, usage spool (default CLAUDE_RELAY_DATA_DIR or ./data)
  -plugin-dir DIR   provider plugins (default CLAUDE_RELAY_PLUGIN_DIR, else plugins/ beside the binary)

Flag of sidecar:
  -control-plane URL  take the configuration from this control plane (default
                      CLAUDE_RELAY_CONTROL_URL; unset: read -config-dir itself)

Environment variables are documented in README.md; a .env file in the working
directory is read too (the process environment wins).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version", "--version":
		fmt.Fprintf(stdout, "claude-relay %s\n", app.Version)
		return 0
	case "config":
		return runConfig(args[1:], stdout, stderr)
	case "crypto":
		return runCrypto(ctx, args[1:], stdout, stderr)
	case "pricing":
		return runPricing(ctx, args[1:], stdout, stderr)
	case "doctor":
		return runDoctor(ctx, args[1:], stdout, stderr)
	case "import":
		return runImport(ctx, args[1:], stdout, stderr)
	case "export":
		return runExport(ctx, args[1:], stdout, stderr)
	case "admin":
		return admincli.Run(ctx, args[1:], os.Getenv, stdout, stderr)
	case "statusline":
		return runStatusline(ctx, args[1:], os.Stdin, stdout, stderr)
	case "dev", "control", "sidecar":
		return runProcess(ctx, args[0], args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "claude-relay: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func runProcess(ctx context.Context, mode string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts app.Options
	fs.StringVar(&opts.Listen, "listen", "", "listen address (host:port)")
	fs.StringVar(&opts.ConfigDir, "config-dir", "", "HCL configuration directory")
	fs.StringVar(&opts.DataDir, "data-dir", "", "data directory for local state")
	fs.StringVar(&opts.PluginDir, "plugin-dir", "", "provider plugin directory (default CLAUDE_RELAY_PLUGIN_DIR, else plugins/ beside the binary)")
	if mode == "sidecar" {
		fs.StringVar(&opts.ControlURL, "control-plane", "", "control plane URL to take the configuration from (default CLAUDE_RELAY_CONTROL_URL; unset: local HCL)")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opts.Stdout, opts.Stderr = stdout, stderr
	env, err := app.LoadEnv()
	if err != nil {
		fmt.Fprintf(stderr, "claude-relay: invalid environment:\n%v\n", err)
		return 1
	}
	switch mode {
	case "dev":
		err = app.RunDev(ctx, env, opts)
	case "control":
		err = app.RunControl(ctx, env, opts)
	case "sidecar":
		err = app.RunSidecar(ctx, env, opts)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "claude-relay %s: %v\n", mode, err)
		return 1
	}
	return 0
}

func runConfig(args []string, stdout, stderr io.Writer) int {
	prices := false
	if len(args) == 3 && args[0] == "check" && (args[1] == "--prices" || args[1] == "-prices") {
		prices, args = true, []string{args[0], args[2]}
	}
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: claude-relay config check [--prices] PATH   (an .hcl file or a directory of them)")
		return 2
	}
	path := args[1]
	snap, src, diags := config.Load(path)
	if len(diags) > 0 {
		src.WriteDiagnostics(stderr, diags)
	}
	if diags.HasErrors() {
		fmt.Fprintf(stderr, "%s: %d error(s); configuration refused\n", path, len(diags.Errs()))
		return 1
	}
	if _, err := config.Compile(snap); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	if prices {
		if err := writePriceTable(stdout, snap, src); err != nil {
			fmt.Fprintf(stderr, "claude-relay: %v\n", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "%s: configuration OK (%d routes, %d pools, %d policies, %d allowlists, %d prices)\n",
		path, len(snap.Routes), len(snap.Pools), len(snap.Policies), len(snap.Allowlists), len(snap.Pricing))
	return 0
}

// parseFlags parses args into fs. When the command stops there it reports false and the
// exit code: 0 after -h (the usage was printed), 2 for a bad flag.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}

// pluginDirFlag defines the --plugin-dir flag of the commands that open the store.
func pluginDirFlag(fs *flag.FlagSet) *string {
	return fs.String("plugin-dir", "", "provider plugin directory (default CLAUDE_RELAY_PLUGIN_DIR, else plugins/ beside the binary)")
}

// failer returns the error exit of the command named name: it prints the message after
// "claude-relay <name>: " and returns 1.
func failer(stderr io.Writer, name string) func(format string, a ...any) int {
	return func(format string, a ...any) int {
		fmt.Fprintf(stderr, "claude-relay "+name+": "+format+"\n", a...)
		return 1
	}
}
