package config

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Block type names, as the operator writes them.
const (
	blockServer          = "server"
	blockUsage           = "usage"
	blockAllowlist       = "allowlist"
	blockPolicy          = "policy"
	blockPool            = "pool"
	blockRoute           = "route"
	blockPricing         = "pricing"
	blockPricingFallback = "pricing_fallback"
	blockAlert           = "alert"
)

// attrPricingDefaults is the top-level attribute that, set to false, replaces
// the built-in price table instead of adding to it.
const attrPricingDefaults = "pricing_defaults"

// location names the part of a configuration a problem is about, in terms
// that both an HCL source (which turns it into a range) and a wire snapshot
// (which turns it into text) can resolve.
type location struct {
	block string // block type
	label string // block label; "" for unlabelled blocks
	// attr is the attribute name, "" for the block's label itself, or
	// "attr.key" for a key inside an object attribute.
	attr  string
	index int // element of a list attribute; -1 for the whole attribute
}

func at(block, label, attr string) location {
	return location{block: block, label: label, attr: attr, index: -1}
}

func atElem(block, label, attr string, i int) location {
	return location{block: block, label: label, attr: attr, index: i}
}

func (l location) String() string {
	var b strings.Builder
	b.WriteString(l.block)
	if l.label != "" {
		fmt.Fprintf(&b, " %q", l.label)
	}
	if l.attr != "" {
		b.WriteString(" ")
		b.WriteString(l.attr)
		if l.index >= 0 {
			fmt.Fprintf(&b, "[%d]", l.index)
		}
	}
	return b.String()
}

// problem is one validation failure.
type problem struct {
	at      location
	summary string
	detail  string
}

func (p problem) Error() string {
	return fmt.Sprintf("%s: %s", p.at, lowerFirst(strings.TrimSuffix(p.detail, ".")))
}

func lowerFirst(s string) string {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return s
	}
	return string(s[0]+('a'-'A')) + s[1:]
}

// validate checks the rules a snapshot must satisfy whichever way it was
// built. Load runs it on what it decoded (and maps each problem back to a
// source range); Compile runs it on snapshots that arrived over the wire.
// Problems are returned in a deterministic order.
func validate(s *Snapshot) []problem {
	v := &validator{}
	v.server(s.Server)
	for _, name := range slices.Sorted(maps.Keys(s.Allowlists)) {
		v.allowlist(name, s.Allowlists[name])
	}
	for _, name := range slices.Sorted(maps.Keys(s.Policies)) {
		v.policy(name, s.Policies[name])
	}
	for _, name := range slices.Sorted(maps.Keys(s.Pools)) {
		v.pool(name, s.Pools[name])
	}
	v.routes(s)
	seen := make(map[string]bool, len(s.Pricing))
	for _, p := range s.Pricing {
		if p.Model == "" {
			v.add(at(blockPricing, "", ""), "Invalid pricing label", "A pricing block needs a model glob as its label, such as \"claude-sonnet-4-5*\".")
		} else if seen[p.Model] {
			v.add(at(blockPricing, p.Model, ""), "Duplicate pricing block", fmt.Sprintf("Model glob %q is priced twice.", p.Model))
		}
		seen[p.Model] = true
		v.price(at(blockPricing, p.Model, ""), p)
	}
	v.price(at(blockPricingFallback, "", ""), s.Fallback)
	for _, name := range slices.Sorted(maps.Keys(s.Alerts)) {
		v.alert(name, s.Alerts[name])
	}
	if s.Usage != nil {
		v.usage(*s.Usage)
	}
	return v.problems
}

type validator struct{ problems []problem }

func (v *validator) add(l location, summary, detail string) {
	v.problems = append(v.problems, problem{at: l, summary: summary, detail: detail})
}

func (v *validator) server(s Server) {
	for i, c := range s.TrustedProxies {
		if _, err := ParsePrefix(c); err != nil {
			v.add(atElem(blockServer, "", "trusted_proxies", i), "Invalid CIDR", err.Error()+".")
		}
	}
	if s.MaxBodyBytes <= 0 {
		v.add(at(blockServer, "", "max_body_bytes"), "Invalid body size", fmt.Sprintf("max_body_bytes must be a positive number of bytes, got %d.", s.MaxBodyBytes))
	}
	for i, h := range s.ResponseHeaders {
		if err := checkResponseHeader(h); err != nil {
			v.add(atElem(blockServer, "", "response_headers", i), "Invalid response header", err.Error()+".")
		}
	}
}

func (v *validator) allowlist(name string, a Allowlist) {
	if len(a.CIDRs) == 0 {
		v.add(at(blockAllowlist, name, "cidrs"), "Empty allowlist", "An allowlist must list at least one address or CIDR prefix; a route without an allowlist admits every client.")
	}
	for i, c := range a.CIDRs {
		if _, err := ParsePrefix(c); err != nil {
			v.add(atElem(blockAllowlist, name, "cidrs", i), "Invalid CIDR", err.Error()+".")
		}
	}
}

func (v *validator) policy(name string, p Policy) {
	for d := range Limits() {
		if d.Negative(&p) {
			v.add(at(blockPolicy, name, d.Name), "Negative limit", fmt.Sprintf("%s must be 0 (unlimited) or positive, got %v.", d.Name, d.Value(&p)))
		}
	}
	if p.QueueMax < 0 {
		v.add(at(blockPolicy, name, "queue_max"), "Negative limit", fmt.Sprintf("queue_max must be 0 (unlimited) or positive, got %v.", p.QueueMax))
	}
	v.duration(at(blockPolicy, name, "queue_timeout"), p.QueueTimeout, false)
	if p.QueueTimeout != "" && p.Concurrency == 0 {
		v.add(at(blockPolicy, name, "queue_timeout"), "Queue without concurrency", "queue_timeout makes requests wait for a concurrency slot; set concurrency too, or remove queue_timeout.")
	}
	v.queueKeepalive(name, p)
	v.limitModes(name, p)
	for i, m := range p.DeniedModels {
		if m == "" {
			v.add(atElem(blockPolicy, name, "denied_models", i), "Invalid model glob", "A model glob must not be empty.")
		}
	}
	for i, c := range p.Clients {
		if c == "" {
			v.add(atElem(blockPolicy, name, "clients", i), "Invalid client pattern", "A client pattern must not be empty: name a known client (claude_code, anthropic_sdk) or a User-Agent glob such as \"claude-cli/*\".")
		}
	}
	for i, m := range p.Models {
		if m == "" {
			v.add(atElem(blockPolicy, name, "models", i), "Invalid model glob", "A model glob must not be empty.")
		}
	}
}

// limitModes checks a policy's limit_mode and limit_modes: known modes, and only limits
// that count tokens or cost (requests are counted at admission, exact in any mode).
func (v *validator) limitModes(name string, p Policy) {
	modes := LimitModes()
	if p.LimitMode != "" && !slices.Contains(modes, p.LimitMode) {
		v.add(at(blockPolicy, name, "limit_mode"), "Unknown limit mode", fmt.Sprintf("limit_mode %q is not one of %s.", p.LimitMode, quoteList(modes)))
	}
	budgets := BudgetLimits()
	for _, attr := range slices.Sorted(maps.Keys(p.LimitModes)) {
		mode := p.LimitModes[attr]
		switch {
		case !slices.Contains(budgets, attr):
			v.add(at(blockPolicy, name, "limit_modes"), "Not a token or cost limit", fmt.Sprintf("limit_modes names %q; a mode applies only to token and cost limits (%s): requests are counted when admitted and concurrency is a lease, both exact already.", attr, quoteList(budgets)))
		case !slices.Contains(modes, mode):
			v.add(at(blockPolicy, name, "limit_modes"), "Unknown limit mode", fmt.Sprintf("limit_modes.%s = %q is not one of %s.", attr, mode, quoteList(modes)))
		}
	}
}

var strategies = []string{StrategyStickyLeastLoaded, StrategyLeastLoaded, StrategyPriority, StrategyRoundRobin}

var parkModes = []string{ParkOn429ResetHeader, ParkOn429Fixed}

func (v *validator) pool(name string, p Pool) {
	if !slices.Contains(strategies, p.Strategy) {
		v.add(at(blockPool, name, "strategy"), "Unknown strategy", fmt.Sprintf("Strategy %q is not one of %s.", p.Strategy, quoteList(strategies)))
	}
	if p.FailoverMaxAttempts < 1 {
		v.add(at(blockPool, name, "failover.max_attempts"), "Invalid failover", fmt.Sprintf("failover.max_attempts counts every attempt, the first included, so it must be at least 1, got %d.", p.FailoverMaxAttempts))
	}
	for i, code := range p.FailoverOn {
		if code < 400 || code > 599 {
			v.add(atElem(blockPool, name, "failover.on", i), "Invalid failover status", fmt.Sprintf("failover.on lists upstream error statuses (400-599), got %d.", code))
		}
	}
	if !slices.Contains(parkModes, p.ParkOn429) {
		v.add(at(blockPool, name, "park_on_429"), "Unknown park_on_429 mode", fmt.Sprintf("park_on_429 %q is not one of %s.", p.ParkOn429, quoteList(parkModes)))
	}
	v.duration(at(blockPool, name, "park_429_for"), p.Park429For, true)
	v.duration(at(blockPool, name, "sticky_ttl"), p.StickyTTL, true)
	v.duration(at(blockPool, name, "park_529_for"), p.Park529For, false)
	v.duration(at(blockPool, name, "park_5xx_window"), p.Park5xxWindow, false)
	v.duration(at(blockPool, name, "park_5xx_for"), p.Park5xxFor, false)
	v.duration(at(blockPool, name, "sticky_wait"), p.StickyWait, false)
	if u := p.StopAtUtilization; u < 0 || u > 1 || math.IsNaN(u) {
		v.add(at(blockPool, name, "stop_at_utilization"), "Invalid utilization", fmt.Sprintf("stop_at_utilization is a fraction of a subscription window (e.g. 0.9 stops at 90 %%), greater than 0 and at most 1, or 0 to never stop early; got %g.", u))
	}
	if p.Park5xxAfter < 0 {
		v.add(at(blockPool, name, "park_5xx_after"), "Negative limit", fmt.Sprintf("park_5xx_after must be 0 (never park on 5xx) or positive, got %d.", p.Park5xxAfter))
	}
}

// duration checks a Go duration string; an empty one is an error only when
// required.
// queueKeepalive checks queue_keepalive: a duration of at least MinQueueKeepalive, on a
// policy whose requests wait (queue_timeout).
func (v *validator) queueKeepalive(name string, p Policy) {
	if p.QueueKeepalive == "" {
		return
	}
	l := at(blockPolicy, name, "queue_keepalive")
	d, err := parseDuration(p.QueueKeepalive)
	switch {
	case err != nil:
		v.add(l, "Invalid duration", err.Error()+".")
	case d < MinQueueKeepalive:
		v.add(l, "Keep-alive too frequent", fmt.Sprintf("queue_keepalive must be at least %s (a ping every 10s-30s keeps proxies from closing an idle stream), got %s.", MinQueueKeepalive, p.QueueKeepalive))
	case p.QueueTimeout == "":
		v.add(l, "Keep-alive without a queue", "queue_keepalive sends ping events to streamed requests waiting for a concurrency slot; set queue_timeout (and concurrency) too, or remove queue_keepalive.")
	}
}

// MinQueueKeepalive is the shortest queue_keepalive a policy may set.
const MinQueueKeepalive = 100 * time.Millisecond

func (v *validator) duration(l location, s string, required bool) {
	if s == "" && !required {
		return
	}
	if _, err := parseDuration(s); err != nil {
		v.add(l, "Invalid duration", err.Error()+".")
	}
}

func (v *validator) routes(s *Snapshot) {
	names := make(map[string]bool, len(s.Routes))
	claimed := make(map[string]string)
	for _, r := range s.Routes {
		if r.Name == "" {
			v.add(at(blockRoute, "", ""), "Invalid route name", "A route block needs a name as its label.")
		} else if names[r.Name] {
			v.add(at(blockRoute, r.Name, ""), "Duplicate route", fmt.Sprintf("Route %q is declared twice.", r.Name))
			continue
		}
		names[r.Name] = true
		if len(r.Paths) == 0 {
			v.add(at(blockRoute, r.Name, "paths"), "Route without paths", "A route must claim at least one path, such as \"/v1/messages\".")
		}
		for i, p := range r.Paths {
			l := atElem(blockRoute, r.Name, "paths", i)
			if err := checkPath(p); err != nil {
				v.add(l, "Invalid path", err.Error()+".")
				continue
			}
			if other, ok := claimed[p]; ok {
				if other == r.Name {
					v.add(l, "Duplicate path", fmt.Sprintf("Path %q is listed twice in this route.", p))
				} else {
					v.add(l, "Path claimed by two routes", fmt.Sprintf("Path %q is already claimed by route %q; a path belongs to exactly one route.", p, other))
				}
				continue
			}
			claimed[p] = r.Name
		}
		for i, m := range r.Methods {
			if !isToken(m) || strings.ToUpper(m) != m {
				v.add(atElem(blockRoute, r.Name, "methods", i), "Invalid method", fmt.Sprintf("%q is not an upper-case HTTP method such as \"POST\".", m))
			}
		}
		v.reference(r.Name, "pool", r.Pool, true, slices.Sorted(maps.Keys(s.Pools)))
		v.reference(r.Name, "allowlist", r.Allowlist, false, slices.Sorted(maps.Keys(s.Allowlists)))
		v.reference(r.Name, "policy", r.Policy, false, slices.Sorted(maps.Keys(s.Policies)))
		v.duration(at(blockRoute, r.Name, "timeout"), r.Timeout, false)
	}
}

func (v *validator) reference(route, kind, name string, required bool, known []string) {
	if name == "" && !required {
		return
	}
	if slices.Contains(known, name) {
		return
	}
	detail := fmt.Sprintf("There is no %s named %q", kind, name)
	if len(known) == 0 {
		detail += fmt.Sprintf("; no %s block is declared.", kind)
	} else {
		detail += fmt.Sprintf("; declared: %s.", quoteList(known))
	}
	v.add(at(blockRoute, route, kind), "Unknown "+kind, detail)
}

func (v *validator) price(l location, p Price) {
	fields := []struct {
		name string
		val  float64
	}{
		{"input", p.Input}, {"output", p.Output}, {"cache_write_5m", p.CacheWrite5m},
		{"cache_write_1h", p.CacheWrite1h}, {"cache_read", p.CacheRead},
	}
	if t := p.LongContext; t != (PriceTier{}) {
		if t.AboveInputTokens <= 0 {
			tl := l
			tl.attr = "long_context.above_input_tokens"
			v.add(tl, "Invalid long-context threshold", fmt.Sprintf("above_input_tokens must be a positive number of prompt tokens, such as 200000, got %d.", t.AboveInputTokens))
		}
		fields = append(fields, []struct {
			name string
			val  float64
		}{
			{"long_context.input", t.Input}, {"long_context.output", t.Output}, {"long_context.cache_write_5m", t.CacheWrite5m},
			{"long_context.cache_write_1h", t.CacheWrite1h}, {"long_context.cache_read", t.CacheRead},
		}...)
	}
	for _, f := range fields {
		if f.val < 0 {
			fl := l
			fl.attr = f.name
			v.add(fl, "Negative price", fmt.Sprintf("%s must be 0 or more USD per million tokens, got %v.", f.name, f.val))
		}
	}
}

// checkPath accepts "/exact/path" and "/prefix/*".
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q must start with \"/\"", p)
	}
	if i := strings.IndexByte(p, '*'); i >= 0 && (i != len(p)-1 || !strings.HasSuffix(p, "/*")) {
		return fmt.Errorf("path %q may only use \"*\" as a final \"/*\" segment, which matches any suffix", p)
	}
	if strings.ContainsAny(p, "?# \t") {
		return fmt.Errorf("path %q must not contain a query, fragment or spaces", p)
	}
	// A route path must be one a request can have: requests are refused otherwise.
	fixed := strings.TrimSuffix(p, "*")
	if err := CheckRequestPath(fixed, fixed); err != nil {
		return fmt.Errorf("path %q cannot match any request: the relay refuses request paths with dot segments or characters other than letters, digits and - . _ ~ : @ /", p)
	}
	return nil
}

// isToken reports whether s is a non-empty HTTP token (RFC 9110 tchar).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ParsePrefix parses a CIDR prefix or a bare address (which becomes a /32 or
// /128) and returns it in canonical form: masked, and with IPv4-mapped IPv6
// prefixes turned into IPv4 ones so they match unmapped client addresses.
func ParsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix such as \"10.0.0.0/8\" or \"2001:db8::/32\"", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix such as \"10.0.0.0/8\"", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q must not carry an IPv6 zone", s)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// usage checks the retentions of the usage block: at least the bucket they keep, and hours
// kept no longer than days.
func (v *validator) usage(u Usage) {
	hourly, daily := DefaultHourlyRetention, DefaultDailyRetention
	for _, r := range []struct {
		name, val string
		dst       *time.Duration
		min       time.Duration
	}{{"hourly_retention", u.HourlyRetention, &hourly, time.Hour}, {"daily_retention", u.DailyRetention, &daily, 24 * time.Hour}} {
		if r.val == "" {
			continue
		}
		d, err := ParseRetention(r.val)
		switch {
		case err != nil:
			v.add(at(blockUsage, "", r.name), "Invalid retention", err.Error()+".")
		case d < r.min:
			v.add(at(blockUsage, "", r.name), "Retention too short", fmt.Sprintf("%s must be at least %s, got %q.", r.name, shortDuration(r.min), r.val))
		default:
			*r.dst = d
		}
	}
	if u.LedgerRetention != "" {
		if d, err := ParseRetention(u.LedgerRetention); err != nil {
			v.add(at(blockUsage, "", "ledger_retention"), "Invalid retention", err.Error()+".")
		} else if d < time.Hour {
			v.add(at(blockUsage, "", "ledger_retention"), "Retention too short", fmt.Sprintf("ledger_retention must be at least 1h, got %q.", u.LedgerRetention))
		}
	}
	if u.LedgerMaxRecordsPerDay < 0 || u.LedgerMaxRecordsPerDay > MaxLedgerRecordsPerDay {
		v.add(at(blockUsage, "", "ledger_max_records_per_day"), "Invalid ledger size", fmt.Sprintf("ledger_max_records_per_day must be 1 to %d, got %d.", MaxLedgerRecordsPerDay, u.LedgerMaxRecordsPerDay))
	}
	if hourly > daily {
		v.add(at(blockUsage, "", "hourly_retention"), "Hours kept longer than days", fmt.Sprintf("hourly_retention (%s) must not be longer than daily_retention (%s): a day report would miss days an hour report still has.", shortDuration(hourly), shortDuration(daily)))
	}
}

// MaxLedgerRecordsPerDay bounds ledger_max_records_per_day (about 2.5 GB of Redis a day).
const MaxLedgerRecordsPerDay = 10_000_000

// ParseRetention parses a retention: a positive Go duration ("840h") or whole days ("35d").
func ParseRetention(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 100*366 {
			return 0, fmt.Errorf("%q is not a retention such as \"35d\" or \"840h\"", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a retention such as \"35d\" or \"840h\"", s)
	}
	return d, nil
}

// parseDuration parses a positive Go duration.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"90s\", \"10m\" or \"1h\"", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", s)
	}
	return d, nil
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
