package crs

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/store"
)

// Pricer prices a model's tokens (config.Runtime does, from the operator's pricing HCL).
type Pricer interface {
	Price(model string) (config.Price, bool)
}

// Options configures how a CRS dataset maps onto claude-relay.
type Options struct {
	// TimezoneOffset is CRS's TIMEZONE_OFFSET in hours: its date-suffixed keys are days of
	// that timezone. 0 is read as 8, as CRS itself does (parseInt(…) || 8).
	TimezoneOffset int
	// ClaudeAPIURL is CRS's CLAUDE_API_URL, where its Claude OAuth accounts were sent
	// (default https://api.anthropic.com/v1/messages).
	ClaudeAPIURL string
	// Pricer prices account usage, which CRS keeps without cost. Nil leaves it at 0.
	Pricer Pricer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Note categories, in the order the plan prints them.
const (
	// NoteStricter is a rule mapped to the closest stricter claude-relay rule.
	NoteStricter = "mapped to the closest stricter rule"
	// NoteDiffers is something that behaves differently after the move.
	NoteDiffers = "behaves differently after the move"
	// NoteSkipped is something not imported.
	NoteSkipped = "not imported"
)

// Note is one thing the plan tells the operator, with the objects it applies to.
type Note struct {
	Category, Message string
	Subjects          []string
}

// KeyPlan is how one CRS API key is imported.
type KeyPlan struct {
	CRSID string
	Spec  store.LegacyKeySpec
	// BindAccount is the source of the account the key is bound to ("" for none); the
	// import resolves it to the account's claude-relay id.
	BindAccount string
	// SpentTotalMicro is what the key spent against its totalCostLimit (rated, as CRS
	// counted it), carried into its cost_total_usd counter.
	SpentTotalMicro int64
	Usage           []store.UsageRecord
}

// AccountPlan is how one CRS account is imported.
type AccountPlan struct {
	Source string // "crs:claude:<id>" or "crs:claude-console:<id>"
	Kind   string // "Claude OAuth" or "Claude Console"
	Spec   store.AccountSpec
	Usage  []store.UsageRecord
}

// GroupPlan is how one CRS account group maps to a claude-relay group name.
type GroupPlan struct {
	CRSID, CRSName, Name string
	Members              int
}

// Plan is everything an import will do, and everything it cannot.
type Plan struct {
	Keys     []KeyPlan
	Accounts []AccountPlan
	Groups   []GroupPlan
	// KeyStatus counts the imported keys by their status at the move.
	KeyStatus map[string]int
	// Others counts accounts of other platforms by platform.
	Others map[string]int
	// Found counts what the CRS Redis holds, by kind.
	Found map[string]int
	// KeyDays and AccountDays count the daily usage hashes carried over; DaysByHour those
	// of them split exactly onto UTC days by their hourly hashes (CRS keeps hours 7 days).
	KeyDays, AccountDays, DaysByHour int
	// TimezoneOffset is the UTC offset (hours) of CRS's days.
	TimezoneOffset int
	// Verified counts the encrypted fields that opened with the CRS key.
	Verified int
	notes    map[[2]string]*Note
	order    [][2]string
}

func (p *Plan) note(category, subject, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	k := [2]string{category, msg}
	n := p.notes[k]
	if n == nil {
		n = &Note{Category: category, Message: msg}
		p.notes[k] = n
		p.order = append(p.order, k)
	}
	n.Subjects = append(n.Subjects, subject)
}

// Notes returns the plan's notes grouped by category, in the order they were made.
func (p *Plan) Notes() []Note {
	out := make([]Note, 0, len(p.order))
	for _, cat := range []string{NoteStricter, NoteDiffers, NoteSkipped} {
		for _, k := range p.order {
			if k[0] == cat {
				out = append(out, *p.notes[k])
			}
		}
	}
	return out
}

// Build maps a CRS dataset onto claude-relay: it decides, for every key, account, group and
// usage hash, what is imported and how, and notes every rule that maps to a stricter one and
// everything that cannot be imported, with the reason.
func Build(ds *Dataset, dec *Decrypter, opts Options) (*Plan, error) {
	if opts.TimezoneOffset == 0 {
		opts.TimezoneOffset = 8
	}
	if opts.ClaudeAPIURL == "" {
		opts.ClaudeAPIURL = "https://api.anthropic.com/v1/messages"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Plan{
		KeyStatus: map[string]int{}, Others: map[string]int{}, notes: map[[2]string]*Note{},
		TimezoneOffset: opts.TimezoneOffset,
		Found: map[string]int{
			"API keys": len(ds.Keys), "Claude OAuth accounts": len(ds.OAuth),
			"Claude Console accounts": len(ds.Console), "account groups": len(ds.Groups),
		},
	}
	b := &builder{p: p, ds: ds, dec: dec, opts: opts, groupOf: map[string]string{}, accounts: map[string]string{}}
	for _, o := range ds.Others {
		p.Others[o.Platform]++
		p.note(NoteSkipped, orID(o.Name, o.ID), "%s account: claude-relay relays the Anthropic Messages API only", o.Platform)
	}
	b.groups()
	if err := b.accountsOAuth(); err != nil {
		return nil, err
	}
	if err := b.accountsConsole(); err != nil {
		return nil, err
	}
	now := opts.Now()
	for _, r := range ds.Keys {
		if kp, ok := b.key(r); ok {
			p.Keys = append(p.Keys, kp)
			p.KeyStatus[keyStatus(kp.Spec, now)]++
		}
	}
	sort.Slice(p.Keys, func(i, j int) bool { return p.Keys[i].Spec.CreatedAt.Before(p.Keys[j].Spec.CreatedAt) })
	return p, nil
}

func keyStatus(s store.LegacyKeySpec, now time.Time) string {
	switch {
	case s.DeletedAt != nil:
		return store.KeyStatusDeleted
	case s.ExpiresAt != nil && !now.Before(*s.ExpiresAt):
		return store.KeyStatusExpired
	case s.Disabled:
		return store.KeyStatusDisabled
	}
	return store.KeyStatusActive
}

type builder struct {
	p    *Plan
	ds   *Dataset
	dec  *Decrypter
	opts Options
	// groupOf maps a CRS account id to the claude-relay group it is placed in.
	groupOf map[string]string
	// groupName maps a CRS group id to its claude-relay name.
	groupName map[string]string
	// accounts maps a CRS account id to its source, for key bindings.
	accounts map[string]string
}

// groups names the Claude groups and places each account in one of them: a claude-relay
// account has one group, so an account in several goes to the one with the fewest members
// so far, and the others are noted.
func (b *builder) groups() {
	b.groupName = map[string]string{}
	taken := map[string]bool{}
	groups := slices.Clone(b.ds.Groups)
	sort.Slice(groups, func(i, j int) bool { return groups[i].Name+groups[i].ID < groups[j].Name+groups[j].ID })
	for _, g := range groups {
		if g.Platform != "claude" {
			b.p.note(NoteSkipped, orID(g.Name, g.ID), "%s account group: only Claude groups are relayed", g.Platform)
			continue
		}
		name := indexName(g.Name, "crs-group-"+short(g.ID))
		for taken[name] {
			name = indexName(name+"-"+short(g.ID), "crs-group-"+short(g.ID))
		}
		taken[name] = true
		b.groupName[g.ID] = name
		if name != g.Name {
			b.p.note(NoteDiffers, fmt.Sprintf("%q → %s", g.Name, name), "group renamed: claude-relay group names are 1 to 64 of A-Z a-z 0-9 . _ : -")
		}
	}
	memberOf := map[string][]string{}
	for _, g := range groups {
		if _, ok := b.groupName[g.ID]; !ok {
			continue
		}
		for _, m := range g.Members {
			memberOf[m] = append(memberOf[m], g.ID)
		}
	}
	size := map[string]int{}
	accts := make([]string, 0, len(memberOf))
	for a := range memberOf {
		accts = append(accts, a)
	}
	sort.Slice(accts, func(i, j int) bool { // single-group accounts first, so they count
		if len(memberOf[accts[i]]) != len(memberOf[accts[j]]) {
			return len(memberOf[accts[i]]) < len(memberOf[accts[j]])
		}
		return accts[i] < accts[j]
	})
	for _, a := range accts {
		gs := memberOf[a]
		best := gs[0]
		for _, g := range gs[1:] {
			if size[g] < size[best] || size[g] == size[best] && b.groupName[g] < b.groupName[best] {
				best = g
			}
		}
		size[best]++
		b.groupOf[a] = b.groupName[best]
		if len(gs) > 1 {
			var others []string
			for _, g := range gs {
				if g != best {
					others = append(others, b.groupName[g])
				}
			}
			b.p.note(NoteStricter, a, "account in several groups: placed in %s only (a claude-relay account has one group); keys bound to %s no longer reach it",
				b.groupName[best], strings.Join(others, ", "))
		}
	}
	for _, g := range groups {
		if name, ok := b.groupName[g.ID]; ok {
			b.p.Groups = append(b.p.Groups, GroupPlan{CRSID: g.ID, CRSName: g.Name, Name: name, Members: size[g.ID]})
		}
	}
}

func (b *builder) open(salt, field, subject, what string) (string, error) {
	plain, enc, err := b.dec.Open(salt, field)
	if err != nil {
		return "", fmt.Errorf("%s of CRS account %s: %w (is --crs-encryption-key-file CRS's ENCRYPTION_KEY?)", what, subject, err)
	}
	switch enc {
	case encIV, encLegacy:
		b.p.Verified++
	case encPlain:
		b.p.note(NoteDiffers, subject, "%s was stored unencrypted in CRS; it is sealed now", what)
	}
	return plain, nil
}

func (b *builder) accountsOAuth() error {
	base, err := oauthBase(b.opts.ClaudeAPIURL)
	if err != nil {
		return err
	}
	for _, r := range b.ds.OAuth {
		subject := orID(r["name"], r["id"])
		if pl := r["platform"]; pl != "" && pl != "claude" {
			b.p.note(NoteSkipped, subject, "account of platform %q under claude:account:", pl)
			continue
		}
		access, err := b.open(SaltClaudeOAuth, r["accessToken"], subject, "access token")
		if err != nil {
			return err
		}
		refresh, err := b.open(SaltClaudeOAuth, r["refreshToken"], subject, "refresh token")
		if err != nil {
			return err
		}
		expires := parseMillis(r["expiresAt"])
		scopes := r["scopes"]
		if access == "" && r["claudeAiOauth"] != "" {
			raw, err := b.open(SaltClaudeOAuth, r["claudeAiOauth"], subject, "OAuth data")
			if err != nil {
				return err
			}
			var o struct {
				AccessToken  string   `json:"accessToken"`
				RefreshToken string   `json:"refreshToken"`
				ExpiresAt    int64    `json:"expiresAt"`
				Scopes       []string `json:"scopes"`
			}
			if json.Unmarshal([]byte(raw), &o) == nil {
				access, refresh = o.AccessToken, orID(refresh, o.RefreshToken)
				expires = millis(o.ExpiresAt)
				scopes = strings.Join(o.Scopes, " ")
			}
		}
		if access == "" {
			b.p.note(NoteSkipped, subject, "Claude OAuth account without an access token (never authorised in CRS): add it again with `claude-relay admin accounts oauth start`")
			continue
		}
		spec := store.AccountSpec{
			Name: accountName(r), Type: store.AccountTypeClaudeOAuth, BaseURL: base, Credential: access,
			RefreshToken: refresh, TokenExpiresAt: expires, Scopes: scopes, Priority: priority(r),
			Group: b.groupOf[r["id"]], CreatedAt: parseTime(r["createdAt"]),
		}
		if err := b.commonAccount(r, subject, &spec); err != nil {
			return err
		}
		b.addAccount(AccountPlan{Source: "crs:claude:" + r["id"], Kind: "Claude OAuth", Spec: spec}, r["id"])
	}
	return nil
}

func (b *builder) accountsConsole() error {
	for _, r := range b.ds.Console {
		subject := orID(r["name"], r["id"])
		key, err := b.open(SaltClaudeConsole, r["apiKey"], subject, "API key")
		if err != nil {
			return err
		}
		if key == "" {
			b.p.note(NoteSkipped, subject, "Claude Console account without an API key")
			continue
		}
		base, err := consoleBase(r["apiUrl"])
		if err != nil {
			b.p.note(NoteSkipped, subject, "Claude Console account: %v", err)
			continue
		}
		typ := store.AccountTypeAnthropicCompatible
		if u, _ := url.Parse(base); u != nil && u.Host == "api.anthropic.com" {
			typ = store.AccountTypeAnthropicAPIKey
		}
		spec := store.AccountSpec{
			Name: accountName(r), Type: typ, BaseURL: base, Credential: key, Priority: priority(r),
			Group: b.groupOf[r["id"]], CreatedAt: parseTime(r["createdAt"]),
		}
		if mm := modelMap(r["supportedModels"]); len(mm.rename) > 0 {
			spec.Type, spec.ModelMap = store.AccountTypeAnthropicCompatible, mm.rename
		} else if mm.allowOnly {
			b.p.note(NoteDiffers, subject, "supportedModels allow-list not carried: a claude-relay account serves every model its keys may use")
		}
		if ua := r["userAgent"]; ua != "" {
			b.p.note(NoteDiffers, subject, "custom User-Agent not sent: claude-relay passes the client's own headers")
		}
		if q, _ := strconv.ParseFloat(r["dailyQuota"], 64); q > 0 {
			b.p.note(NoteDiffers, subject, "dailyQuota (a per-account daily cost cap) has no claude-relay equivalent")
		}
		if n, _ := strconv.Atoi(r["maxConcurrentTasks"]); n > 0 {
			b.p.note(NoteDiffers, subject, "maxConcurrentTasks (a per-account concurrency cap) has no claude-relay equivalent")
		}
		if err := b.commonAccount(r, subject, &spec); err != nil {
			return err
		}
		b.addAccount(AccountPlan{Source: "crs:claude-console:" + r["id"], Kind: "Claude Console", Spec: spec}, r["id"])
	}
	return nil
}

// commonAccount maps what both account types share: proxy, schedulable, status, dedicated.
func (b *builder) commonAccount(r Record, subject string, spec *store.AccountSpec) error {
	proxy, err := proxyURL(r["proxy"])
	if err != nil {
		b.p.note(NoteSkipped, subject, "proxy not imported (%v): the account connects directly; set it with `admin accounts update --proxy`", err)
	}
	spec.ProxyURL = proxy
	if r["isActive"] == "false" || r["schedulable"] == "false" {
		spec.Unschedulable = true
	}
	switch st := r["status"]; st {
	case "unauthorized", "blocked", "error", "banned", "suspended", "expired":
		spec.Unschedulable = true
		b.p.note(NoteStricter, subject, "account with CRS status %q imported unschedulable: `admin accounts update --schedulable` once it works", st)
	}
	if r["accountType"] == "dedicated" {
		b.p.note(NoteDiffers, subject, "dedicated account: claude-relay has no dedicated accounts, so it also serves keys not bound to it")
	}
	return nil
}

func (b *builder) addAccount(ap AccountPlan, crsID string) {
	ap.Usage = b.accountUsage(crsID)
	b.accounts[crsID] = ap.Source
	b.p.Accounts = append(b.p.Accounts, ap)
}

// key maps one CRS API key; ok is false when it cannot be imported (noted).
func (b *builder) key(r Record) (KeyPlan, bool) {
	id := r["id"]
	name := strings.TrimSpace(r["name"])
	subject := orID(name, id)
	hash := strings.ToLower(r["apiKey"])
	if !isHex64(hash) {
		b.p.note(NoteSkipped, subject, "API key record without a 64-hex hash (field apiKey)")
		return KeyPlan{}, false
	}
	if name == "" {
		name = "CRS key " + short(id)
	}
	if len(name) > 200 {
		cut := 200
		for !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut]
	}
	spec := store.LegacyKeySpec{
		KeySpec: store.KeySpec{
			Name: name, Description: r["description"], Owner: orID(r["userUsername"], r["userId"]),
			Tags: b.tags(r["tags"]),
		},
		LegacyHash: hash, Source: "crs:" + id, Disabled: r["isActive"] != "true",
		CreatedAt: parseTime(r["createdAt"]), LastUsedAt: parseTimePtr(r["lastUsedAt"]),
	}
	if r["isDeleted"] == "true" {
		d := parseTime(r["deletedAt"])
		if d.IsZero() {
			d = b.opts.Now().UTC()
		}
		spec.DeletedAt = &d
	}
	b.expiry(r, subject, &spec)
	kp := KeyPlan{CRSID: id}
	spec.Rules.Limits = b.limits(r, subject)
	b.rules(r, subject, &spec, &kp)
	if spec.Rules.Limits.CostTotalUSD != nil {
		kp.SpentTotalMicro = int64(math.Round(b.ds.KeyCostTotal[id] * 1e6))
	}
	kp.Spec = spec
	kp.Usage = b.keyUsage(id, subject)
	return kp, true
}

func (b *builder) expiry(r Record, subject string, spec *store.LegacyKeySpec) {
	if r["expirationMode"] == "activation" && r["isActivated"] != "true" {
		n, _ := strconv.Atoi(r["activationDays"])
		unit := 24 * time.Hour
		if r["activationUnit"] == "hours" {
			unit = time.Hour
		}
		if n <= 0 {
			spec.Disabled = true
			b.p.note(NoteStricter, subject, "expires at first use (activation period 0): imported disabled")
			return
		}
		spec.ExpiresAfter = time.Duration(n) * unit
		return
	}
	if t := parseTime(r["expiresAt"]); !t.IsZero() {
		spec.ExpiresAt = &t
	}
	if r["expirationMode"] == "activation" {
		spec.ActivatedAt = parseTimePtr(r["activatedAt"])
	}
}

// limits maps CRS's per-key limits onto claude-relay's fixed UTC windows.
func (b *builder) limits(r Record, subject string) store.KeyLimits {
	var l store.KeyLimits
	f := func(field string) float64 { v, _ := strconv.ParseFloat(r[field], 64); return v }
	setInt := func(dst **int64, v int64) {
		if *dst == nil || v < **dst {
			*dst = &v
		}
	}
	setUSD := func(dst **float64, v float64) {
		if *dst == nil || v < **dst {
			*dst = &v
		}
	}
	if c := int64(f("concurrencyLimit")); c > 0 {
		setInt(&l.Concurrency, c)
	}
	if c := f("dailyCostLimit"); c > 0 {
		setUSD(&l.CostPerDayUSD, c)
		b.p.note(NoteDiffers, subject, "dailyCostLimit → cost_per_day_usd: the day now starts at 00:00 UTC, not 00:00 UTC%+d", b.p.TimezoneOffset)
	}
	if c := f("totalCostLimit"); c > 0 {
		setUSD(&l.CostTotalUSD, c)
	}
	if c := f("weeklyOpusCostLimit"); c > 0 {
		setUSD(&l.CostPerWeekUSD, c)
		b.p.note(NoteDiffers, subject, "weeklyOpusCostLimit (Claude models: everything claude-relay relays) → cost_per_week_usd: the week now starts Monday 00:00 UTC")
	}
	w := int64(f("rateLimitWindow"))
	reqs, toks, cost := int64(f("rateLimitRequests")), int64(f("tokenLimit")), f("rateLimitCost")
	if w <= 0 {
		if reqs > 0 || toks > 0 || cost > 0 {
			b.p.note(NoteSkipped, subject, "rate limits without a rateLimitWindow (CRS does not enforce them either)")
		}
		return l
	}
	if reqs > 0 {
		switch {
		case w == 1:
			setInt(&l.RequestsPerMinute, reqs)
		case w < 1440 && reqs >= w:
			setInt(&l.RequestsPerMinute, reqs/w)
			b.p.note(NoteStricter, subject, "%d requests per %d min → requests_per_minute %d", reqs, w, reqs/w)
		case w <= 1440:
			setInt(&l.RequestsPerDay, reqs)
			if w < 1440 {
				b.p.note(NoteStricter, subject, "%d requests per %d min → requests_per_day %d", reqs, w, reqs)
			}
		default:
			setInt(&l.RequestsPerDay, max(1, reqs*1440/w))
			b.p.note(NoteStricter, subject, "%d requests per %d min → requests_per_day %d (the longest request window)", reqs, w, max(1, reqs*1440/w))
		}
	}
	if toks > 0 {
		switch {
		case w == 1:
			setInt(&l.TokensPerMinute, toks)
		case w <= 1440:
			setInt(&l.TokensPerDay, toks)
			if w < 1440 {
				b.p.note(NoteStricter, subject, "tokenLimit %d per %d min → tokens_per_day %d", toks, w, toks)
			}
		default:
			setInt(&l.TokensPerDay, max(1, toks*1440/w))
			b.p.note(NoteStricter, subject, "tokenLimit %d per %d min → tokens_per_day %d (the longest token window)", toks, w, max(1, toks*1440/w))
		}
		if cost > 0 {
			b.p.note(NoteSkipped, subject, "rateLimitCost (CRS ignores it when tokenLimit is set)")
		}
	} else if cost > 0 {
		switch {
		case w <= 1440:
			setUSD(&l.CostPerDayUSD, cost)
		case w <= 7*1440:
			setUSD(&l.CostPerWeekUSD, cost)
		case w <= 28*1440:
			setUSD(&l.CostPerMonthUSD, cost)
		default:
			setUSD(&l.CostPerMonthUSD, cost*28*1440/float64(w))
		}
		if w != 1440 && w != 7*1440 {
			b.p.note(NoteStricter, subject, "rateLimitCost $%g per %d min → the next longer cost window", cost, w)
		}
	}
	return l
}

// rules maps model and client restrictions, permissions and the account binding.
func (b *builder) rules(r Record, subject string, spec *store.LegacyKeySpec, kp *KeyPlan) {
	if perms := permissions(r["permissions"]); len(perms) > 0 && !slices.Contains(perms, "claude") {
		spec.Disabled = true
		b.p.note(NoteStricter, subject, "permissions %v exclude Claude: imported disabled", perms)
	}
	if r["enableModelRestriction"] == "true" {
		var models []string
		_ = json.Unmarshal([]byte(r["restrictedModels"]), &models)
		spec.Rules.DeniedModels = nonEmpty(models)
	}
	if r["enableClientRestriction"] == "true" {
		var clients []string
		_ = json.Unmarshal([]byte(r["allowedClients"]), &clients)
		var dropped []string
		for _, c := range clients {
			if c == "claude_code" {
				spec.Rules.AllowedClients = append(spec.Rules.AllowedClients, "claude_code")
			} else {
				dropped = append(dropped, c)
			}
		}
		if len(dropped) > 0 {
			b.p.note(NoteSkipped, subject, "allowed clients %v (they use other platforms' endpoints)", dropped)
		}
		if len(clients) > 0 && len(spec.Rules.AllowedClients) == 0 {
			spec.Disabled = true
			b.p.note(NoteStricter, subject, "no allowed client can reach Claude: imported disabled")
		}
	}
	bound := r["claudeAccountId"]
	if bound == "" {
		bound = r["claudeConsoleAccountId"]
	}
	switch {
	case strings.HasPrefix(bound, "group:"):
		gid := strings.TrimPrefix(bound, "group:")
		if name, ok := b.groupName[gid]; ok {
			spec.Rules.Binding.Group = name
		} else {
			spec.Disabled = true
			b.p.note(NoteStricter, subject, "bound to a group that is not imported: imported disabled")
		}
	case bound != "":
		if src, ok := b.accounts[bound]; ok {
			kp.BindAccount = src
		} else {
			spec.Disabled = true
			b.p.note(NoteStricter, subject, "bound to an account that is not imported: imported disabled")
		}
	case r["bedrockAccountId"] != "":
		spec.Disabled = true
		b.p.note(NoteStricter, subject, "bound to a Bedrock account: imported disabled")
	}
	if v := r["serviceRates"]; v != "" && v != "{}" {
		b.p.note(NoteDiffers, subject, "serviceRates (cost multipliers) not carried: claude-relay counts the upstream's price")
	}
}

func (b *builder) tags(raw string) []string {
	var tags []string
	if json.Unmarshal([]byte(raw), &tags) != nil {
		return nil
	}
	var out []string
	for _, t := range tags {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		n := indexName(t, "crs-tag-"+short(fmt.Sprintf("%x", hashString(t))))
		if n != t {
			b.p.note(NoteDiffers, fmt.Sprintf("%q → %s", t, n), "tag renamed: claude-relay tags are 1 to 64 of A-Z a-z 0-9 . _ : -")
		}
		out = append(out, n)
	}
	return out
}

// keyUsage turns a key's daily hashes into usage records on UTC days, plus its all-time
// usage from before the daily history as a total-only record.
func (b *builder) keyUsage(id, subject string) []store.UsageRecord {
	var out []store.UsageRecord
	var sum store.Usage
	priced := 0
	hours := hoursByDay(b.ds.KeyHours[id])
	cost := func(model string, cu Usage, u *store.Usage) {
		switch {
		case cu.HasRealCost:
			u.CostMicroUSD = cu.RealCostMicro
		case cu.HasRatedCost:
			u.CostMicroUSD = cu.RatedCostMicro
		default:
			u.CostMicroUSD = b.price(model, *u)
			priced++
		}
	}
	for _, d := range b.ds.KeyDays[id] {
		b.p.KeyDays++
		if hs := hours[[2]string{d.Model, d.Date}]; covers(hs, d.Usage) {
			b.p.DaysByHour++
			for _, h := range hs {
				u := storeUsage(h.Usage)
				cost(d.Model, h.Usage, &u)
				out = append(out, store.UsageRecord{Model: d.Model, At: b.utcHour(h.Date, h.Hour), Usage: u})
				sum = sum.Add(u)
			}
			continue
		}
		u := storeUsage(d.Usage)
		cost(d.Model, d.Usage, &u)
		out = append(out, store.UsageRecord{Model: d.Model, At: b.utcDay(d.Date), Usage: u})
		sum = sum.Add(u)
	}
	if priced > 0 {
		b.p.note(NoteDiffers, subject, "daily usage without a recorded cost (an older CRS) priced with claude-relay's price table")
	}
	all, ok := b.ds.KeyAllTime[id]
	if !ok {
		return out
	}
	total := storeUsage(all)
	if c, ok := b.ds.KeyRealCostTotal[id]; ok {
		total.CostMicroUSD = int64(math.Round(c * 1e6))
	} else if c, ok := b.ds.KeyCostTotal[id]; ok {
		total.CostMicroUSD = int64(math.Round(c * 1e6))
	} else {
		total.CostMicroUSD = sum.CostMicroUSD
	}
	rest := store.Usage{
		Requests: max(0, total.Requests-sum.Requests), InputTokens: max(0, total.InputTokens-sum.InputTokens),
		OutputTokens: max(0, total.OutputTokens-sum.OutputTokens), CacheWrite5m: max(0, total.CacheWrite5m-sum.CacheWrite5m),
		CacheWrite1h: max(0, total.CacheWrite1h-sum.CacheWrite1h), CacheRead: max(0, total.CacheRead-sum.CacheRead),
		CostMicroUSD: max(0, total.CostMicroUSD-sum.CostMicroUSD),
	}
	if rest != (store.Usage{}) {
		out = append(out, store.UsageRecord{TotalOnly: true, Usage: rest})
	}
	return out
}

// accountUsage turns an account's daily hashes into usage records on UTC days, priced per
// model from its per-model days (CRS keeps no account cost).
func (b *builder) accountUsage(id string) []store.UsageRecord {
	cost := map[string]int64{}
	for _, d := range b.ds.AccountModelDays[id] {
		cost[d.Date] += b.price(d.Model, storeUsage(d.Usage))
	}
	hours := hoursByDay(b.ds.AccountHours[id])
	var out []store.UsageRecord
	for _, d := range b.ds.AccountDays[id] {
		b.p.AccountDays++
		day := storeUsage(d.Usage)
		hs := hours[[2]string{"", d.Date}]
		if !covers(hs, d.Usage) {
			day.CostMicroUSD = cost[d.Date]
			out = append(out, store.UsageRecord{At: b.utcDay(d.Date), Usage: day})
			continue
		}
		b.p.DaysByHour++
		// The day's cost, shared out over its hours by tokens.
		left, tokens := cost[d.Date], total(day)
		for i, h := range hs {
			u := storeUsage(h.Usage)
			if i == len(hs)-1 || tokens == 0 {
				u.CostMicroUSD = left
			} else {
				u.CostMicroUSD = cost[d.Date] * total(u) / tokens
			}
			left -= u.CostMicroUSD
			out = append(out, store.UsageRecord{At: b.utcHour(h.Date, h.Hour), Usage: u})
		}
	}
	return out
}

func total(u store.Usage) int64 {
	return u.InputTokens + u.OutputTokens + u.CacheWrite5m + u.CacheWrite1h + u.CacheRead
}

// hoursByDay groups hourly hashes by model and CRS day.
func hoursByDay(hours []HourUsage) map[[2]string][]HourUsage {
	m := map[[2]string][]HourUsage{}
	for _, h := range hours {
		k := [2]string{h.Model, h.Date}
		m[k] = append(m[k], h)
	}
	return m
}

// covers reports whether hourly hashes add up to their day exactly (none expired, none
// missing), so the day can be split by hour.
func covers(hours []HourUsage, day Usage) bool {
	if len(hours) == 0 {
		return false
	}
	var s Usage
	for _, h := range hours {
		u := h.Usage
		s.Requests += u.Requests
		s.Input += u.Input
		s.Output += u.Output
		s.CacheCreate += u.CacheCreate
		s.CacheRead += u.CacheRead
		s.Ephemeral5m += u.Ephemeral5m
		s.Ephemeral1h += u.Ephemeral1h
		s.RealCostMicro += u.RealCostMicro
		s.RatedCostMicro += u.RatedCostMicro
	}
	s.HasRealCost, s.HasRatedCost = day.HasRealCost, day.HasRatedCost
	return s == day
}

// utcHour is the instant a CRS-local hour of date starts.
func (b *builder) utcHour(date string, hour int) time.Time {
	d, err := time.Parse(time.DateOnly, date)
	if err != nil {
		return time.Time{}
	}
	return d.Add(time.Duration(hour-b.p.TimezoneOffset) * time.Hour)
}

func (b *builder) price(model string, u store.Usage) int64 {
	if b.opts.Pricer == nil {
		return 0
	}
	pr, _ := b.opts.Pricer.Price(model)
	// u is a day of many requests: the long-context tier prices one request by its own
	// prompt, which a day's total does not tell, so the day is priced at standard rates.
	pr.LongContext = config.PriceTier{}
	usd := pr.Cost(config.TokenCounts{Input: u.InputTokens, Output: u.OutputTokens, CacheWrite5m: u.CacheWrite5m, CacheWrite1h: u.CacheWrite1h, CacheRead: u.CacheRead})
	return int64(math.Round(usd * 1e6))
}

// utcDay is the UTC day holding most of the CRS-local day date: the one its noon falls on.
func (b *builder) utcDay(date string) time.Time {
	d, err := time.Parse(time.DateOnly, date)
	if err != nil {
		return time.Time{}
	}
	return d.Add(12*time.Hour - time.Duration(b.p.TimezoneOffset)*time.Hour).Truncate(24 * time.Hour)
}

// storeUsage converts CRS counters: cache writes of unknown duration count as 5-minute ones
// (the default), as older CRS versions did not split them.
func storeUsage(u Usage) store.Usage {
	return store.Usage{
		Requests: u.Requests, InputTokens: u.Input, OutputTokens: u.Output,
		CacheWrite1h: u.Ephemeral1h, CacheWrite5m: max(u.Ephemeral5m, u.CacheCreate-u.Ephemeral1h), CacheRead: u.CacheRead,
	}
}

// --- small helpers ---

func orID(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func short(id string) string {
	id = strings.ReplaceAll(id, "-", "")
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func hashString(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

var invalidIndexRun = regexp.MustCompile(`[^A-Za-z0-9._:-]+`)

// indexName makes s a valid claude-relay index name (tag, group), else returns fallback.
func indexName(s, fallback string) string {
	if store.ValidIndexName(s) {
		return s
	}
	n := strings.Trim(invalidIndexRun.ReplaceAllString(s, "-"), "-")
	if len(n) > 64 {
		n = n[:64]
	}
	if !store.ValidIndexName(n) || len(n) < 2 {
		return fallback
	}
	return n
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.UnixMilli(ms).UTC()
		}
		return time.Time{}
	}
	return t.UTC()
}

func parseTimePtr(s string) *time.Time {
	t := parseTime(s)
	if t.IsZero() {
		return nil
	}
	return &t
}

func parseMillis(s string) *time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return nil
	}
	return millis(ms)
}

func millis(ms int64) *time.Time {
	if ms <= 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

func priority(r Record) int {
	p, err := strconv.Atoi(r["priority"])
	if err != nil || p < 0 {
		return 50 // CRS's default
	}
	return p
}

func accountName(r Record) string {
	n := strings.TrimSpace(r["name"])
	if n == "" {
		n = "CRS account " + short(r["id"])
	}
	if len(n) > 200 {
		n = n[:200]
	}
	return n
}

func nonEmpty(list []string) []string {
	var out []string
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// permissions reads CRS's permissions field: a JSON array, "all", a comma list or one name;
// empty means every service.
func permissions(raw string) []string {
	raw = strings.TrimSpace(raw)
	if raw == "" || raw == "all" {
		return nil
	}
	var list []string
	if strings.HasPrefix(raw, "[") && json.Unmarshal([]byte(raw), &list) == nil {
		return nonEmpty(list)
	}
	return nonEmpty(strings.Split(raw, ","))
}

// oauthBase is the base URL of CRS's CLAUDE_API_URL (which ends in /v1/messages).
func oauthBase(apiURL string) (string, error) {
	base := strings.TrimSuffix(strings.TrimRight(apiURL, "/"), "/v1/messages")
	if _, err := url.ParseRequestURI(base); err != nil {
		return "", fmt.Errorf("--crs-claude-api-url %q: %w", apiURL, err)
	}
	return base, nil
}

// consoleBase reads a console account's apiUrl, a base URL or one already ending in
// /v1/messages (CRS accepts both).
func consoleBase(apiURL string) (string, error) {
	base := strings.TrimRight(strings.TrimSpace(apiURL), "/")
	base = strings.TrimRight(strings.TrimSuffix(base, "/v1/messages"), "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return "", fmt.Errorf("apiUrl %q is not an http(s) base URL", apiURL)
	}
	return base, nil
}

// proxyURL turns CRS's proxy JSON ({type, host, port, username, password}) into a URL;
// socks5 resolves names at the proxy, as CRS's socks5h agent did.
func proxyURL(raw string) (string, error) {
	if raw == "" || raw == "null" {
		return "", nil
	}
	var p struct {
		Type     string          `json:"type"`
		Host     string          `json:"host"`
		Port     json.RawMessage `json:"port"`
		Username string          `json:"username"`
		Password string          `json:"password"`
	}
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return "", fmt.Errorf("proxy is not CRS proxy JSON")
	}
	port := strings.Trim(string(p.Port), `"`)
	if p.Type == "" || p.Host == "" || port == "" {
		return "", nil // CRS ignores an incomplete proxy too
	}
	scheme := p.Type
	switch p.Type {
	case "socks5":
		scheme = "socks5h"
	case "http", "https":
	default:
		return "", fmt.Errorf("proxy type %q is not http, https or socks5", p.Type)
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(p.Host, port)}
	if p.Username != "" && p.Password != "" {
		u.User = url.UserPassword(p.Username, p.Password)
	}
	if _, err := store.ProxyHint(u.String()); err != nil {
		return "", err
	}
	return u.String(), nil
}

type models struct {
	rename    map[string]string
	allowOnly bool
}

// modelMap reads supportedModels: an object maps request models to upstream ones (identity
// entries only allow), an array allows.
func modelMap(raw string) models {
	var m models
	var obj map[string]string
	if json.Unmarshal([]byte(raw), &obj) == nil {
		for from, to := range obj {
			if to != "" && to != from {
				if m.rename == nil {
					m.rename = map[string]string{}
				}
				m.rename[from] = to
			} else {
				m.allowOnly = true
			}
		}
		return m
	}
	var list []string
	if json.Unmarshal([]byte(raw), &list) == nil && len(list) > 0 {
		m.allowOnly = true
	}
	return m
}
