package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/internal/app"
	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/store"
)

const cryptoUsage = `usage: claude-relay crypto rotate [-plugin-dir DIR]

Re-encrypts every stored secret (upstream account credentials, refresh tokens and proxy
URLs, and the relay-key pepper) under the crypto provider's primary key, while the relay
keeps running. It also binds account credentials sealed by older versions (bound to the
account id only) to their account's type, base URL and proxy, so that changing any of these
in Redis makes the credential unusable instead of sending it elsewhere; check the base URLs
(claude-relay admin accounts list) before the first run. It is idempotent: an interrupted
run is resumed by running it again, and a second run changes nothing.

Rotating CRS_SECURITY__ENCRYPTION_KEY without a moment where a sidecar cannot decrypt:
  1. Give every process the new key as CRS_SECURITY__ENCRYPTION_KEY and the old one in
     CRS_SECURITY__ENCRYPTION_KEY_PREVIOUS (comma-separated if several); restart them one
     at a time. Old envelopes still open; new ones are sealed under the new key.
  2. Run claude-relay crypto rotate with the same environment.
  3. When it reports every secret current, remove the old key from
     CRS_SECURITY__ENCRYPTION_KEY_PREVIOUS and restart the processes one at a time.
`

// runCrypto runs `claude-relay crypto …`.
func runCrypto(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "rotate" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, cryptoUsage)
			return 0
		}
		fmt.Fprint(stderr, cryptoUsage)
		return 2
	}
	fs := flag.NewFlagSet("crypto rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, cryptoUsage) }
	pluginDir := pluginDirFlag(fs)
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	env, err := app.LoadEnv()
	if err != nil {
		fmt.Fprintf(stderr, "claude-relay crypto rotate: invalid environment:\n%v\n", err)
		return 1
	}
	if *pluginDir != "" {
		env.PluginDir = *pluginDir
	}
	b, err := app.OpenTool(ctx, env, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "claude-relay crypto rotate: %v\n", err)
		return 1
	}
	defer b.Close()
	ki, err := b.Crypto.KeyInfo(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "claude-relay crypto rotate: ask the crypto provider for its keys: %v\n", err)
		return 1
	}
	others := make([]string, 0, len(ki.KeyIDs))
	for _, id := range ki.KeyIDs {
		if id != ki.PrimaryKeyID {
			others = append(others, id)
		}
	}
	fmt.Fprintf(stdout, "re-encrypting under key %s (also accepted for decryption: %s)\n", ki.PrimaryKeyID, orNone(others))
	bar := newProgress(stdout)
	start := time.Now()
	res, err := b.Store.RotateSecrets(ctx, contract.Sealer{Crypto: b.Crypto}, bar.update)
	bar.done()
	fmt.Fprintf(stdout, "%d secrets: %d re-encrypted, %d already under key %s, %d failed (%s)\n",
		res.Total, res.Rewrapped, res.Current, ki.PrimaryKeyID, res.Failed, time.Since(start).Round(time.Millisecond))
	if res.Bound > 0 {
		fmt.Fprintf(stdout, "%d account credentials are now bound to their account's type, base URL and proxy\n", res.Bound)
	}
	if err != nil {
		fmt.Fprintf(stderr, "claude-relay crypto rotate: not finished; fix the cause and run it again (it resumes):\n%v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "every stored secret is under key %s; older keys can be removed from CRS_SECURITY__ENCRYPTION_KEY_PREVIOUS\n", ki.PrimaryKeyID)
	return 0
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// progress draws a bar on a terminal and plain lines elsewhere (logs, pipes).
type progress struct {
	w    io.Writer
	tty  bool
	last int // percent last printed (plain lines)
	drew bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, last: -1}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(r store.RotateProgress) {
	p.step(r.Done, r.Total, fmt.Sprintf("%d re-encrypted, %d failed", r.Rewrapped, r.Failed))
}

// step shows done of total, with detail after the count.
func (p *progress) step(done, total int, detail string) {
	if total == 0 {
		return
	}
	pct := done * 100 / total
	if p.tty {
		const width = 30
		n := done * width / total
		fmt.Fprintf(p.w, "\r[%s%s] %3d%% %d/%d %s", strings.Repeat("#", n), strings.Repeat(".", width-n), pct, done, total, detail)
		p.drew = true
		return
	}
	// Plain lines: at most one per 10%, and the last one.
	if pct/10 == p.last/10 && done != total {
		return
	}
	p.last = pct
	fmt.Fprintf(p.w, "progress: %d/%d (%d%%), %s\n", done, total, pct, detail)
}

func (p *progress) done() {
	if p.drew {
		fmt.Fprintln(p.w)
	}
}
