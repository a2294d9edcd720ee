package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// CapWindow is the length of the rolling window of an account's *Per5h caps.
const CapWindow = 5 * time.Hour

// CapBucket is the width of the buckets the rolling window is counted in: use leaves the
// window one bucket at a time, so a 5-hour cap frees up to CapBucket later than exactly
// five hours after the use.
const CapBucket = 10 * time.Minute

// AccountCaps bound an upstream account's load, counted across all sidecars in Redis. Zero
// fields are unbounded.
type AccountCaps struct {
	// MaxConcurrency is how many requests may be in flight on the account at once.
	MaxConcurrency int `json:"max_concurrency,omitempty"`
	// TokensPerDay and CostPerDayUSD bound the account's use per UTC day.
	TokensPerDay  int64   `json:"tokens_per_day,omitempty"`
	CostPerDayUSD float64 `json:"cost_per_day_usd,omitempty"`
	// TokensPer5h and CostPer5hUSD bound its use over the last five hours (rolling).
	TokensPer5h  int64   `json:"tokens_per_5h,omitempty"`
	CostPer5hUSD float64 `json:"cost_per_5h_usd,omitempty"`
}

// IsZero reports whether c bounds nothing.
func (c AccountCaps) IsZero() bool { return c == AccountCaps{} }

// CountsUsage reports whether any cap counts tokens or cost.
func (c AccountCaps) CountsUsage() bool {
	return c.TokensPerDay > 0 || c.CostPerDayUSD > 0 || c.TokensPer5h > 0 || c.CostPer5hUSD > 0
}

// Validate reports a cap that is negative or not a number.
func (c AccountCaps) Validate() error {
	var errs []error
	if c.MaxConcurrency < 0 {
		errs = append(errs, fmt.Errorf("max_concurrency must be 0 (unbounded) or positive, got %d", c.MaxConcurrency))
	}
	for _, n := range []struct {
		name string
		v    int64
	}{{"tokens_per_day", c.TokensPerDay}, {"tokens_per_5h", c.TokensPer5h}} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s must be 0 (unbounded) or positive, got %d", n.name, n.v))
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"cost_per_day_usd", c.CostPerDayUSD}, {"cost_per_5h_usd", c.CostPer5hUSD}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			errs = append(errs, fmt.Errorf("%s must be 0 (unbounded) or a positive number of USD, got %g", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

func (c AccountCaps) encode() string {
	b, _ := json.Marshal(c) // cannot fail: numbers only
	return string(b)
}
