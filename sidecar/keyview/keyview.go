// Package keyview builds what the holder of a relay key may see about that key — GET
// /v1/relay/usage on a sidecar and on the control plane answer with it: the key's name,
// status and expiry, where each of its limits stands and when it resets, its requests in
// flight, and its spend today, this week, this month and in total by model. It holds
// nothing about other keys or the upstream accounts.
package keyview

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
)

// Key is what the view shows of the key itself and the rules it carries.
type Key struct {
	ID, Name, Policy string
	// Status is active, disabled, expired or revoked (a key that can authenticate is active).
	Status    string
	ExpiresAt *time.Time
	// Limits are the key's own overrides of its policy.
	Limits store.KeyLimits
}

// Sources are where a view's numbers come from.
type Sources struct {
	// Spend reads the key's usage counters (store.Store).
	Spend interface {
		KeySpend(ctx context.Context, keyID string, now time.Time) (store.KeySpend, error)
	}
	// Limits reads where the key's limits stand (limits.ReadState or a Limiter's State).
	Limits func(ctx context.Context, keyID string, set limits.Set) (limits.KeyState, error)
}

// View is the body of GET /v1/relay/usage. Every field is always present.
type View struct {
	Key KeyInfo `json:"key"`
	// Limits is every counted limit the key is under, longest window first; empty, never
	// null, for a key without limits.
	Limits      []Limit     `json:"limits"`
	Concurrency Concurrency `json:"concurrency"`
	Spend       Spend       `json:"spend"`
	GeneratedAt time.Time   `json:"generated_at"`
}

// KeyInfo is the key's identity and state.
type KeyInfo struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Status    string     `json:"status"`
	Policy    string     `json:"policy"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// Limit is where one limit stands: in US dollars for cost limits (unit "usd"), else in
// tokens or requests.
type Limit struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit"`
	Limit float64 `json:"limit"`
	Used  float64 `json:"used"`
	// Reserved is what requests in flight hold against a limit in reserve mode (0 in
	// charge mode); Remaining is net of it.
	Reserved  float64 `json:"reserved"`
	Remaining float64 `json:"remaining"`
	// Mode is how a token or cost limit holds, "charge" or "reserve"; "" for request
	// limits, which are exact in any mode.
	Mode string `json:"mode,omitempty"`
	// ResetsAt is when the window ends; null for a total limit, which never resets.
	ResetsAt *time.Time `json:"resets_at"`
}

// Concurrency is the key's requests in flight and its cap (0: none).
type Concurrency struct {
	InUse int64 `json:"in_use"`
	Limit int   `json:"limit"`
}

// Spend is the key's usage by period; total has no breakdown by model.
type Spend struct {
	Today     Period `json:"today"`
	ThisWeek  Period `json:"this_week"`
	ThisMonth Period `json:"this_month"`
	Total     Usage  `json:"total"`
}

// Period is a period's usage and its split by model.
type Period struct {
	Usage
	ByModel map[string]Usage `json:"by_model"`
}

// Usage is requests, tokens by kind and cost.
type Usage struct {
	Requests     int64   `json:"requests"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	CacheWrite5m int64   `json:"cache_write_5m_tokens"`
	CacheWrite1h int64   `json:"cache_write_1h_tokens"`
	CacheRead    int64   `json:"cache_read_tokens"`
	CostUSD      float64 `json:"cost_usd"`
}

// Build reads the key's limits (under base, its policy or the default route's, with the
// key's overrides) and spend at now, in two round trips.
func Build(ctx context.Context, src Sources, k Key, base *config.Policy, now time.Time) (View, error) {
	v := View{
		Key:    KeyInfo{ID: k.ID, Name: k.Name, Status: k.Status, Policy: k.Policy, ExpiresAt: k.ExpiresAt},
		Limits: []Limit{}, GeneratedAt: now.UTC(),
	}
	set := keyLimits(limits.FromPolicy(base.WithKeyLimits(k.Limits)))
	v.Concurrency.Limit = set.Concurrency
	if src.Limits != nil && !set.Empty() {
		st, err := src.Limits(ctx, k.ID, set)
		if err != nil {
			return View{}, fmt.Errorf("key view: %w", err)
		}
		v.Concurrency.InUse = st.InFlight
		for _, s := range st.Counted {
			v.Limits = append(v.Limits, limitOf(s))
		}
	}
	sp, err := src.Spend.KeySpend(ctx, k.ID, now)
	if err != nil {
		return View{}, fmt.Errorf("key view: %w", err)
	}
	v.Spend = Spend{Today: period(sp.Today), ThisWeek: period(sp.Week), ThisMonth: period(sp.Month), Total: usageOf(sp.Total)}
	return v, nil
}

// conversationPrefix starts the names of limits counted per conversation, not per key: a
// key has as many of those counters as conversations, so the view leaves them out.
const conversationPrefix = "conversation_"

// keyLimits is set without the limits counted per conversation.
func keyLimits(set limits.Set) limits.Set {
	out := limits.Set{Concurrency: set.Concurrency}
	for _, l := range set.Counted {
		if !strings.HasPrefix(l.Name, conversationPrefix) {
			out.Counted = append(out.Counted, l)
		}
	}
	return out
}

func limitOf(s limits.State) Limit {
	l := Limit{Name: s.Name, Limit: float64(s.Max), Used: float64(s.Used), Reserved: float64(s.Reserved), Mode: config.LimitModeCharge}
	if s.Reserve {
		l.Mode = config.LimitModeReserve
	}
	switch s.Kind {
	case limits.Cost:
		l.Unit, l.Limit, l.Used, l.Reserved = "usd", float64(s.Max)/1e6, float64(s.Used)/1e6, float64(s.Reserved)/1e6
	case limits.Tokens:
		l.Unit = "tokens"
	default:
		l.Unit, l.Mode = "requests", ""
	}
	l.Remaining = max(0, l.Limit-l.Used-l.Reserved)
	if !s.ResetAt.IsZero() {
		t := s.ResetAt.UTC()
		l.ResetsAt = &t
	}
	return l
}

func period(byModel map[string]store.Usage) Period {
	p := Period{ByModel: make(map[string]Usage, len(byModel))}
	models := make([]string, 0, len(byModel))
	for m := range byModel {
		models = append(models, m)
	}
	sort.Strings(models) // sums in a fixed order: the cost's float sum is reproducible
	var sum store.Usage
	for _, m := range models {
		p.ByModel[m] = usageOf(byModel[m])
		sum = sum.Add(byModel[m])
	}
	p.Usage = usageOf(sum)
	return p
}

func usageOf(u store.Usage) Usage {
	return Usage{Requests: u.Requests, InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, CacheWrite5m: u.CacheWrite5m,
		CacheWrite1h: u.CacheWrite1h, CacheRead: u.CacheRead, CostUSD: float64(u.CostMicroUSD) / 1e6}
}
