package config

import (
	"errors"
	"iter"
	"math"
	"strconv"

	"github.com/claude-relay/claude-relay/internal/keylimits"
)

// LimitCounts is what a policy limit counts.
type LimitCounts uint8

// What limits count.
const (
	// CountsRequests: requests, counted when one is admitted.
	CountsRequests LimitCounts = iota + 1
	// CountsTokens: input, output and cache tokens, as the upstream reported them.
	CountsTokens
	// CountsCost: USD (a float in HCL and JSON; micro-USD in the counters).
	CountsCost
	// CountsInFlight: requests in flight at once (concurrency); it has no window.
	CountsInFlight
)

// LimitWindow is the period a limit counts over; windows are fixed and aligned in UTC.
type LimitWindow uint8

// Windows.
const (
	WindowNone   LimitWindow = iota // concurrency: a lease, not a window
	WindowMinute                    // a UTC minute
	WindowDay                       // a UTC day
	WindowWeek                      // an ISO week, from Monday 00:00 UTC
	WindowMonth                     // a UTC calendar month
	WindowTotal                     // the key's whole life: never resets
)

// KeyLimits are per-key replacements of the values of the key's policy; nil leaves the
// policy's value. It is keylimits.KeyLimits, the one type the store keeps in a key's rules
// (store.KeyLimits) and the admin API takes (adminapi.KeyLimits); the request path applies
// it with Policy.WithKeyLimits.
type KeyLimits = keylimits.KeyLimits

// LimitDef is one limit of a policy, defined once: its name (the HCL attribute, the JSON
// field of Policy and KeyLimits, the admin API field, the name refusals give), what it
// counts, its window, and where its value lives in policyHCL, Policy and KeyLimits. An
// integer limit has the int accessors, a USD limit the float ones; a limit a key may
// override has the key accessor of its kind and a CLI flag.
type LimitDef struct {
	Name   string
	Counts LimitCounts
	Window LimitWindow
	// PerConversation limits count one conversation of a key (a breaker for a runaway
	// agent); they are always charged, whatever the policy's limit_mode says.
	PerConversation bool
	// Flag is the admin CLI's flag of the key override ("" when a key cannot override
	// the limit); Usage its help text after "override: ".
	Flag, Usage string

	polInt   func(*Policy) *int64
	polFloat func(*Policy) *float64
	hclInt   func(*policyHCL) **int64
	hclFloat func(*policyHCL) **float64
	keyInt   func(*KeyLimits) **int64
	keyFloat func(*KeyLimits) **float64
}

// limitTable is every counted limit and the concurrency limit, longest window first: the
// order the limiter checks them in, so a refusal names the limit that binds longest. It is
// never written; read it through Limits and LimitByName.
var limitTable = [...]LimitDef{
	{Name: "cost_total_usd", Counts: CountsCost, Window: WindowTotal, Flag: "cost-total", Usage: "USD over the key's life",
		polFloat: func(p *Policy) *float64 { return &p.CostTotalUSD },
		hclFloat: func(h *policyHCL) **float64 { return &h.CostTotalUSD },
		keyFloat: func(k *KeyLimits) **float64 { return &k.CostTotalUSD }},
	{Name: "cost_per_month_usd", Counts: CountsCost, Window: WindowMonth, Flag: "cost-month", Usage: "USD per month",
		polFloat: func(p *Policy) *float64 { return &p.CostPerMonthUSD },
		hclFloat: func(h *policyHCL) **float64 { return &h.CostPerMonthUSD },
		keyFloat: func(k *KeyLimits) **float64 { return &k.CostPerMonthUSD }},
	{Name: "cost_per_week_usd", Counts: CountsCost, Window: WindowWeek, Flag: "cost-week", Usage: "USD per week",
		polFloat: func(p *Policy) *float64 { return &p.CostPerWeekUSD },
		hclFloat: func(h *policyHCL) **float64 { return &h.CostPerWeekUSD },
		keyFloat: func(k *KeyLimits) **float64 { return &k.CostPerWeekUSD }},
	{Name: "cost_per_day_usd", Counts: CountsCost, Window: WindowDay, Flag: "cost-day", Usage: "USD per day",
		polFloat: func(p *Policy) *float64 { return &p.CostPerDayUSD },
		hclFloat: func(h *policyHCL) **float64 { return &h.CostPerDayUSD },
		keyFloat: func(k *KeyLimits) **float64 { return &k.CostPerDayUSD }},
	{Name: "tokens_per_day", Counts: CountsTokens, Window: WindowDay, Flag: "tpd", Usage: "tokens per day",
		polInt: func(p *Policy) *int64 { return &p.TokensPerDay },
		hclInt: func(h *policyHCL) **int64 { return &h.TokensPerDay },
		keyInt: func(k *KeyLimits) **int64 { return &k.TokensPerDay }},
	{Name: "requests_per_day", Counts: CountsRequests, Window: WindowDay, Flag: "rpd", Usage: "requests per day",
		polInt: func(p *Policy) *int64 { return &p.RequestsPerDay },
		hclInt: func(h *policyHCL) **int64 { return &h.RequestsPerDay },
		keyInt: func(k *KeyLimits) **int64 { return &k.RequestsPerDay }},
	{Name: "tokens_per_minute", Counts: CountsTokens, Window: WindowMinute, Flag: "tpm", Usage: "tokens per minute",
		polInt: func(p *Policy) *int64 { return &p.TokensPerMinute },
		hclInt: func(h *policyHCL) **int64 { return &h.TokensPerMinute },
		keyInt: func(k *KeyLimits) **int64 { return &k.TokensPerMinute }},
	{Name: "requests_per_minute", Counts: CountsRequests, Window: WindowMinute, Flag: "rpm", Usage: "requests per minute",
		polInt: func(p *Policy) *int64 { return &p.RequestsPerMinute },
		hclInt: func(h *policyHCL) **int64 { return &h.RequestsPerMinute },
		keyInt: func(k *KeyLimits) **int64 { return &k.RequestsPerMinute }},
	{Name: "concurrency", Counts: CountsInFlight, Window: WindowNone, Flag: "concurrency", Usage: "requests in flight",
		polInt: func(p *Policy) *int64 { return &p.Concurrency },
		hclInt: func(h *policyHCL) **int64 { return &h.Concurrency },
		keyInt: func(k *KeyLimits) **int64 { return &k.Concurrency }},
	{Name: "conversation_cost_per_minute_usd", Counts: CountsCost, Window: WindowMinute, PerConversation: true,
		polFloat: func(p *Policy) *float64 { return &p.ConversationCostPerMinuteUSD },
		hclFloat: func(h *policyHCL) **float64 { return &h.ConversationCostPerMinuteUSD }},
	{Name: "conversation_tokens_per_minute", Counts: CountsTokens, Window: WindowMinute, PerConversation: true,
		polInt: func(p *Policy) *int64 { return &p.ConversationTokensPerMinute },
		hclInt: func(h *policyHCL) **int64 { return &h.ConversationTokensPerMinute }},
	{Name: "conversation_requests_per_minute", Counts: CountsRequests, Window: WindowMinute, PerConversation: true,
		polInt: func(p *Policy) *int64 { return &p.ConversationRequestsPerMinute },
		hclInt: func(h *policyHCL) **int64 { return &h.ConversationRequestsPerMinute }},
}

// Limits yields every limit of a policy, longest window first (the per-conversation
// breakers last).
func Limits() iter.Seq[LimitDef] {
	return func(yield func(LimitDef) bool) {
		for _, d := range limitTable { // copies: callers cannot change the table
			if !yield(d) {
				return
			}
		}
	}
}

// LimitByName returns the limit whose attribute is name.
func LimitByName(name string) (LimitDef, bool) {
	for _, d := range limitTable {
		if d.Name == name {
			return d, true
		}
	}
	return LimitDef{}, false
}

// BudgetLimits names the policy attributes that count tokens or cost per key, shortest
// window first: the limits a mode applies to. Request limits are counted at admission and
// are exact in any mode; per-conversation limits are breakers, always charged.
func BudgetLimits() []string {
	var out []string
	for i := len(limitTable) - 1; i >= 0; i-- {
		if d := &limitTable[i]; d.Budget() {
			out = append(out, d.Name)
		}
	}
	return out
}

// Budget reports whether the limit counts a key's tokens or cost: whether a limit mode
// applies to it.
func (d *LimitDef) Budget() bool {
	return !d.PerConversation && (d.Counts == CountsTokens || d.Counts == CountsCost)
}

// Float reports whether the limit is a USD amount (a float) rather than a count.
func (d *LimitDef) Float() bool { return d.polFloat != nil }

// Overridable reports whether a key may override the limit (KeyLimits has a field for it).
func (d *LimitDef) Overridable() bool { return d.keyInt != nil || d.keyFloat != nil }

// Value returns the policy's value of the limit: an int64, or a float64 for a USD limit.
func (d *LimitDef) Value(p *Policy) any {
	if d.Float() {
		return *d.polFloat(p)
	}
	return *d.polInt(p)
}

// Max returns the policy's value as its counter counts it: requests, tokens or requests
// in flight as they are, USD in micro-USD. 0 means unlimited.
func (d *LimitDef) Max(p *Policy) int64 {
	if d.Float() {
		return int64(math.Round(*d.polFloat(p) * 1e6))
	}
	return *d.polInt(p)
}

// Negative reports whether the policy's value of the limit is negative (refused: 0 means
// unlimited).
func (d *LimitDef) Negative(p *Policy) bool {
	if d.Float() {
		return *d.polFloat(p) < 0
	}
	return *d.polInt(p) < 0
}

// copyHCL copies the attribute from h, the policy block as written, to p (absent: 0).
func (d *LimitDef) copyHCL(p *Policy, h *policyHCL) {
	if d.Float() {
		*d.polFloat(p) = deref(*d.hclFloat(h))
		return
	}
	*d.polInt(p) = deref(*d.hclInt(h))
}

// Overridden reports whether k overrides the limit.
func (d *LimitDef) Overridden(k *KeyLimits) bool {
	switch {
	case d.keyFloat != nil:
		return *d.keyFloat(k) != nil
	case d.keyInt != nil:
		return *d.keyInt(k) != nil
	}
	return false
}

// OverrideNegative reports whether k overrides the limit with a negative value.
func (d *LimitDef) OverrideNegative(k *KeyLimits) bool {
	switch {
	case d.keyFloat != nil:
		v := *d.keyFloat(k)
		return v != nil && *v < 0
	case d.keyInt != nil:
		v := *d.keyInt(k)
		return v != nil && *v < 0
	}
	return false
}

// apply sets p's value of the limit to k's override, when k has one.
func (d *LimitDef) apply(p *Policy, k *KeyLimits) {
	switch {
	case d.keyFloat != nil:
		if v := *d.keyFloat(k); v != nil {
			*d.polFloat(p) = *v
		}
	case d.keyInt != nil:
		if v := *d.keyInt(k); v != nil {
			*d.polInt(p) = *v
		}
	}
}

// SetOverride parses s (an integer, or a number for a USD limit) into k's override of the
// limit; the admin CLI's limit flags use it.
func (d *LimitDef) SetOverride(k *KeyLimits, s string) error {
	switch {
	case d.keyFloat != nil:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return errors.New("must be a number")
		}
		*d.keyFloat(k) = &n
	case d.keyInt != nil:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return errors.New("must be an integer")
		}
		*d.keyInt(k) = &n
	default:
		return errors.New("a key cannot override " + d.Name)
	}
	return nil
}

// OverrideString formats k's override of the limit ("" when it has none).
func (d *LimitDef) OverrideString(k *KeyLimits) string {
	switch {
	case d.keyFloat != nil:
		if v := *d.keyFloat(k); v != nil {
			return strconv.FormatFloat(*v, 'f', -1, 64)
		}
	case d.keyInt != nil:
		if v := *d.keyInt(k); v != nil {
			return strconv.FormatInt(*v, 10)
		}
	}
	return ""
}

// WithKeyLimits returns the policy (nil: none) with a key's own limits applied where it
// sets them: the limits the key is under. p itself is not changed; with no override it is
// returned as is.
func (p *Policy) WithKeyLimits(k KeyLimits) *Policy {
	if k.IsZero() {
		return p
	}
	var eff Policy
	setIf(&eff, p)
	for i := range limitTable {
		limitTable[i].apply(&eff, &k)
	}
	return &eff
}
