package admincli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
	"golang.org/x/term"
)

// Environment variables the admin CLI reads.
const (
	envAdminAddr  = "CLAUDE_RELAY_ADDR"
	envAdminToken = "CLAUDE_RELAY_TOKEN"
	envAdminFile  = "CLAUDE_RELAY_ADMIN_FILE"
)

const defaultAdminUser = "admin"

const adminUsageHead = `Usage: claude-relay admin <command> [flags]

Manage a claude-relay control plane: admin sessions, relay keys and upstream accounts.

Commands:
`

const adminUsageTail = `
The control plane address and session token come from --addr and --token, else
CLAUDE_RELAY_ADDR and CLAUDE_RELAY_TOKEN, else the session file that "admin login" writes
(os.UserConfigDir()/claude-relay/admin.json; CLAUDE_RELAY_ADMIN_FILE overrides the path).
Without a saved session, login goes to CLAUDE_RELAY_CONTROL_ADDR, the control plane's own
listen address (default 127.0.0.1:3100). Variables are read from the environment, then
from .env in the working directory, as the relay's processes read them.
Flags may come anywhere: before the command, between or after positional arguments
(claude-relay admin --json keys list). Exit status: 0 ok, 1 error, 2 usage.
`

// adminFlags holds every flag of every admin command; each command registers the ones it uses.
type adminFlags struct {
	addr, token   string
	json          bool
	username      string
	passwordStdin bool
	name, policy  string
	expires       string
	day           string
	apiKey        string
	apiKeyStdin   bool
	baseURL       string
	priority      optional[int]
	// m holds the flags of the key, account, audit and password commands (admin_manage.go).
	m manageFlags
	// u holds the flags of the usage command (admin_usage.go).
	u usageFlags
	r requestsFlags
}

// adminCommand is one "claude-relay admin …" command.
type adminCommand struct {
	name    string // e.g. "keys create"
	args    string // positional arguments for the usage line, e.g. "ID"
	nargs   int
	summary string
	flags   func(fs *flag.FlagSet, f *adminFlags)
	// run does the work; c.client is connected unless the command is login.
	run func(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error
}

// adminCLI is one run of the admin CLI: its environment and, once connected, its client.
type adminCLI struct {
	env         func(string) string
	stdin       io.Reader
	stdinReader *bufio.Reader
	stdout      io.Writer
	stderr      io.Writer
	sessionPath string
	client      *adminclient.Client
	// tokenFromFile is the saved session's token when it is the one in use.
	tokenFromFile string
	// addrSource says where login took the control plane address from.
	addrSource string
}

// usageError is a mistake in the command line: it exits 2 with the command's usage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// errNotLoggedIn tells the operator to log in.
var errNotLoggedIn = errors.New("not logged in: run claude-relay admin login")

func sessionFlags(fs *flag.FlagSet, f *adminFlags) {
	fs.StringVar(&f.addr, "addr", "", "control plane `URL` (default: $CLAUDE_RELAY_ADDR, else the saved session)")
	fs.StringVar(&f.token, "token", "", "session `token` (default: $CLAUDE_RELAY_TOKEN, else the saved session)")
	fs.BoolVar(&f.json, "json", false, "print the API's JSON instead of a table")
}

func adminCommands() []adminCommand {
	return append([]adminCommand{
		{
			name: "login", summary: "log in and save the session (mode 0600) for later commands",
			flags: func(fs *flag.FlagSet, f *adminFlags) {
				fs.StringVar(&f.addr, "addr", "", "control plane `URL` (default: $CLAUDE_RELAY_ADDR, else the saved session's, else http://$CLAUDE_RELAY_CONTROL_ADDR, else http://"+config.DefaultControlAddr+")")
				fs.StringVar(&f.username, "username", defaultAdminUser, "admin `name`")
				fs.BoolVar(&f.passwordStdin, "password-stdin", false, "read the password from the first line of stdin (no prompt)")
			},
			run: adminLogin,
		},
		{name: "logout", summary: "revoke the session token and forget the saved session", flags: sessionFlags, run: adminLogout},
		{name: "whoami", summary: "show the admin and expiry of the session", flags: sessionFlags, run: adminWhoAmI},
		{
			name: "keys create", summary: "create a relay key and print its secret (shown only once)",
			flags: func(fs *flag.FlagSet, f *adminFlags) {
				fs.StringVar(&f.name, "name", "", "key `name` (required, at most 100 characters)")
				fs.StringVar(&f.policy, "policy", "", "limit `policy` the key follows")
				fs.StringVar(&f.expires, "expires", "", "expiry `time`, RFC 3339 (e.g. 2030-01-02T15:04:05Z)")
				keyRuleFlags(fs, &f.m)
				sessionFlags(fs, f)
			},
			run: adminKeysCreate,
		},
		{name: "keys list", summary: "list relay keys (revoked included, deleted only with --status deleted), a page at a time", flags: keyListFlags, run: adminKeysList},
		{name: "keys get", args: "ID", nargs: 1, summary: "show one relay key", flags: sessionFlags, run: adminKeysGet},
		{name: "keys revoke", args: "ID", nargs: 1, summary: "revoke a relay key for good", flags: sessionFlags, run: adminKeysRevoke},
		{
			name: "keys usage", args: "ID", nargs: 1, summary: "show a relay key's usage by model on one day, and all time",
			flags: func(fs *flag.FlagSet, f *adminFlags) {
				fs.StringVar(&f.day, "day", "", "UTC `day`, YYYY-MM-DD (default today)")
				sessionFlags(fs, f)
			},
			run: adminKeysUsage,
		},
		{
			name: "accounts add", summary: "add an upstream account: API key, Anthropic-compatible endpoint, or Claude OAuth token",
			flags: func(fs *flag.FlagSet, f *adminFlags) {
				fs.StringVar(&f.name, "name", "", "account `name` (required)")
				fs.StringVar(&f.apiKey, "api-key", "", "upstream API `key` (prefer --api-key-stdin: flags end up in shell history)")
				fs.BoolVar(&f.apiKeyStdin, "api-key-stdin", false, "read the API key from the first line of stdin")
				fs.StringVar(&f.baseURL, "base-url", "", "upstream base `URL` (default https://api.anthropic.com)")
				fs.Var(&f.priority, "priority", "scheduling `priority` 1-100, lower runs first (default 50)")
				accountAddFlags(fs, f)
				sessionFlags(fs, f)
			},
			run: adminAccountsAdd,
		},
		{name: "accounts list", summary: "list upstream accounts (credentials are never shown)", flags: sessionFlags, run: adminAccountsList},
		{name: "accounts delete", args: "ID", nargs: 1, summary: "delete an upstream account and its credential", flags: sessionFlags, run: adminAccountsDelete},
		{name: "sidecars", summary: "list sidecars with the configuration version each runs, any refused one (NACK) and their health", flags: sessionFlags, run: adminSidecars},
		{name: "alerts test", args: "NAME", nargs: 1, summary: "send a test message to an alert destination now and say whether it arrived", flags: sessionFlags, run: adminAlertsTest},
		{name: "alerts", summary: "list alert destinations, conditions raised now, and recent alert messages with their delivery status", flags: sessionFlags, run: adminAlerts},
		{name: "config status", summary: "show the configuration version served and the errors of the last refused edit", flags: sessionFlags, run: adminConfigStatus},
		usageCommand(),
		requestsCommand(),
		{name: "health", summary: "show the control plane's health with each component's error and details (the public /health shows statuses only)", flags: sessionFlags, run: adminHealth},
	}, append(manageCommands(), stickyCommands()...)...)
}

// Run runs "claude-relay admin ARGS" and returns the exit status. Like the relay's
// processes, it reads .env in the working directory too; the process environment wins.
func Run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) int {
	return runAdminIO(ctx, args, withDotEnv(env, ".env"), os.Stdin, stdout, stderr)
}

// withDotEnv looks a variable up in env, then in the .env file at path. An unreadable or
// malformed file is ignored: the admin CLI needs none of it when given --addr.
func withDotEnv(env func(string) string, path string) func(string) string {
	dotenv, err := config.ReadDotEnv(path)
	if err != nil {
		return env
	}
	return func(k string) string {
		if v := env(k); v != "" {
			return v
		}
		return dotenv[k]
	}
}

// runAdminIO is Run with stdin given, for tests.
func runAdminIO(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := adminCommands()
	if len(args) == 0 {
		fmt.Fprint(stderr, adminUsage(cmds, ""))
		return 2
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, adminUsage(cmds, ""))
		return 0
	}

	// Flags may come before the command too ("admin --json keys list"): they are parsed
	// with the command's own.
	leading, args := splitLeadingFlags(cmds, args)
	if len(args) == 0 {
		if slices.ContainsFunc(leading, isHelpFlag) {
			fmt.Fprint(stdout, adminUsage(cmds, ""))
			return 0
		}
		fmt.Fprintf(stderr, "claude-relay admin: flags %s need a command after them\n\n%s", strings.Join(leading, " "), adminUsage(cmds, ""))
		return 2
	}
	cmd, rest, ok := findAdminCommand(cmds, args)
	if !ok {
		group := args[0]
		if isGroup(cmds, group) {
			if len(args) > 1 && (args[1] == "-h" || args[1] == "-help" || args[1] == "--help" || args[1] == "help") {
				fmt.Fprint(stdout, adminUsage(cmds, group))
				return 0
			}
			if len(args) > 1 {
				fmt.Fprintf(stderr, "claude-relay admin %s: unknown command %q\n\n", group, args[1])
			}
			fmt.Fprint(stderr, adminUsage(cmds, group))
			return 2
		}
		fmt.Fprintf(stderr, "claude-relay admin: unknown command %q\n\n%s", args[0], adminUsage(cmds, ""))
		return 2
	}

	var f adminFlags
	fset := newAdminFlagSet(cmd, &f)
	pos, err := parseInterleaved(fset, append(leading, rest...))
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, commandUsage(cmd))
		return 0
	}
	if err == nil && len(pos) != cmd.nargs {
		err = usageError{fmt.Sprintf("want %d argument(s) (%s), got %d", cmd.nargs, cmd.args, len(pos))}
		if cmd.nargs == 0 {
			err = usageError{fmt.Sprintf("unexpected argument %q", pos[0])}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "claude-relay admin %s: %v\n\n%s", cmd.name, err, commandUsage(cmd))
		return 2
	}

	c := &adminCLI{env: env, stdin: stdin, stdout: stdout, stderr: stderr}
	if c.env == nil {
		c.env = func(string) string { return "" }
	}
	if err := c.resolveSessionPath(); err != nil {
		fmt.Fprintf(stderr, "claude-relay admin %s: %v\n", cmd.name, err)
		return 1
	}
	if cmd.name != "login" {
		if err := c.connect(&f); err != nil {
			fmt.Fprintf(stderr, "claude-relay admin %s: %v\n", cmd.name, err)
			return 1
		}
	}
	if err := cmd.run(ctx, c, &f, pos); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "claude-relay admin %s: %v\n\n%s", cmd.name, err, commandUsage(cmd))
			return 2
		}
		fmt.Fprintf(stderr, "claude-relay admin %s: %s\n", cmd.name, c.explain(cmd, err))
		return 1
	}
	return 0
}

// findAdminCommand matches "keys create …" or "login …" and returns the remaining arguments.
func findAdminCommand(cmds []adminCommand, args []string) (adminCommand, []string, bool) {
	for _, cmd := range cmds {
		words := strings.Fields(cmd.name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return cmd, args[len(words):], true
		}
	}
	return adminCommand{}, nil, false
}

// splitLeadingFlags takes the flags (with their values) that come before the command words.
// A flag takes the next argument as its value unless it is written --name=value or is a
// boolean flag of some command.
func splitLeadingFlags(cmds []adminCommand, args []string) (flags, rest []string) {
	for len(args) > 0 && len(args[0]) > 1 && args[0][0] == '-' && args[0] != "--" {
		arg := args[0]
		flags, args = append(flags, arg), args[1:]
		name := strings.TrimLeft(arg, "-")
		if strings.Contains(name, "=") || isHelpFlag(arg) || isBoolFlag(cmds, name) || len(args) == 0 {
			continue
		}
		flags, args = append(flags, args[0]), args[1:]
	}
	return flags, args
}

// isBoolFlag reports whether name is a boolean flag of any command (or of none: an unknown
// flag takes no value here and is reported by the command's own parse).
func isBoolFlag(cmds []adminCommand, name string) bool {
	for _, cmd := range cmds {
		var f adminFlags
		if fl := newAdminFlagSet(cmd, &f).Lookup(name); fl != nil {
			b, ok := fl.Value.(interface{ IsBoolFlag() bool })
			return ok && b.IsBoolFlag()
		}
	}
	return true
}

func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

func isGroup(cmds []adminCommand, word string) bool {
	return slices.ContainsFunc(cmds, func(c adminCommand) bool { return strings.HasPrefix(c.name, word+" ") })
}

func newAdminFlagSet(cmd adminCommand, f *adminFlags) *flag.FlagSet {
	fset := flag.NewFlagSet("claude-relay admin "+cmd.name, flag.ContinueOnError)
	fset.SetOutput(io.Discard) // errors are printed once, with the usage, by runAdminIO
	if cmd.flags != nil {
		cmd.flags(fset, f)
	}
	return fset
}

// parseInterleaved parses flags that may come before, between or after positional arguments.
func parseInterleaved(fset *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fset.Parse(args); err != nil {
			return nil, err
		}
		args = fset.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// commonFlags are registered by sessionFlags; the full usage lists them once.
var commonFlags = []string{"addr", "token", "json"}

// adminUsage lists every command (or those of group) with its own flags, then the common flags.
func adminUsage(cmds []adminCommand, group string) string {
	var b strings.Builder
	b.WriteString(adminUsageHead)
	for _, cmd := range cmds {
		if group != "" && !strings.HasPrefix(cmd.name, group+" ") {
			continue
		}
		b.WriteString(commandLines(cmd, cmd.name != "login"))
	}
	b.WriteString("\nFlags of every command but login:\n")
	var f adminFlags
	fset := flag.NewFlagSet("common", flag.ContinueOnError)
	sessionFlags(fset, &f)
	fset.VisitAll(func(fl *flag.Flag) { b.WriteString(flagLine(fl)) })
	b.WriteString(adminUsageTail)
	return b.String()
}

// commandUsage is the usage of one command, with all its flags.
func commandUsage(cmd adminCommand) string {
	head := "claude-relay admin " + cmd.name + " [flags]"
	if cmd.args != "" {
		head += " " + cmd.args
	}
	return "Usage: " + head + "\n\n" + commandLines(cmd, false)
}

// commandLines is "  name ARGS  summary" followed by one line per flag, leaving out the
// common ones when skipCommon is set.
func commandLines(cmd adminCommand, skipCommon bool) string {
	var b strings.Builder
	head := cmd.name
	if cmd.args != "" {
		head += " " + cmd.args
	}
	fmt.Fprintf(&b, "  %-24s %s\n", head, cmd.summary)
	var f adminFlags
	newAdminFlagSet(cmd, &f).VisitAll(func(fl *flag.Flag) {
		if skipCommon && slices.Contains(commonFlags, fl.Name) {
			return
		}
		b.WriteString(flagLine(fl))
	})
	return b.String()
}

// flagLine is "      --name TYPE   usage (default …)".
func flagLine(fl *flag.Flag) string {
	typ, usage := flag.UnquoteUsage(fl)
	left := "--" + fl.Name
	if typ != "" {
		left += " " + typ
	}
	if !isZeroDefault(fl) && !strings.Contains(usage, "(default ") {
		if typ == "string" || reflect.TypeOf(fl.Value).String() == "*flag.stringValue" {
			usage += fmt.Sprintf(" (default %q)", fl.DefValue)
		} else {
			usage += fmt.Sprintf(" (default %s)", fl.DefValue)
		}
	}
	return fmt.Sprintf("      %-22s %s\n", left, usage)
}

// isZeroDefault reports whether a flag's default is its type's zero value, which the usage
// does not show (as the flag package's own PrintDefaults).
func isZeroDefault(fl *flag.Flag) bool {
	switch fl.DefValue {
	case "", "0", "false", "[]":
		return true
	}
	return false
}

func (c *adminCLI) resolveSessionPath() error {
	if p := c.env(envAdminFile); p != "" {
		c.sessionPath = p
		return nil
	}
	p, err := adminclient.DefaultSessionPath()
	if err != nil {
		return fmt.Errorf("%w (set %s)", err, envAdminFile)
	}
	c.sessionPath = p
	return nil
}

// connect resolves the address and token (flags > environment > saved session) and builds
// the client. A saved token is used only for the address it was issued by.
func (c *adminCLI) connect(f *adminFlags) error {
	addr, token := f.addr, f.token
	if addr == "" {
		addr = c.env(envAdminAddr)
	}
	if token == "" {
		token = c.env(envAdminToken)
	}
	if addr == "" || token == "" {
		sess, err := adminclient.LoadSession(c.sessionPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("%w; run claude-relay admin login", err)
		default:
			if addr == "" {
				addr = sess.Addr
			}
			if token == "" && sameAddr(addr, sess.Addr) {
				token = sess.Token
				c.tokenFromFile = sess.Token
			}
		}
	}
	if addr == "" || token == "" {
		if addr != "" {
			return fmt.Errorf("not logged in to %s: run claude-relay admin login --addr %s", addr, addr)
		}
		return errNotLoggedIn
	}
	client, err := adminclient.New(addr, token, nil)
	if err != nil {
		return err
	}
	c.client = client
	return nil
}

func sameAddr(a, b string) bool {
	return strings.TrimRight(strings.TrimSpace(a), "/") == strings.TrimRight(strings.TrimSpace(b), "/")
}

// explain turns an error into one line that says what to do.
func (c *adminCLI) explain(cmd adminCommand, err error) string {
	var ae *adminclient.APIError
	if errors.As(err, &ae) {
		if ae.StatusCode == http.StatusUnauthorized {
			if cmd.name == "login" {
				return "login failed: " + ae.Message
			}
			return "session expired, logged out or invalid: run claude-relay admin login"
		}
		return ae.Message
	}
	var ue *url.Error
	if c.client != nil && errors.As(err, &ue) && !errors.Is(err, context.Canceled) {
		if cmd.name == "login" {
			next := "give its address with --addr http://HOST:PORT"
			if c.addrSource == "--addr" {
				next = "check the URL"
			}
			return fmt.Sprintf("cannot reach the control plane at %s (%v); the address came from %s. Is `claude-relay control` running and listening there? Its log says where (\"control plane listening\"); %s",
				c.client.Addr(), ue.Err, c.addrSource, next)
		}
		return fmt.Sprintf("cannot reach the control plane at %s (%v): check --addr or %s, or log in again with claude-relay admin login --addr http://HOST:PORT", c.client.Addr(), ue.Err, envAdminAddr)
	}
	return err.Error()
}

// readLine reads one line of stdin without its line ending.
func (c *adminCLI) readLine() (string, error) {
	if c.stdinReader == nil {
		c.stdinReader = bufio.NewReader(c.stdin)
	}
	line, err := c.stdinReader.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errors.New("stdin is empty")
		}
		return "", fmt.Errorf("read stdin: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// stdinTerminal returns stdin's file descriptor when stdin is an interactive terminal.
func (c *adminCLI) stdinTerminal() (int, bool) {
	f, ok := c.stdin.(*os.File)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

// readSecret reads one secret line. From a terminal it prints prompt to stderr, reads with
// echo off and ends the prompt line; otherwise it reads the next stdin line, silently.
func (c *adminCLI) readSecret(prompt string) (string, error) {
	fd, tty := c.stdinTerminal()
	if !tty || c.stdinReader != nil && c.stdinReader.Buffered() > 0 {
		return c.readLine()
	}
	fmt.Fprint(c.stderr, prompt)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", fmt.Errorf("read from the terminal: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// printJSON prints v as indented JSON.
// answered takes a client call's result: when the call failed, or with --json (body, the
// API's answer, printed as JSON), the command is done and returns the error; otherwise the
// caller prints the answer for a person.
func (c *adminCLI) answered(f *adminFlags, body any, err error) (done bool, _ error) {
	if err != nil {
		return true, err
	}
	if f.json {
		return true, c.printJSON(body)
	}
	return false, nil
}

func (c *adminCLI) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(c.stdout, "%s\n", b)
	return err
}

// table writes rows aligned in columns.
func (c *adminCLI) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

func fmtOptTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// --- commands ---

// loginAddr is the control plane address login uses and where it came from: --addr, else
// CLAUDE_RELAY_ADDR, else the saved session's, else the control plane's own listen address
// CLAUDE_RELAY_CONTROL_ADDR (environment or .env, as `claude-relay control` reads it), else
// the default.
func (c *adminCLI) loginAddr(f *adminFlags) (addr, source string) {
	if f.addr != "" {
		return f.addr, "--addr"
	}
	if a := c.env(envAdminAddr); a != "" {
		return a, envAdminAddr
	}
	if sess, err := adminclient.LoadSession(c.sessionPath); err == nil && sess.Addr != "" {
		return sess.Addr, "the saved session " + c.sessionPath
	}
	if a := c.env(config.EnvControlAddr); a != "" {
		return "http://" + dialable(a), config.EnvControlAddr + "=" + a
	}
	return "http://" + config.DefaultControlAddr, "the default (" + config.EnvControlAddr + " is unset)"
}

// dialable turns a listen address into one a client can dial: an empty or wildcard host
// becomes 127.0.0.1.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func adminLogin(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	addr, source := c.loginAddr(f)
	client, err := adminclient.New(addr, "", nil)
	if err != nil {
		return usageError{fmt.Sprintf("%v (from %s)", err, source)}
	}
	c.client, c.addrSource = client, source

	var password string
	if f.passwordStdin {
		password, err = c.readLine()
	} else {
		password, err = c.readSecret(fmt.Sprintf("Password for %s at %s: ", f.username, client.Addr()))
	}
	if err != nil {
		return fmt.Errorf("read password: %w", err)
	}
	if password == "" {
		return errors.New("read password: empty password")
	}
	res, err := client.Login(ctx, f.username, password)
	if err != nil {
		return err
	}
	if err := adminclient.SaveSession(c.sessionPath, client.Addr(), res.Token); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Logged in to %s as %s until %s.\nSession saved to %s.\n", client.Addr(), f.username, fmtTime(res.ExpiresAt), c.sessionPath)
	return nil
}

func adminLogout(ctx context.Context, c *adminCLI, _ *adminFlags, _ []string) error {
	err := c.client.Logout(ctx)
	stale := adminclient.IsUnauthorized(err)
	if err != nil && !stale {
		return fmt.Errorf("%w (the session was not revoked and stays valid until it expires)", err)
	}
	if c.tokenFromFile != "" {
		if rmErr := adminclient.RemoveSession(c.sessionPath); rmErr != nil {
			return rmErr
		}
	}
	if stale {
		fmt.Fprintln(c.stdout, "The session had already expired or been logged out.")
		return nil
	}
	fmt.Fprintln(c.stdout, "Logged out.")
	return nil
}

func adminWhoAmI(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	who, err := c.client.WhoAmI(ctx)
	if done, err := c.answered(f, who, err); done {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "%s at %s, session expires %s\n", who.Username, c.client.Addr(), fmtTime(who.ExpiresAt))
	return err
}

func adminKeysCreate(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	if strings.TrimSpace(f.name) == "" {
		return usageError{"--name is required"}
	}
	res, err := c.client.CreateKey(ctx, f.createKeyRequest())
	if done, err := c.answered(f, res, err); done {
		return err
	}
	if err := c.printKey(res.Key); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "\nSecret (shown only this once; it cannot be retrieved later, store it now):\n\n  %s\n\n", res.Secret)
	return err
}

func (c *adminCLI) printKey(k adminapi.Key) error {
	return c.table([]string{"FIELD", "VALUE"}, append([][]string{
		{"id", k.ID},
		{"name", k.Name},
		{"hint", k.Hint},
		{"policy", orDash(k.Policy)},
		{"status", k.Status},
		{"created", fmtTime(k.CreatedAt)},
		{"expires", fmtOptTime(k.ExpiresAt)},
		{"revoked", fmtOptTime(k.RevokedAt)},
		{"last used", fmtOptTime(k.LastUsedAt)},
	}, keyDetailRows(k)...))
}

func adminKeysList(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	var page adminapi.KeyList
	var err error
	if f.m.all {
		page.Keys, err = c.client.ListAllKeys(ctx, f.keyListQuery())
	} else {
		page, err = c.client.ListKeysPage(ctx, f.keyListQuery())
	}
	if err != nil {
		return err
	}
	keys := page.Keys
	if f.json {
		if page.Keys == nil {
			page.Keys = []adminapi.Key{}
		}
		return c.printJSON(page)
	}
	defer func() {
		if page.NextCursor != "" {
			fmt.Fprintf(c.stdout, "\nMore keys: add --cursor %s (or --all)\n", page.NextCursor)
		}
	}()
	rows := make([][]string, 0, len(keys))
	for _, k := range keys {
		rows = append(rows, []string{k.ID, k.Name, k.Hint, orDash(k.Policy), k.Status, fmtTime(k.CreatedAt), fmtOptTime(k.ExpiresAt), fmtOptTime(k.LastUsedAt)})
	}
	return c.table([]string{"ID", "NAME", "HINT", "POLICY", "STATUS", "CREATED", "EXPIRES", "LAST USED"}, rows)
}

func adminKeysGet(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
	k, err := c.client.GetKey(ctx, args[0])
	if done, err := c.answered(f, adminapi.KeyResponse{Key: k}, err); done {
		return err
	}
	return c.printKey(k)
}

func adminKeysRevoke(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
	k, err := c.client.RevokeKey(ctx, args[0])
	if done, err := c.answered(f, adminapi.KeyResponse{Key: k}, err); done {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "Revoked key %s (%s) at %s.\n", k.ID, k.Name, fmtOptTime(k.RevokedAt))
	return err
}

func adminKeysUsage(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
	if f.day != "" {
		if _, err := time.Parse(time.DateOnly, f.day); err != nil {
			return usageError{fmt.Sprintf("--day %q must be YYYY-MM-DD", f.day)}
		}
	}
	u, err := c.client.KeyUsage(ctx, args[0], f.day)
	if done, err := c.answered(f, u, err); done {
		return err
	}
	row := func(label string, x adminapi.Usage) []string {
		return []string{label, fmt.Sprint(x.Requests), fmt.Sprint(x.InputTokens), fmt.Sprint(x.OutputTokens),
			fmt.Sprint(x.CacheWrite5m), fmt.Sprint(x.CacheWrite1h), fmt.Sprint(x.CacheRead), fmt.Sprintf("%.6f", x.CostUSD),
			fmt.Sprint(x.UnpricedRequests), fmt.Sprint(x.EstimatedRequests)}
	}
	models := make([]string, 0, len(u.Models))
	for m := range u.Models {
		models = append(models, m)
	}
	slices.Sort(models)
	rows := make([][]string, 0, len(models)+2)
	for _, m := range models {
		rows = append(rows, row(m, u.Models[m]))
	}
	rows = append(rows, row("total "+u.Day, u.DayTotal), row("all time", u.Totals))
	return c.table([]string{"MODEL (" + u.Day + " UTC)", "REQUESTS", "INPUT", "OUTPUT", "CACHE WRITE 5M", "CACHE WRITE 1H", "CACHE READ", "COST USD", "UNPRICED", "ESTIMATED"}, rows)
}

func adminAccountsAdd(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	if strings.TrimSpace(f.name) == "" {
		return usageError{"--name is required"}
	}
	switch {
	case f.apiKey != "" && f.apiKeyStdin:
		return usageError{"give --api-key or --api-key-stdin, not both"}
	case f.apiKeyStdin:
		key, err := c.readLine()
		if err != nil {
			return fmt.Errorf("read API key: %w", err)
		}
		f.apiKey = strings.TrimSpace(key)
	case f.apiKey == "" && !f.m.accessTokenStdin:
		return usageError{"--api-key or --api-key-stdin is required (claude_oauth: --access-token-stdin)"}
	}
	req := adminapi.AddAccountRequest{Name: f.name, APIKey: f.apiKey, BaseURL: f.baseURL}
	if err := c.accountAddRequest(f, &req); err != nil {
		return err
	}
	if f.priority.set {
		req.Priority = &f.priority.v
	}
	a, err := c.client.AddAccount(ctx, req)
	if done, err := c.answered(f, adminapi.AccountResponse{Account: a}, err); done {
		return err
	}
	if a.Type != adminapi.AccountAnthropicAPIKey {
		return c.printAccount(a)
	}
	return c.table([]string{"FIELD", "VALUE"}, [][]string{
		{"id", a.ID},
		{"name", a.Name},
		{"type", a.Type},
		{"base url", a.BaseURL},
		{"priority", fmt.Sprint(a.Priority)},
		{"schedulable", fmt.Sprint(a.Schedulable)},
		{"credential", a.CredentialHint},
		{"created", fmtTime(a.CreatedAt)},
	})
}

func adminAccountsList(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	accts, err := c.client.ListAccounts(ctx)
	if err != nil {
		return err
	}
	if f.json {
		if accts == nil {
			accts = []adminapi.Account{}
		}
		return c.printJSON(adminapi.AccountList{Accounts: accts})
	}
	rows := make([][]string, 0, len(accts))
	for _, a := range accts {
		rows = append(rows, []string{a.ID, a.Name, a.Type, a.BaseURL, fmt.Sprint(a.Priority), orDash(a.Group), fmt.Sprint(a.Schedulable), accountStatus(a),
			windowCell(a.Utilization5h, a.Reset5h), windowCell(a.Utilization7d, a.Reset7d), a.CredentialHint, fmtTime(a.CreatedAt)})
	}
	return c.table([]string{"ID", "NAME", "TYPE", "BASE URL", "PRIORITY", "GROUP", "SCHEDULABLE", "STATUS", "5H WINDOW", "7D WINDOW", "CREDENTIAL", "CREATED"}, rows)
}

func adminAccountsDelete(ctx context.Context, c *adminCLI, _ *adminFlags, args []string) error {
	if err := c.client.DeleteAccount(ctx, args[0]); err != nil {
		return err
	}
	_, err := fmt.Fprintf(c.stdout, "Deleted account %s.\n", args[0])
	return err
}

func adminSidecars(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	list, err := c.client.Sidecars(ctx)
	if done, err := c.answered(f, list, err); done {
		return err
	}
	fmt.Fprintf(c.stdout, "control plane serves version %d (epoch %s)\n\n", list.Version, orDash(list.Epoch))
	rows := make([][]string, 0, len(list.Sidecars))
	for _, s := range list.Sidecars {
		state := "in sync"
		switch {
		case s.NackVersion != 0:
			state = fmt.Sprintf("NACK v%d", s.NackVersion)
		case s.Epoch != list.Epoch || s.Version != list.Version:
			state = "behind"
		}
		rows = append(rows, []string{s.ID, orDash(s.Addr), fmt.Sprint(s.Version), state, healthState(s.Health), fmtTime(s.LastSeen), orDash(s.LastError)})
	}
	if err := c.table([]string{"ID", "ADDR", "VERSION", "STATE", "HEALTH", "LAST SEEN", "LAST ERROR"}, rows); err != nil {
		return err
	}
	for _, s := range list.Sidecars {
		c.printHealthProblems(s.ID, s.Health)
	}
	return nil
}

func adminConfigStatus(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	st, err := c.client.ConfigStatus(ctx)
	if done, err := c.answered(f, st, err); done {
		return err
	}
	err = c.table([]string{"FIELD", "VALUE"}, [][]string{
		{"dir", orDash(st.Dir)},
		{"epoch", orDash(st.Epoch)},
		{"version", fmt.Sprint(st.Version)},
		{"sha256", orDash(st.SHA256)},
		{"published", fmtTime(st.PublishedAt)},
		{"last reload", fmtTime(st.LastReload) + " (" + orDash(st.LastReloadResult) + ")"},
		{"refused reloads", fmt.Sprint(st.Refused)},
	})
	if err != nil || len(st.Diagnostics) == 0 {
		return err
	}
	fmt.Fprintf(c.stdout, "\nThe last edit was refused; version %d is still served:\n\n", st.Version)
	if st.Text != "" {
		_, err = fmt.Fprint(c.stdout, st.Text)
		return err
	}
	for _, d := range st.Diagnostics {
		fmt.Fprintf(c.stdout, "%s: %s: %s\n", orDash(d.Location()), d.Severity, d.Summary)
	}
	return nil
}
