// Package keylimits holds KeyLimits, a key's overrides of its policy's limits: the one type
// config (which applies them), the store (which keeps them in a key's rules) and the admin
// API (which takes them) share. It links nothing, so the store and the plugins need not
// link config to carry a key's limits.
package keylimits

// KeyLimits are per-key replacements of the values of the key's policy; nil leaves the
// policy's value. Field names match config.Policy's JSON and the names of config's limit
// table (config/limits.go), whose table test fails when a field is missing from either.
type KeyLimits struct {
	RequestsPerMinute *int64   `json:"requests_per_minute,omitempty"`
	RequestsPerDay    *int64   `json:"requests_per_day,omitempty"`
	TokensPerMinute   *int64   `json:"tokens_per_minute,omitempty"`
	TokensPerDay      *int64   `json:"tokens_per_day,omitempty"`
	Concurrency       *int64   `json:"concurrency,omitempty"`
	CostPerDayUSD     *float64 `json:"cost_per_day_usd,omitempty"`
	CostPerWeekUSD    *float64 `json:"cost_per_week_usd,omitempty"`
	CostPerMonthUSD   *float64 `json:"cost_per_month_usd,omitempty"`
	CostTotalUSD      *float64 `json:"cost_total_usd,omitempty"`
}

// IsZero reports whether no limit is overridden.
func (l KeyLimits) IsZero() bool { return l == KeyLimits{} }
