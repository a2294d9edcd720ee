package config

import "time"

// Snapshot is the compiled configuration as it travels on the wire: plain
// values with stable snake_case JSON names and no HCL in sight. Load produces
// it from the operator's files; the control plane versions it and serves it to
// sidecars, which turn it into a Runtime with Compile. A Snapshot is treated as
// immutable once built: nothing in this package modifies one it was given.
type Snapshot struct {
	Server     Server               `json:"server"`
	Allowlists map[string]Allowlist `json:"allowlists,omitempty"`
	Policies   map[string]Policy    `json:"policies,omitempty"`
	Pools      map[string]Pool      `json:"pools,omitempty"`
	// Routes are kept in declaration order.
	Routes []Route `json:"routes"`
	// Pricing is kept in declaration order: the first glob that matches a
	// model wins.
	Pricing  []Price `json:"pricing,omitempty"`
	Fallback Price   `json:"pricing_fallback"`
	// Alerts are the alert destinations, by block label. Only the control plane acts on
	// them; their secrets are variable names (see Secret).
	Alerts map[string]Alert `json:"alerts,omitempty"`
	// Usage sets how long usage report buckets are kept; nil keeps the defaults.
	Usage *Usage `json:"usage,omitempty"`
}

// Usage is the usage block: how long the report buckets of GET /admin/usage live. Each is
// a retention ("840h", or whole days such as "35d"); empty keeps the default (35 days of
// hours, 400 days of days).
type Usage struct {
	HourlyRetention string `json:"hourly_retention,omitempty"`
	DailyRetention  string `json:"daily_retention,omitempty"`
	// Ledger turns on the request ledger (GET /admin/requests): one metadata record per
	// relayed request, kept LedgerRetention after its day (default 7d) and at most
	// LedgerMaxRecordsPerDay a day (default 1,000,000; the oldest trimmed first).
	Ledger                 bool   `json:"ledger,omitempty"`
	LedgerRetention        string `json:"ledger_retention,omitempty"`
	LedgerMaxRecordsPerDay int64  `json:"ledger_max_records_per_day,omitempty"`
}

// Server holds listener-wide settings.
type Server struct {
	// TrustedProxies are canonical prefixes whose X-Forwarded-For header is
	// honoured.
	TrustedProxies []string `json:"trusted_proxies"`
	// MaxBodyBytes caps request bodies; larger ones get a 413.
	MaxBodyBytes int64 `json:"max_body_bytes"`
	// ResponseHeaders are upstream response headers passed to clients beyond
	// DefaultResponseHeaders; a final "*" matches any suffix.
	ResponseHeaders []string `json:"response_headers,omitempty"`
}

// Allowlist is a named set of client networks.
type Allowlist struct {
	// CIDRs are canonical prefixes (bare addresses become /32 or /128).
	CIDRs []string `json:"cidrs"`
}

// Policy is a named set of per-key limits. A zero limit means unlimited.
type Policy struct {
	RequestsPerMinute int64   `json:"requests_per_minute"`
	TokensPerDay      int64   `json:"tokens_per_day"`
	CostPerDayUSD     float64 `json:"cost_per_day_usd"`
	Concurrency       int64   `json:"concurrency"`
	// Models are globs ("*" matches any run of characters); nil allows any
	// model.
	Models []string `json:"models,omitempty"`
	// RequestsPerDay caps requests per UTC day.
	RequestsPerDay int64 `json:"requests_per_day,omitempty"`
	// TokensPerMinute caps tokens (input, output and cache) per minute.
	TokensPerMinute int64 `json:"tokens_per_minute,omitempty"`
	// CostPerWeekUSD caps cost per ISO week (Monday 00:00 UTC).
	CostPerWeekUSD float64 `json:"cost_per_week_usd,omitempty"`
	// CostPerMonthUSD caps cost per UTC calendar month.
	CostPerMonthUSD float64 `json:"cost_per_month_usd,omitempty"`
	// CostTotalUSD caps the key's cost over its whole life.
	CostTotalUSD float64 `json:"cost_total_usd,omitempty"`
	// DeniedModels are globs refused even when Models allows them.
	DeniedModels []string `json:"denied_models,omitempty"`
	// Clients are the clients a key may use, each a known name (see
	// KnownClients) or a User-Agent glob; nil allows any client.
	Clients []string `json:"clients,omitempty"`
	// ConversationRequestsPerMinute, ConversationTokensPerMinute and
	// ConversationCostPerMinuteUSD cap one conversation of a key (the session
	// the scheduler keeps sticky: metadata.user_id's session, else the first
	// message) per minute: a breaker for a runaway agent. They are always
	// charged (LimitModeCharge), whatever LimitMode says.
	ConversationRequestsPerMinute int64   `json:"conversation_requests_per_minute,omitempty"`
	ConversationTokensPerMinute   int64   `json:"conversation_tokens_per_minute,omitempty"`
	ConversationCostPerMinuteUSD  float64 `json:"conversation_cost_per_minute_usd,omitempty"`
	// LimitMode is how the policy's token and cost limits hold: LimitModeCharge
	// (the default; "" means it) or LimitModeReserve.
	LimitMode string `json:"limit_mode,omitempty"`
	// LimitModes overrides LimitMode for single token or cost limits, by
	// attribute name ("cost_total_usd" → "reserve").
	LimitModes map[string]string `json:"limit_modes,omitempty"`
	// QueueTimeout is a Go duration: how long a request that finds the key's
	// concurrency full waits for a slot, in arrival order across sidecars,
	// before it is refused; "" (no queue) refuses it at once.
	QueueTimeout string `json:"queue_timeout,omitempty"`
	// QueueMax caps the requests of one key waiting at once; 0 leaves the
	// queue unbounded (QueueTimeout still bounds each wait).
	QueueMax int `json:"queue_max,omitempty"`
	// QueueKeepalive is a Go duration: a streamed request (`"stream": true`) that has
	// waited this long in the queue gets its stream opened (200, text/event-stream) and a
	// `ping` event, and another every QueueKeepalive while it waits; "" sends nothing while
	// it waits. Once the stream is open, a refusal is an SSE error event, not a status.
	QueueKeepalive string `json:"queue_keepalive,omitempty"`
}

// QueueKeepaliveEvery is the policy's queue_keepalive (0 when unset or invalid, which
// validation refuses).
func (p *Policy) QueueKeepaliveEvery() time.Duration {
	if p == nil || p.QueueKeepalive == "" {
		return 0
	}
	d, _ := parseDuration(p.QueueKeepalive)
	return d
}

// QueueWait is the policy's queue_timeout (0 when the policy has no queue or
// the value is invalid, which validation refuses).
func (p *Policy) QueueWait() time.Duration {
	if p == nil || p.QueueTimeout == "" {
		return 0
	}
	d, _ := parseDuration(p.QueueTimeout)
	return d
}

// How a token or cost limit holds under concurrent requests.
const (
	// LimitModeCharge admits a request while the limit's counter is below
	// its maximum and charges the reported usage when the request ends: no
	// request is refused for what it might cost, and the limit can be
	// overshot by what the requests in flight at the last admission cost.
	LimitModeCharge = "charge"
	// LimitModeReserve reserves the request's worst-case usage at admission,
	// in the script that checks the limit, and settles to the reported usage
	// at the end: the limit holds exactly, and a request is refused when its
	// worst case does not fit in what is left.
	LimitModeReserve = "reserve"
	// DefaultLimitMode is the mode of a limit the policy does not set.
	DefaultLimitMode = LimitModeCharge
)

// LimitModes lists the modes a token or cost limit may take.
func LimitModes() []string { return []string{LimitModeCharge, LimitModeReserve} }

// ModeOf returns the mode of the policy's limit named attr: its entry in
// LimitModes, else LimitMode, else DefaultLimitMode.
func (p *Policy) ModeOf(attr string) string {
	if p == nil {
		return DefaultLimitMode
	}
	if m, ok := p.LimitModes[attr]; ok {
		return m
	}
	if p.LimitMode != "" {
		return p.LimitMode
	}
	return DefaultLimitMode
}

// AllowsModel reports whether the policy lets a key use model.
func (p *Policy) AllowsModel(model string) bool {
	if p == nil {
		return true
	}
	for _, g := range p.DeniedModels {
		if MatchGlob(g, model) {
			return false
		}
	}
	if p.Models == nil {
		return true
	}
	for _, g := range p.Models {
		if MatchGlob(g, model) {
			return true
		}
	}
	return false
}

// Pool describes how requests are spread over a set of upstream accounts.
type Pool struct {
	// Strategy is one of the Strategy* constants.
	Strategy string `json:"strategy"`
	// FailoverMaxAttempts counts every attempt, the first included.
	FailoverMaxAttempts int `json:"failover_max_attempts"`
	// FailoverOn lists the upstream statuses that trigger a failover.
	FailoverOn []int `json:"failover_on"`
	// ParkOn429 is one of the ParkOn429* constants.
	ParkOn429 string `json:"park_on_429"`
	// Park429For is a Go duration: how long a 429'd account is parked when
	// ParkOn429 is "fixed", or when the upstream sent no reset header.
	Park429For string `json:"park_429_for"`
	// StickyTTL is a Go duration: how long a session stays on its account.
	StickyTTL string `json:"sticky_ttl"`
	// Park529For is a Go duration: how long a 529 (overloaded) parks an
	// account.
	Park529For string `json:"park_529_for"`
	// Park5xxAfter is how many 5xx answers within Park5xxWindow park an
	// account for Park5xxFor; 0 never parks on 5xx.
	Park5xxAfter  int    `json:"park_5xx_after"`
	Park5xxWindow string `json:"park_5xx_window"`
	Park5xxFor    string `json:"park_5xx_for"`
	// StopAtUtilization, when > 0, parks an account near_limit once the upstream reports
	// one of its subscription windows (anthropic-ratelimit-unified-5h/7d-utilization) used
	// to at least this fraction, until that window resets.
	StopAtUtilization float64 `json:"stop_at_utilization,omitempty"`
	// StickyWait is a Go duration: how long a conversation whose bound account is at its
	// max_concurrency waits for a slot there before it moves ("" or 0: it moves at once).
	StickyWait string `json:"sticky_wait,omitempty"`
}

// Route maps request paths to a pool, with optional access rules.
type Route struct {
	Name string `json:"name"`
	// Paths are exact, or end in "/*" to match any suffix.
	Paths []string `json:"paths"`
	// Methods are upper-case; nil allows any method.
	Methods   []string `json:"methods,omitempty"`
	Pool      string   `json:"pool"`
	Allowlist string   `json:"allowlist,omitempty"`
	// Policy is the default policy for keys that name none.
	Policy string `json:"policy,omitempty"`
	// Timeout is a Go duration; empty means REQUEST_TIMEOUT.
	Timeout string `json:"timeout,omitempty"`
}

// Price is a model's price in USD per million tokens.
type Price struct {
	// Model is a glob; it is empty for the fallback price.
	Model        string  `json:"model,omitempty"`
	Input        float64 `json:"input"`
	Output       float64 `json:"output"`
	CacheWrite5m float64 `json:"cache_write_5m"`
	CacheWrite1h float64 `json:"cache_write_1h"`
	CacheRead    float64 `json:"cache_read"`
	// LongContext, when its AboveInputTokens is set, prices every token of a
	// request whose prompt (input, cache writes and cache reads) is longer
	// than AboveInputTokens at its rates instead: Anthropic's long-context
	// pricing.
	LongContext PriceTier `json:"long_context,omitzero"`
}

// PriceTier is the price of a request whose prompt is longer than
// AboveInputTokens, in USD per million tokens.
type PriceTier struct {
	AboveInputTokens int64   `json:"above_input_tokens"`
	Input            float64 `json:"input"`
	Output           float64 `json:"output"`
	CacheWrite5m     float64 `json:"cache_write_5m"`
	CacheWrite1h     float64 `json:"cache_write_1h"`
	CacheRead        float64 `json:"cache_read"`
}

// TokenCounts is the usage of one request, as Anthropic reports it (sidecar/usage.Counts
// carries it as parsed from an answer).
type TokenCounts struct {
	Input        int64
	Output       int64
	CacheWrite5m int64
	CacheWrite1h int64
	CacheRead    int64
}

// Prompt is the length of the request's prompt: input, cache writes and
// cache reads. It chooses the long-context tier.
func (u TokenCounts) Prompt() int64 {
	return u.Input + u.CacheWrite5m + u.CacheWrite1h + u.CacheRead
}

// Cost returns the price of u in USD: at the long-context tier's rates when
// p has one and u's prompt is longer than its threshold, else at p's.
func (p Price) Cost(u TokenCounts) float64 {
	t := p.LongContext
	if t.AboveInputTokens <= 0 || u.Prompt() <= t.AboveInputTokens {
		t = PriceTier{Input: p.Input, Output: p.Output, CacheWrite5m: p.CacheWrite5m, CacheWrite1h: p.CacheWrite1h, CacheRead: p.CacheRead}
	}
	micro := float64(u.Input)*t.Input +
		float64(u.Output)*t.Output +
		float64(u.CacheWrite5m)*t.CacheWrite5m +
		float64(u.CacheWrite1h)*t.CacheWrite1h +
		float64(u.CacheRead)*t.CacheRead
	return micro / 1e6
}

// Pool strategies.
const (
	StrategyStickyLeastLoaded = "sticky_least_loaded"
	StrategyLeastLoaded       = "least_loaded"
	StrategyPriority          = "priority"
	StrategyRoundRobin        = "round_robin"
)

// What a pool does with an account that got a 429.
const (
	// ParkOn429ResetHeader parks the account until the time in the
	// upstream's rate-limit reset header (anthropic-ratelimit-unified-reset),
	// or for Park429For when there is none.
	ParkOn429ResetHeader = "reset_header"
	// ParkOn429Fixed parks the account for Park429For.
	ParkOn429Fixed = "fixed"
)

// Defaults applied by Load when the operator leaves a setting out.
const (
	DefaultMaxBodyBytes        = 10 << 20
	DefaultStrategy            = StrategyStickyLeastLoaded
	DefaultFailoverMaxAttempts = 3
	DefaultParkOn429           = ParkOn429ResetHeader
	DefaultPark429For          = "60s"
	DefaultStickyTTL           = "1h"
	DefaultPark529For          = "15s"
	DefaultPark5xxAfter        = 3
	DefaultPark5xxWindow       = "60s"
	DefaultPark5xxFor          = "60s"
	// DefaultHourlyRetention and DefaultDailyRetention keep report buckets when the usage
	// block does not say (store.DefaultHourlyRetention and store.UsageRetention agree).
	DefaultHourlyRetention = 35 * 24 * time.Hour
	DefaultDailyRetention  = 400 * 24 * time.Hour
)

// DefaultFailoverOn returns the statuses a pool fails over on by default.
func DefaultFailoverOn() []int { return []int{429, 529, 500, 502, 503, 504} }

// DefaultTrustedProxies returns the proxies trusted when the server block
// does not say: loopback, where nginx sits in the documented deployment.
func DefaultTrustedProxies() []string { return []string{"127.0.0.1/32", "::1/128"} }
