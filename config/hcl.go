package config

import (
	"github.com/hashicorp/hcl/v2"
)

// The types in this file are what the operator writes: one struct per block
// body, decoded by gohcl. Required attributes are plain values (gohcl
// reports them missing); optional ones are pointers where "absent" differs
// from "zero", so that defaults can be applied.
// Block labels and source ranges are kept by the loader (see blockInfo), so
// that every problem found later can point back at its source.

// fileSchema is the top level of every configuration file.
func fileSchema() *hcl.BodySchema {
	return &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: attrPricingDefaults},
	}, Blocks: []hcl.BlockHeaderSchema{
		{Type: blockServer},
		{Type: blockAllowlist, LabelNames: []string{"name"}},
		{Type: blockPolicy, LabelNames: []string{"name"}},
		{Type: blockPool, LabelNames: []string{"name"}},
		{Type: blockRoute, LabelNames: []string{"name"}},
		{Type: blockPricing, LabelNames: []string{"model"}},
		{Type: blockPricingFallback},
		{Type: blockAlert, LabelNames: []string{"name"}},
		{Type: blockUsage},
	}}
}

type serverHCL struct {
	TrustedProxies  *[]string `hcl:"trusted_proxies,optional"`
	MaxBodyBytes    *int64    `hcl:"max_body_bytes,optional"`
	ResponseHeaders *[]string `hcl:"response_headers,optional"`
}

type usageHCL struct {
	HourlyRetention *string `hcl:"hourly_retention,optional"`
	DailyRetention  *string `hcl:"daily_retention,optional"`
	Ledger          *bool   `hcl:"ledger,optional"`
	LedgerRetention *string `hcl:"ledger_retention,optional"`
	LedgerMaxPerDay *int64  `hcl:"ledger_max_records_per_day,optional"`
}

type allowlistHCL struct {
	CIDRs []string `hcl:"cidrs"`
}

// policyHCL is a policy block. Its limit attributes are read through the limit table
// (limits.go); a limit field here must have its row there.
type policyHCL struct {
	RequestsPerMinute             *int64             `hcl:"requests_per_minute,optional"`
	TokensPerDay                  *int64             `hcl:"tokens_per_day,optional"`
	CostPerDayUSD                 *float64           `hcl:"cost_per_day_usd,optional"`
	Concurrency                   *int64             `hcl:"concurrency,optional"`
	Models                        *[]string          `hcl:"models,optional"`
	RequestsPerDay                *int64             `hcl:"requests_per_day,optional"`
	TokensPerMinute               *int64             `hcl:"tokens_per_minute,optional"`
	CostPerWeekUSD                *float64           `hcl:"cost_per_week_usd,optional"`
	CostPerMonthUSD               *float64           `hcl:"cost_per_month_usd,optional"`
	CostTotalUSD                  *float64           `hcl:"cost_total_usd,optional"`
	DeniedModels                  *[]string          `hcl:"denied_models,optional"`
	Clients                       *[]string          `hcl:"clients,optional"`
	ConversationRequestsPerMinute *int64             `hcl:"conversation_requests_per_minute,optional"`
	ConversationTokensPerMinute   *int64             `hcl:"conversation_tokens_per_minute,optional"`
	ConversationCostPerMinuteUSD  *float64           `hcl:"conversation_cost_per_minute_usd,optional"`
	LimitMode                     *string            `hcl:"limit_mode,optional"`
	LimitModes                    *map[string]string `hcl:"limit_modes,optional"`
	QueueTimeout                  *string            `hcl:"queue_timeout,optional"`
	QueueMax                      *int               `hcl:"queue_max,optional"`
	QueueKeepalive                *string            `hcl:"queue_keepalive,optional"`
}

type poolHCL struct {
	Strategy   *string        `hcl:"strategy,optional"`
	Failover   *hcl.Attribute `hcl:"failover,optional"` // an object; see decodeFailover
	ParkOn429  *string        `hcl:"park_on_429,optional"`
	Park429For *string        `hcl:"park_429_for,optional"`
	StickyTTL  *string        `hcl:"sticky_ttl,optional"`
	Park529For *string        `hcl:"park_529_for,optional"`
	// Park5xxAfter consecutive-ish 5xx answers within Park5xxWindow park an
	// account for Park5xxFor.
	Park5xxAfter  *int    `hcl:"park_5xx_after,optional"`
	Park5xxWindow *string `hcl:"park_5xx_window,optional"`
	Park5xxFor    *string `hcl:"park_5xx_for,optional"`
	// StopAtUtilization parks an account near_limit once a subscription window is used
	// to this fraction.
	StopAtUtilization *float64 `hcl:"stop_at_utilization,optional"`
	// StickyWait is how long a conversation waits for its busy bound account.
	StickyWait *string `hcl:"sticky_wait,optional"`
}

type routeHCL struct {
	Paths     []string  `hcl:"paths"`
	Methods   *[]string `hcl:"methods,optional"`
	Pool      string    `hcl:"pool"`
	Allowlist *string   `hcl:"allowlist,optional"`
	Policy    *string   `hcl:"policy,optional"`
	Timeout   *string   `hcl:"timeout,optional"`
}

// priceHCL is the body of both pricing and pricing_fallback: every field is
// required, so that a price is never zero by omission.
type priceHCL struct {
	Input        float64 `hcl:"input"`
	Output       float64 `hcl:"output"`
	CacheWrite5m float64 `hcl:"cache_write_5m"`
	CacheWrite1h float64 `hcl:"cache_write_1h"`
	CacheRead    float64 `hcl:"cache_read"`
	// LongContext is the optional long_context block: the rates of a request
	// whose prompt is longer than above_input_tokens.
	LongContext *priceTierHCL `hcl:"long_context,block"`
}

type priceTierHCL struct {
	AboveInputTokens int64   `hcl:"above_input_tokens"`
	Input            float64 `hcl:"input"`
	Output           float64 `hcl:"output"`
	CacheWrite5m     float64 `hcl:"cache_write_5m"`
	CacheWrite1h     float64 `hcl:"cache_write_1h"`
	CacheRead        float64 `hcl:"cache_read"`
}

func (p *priceHCL) price(model string) Price {
	out := Price{
		Model:        model,
		Input:        p.Input,
		Output:       p.Output,
		CacheWrite5m: p.CacheWrite5m,
		CacheWrite1h: p.CacheWrite1h,
		CacheRead:    p.CacheRead,
	}
	if t := p.LongContext; t != nil {
		out.LongContext = PriceTier(*t)
	}
	return out
}

// setIf sets *dst to *p when p is set; otherwise *dst keeps its value (for an optional
// attribute the operator left out, the default already in it).
func setIf[T any](dst *T, p *T) {
	if p != nil {
		*dst = *p
	}
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
