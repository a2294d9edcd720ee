package admincli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// manageFlags are the flags of the key, account, audit and password commands.
type manageFlags struct {
	description, owner      optional[string]
	tags                    optional[[]string]
	expiresAfter            string
	models, denied, clients optional[[]string]
	cidrs                   optional[[]string]
	bindAccount, bindGroup  optional[string]
	limits                  limitFlags
	// keys list
	filterName, filterTag, filterStatus string
	filterPolicy                        optional[string]
	limit                               int
	cursor                              string
	all                                 bool
	// keys bulk-create
	count      int
	namePrefix string
	file       string
	// accounts
	accountType        string
	accessTokenStdin   bool
	refreshTokenStdin  bool
	tokenExpires       string
	group, proxyURL    optional[string]
	modelMap           optional[map[string]string]
	caps               capFlags
	unschedulable      bool
	schedulable        optional[bool]
	model              string
	code, callback     string
	state              string
	before             string
	renamed, newPolicy optional[string]
	newBaseURL         optional[string]
	newExpires         optional[string]
	// keys update: list edits applied to the key as read (a read-modify-write with If-Match)
	addModels, removeModels   optional[[]string]
	addClients, removeClients optional[[]string]
}

// limitFlags are the per-key limit overrides: one flag per overridable limit of config's
// limit table (LimitDef.Flag), parsed into l.
type limitFlags struct{ l config.KeyLimits }

// register adds a flag for every limit a key may override.
func (f *limitFlags) register(fs *flag.FlagSet) {
	for d := range config.Limits() {
		if d.Overridable() {
			fs.Var(limitFlag{def: d, l: &f.l}, d.Flag, "override: "+d.Usage)
		}
	}
}

// limitFlag is one limit override flag; it knows whether it was given (a nil field).
type limitFlag struct {
	def config.LimitDef
	l   *config.KeyLimits
}

func (f limitFlag) String() string {
	if f.l == nil {
		return ""
	}
	return f.def.OverrideString(f.l)
}

func (f limitFlag) Set(s string) error { return f.def.SetOverride(f.l, s) }

// api returns the overrides given, nil when none was.
func (f *limitFlags) api() *adminapi.KeyLimits {
	if f.l.IsZero() {
		return nil
	}
	l := f.l
	return &l
}

// capFlags are an account's caps (adminapi.AccountCaps).
type capFlags struct {
	conc, tokDay, tok5h optional[int64]
	costDay, cost5h     optional[float64]
	none                bool
}

// register adds the cap flags to fs.
func (c *capFlags) register(fs *flag.FlagSet, update bool) {
	fs.Var(&c.conc, "max-concurrency", "at most `N` requests in flight on the account, across all sidecars (0: unbounded)")
	fs.Var(&c.tokDay, "tokens-day", "cap the account's `tokens` per UTC day")
	fs.Var(&c.costDay, "cost-day", "cap the account's cost per UTC day, `USD`")
	fs.Var(&c.tok5h, "tokens-5h", "cap the account's `tokens` over the last 5 hours (rolling)")
	fs.Var(&c.cost5h, "cost-5h", "cap the account's cost over the last 5 hours (rolling), `USD`")
	if update {
		fs.BoolVar(&c.none, "no-caps", false, "remove every cap")
	}
}

func (c *capFlags) any() bool {
	return c.conc.set || c.tokDay.set || c.tok5h.set || c.costDay.set || c.cost5h.set
}

// apply sets the caps given on base.
func (c *capFlags) apply(base adminapi.AccountCaps) adminapi.AccountCaps {
	if c.conc.set {
		base.MaxConcurrency = int(c.conc.v)
	}
	if c.tokDay.set {
		base.TokensPerDay = c.tokDay.v
	}
	if c.tok5h.set {
		base.TokensPer5h = c.tok5h.v
	}
	if c.costDay.set {
		base.CostPerDayUSD = c.costDay.v
	}
	if c.cost5h.set {
		base.CostPer5hUSD = c.cost5h.v
	}
	return base
}

// keyRuleFlags registers the flags shared by keys create, update and bulk-create.
func keyRuleFlags(fs *flag.FlagSet, m *manageFlags) {
	fs.Var(&m.description, "description", "free-text `description`")
	fs.Var(&m.owner, "owner", "who the key belongs to (`name`)")
	fs.Var(&m.tags, "tags", "comma-separated `tags` (repeatable; \"-\" clears)")
	fs.StringVar(&m.expiresAfter, "expires-after", "", "expire this `long` after first use, e.g. 36h or 7d")
	fs.Var(&m.models, "models", "allowed model `globs`, e.g. claude-sonnet-* (\"-\" clears)")
	fs.Var(&m.denied, "deny-models", "denied model `globs` (\"-\" clears)")
	fs.Var(&m.clients, "clients", "allowed `clients`: claude_code, anthropic_sdk or User-Agent globs (\"-\" clears)")
	fs.Var(&m.cidrs, "allow-ip", "IP allowlist `CIDRs` (\"-\" clears)")
	fs.Var(&m.bindAccount, "bind-account", "bind the key to one account `ID`")
	fs.Var(&m.bindGroup, "bind-group", "bind the key to an account `group`")
	m.limits.register(fs)
}

// binding is the binding the flags name, or nil.
func (m *manageFlags) binding() *adminapi.KeyBinding {
	if !m.bindAccount.set && !m.bindGroup.set {
		return nil
	}
	return &adminapi.KeyBinding{AccountID: m.bindAccount.v, Group: m.bindGroup.v}
}

// createKeyRequest builds a create request from the flags.
func (f *adminFlags) createKeyRequest() adminapi.CreateKeyRequest {
	m := &f.m
	return adminapi.CreateKeyRequest{
		Name: f.name, Policy: f.policy, ExpiresAt: f.expires, ExpiresAfter: m.expiresAfter,
		Description: m.description.v, Owner: m.owner.v, Tags: m.tags.v,
		KeyRules: adminapi.KeyRules{
			Limits: m.limits.api(), AllowedModels: m.models.v, DeniedModels: m.denied.v,
			AllowedClients: m.clients.v, AllowedCIDRs: m.cidrs.v, Binding: m.binding(),
		},
	}
}

// stickyCommands are the commands that clear sticky bindings.
func stickyCommands() []adminCommand {
	return []adminCommand{
		{name: "accounts unbind", args: "ID", nargs: 1, summary: "clear every sticky binding to an account: its conversations are scheduled afresh", flags: sessionFlags,
			run: bindingsCmd("bound to account", (*adminclient.Client).UnbindAccount)},
		{name: "sessions clear", args: "SESSION", nargs: 1, summary: "clear one conversation's sticky binding (SESSION: Claude Code's session id, or the binding hash)", flags: sessionFlags,
			run: bindingsCmd("of conversation", (*adminclient.Client).ClearSession)},
	}
}

// withSession registers a command's own flags (own may be nil), then the session flags.
func withSession(own func(fs *flag.FlagSet, f *adminFlags)) func(fs *flag.FlagSet, f *adminFlags) {
	return func(fs *flag.FlagSet, f *adminFlags) {
		if own != nil {
			own(fs, f)
		}
		sessionFlags(fs, f)
	}
}

// manageCommands are the key, account, audit and password commands beyond the basic ones
// of adminCommands.
func manageCommands() []adminCommand {
	return slices.Concat(keyManageCommands(), accountManageCommands(), []adminCommand{
		{
			name: "audit", summary: "list admin actions, newest first",
			flags: withSession(func(fs *flag.FlagSet, f *adminFlags) {
				fs.IntVar(&f.m.limit, "limit", 50, "`entries` per page")
				fs.StringVar(&f.m.before, "before", "", "page `cursor` printed by the previous page")
			}),
			run: adminAudit,
		},
		{
			name: "password", summary: "change your admin password (reads current and new from stdin, one per line); signs out older sessions",
			flags: sessionFlags, run: adminPassword,
		},
	})
}

// keyManageCommands change, enable, disable, delete, restore, regenerate and bulk-create keys.
func keyManageCommands() []adminCommand {
	return []adminCommand{
		{
			name: "keys update", args: "ID", nargs: 1, summary: "change a relay key: only the flags given change",
			flags: withSession(func(fs *flag.FlagSet, f *adminFlags) {
				fs.Var(&f.m.renamed, "name", "new `name`")
				fs.Var(&f.m.newPolicy, "policy", "limit `policy` (\"\" for the default)")
				fs.Var(&f.m.newExpires, "expires", "fixed expiry `time`, RFC 3339 (\"\" removes the expiry)")
				fs.Var(&f.m.addModels, "add-models", "add allowed model `globs` to the key's list (a change no concurrent edit loses)")
				fs.Var(&f.m.removeModels, "remove-models", "remove allowed model `globs` from the key's list")
				fs.Var(&f.m.addClients, "add-clients", "add allowed `clients` to the key's list")
				fs.Var(&f.m.removeClients, "remove-clients", "remove allowed `clients` from the key's list")
				keyRuleFlags(fs, &f.m)
			}),
			run: adminKeysUpdate,
		},
		{name: "keys enable", args: "ID", nargs: 1, summary: "enable a disabled relay key", flags: sessionFlags, run: keyStateCmd("Enabled", (*adminclient.Client).EnableKey)},
		{name: "keys disable", args: "ID", nargs: 1, summary: "disable a relay key (every sidecar refuses it within a second)", flags: sessionFlags, run: keyStateCmd("Disabled", (*adminclient.Client).DisableKey)},
		{name: "keys delete", args: "ID", nargs: 1, summary: "soft-delete a relay key (keys restore brings it back)", flags: sessionFlags, run: keyStateCmd("Deleted", (*adminclient.Client).DeleteKey)},
		{name: "keys restore", args: "ID", nargs: 1, summary: "restore a soft-deleted relay key", flags: sessionFlags, run: keyStateCmd("Restored", (*adminclient.Client).RestoreKey)},
		{name: "keys regenerate", args: "ID", nargs: 1, summary: "give a relay key a new secret (shown once); the old one stops working", flags: sessionFlags, run: adminKeysRegenerate},
		{
			name: "keys bulk-create", summary: "create many relay keys at once and print their secrets (shown only once)",
			flags: withSession(func(fs *flag.FlagSet, f *adminFlags) {
				fs.IntVar(&f.m.count, "count", 0, "how many `keys` to create, named PREFIX-1 … PREFIX-N")
				fs.StringVar(&f.m.namePrefix, "name-prefix", "key", "name `prefix` for --count")
				fs.StringVar(&f.m.file, "file", "", "JSON `file` of {\"keys\":[{…create request…}]} instead of --count (\"-\" reads stdin)")
				fs.StringVar(&f.policy, "policy", "", "limit `policy` of every key")
				fs.StringVar(&f.expires, "expires", "", "expiry `time` of every key, RFC 3339")
				keyRuleFlags(fs, &f.m)
			}),
			run: adminKeysBulkCreate,
		},
	}
}

// accountManageCommands show, change, test, unpark and refresh accounts and add OAuth ones.
func accountManageCommands() []adminCommand {
	return []adminCommand{
		{name: "accounts get", args: "ID", nargs: 1, summary: "show one upstream account with its status", flags: sessionFlags, run: adminAccountsGet},
		{
			name: "accounts update", args: "ID", nargs: 1, summary: "change an upstream account: only the flags given change",
			flags: withSession(func(fs *flag.FlagSet, f *adminFlags) {
				fs.Var(&f.m.renamed, "name", "new `name`")
				fs.Var(&f.m.newBaseURL, "base-url", "upstream base `URL`")
				fs.Var(&f.priority, "priority", "scheduling `priority` 1-100, lower runs first")
				fs.Var(&f.m.group, "group", "account `group` keys can be bound to")
				fs.Var(&f.m.schedulable, "schedulable", "`true` puts the account in rotation, false takes it out")
				fs.Var(&f.m.proxyURL, "proxy-url", "outbound proxy `URL` (http, https, socks5; \"\" removes it)")
				fs.Var(&f.m.modelMap, "model-map", "rename a model, `FROM=TO` (repeatable; \"-\" clears)")
				fs.BoolVar(&f.apiKeyStdin, "api-key-stdin", false, "rotate the API key: read the new one from stdin")
				f.m.caps.register(fs, true)
			}),
			run: adminAccountsUpdate,
		},
		{
			name: "accounts test", args: "ID", nargs: 1, summary: "send one max_tokens=1 request through the account and report the result",
			flags: withSession(func(fs *flag.FlagSet, f *adminFlags) {
				fs.StringVar(&f.m.model, "model", "", "`model` to ask for (default the control plane's test model)")
			}),
			run: adminAccountsTest,
		},
		{name: "accounts unpark", args: "ID", nargs: 1, summary: "return a parked account to the rotation", flags: sessionFlags, run: accountStateCmd("Unparked", (*adminclient.Client).UnparkAccount)},
		{name: "accounts refresh", args: "ID", nargs: 1, summary: "refresh an OAuth account's tokens now", flags: sessionFlags, run: accountStateCmd("Refreshed", (*adminclient.Client).RefreshAccount)},
		{
			name: "accounts oauth start", summary: "start adding a Claude subscription account: prints the URL to open",
			flags: withSession(func(fs *flag.FlagSet, f *adminFlags) {
				fs.StringVar(&f.name, "name", "", "account `name` (required)")
				fs.Var(&f.priority, "priority", "scheduling `priority` 1-100 (default 50)")
				fs.StringVar(&f.m.group.v, "group", "", "account `group`")
				fs.StringVar(&f.m.proxyURL.v, "proxy-url", "", "outbound proxy `URL` for this account")
			}),
			run: adminOAuthStart,
		},
		{
			name: "accounts oauth finish", summary: "finish adding a Claude subscription account with the code the callback page shows",
			flags: withSession(func(fs *flag.FlagSet, f *adminFlags) {
				fs.StringVar(&f.m.code, "code", "", "the `code#state` the callback page shows (\"-\" reads stdin)")
				fs.StringVar(&f.m.callback, "callback-url", "", "or the whole callback `URL`")
				fs.StringVar(&f.m.state, "state", "", "the `state` printed by oauth start, when the code lacks it")
			}),
			run: adminOAuthFinish,
		},
	}
}

// keyListFlags registers the filters and paging of keys list.
func keyListFlags(fs *flag.FlagSet, f *adminFlags) {
	fs.StringVar(&f.m.filterName, "name", "", "only keys whose name contains `text`")
	fs.StringVar(&f.m.filterTag, "tag", "", "only keys with this `tag`")
	fs.Var(&f.m.filterPolicy, "policy", "only keys on this `policy` (\"\" for the default policy)")
	fs.StringVar(&f.m.filterStatus, "status", "", "only keys with this `status`: active, disabled, expired, revoked or deleted")
	fs.IntVar(&f.m.limit, "limit", 0, "`keys` per page (default 100)")
	fs.StringVar(&f.m.cursor, "cursor", "", "page `cursor` printed by the previous page")
	fs.BoolVar(&f.m.all, "all", false, "read every page")
	sessionFlags(fs, f)
}

// accountAddFlags registers the flags of accounts add beyond name, key, base URL and priority.
func accountAddFlags(fs *flag.FlagSet, f *adminFlags) {
	fs.StringVar(&f.m.accountType, "type", "", "`type`: anthropic_api_key (default), anthropic_compatible or claude_oauth")
	fs.BoolVar(&f.m.accessTokenStdin, "access-token-stdin", false, "claude_oauth: read the access token (or setup token) from stdin")
	fs.BoolVar(&f.m.refreshTokenStdin, "refresh-token-stdin", false, "claude_oauth: read the refresh token from the next stdin line")
	fs.StringVar(&f.m.tokenExpires, "token-expires", "", "claude_oauth: access token expiry `time`, RFC 3339")
	fs.StringVar(&f.m.group.v, "group", "", "account `group` keys can be bound to")
	fs.StringVar(&f.m.proxyURL.v, "proxy-url", "", "outbound proxy `URL`: http, https or socks5 (credentials allowed; stored encrypted)")
	fs.Var(&f.m.modelMap, "model-map", "anthropic_compatible: rename a model, `FROM=TO` (repeatable)")
	fs.BoolVar(&f.m.unschedulable, "unschedulable", false, "add the account out of rotation")
	f.m.caps.register(fs, false)
}

// keyListQuery builds the list query from the flags.
func (f *adminFlags) keyListQuery() adminclient.KeyQuery {
	m := &f.m
	return adminclient.KeyQuery{Name: m.filterName, Tag: m.filterTag, Status: m.filterStatus,
		Policy: m.filterPolicy.v, PolicySet: m.filterPolicy.set, Cursor: m.cursor, Limit: m.limit}
}

func adminKeysUpdate(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
	m := &f.m
	req := adminapi.UpdateKeyRequest{
		Name: m.renamed.ptr(), Description: m.description.ptr(), Owner: m.owner.ptr(), Tags: m.tags.ptr(),
		Policy: m.newPolicy.ptr(), ExpiresAt: m.newExpires.ptr(), Limits: m.limits.api(),
		AllowedModels: m.models.ptr(), DeniedModels: m.denied.ptr(), AllowedClients: m.clients.ptr(),
		AllowedCIDRs: m.cidrs.ptr(), Binding: m.binding(),
	}
	if m.expiresAfter != "" {
		req.ExpiresAfter = &m.expiresAfter
	}
	editModels := m.addModels.set || m.removeModels.set
	editClients := m.addClients.set || m.removeClients.set
	switch {
	case editModels && m.models.set:
		return usageError{"give --models or --add-models/--remove-models, not both"}
	case editClients && m.clients.set:
		return usageError{"give --clients or --add-clients/--remove-clients, not both"}
	}
	if b, _ := json.Marshal(req); string(b) == "{}" && !editModels && !editClients {
		return usageError{"give at least one field to change"}
	}
	var k adminapi.Key
	var err error
	if !editModels && !editClients {
		k, err = c.client.UpdateKey(ctx, args[0], req)
	} else {
		// Editing a list is a read-modify-write: send it with If-Match of the revision read,
		// and on 412 (someone changed the key in between) read it again and redo the edit.
		k, err = c.client.ModifyKey(ctx, args[0], 1+listEditRetries, func(cur adminapi.Key) (adminapi.UpdateKeyRequest, error) {
			r := req
			if editModels {
				r.AllowedModels = editList(cur.AllowedModels, m.addModels.v, m.removeModels.v)
			}
			if editClients {
				r.AllowedClients = editList(cur.AllowedClients, m.addClients.v, m.removeClients.v)
			}
			return r, nil
		})
	}
	if err != nil {
		return err
	}
	if f.json {
		return c.printJSON(adminapi.KeyResponse{Key: k})
	}
	return c.printKey(k)
}

// listEditRetries is how often keys update re-reads a key that changed between its read and
// its conditional write before it gives up.
const listEditRetries = 3

// editList returns list with add appended (those not already in it) and remove taken out.
func editList(list, add, remove []string) *[]string {
	out := []string{}
	for _, v := range list {
		if !slices.Contains(remove, v) {
			out = append(out, v)
		}
	}
	for _, v := range add {
		if !slices.Contains(out, v) && !slices.Contains(remove, v) {
			out = append(out, v)
		}
	}
	return &out
}

// keyStateCmd runs a key state change and prints the key.
func keyStateCmd(done string, call func(*adminclient.Client, context.Context, string, ...adminclient.Option) (adminapi.Key, error)) func(context.Context, *adminCLI, *adminFlags, []string) error {
	return func(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
		k, err := call(c.client, ctx, args[0])
		if err != nil {
			return err
		}
		if f.json {
			return c.printJSON(adminapi.KeyResponse{Key: k})
		}
		_, err = fmt.Fprintf(c.stdout, "%s key %s (%s); status %s.\n", done, k.ID, k.Name, k.Status)
		return err
	}
}

func adminKeysRegenerate(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
	res, err := c.client.RegenerateKey(ctx, args[0])
	if done, err := c.answered(f, res, err); done {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "New secret for key %s (%s); the old one no longer works. Shown only this once:\n\n  %s\n\n", res.Key.ID, res.Key.Name, res.Secret)
	return err
}

func adminKeysBulkCreate(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	var req adminapi.BulkCreateKeysRequest
	switch {
	case f.m.file != "" && f.m.count > 0:
		return usageError{"give --count or --file, not both"}
	case f.m.file != "":
		var data []byte
		var err error
		if f.m.file == "-" {
			var b strings.Builder
			for {
				line, rerr := c.readLine()
				if rerr != nil {
					break
				}
				b.WriteString(line + "\n")
			}
			data = []byte(b.String())
		} else if data, err = os.ReadFile(f.m.file); err != nil {
			return fmt.Errorf("read %s: %w", f.m.file, err)
		}
		if err := json.Unmarshal(data, &req); err != nil {
			return fmt.Errorf("%s: %w", f.m.file, err)
		}
	case f.m.count > 0:
		for i := 1; i <= f.m.count; i++ {
			f.name = fmt.Sprintf("%s-%d", f.m.namePrefix, i)
			req.Keys = append(req.Keys, f.createKeyRequest())
		}
	default:
		return usageError{"--count or --file is required"}
	}
	res, err := c.client.BulkCreateKeys(ctx, req)
	if done, err := c.answered(f, res, err); done {
		return err
	}
	rows := make([][]string, 0, len(res.Keys))
	for _, k := range res.Keys {
		rows = append(rows, []string{k.Key.ID, k.Key.Name, k.Secret})
	}
	fmt.Fprintf(c.stdout, "Created %d keys. The secrets are shown only this once; store them now.\n\n", len(res.Keys))
	return c.table([]string{"ID", "NAME", "SECRET"}, rows)
}

// printAccount prints one account as a FIELD/VALUE table.
func (c *adminCLI) printAccount(a adminapi.Account) error {
	rows := [][]string{
		{"id", a.ID}, {"name", a.Name}, {"type", a.Type}, {"base url", a.BaseURL},
		{"priority", fmt.Sprint(a.Priority)}, {"group", orDash(a.Group)}, {"schedulable", fmt.Sprint(a.Schedulable)},
		{"status", accountStatus(a)}, {"credential", a.CredentialHint}, {"proxy", orDash(a.Proxy)},
		{"created", fmtTime(a.CreatedAt)}, {"last used", fmtOptTime(a.LastUsedAt)},
	}
	for from, to := range a.ModelMap {
		rows = append(rows, []string{"model map", from + " → " + to})
	}
	if o := a.OAuth; o != nil {
		rows = append(rows, []string{"token expires", fmtOptTime(o.TokenExpiresAt)}, []string{"refresh token", fmt.Sprint(o.HasRefreshToken)})
		if o.RefreshError != "" {
			rows = append(rows, []string{"refresh error", o.RefreshError}, []string{"next refresh", fmtOptTime(o.RefreshRetryAt)})
		}
	}
	if c := a.Caps; c != nil {
		rows = append(rows, []string{"caps", capsText(*c)})
	}
	if a.WindowsObservedAt != nil {
		rows = append(rows, []string{"5-hour window", windowDetail(a.Utilization5h, a.Reset5h, a.Status5h)},
			[]string{"7-day window", windowDetail(a.Utilization7d, a.Reset7d, a.Status7d)},
			[]string{"window status", orDash(a.WindowStatus) + ", binding: " + orDash(a.RepresentativeClaim) + ", read " + fmtTime(*a.WindowsObservedAt)})
	}
	for _, p := range a.Parked {
		what := "parked"
		if p.Family != "" {
			what += " (" + p.Family + ")"
		}
		rows = append(rows, []string{what, fmt.Sprintf("%s until %s: %s", p.State, fmtOptTime(p.Until), p.Reason)})
	}
	return c.table([]string{"FIELD", "VALUE"}, rows)
}

// capsText lists an account's caps: "max 2 in flight, 1000000 tokens/day, $5.00/5h".
func capsText(c adminapi.AccountCaps) string {
	var parts []string
	if c.MaxConcurrency > 0 {
		parts = append(parts, fmt.Sprintf("max %d in flight", c.MaxConcurrency))
	}
	if c.TokensPerDay > 0 {
		parts = append(parts, fmt.Sprintf("%d tokens/day", c.TokensPerDay))
	}
	if c.CostPerDayUSD > 0 {
		parts = append(parts, fmt.Sprintf("$%.2f/day", c.CostPerDayUSD))
	}
	if c.TokensPer5h > 0 {
		parts = append(parts, fmt.Sprintf("%d tokens/5h", c.TokensPer5h))
	}
	if c.CostPer5hUSD > 0 {
		parts = append(parts, fmt.Sprintf("$%.2f/5h", c.CostPer5hUSD))
	}
	return strings.Join(parts, ", ")
}

// windowCell is a subscription window in the accounts table: "93% to 15:10Z" (the use and
// when the window resets), or "-" without a reading.
func windowCell(u *float64, reset *time.Time) string {
	if u == nil {
		return "-"
	}
	s := fmt.Sprintf("%.0f%%", *u*100)
	if reset != nil {
		s += " to " + fmtTime(*reset)
	}
	return s
}

// windowDetail is a subscription window in accounts get.
func windowDetail(u *float64, reset *time.Time, status string) string {
	if u == nil {
		return "-"
	}
	s := fmt.Sprintf("%.0f%% used", *u*100)
	if status != "" {
		s += " (" + status + ")"
	}
	if reset != nil {
		s += ", resets " + fmtTime(*reset)
	}
	return s
}

// accountStatus is the status column: state, and until/since when known.
func accountStatus(a adminapi.Account) string {
	s := a.Status.State
	if a.Status.Until != nil {
		s += " until " + fmtTime(*a.Status.Until)
	} else if a.Status.Since != nil {
		s += " since " + fmtTime(*a.Status.Since)
	}
	return s
}

func adminAccountsGet(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
	a, err := c.client.GetAccount(ctx, args[0])
	if done, err := c.answered(f, adminapi.AccountResponse{Account: a}, err); done {
		return err
	}
	return c.printAccount(a)
}

func adminAccountsUpdate(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
	m := &f.m
	req := adminapi.UpdateAccountRequest{Name: m.renamed.ptr(), BaseURL: m.newBaseURL.ptr(), Group: m.group.ptr(), ProxyURL: m.proxyURL.ptr()}
	if f.priority.set {
		req.Priority = &f.priority.v
	}
	if m.schedulable.set {
		req.Schedulable = &m.schedulable.v
	}
	if m.modelMap.set {
		req.ModelMap = &m.modelMap.v
	}
	if f.apiKeyStdin {
		key, err := c.readLine()
		if err != nil {
			return fmt.Errorf("read API key: %w", err)
		}
		key = strings.TrimSpace(key)
		req.APIKey = &key
	}
	switch {
	case m.caps.none && m.caps.any():
		return usageError{"give --no-caps or cap flags, not both"}
	case m.caps.none:
		req.Caps = &adminapi.AccountCaps{}
	case m.caps.any():
		cur, err := c.client.GetAccount(ctx, args[0])
		if err != nil {
			return err
		}
		var base adminapi.AccountCaps
		if cur.Caps != nil {
			base = *cur.Caps
		}
		caps := m.caps.apply(base)
		req.Caps = &caps
	}
	if b, _ := json.Marshal(req); string(b) == "{}" {
		return usageError{"give at least one field to change"}
	}
	a, err := c.client.UpdateAccount(ctx, args[0], req)
	if done, err := c.answered(f, adminapi.AccountResponse{Account: a}, err); done {
		return err
	}
	return c.printAccount(a)
}

func adminAccountsTest(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
	res, err := c.client.TestAccount(ctx, args[0], f.m.model)
	if done, err := c.answered(f, res, err); done {
		return err
	}
	verdict := "OK"
	if !res.OK {
		verdict = "FAILED"
	}
	rows := [][]string{{"result", verdict}, {"model", res.Model}, {"http status", fmt.Sprint(res.HTTPStatus)},
		{"latency", fmt.Sprintf("%d ms", res.LatencyMS)}, {"request id", orDash(res.RequestID)}, {"error", orDash(res.Error)}}
	if err := c.table([]string{"FIELD", "VALUE"}, rows); err != nil {
		return err
	}
	if !res.OK {
		return errors.New("the account test failed")
	}
	return nil
}

// accountStateCmd runs an account action and prints the account.
func accountStateCmd(done string, call func(*adminclient.Client, context.Context, string) (adminapi.Account, error)) func(context.Context, *adminCLI, *adminFlags, []string) error {
	return func(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
		a, err := call(c.client, ctx, args[0])
		if err != nil {
			return err
		}
		if f.json {
			return c.printJSON(adminapi.AccountResponse{Account: a})
		}
		_, err = fmt.Fprintf(c.stdout, "%s account %s (%s); status %s.\n", done, a.ID, a.Name, accountStatus(a))
		return err
	}
}

// bindingsCmd runs a command that clears sticky bindings and says how many it cleared.
func bindingsCmd(what string, call func(*adminclient.Client, context.Context, string) (int, error)) func(context.Context, *adminCLI, *adminFlags, []string) error {
	return func(ctx context.Context, c *adminCLI, f *adminFlags, args []string) error {
		n, err := call(c.client, ctx, args[0])
		if err != nil {
			return err
		}
		if f.json {
			return c.printJSON(adminapi.BindingsCleared{Cleared: n})
		}
		if n == 0 {
			_, err = fmt.Fprintf(c.stdout, "No sticky binding %s %s was found (none, or they expired).\n", what, args[0])
			return err
		}
		_, err = fmt.Fprintf(c.stdout, "Cleared %d sticky binding(s) %s %s; the next request of each conversation is scheduled afresh.\n", n, what, args[0])
		return err
	}
}

func adminOAuthStart(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	if strings.TrimSpace(f.name) == "" {
		return usageError{"--name is required"}
	}
	req := adminapi.OAuthStartRequest{Name: f.name, Group: f.m.group.v, ProxyURL: f.m.proxyURL.v}
	if f.priority.set {
		req.Priority = &f.priority.v
	}
	res, err := c.client.OAuthStart(ctx, req)
	if done, err := c.answered(f, res, err); done {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "Open this URL, log in with the Claude subscription and approve:\n\n  %s\n\n"+
		"Then, before %s, paste the code the page shows:\n\n  claude-relay admin accounts oauth finish --code 'CODE#STATE'\n\n"+
		"Subscription credentials are for the subscriber's own use of Claude Code (Anthropic's terms);\nshare capacity across a team with API-key accounts.\n",
		res.AuthorizeURL, fmtTime(res.ExpiresAt))
	return err
}

func adminOAuthFinish(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	req := adminapi.OAuthFinishRequest{Code: f.m.code, CallbackURL: f.m.callback, State: f.m.state}
	if req.Code == "-" {
		line, err := c.readLine()
		if err != nil {
			return fmt.Errorf("read code: %w", err)
		}
		req.Code = strings.TrimSpace(line)
	}
	if req.Code == "" && req.CallbackURL == "" {
		return usageError{"--code or --callback-url is required"}
	}
	a, err := c.client.OAuthFinish(ctx, req)
	if done, err := c.answered(f, adminapi.AccountResponse{Account: a}, err); done {
		return err
	}
	return c.printAccount(a)
}

func adminAudit(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	res, err := c.client.Audit(ctx, f.m.before, f.m.limit)
	if err != nil {
		return err
	}
	if f.json {
		if res.Entries == nil {
			res.Entries = []adminapi.AuditEntry{}
		}
		return c.printJSON(res)
	}
	rows := make([][]string, 0, len(res.Entries))
	for _, e := range res.Entries {
		var details []string
		for k, v := range e.Detail {
			details = append(details, k+"="+v)
		}
		slices.Sort(details)
		rows = append(rows, []string{e.At.UTC().Format("2006-01-02 15:04:05Z"), e.Who, e.Action, orDash(e.Target), orDash(e.Remote), orDash(strings.Join(details, " "))})
	}
	if err := c.table([]string{"AT", "WHO", "ACTION", "TARGET", "FROM", "DETAIL"}, rows); err != nil {
		return err
	}
	if res.NextCursor != "" {
		fmt.Fprintf(c.stdout, "\nOlder entries: claude-relay admin audit --before %s\n", res.NextCursor)
	}
	return nil
}

func adminPassword(ctx context.Context, c *adminCLI, f *adminFlags, _ []string) error {
	current, err := c.readSecret("Current password: ")
	if err != nil {
		return fmt.Errorf("read current password: %w", err)
	}
	next, err := c.readSecret("New password: ")
	if err != nil {
		return fmt.Errorf("read new password: %w", err)
	}
	res, err := c.client.ChangePassword(ctx, current, next)
	if err != nil {
		return err
	}
	if c.tokenFromFile != "" {
		if err := adminclient.SaveSession(c.sessionPath, c.client.Addr(), res.Token); err != nil {
			return err
		}
	}
	if f.json {
		return c.printJSON(struct {
			Changed   bool      `json:"changed"`
			ExpiresAt time.Time `json:"expires_at"`
		}{true, res.ExpiresAt})
	}
	if c.tokenFromFile == "" {
		_, err = fmt.Fprintln(c.stdout, "Password changed; every session, this token included, is signed out: run claude-relay admin login.")
		return err
	}
	_, err = fmt.Fprintln(c.stdout, "Password changed; every other session is signed out. The saved session continues with a new token.")
	return err
}

// accountAddRequest fills the fields of accounts add beyond name, key, base URL and priority,
// reading OAuth tokens from stdin (access token first, then the refresh token).
func (c *adminCLI) accountAddRequest(f *adminFlags, req *adminapi.AddAccountRequest) error {
	m := &f.m
	req.Type, req.Group, req.ProxyURL, req.ExpiresAt = m.accountType, m.group.v, m.proxyURL.v, m.tokenExpires
	if m.modelMap.set {
		req.ModelMap = m.modelMap.v
	}
	if m.unschedulable {
		no := false
		req.Schedulable = &no
	}
	if m.caps.any() {
		caps := m.caps.apply(adminapi.AccountCaps{})
		req.Caps = &caps
	}
	if m.accessTokenStdin {
		if req.Type == "" {
			req.Type = adminapi.AccountClaudeOAuth
		}
		tok, err := c.readLine()
		if err != nil {
			return fmt.Errorf("read access token: %w", err)
		}
		req.AccessToken = strings.TrimSpace(tok)
	}
	if m.refreshTokenStdin {
		if !m.accessTokenStdin {
			return usageError{"--refresh-token-stdin goes with --access-token-stdin"}
		}
		tok, err := c.readLine()
		if err != nil {
			return fmt.Errorf("read refresh token: %w", err)
		}
		req.RefreshToken = strings.TrimSpace(tok)
	}
	return nil
}

// keyDetailRows are the FIELD/VALUE rows of a key's optional fields that are set.
func keyDetailRows(k adminapi.Key) [][]string {
	var rows [][]string
	add := func(field, v string) {
		if v != "" {
			rows = append(rows, []string{field, v})
		}
	}
	add("revision", strconv.FormatInt(k.Revision, 10))
	add("description", k.Description)
	add("owner", k.Owner)
	add("tags", strings.Join(k.Tags, ","))
	add("expires after first use", k.ExpiresAfter)
	if k.ActivatedAt != nil {
		add("first used", fmtTime(*k.ActivatedAt))
	}
	if k.DeletedAt != nil {
		add("deleted", fmtTime(*k.DeletedAt))
	}
	if l := k.Limits; l != nil {
		b, _ := json.Marshal(l)
		add("limit overrides", string(b))
	}
	add("allowed models", strings.Join(k.AllowedModels, ","))
	add("denied models", strings.Join(k.DeniedModels, ","))
	add("allowed clients", strings.Join(k.AllowedClients, ","))
	add("allowed IPs", strings.Join(k.AllowedCIDRs, ","))
	if b := k.Binding; b != nil {
		add("bound to account", b.AccountID)
		add("bound to group", b.Group)
	}
	return rows
}
