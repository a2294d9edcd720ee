package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/atomicfile"
	"github.com/claude-relay/claude-relay/sidecar"
	"github.com/claude-relay/claude-relay/sidecar/keyview"
)

const statuslineUsage = `Usage: claude-relay statusline [flags]

Prints one line for Claude Code's status line: the relay key's spend today against its
tightest limit and when that resets, e.g.
  $0.42 today · 8% of $5/day · resets 00:00 UTC
It reads the JSON Claude Code passes on stdin, asks GET /v1/relay/usage at
ANTHROPIC_BASE_URL with ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN), and keeps the answer
for --ttl in the user cache directory. It never waits longer than --timeout: when the relay
does not answer, it prints the last answer with its age, or says the relay is unreachable.
In ~/.claude/settings.json:
  "statusLine": {"type": "command", "command": "claude-relay statusline"}

Flags:
`

// statusline is one run of "claude-relay statusline".
type statusline struct {
	env      func(string) string
	stdin    io.Reader
	stdout   io.Writer
	cacheDir string // "" = no cache
	now      func() time.Time
	ttl      time.Duration
	timeout  time.Duration
}

// staleFor is how old a cached answer may be and still be shown when the relay is away.
const staleFor = time.Hour

func runStatusline(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("statusline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, statuslineUsage); fs.PrintDefaults() }
	sl := statusline{env: os.Getenv, stdin: stdin, stdout: stdout, now: time.Now}
	fs.DurationVar(&sl.ttl, "ttl", 5*time.Second, "how long an answer is reused before the relay is asked again")
	fs.DurationVar(&sl.timeout, "timeout", 800*time.Millisecond, "the longest the relay is waited for")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if dir, err := os.UserCacheDir(); err == nil {
		sl.cacheDir = filepath.Join(dir, "claude-relay")
	}
	sl.run(ctx)
	return 0
}

// run prints the line; every failure is a line too (Claude Code shows stdout only).
func (sl statusline) run(ctx context.Context) {
	sl.drainStdin()
	base := strings.TrimRight(sl.env("ANTHROPIC_BASE_URL"), "/")
	key := sl.env("ANTHROPIC_API_KEY")
	if key == "" {
		key = sl.env("ANTHROPIC_AUTH_TOKEN")
	}
	if base == "" || key == "" {
		fmt.Fprintln(sl.stdout, "claude-relay: set ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)")
		return
	}
	now := sl.now()
	cached, at, haveCache := sl.readCache(base, key)
	if haveCache && now.Sub(at) < sl.ttl {
		fmt.Fprintln(sl.stdout, formatLine(cached, now))
		return
	}
	v, err := sl.fetch(ctx, base, key)
	if err == nil {
		sl.writeCache(base, key, v, now)
		fmt.Fprintln(sl.stdout, formatLine(v, now))
		return
	}
	var refused *refusal
	if !errors.As(err, &refused) && haveCache && now.Sub(at) < staleFor {
		fmt.Fprintf(sl.stdout, "%s (as of %s; relay unreachable)\n", formatLine(cached, at), at.UTC().Format("15:04 UTC"))
		return
	}
	fmt.Fprintln(sl.stdout, "claude-relay: "+err.Error())
}

// drainStdin reads what Claude Code sends (its session JSON, which the line does not
// need), for at most 100 ms, so a run from a terminal never waits for input.
func (sl statusline) drainStdin() {
	if sl.stdin == nil {
		return
	}
	if f, ok := sl.stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, io.LimitReader(sl.stdin, 1<<20))
	}()
	select {
	case <-done:
	case <-time.After(100 * time.Millisecond):
	}
}

// refusal is the relay answering but refusing (a bad key, say): an old answer must not
// hide it.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

func (sl statusline) fetch(ctx context.Context, base, key string) (keyview.View, error) {
	ctx, cancel := context.WithTimeout(ctx, sl.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+sidecar.KeyUsagePath, nil)
	if err != nil {
		return keyview.View{}, fmt.Errorf("ANTHROPIC_BASE_URL %q is not a URL", base)
	}
	req.Header.Set("X-Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return keyview.View{}, fmt.Errorf("relay unreachable at %s", hostOf(base))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return keyview.View{}, fmt.Errorf("relay unreachable at %s (answer cut)", hostOf(base))
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		msg := http.StatusText(resp.StatusCode)
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return keyview.View{}, &refusal{"relay key refused: " + msg}
		}
		return keyview.View{}, fmt.Errorf("relay answered %d: %s", resp.StatusCode, msg)
	}
	var v keyview.View
	if err := json.Unmarshal(body, &v); err != nil {
		return keyview.View{}, fmt.Errorf("%s does not serve %s (is ANTHROPIC_BASE_URL a claude-relay?)", hostOf(base), sidecar.KeyUsagePath)
	}
	return v, nil
}

func hostOf(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return base
}

// cacheEntry is the cache file: the answer and when it was fetched. The file is named by
// a hash of the base URL and key, never the key itself.
type cacheEntry struct {
	FetchedAt time.Time    `json:"fetched_at"`
	View      keyview.View `json:"view"`
}

func (sl statusline) cachePath(base, key string) string {
	sum := sha256.Sum256([]byte(base + "\x00" + key))
	return filepath.Join(sl.cacheDir, "statusline-"+hex.EncodeToString(sum[:8])+".json")
}

func (sl statusline) readCache(base, key string) (keyview.View, time.Time, bool) {
	if sl.cacheDir == "" {
		return keyview.View{}, time.Time{}, false
	}
	b, err := os.ReadFile(sl.cachePath(base, key))
	if err != nil {
		return keyview.View{}, time.Time{}, false
	}
	var e cacheEntry
	if json.Unmarshal(b, &e) != nil {
		return keyview.View{}, time.Time{}, false
	}
	return e.View, e.FetchedAt, true
}

// writeCache replaces the cache file atomically; a cache that cannot be written only costs
// the next run a request.
func (sl statusline) writeCache(base, key string, v keyview.View, at time.Time) {
	if sl.cacheDir == "" || os.MkdirAll(sl.cacheDir, 0o700) != nil {
		return
	}
	b, err := json.Marshal(cacheEntry{FetchedAt: at, View: v})
	if err != nil {
		return
	}
	_ = atomicfile.WriteFile(sl.cachePath(base, key), b, 0o600)
}

// formatLine is the status line of a view at now: spend today, then the tightest limit
// (cost limits first) and when it resets; without limits, spend this month.
func formatLine(v keyview.View, now time.Time) string {
	parts := []string{money(v.Spend.Today.CostUSD) + " today"}
	l, ok := tightest(v.Limits)
	if !ok {
		return strings.Join(append(parts, money(v.Spend.ThisMonth.CostUSD)+" this month"), " · ")
	}
	pct := 0.0
	if l.Limit > 0 {
		pct = 100 * l.Used / l.Limit
	}
	parts = append(parts, fmt.Sprintf("%d%% of %s", int(math.Round(pct)), limitText(l)))
	if l.ResetsAt != nil {
		parts = append(parts, "resets "+resetText(*l.ResetsAt, now))
	}
	return strings.Join(parts, " · ")
}

// tightest is the cost limit closest to its cap, else any limit closest to its cap.
func tightest(ls []keyview.Limit) (keyview.Limit, bool) {
	var best keyview.Limit
	found, bestCost := false, false
	ratio := func(l keyview.Limit) float64 {
		if l.Limit <= 0 {
			return math.Inf(1)
		}
		return l.Used / l.Limit
	}
	for _, l := range ls {
		cost := l.Unit == "usd"
		if !found || (cost && !bestCost) || (cost == bestCost && ratio(l) > ratio(best)) {
			best, found, bestCost = l, true, cost
		}
	}
	return best, found
}

// limitWindow names what the limit called name counts and its window for the line, from
// config's limit table: "/day" for a cost, " tokens/min", " requests/day", " total".
func limitWindow(name string) string {
	d, ok := config.LimitByName(name)
	if !ok {
		return ""
	}
	var unit string
	switch d.Counts {
	case config.CountsTokens:
		unit = " tokens"
	case config.CountsRequests:
		unit = " requests"
	}
	switch d.Window {
	case config.WindowMinute:
		return unit + "/min"
	case config.WindowDay:
		return unit + "/day"
	case config.WindowWeek:
		return unit + "/week"
	case config.WindowMonth:
		return unit + "/month"
	case config.WindowTotal:
		return unit + " total"
	}
	return unit
}

func limitText(l keyview.Limit) string {
	if l.Unit == "usd" {
		return money(l.Limit) + limitWindow(l.Name)
	}
	return compact(l.Limit) + limitWindow(l.Name)
}

// money formats dollars: whole amounts without cents ($5), amounts under a cent with the
// digits that show them moving ($0.0022), others with two decimals.
func money(usd float64) string {
	switch {
	case usd == math.Trunc(usd) && usd >= 1:
		return "$" + strconv.FormatFloat(usd, 'f', 0, 64)
	case usd > 0 && usd < 0.01:
		return "$" + strconv.FormatFloat(usd, 'f', 4, 64)
	}
	return fmt.Sprintf("$%.2f", usd)
}

// compact writes a count as 950, 50k or 1.5M.
func compact(n float64) string {
	switch {
	case n >= 1e6:
		return strconv.FormatFloat(n/1e6, 'f', -1, 64) + "M"
	case n >= 1e3:
		return strconv.FormatFloat(n/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(n, 'f', -1, 64)
}

// resetText says when a window ends: the time within a day, else the weekday, else the date.
func resetText(t, now time.Time) string {
	t = t.UTC()
	switch d := t.Sub(now); {
	case d < 24*time.Hour:
		return t.Format("15:04 UTC")
	case d < 7*24*time.Hour:
		return t.Format("Mon 15:04 UTC")
	}
	return t.Format("2 Jan 15:04 UTC")
}
