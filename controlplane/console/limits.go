package console

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// limitField is one per-key limit override of the edit form.
type limitField struct {
	Name, Label string
	money       bool
	get         func(*adminapi.KeyLimits) any
	set         func(*adminapi.KeyLimits, int64, float64)
}

// limitFields are the overrides the key page edits, in the order it shows them.
var limitFields = []limitField{
	intLimit("requests_per_minute", "Requests a minute", func(l *adminapi.KeyLimits) **int64 { return &l.RequestsPerMinute }),
	intLimit("requests_per_day", "Requests a day", func(l *adminapi.KeyLimits) **int64 { return &l.RequestsPerDay }),
	intLimit("tokens_per_minute", "Tokens a minute", func(l *adminapi.KeyLimits) **int64 { return &l.TokensPerMinute }),
	intLimit("tokens_per_day", "Tokens a day", func(l *adminapi.KeyLimits) **int64 { return &l.TokensPerDay }),
	intLimit("concurrency", "Concurrent requests", func(l *adminapi.KeyLimits) **int64 { return &l.Concurrency }),
	moneyLimit("cost_per_day_usd", "Cost a day (USD)", func(l *adminapi.KeyLimits) **float64 { return &l.CostPerDayUSD }),
	moneyLimit("cost_per_week_usd", "Cost a week (USD)", func(l *adminapi.KeyLimits) **float64 { return &l.CostPerWeekUSD }),
	moneyLimit("cost_per_month_usd", "Cost a month (USD)", func(l *adminapi.KeyLimits) **float64 { return &l.CostPerMonthUSD }),
	moneyLimit("cost_total_usd", "Cost in total (USD)", func(l *adminapi.KeyLimits) **float64 { return &l.CostTotalUSD }),
}

func intLimit(name, label string, field func(*adminapi.KeyLimits) **int64) limitField {
	return limitField{Name: name, Label: label,
		get: func(l *adminapi.KeyLimits) any {
			if p := *field(l); p != nil {
				return *p
			}
			return nil
		},
		set: func(l *adminapi.KeyLimits, n int64, _ float64) { *field(l) = &n },
	}
}

func moneyLimit(name, label string, field func(*adminapi.KeyLimits) **float64) limitField {
	return limitField{Name: name, Label: label, money: true,
		get: func(l *adminapi.KeyLimits) any {
			if p := *field(l); p != nil {
				return *p
			}
			return nil
		},
		set: func(l *adminapi.KeyLimits, _ int64, v float64) { *field(l) = &v },
	}
}

// limitInput is one limit's input as the form shows it.
type limitInput struct {
	Name, Label, Value string
	Money              bool
}

// limitInputs are the inputs for values (by limit name).
func limitInputs(values map[string]string) []limitInput {
	out := make([]limitInput, len(limitFields))
	for i, f := range limitFields {
		out[i] = limitInput{Name: f.Name, Label: f.Label, Value: values[f.Name], Money: f.money}
	}
	return out
}

// limitValues are a key's overrides as form text; a limit the policy sets is "".
func limitValues(l *adminapi.KeyLimits) map[string]string {
	out := map[string]string{}
	if l == nil {
		return out
	}
	for _, f := range limitFields {
		switch v := f.get(l).(type) {
		case int64:
			out[f.Name] = strconv.FormatInt(v, 10)
		case float64:
			out[f.Name] = strconv.FormatFloat(v, 'f', -1, 64)
		}
	}
	return out
}

// limitsFromForm reads the overrides the form sent; an empty one is left to the policy. It
// names every value that is not a number.
func limitsFromForm(r *http.Request) (map[string]string, *adminapi.KeyLimits, []string) {
	values := map[string]string{}
	var l adminapi.KeyLimits
	var bad []string
	for _, f := range limitFields {
		s := strings.TrimSpace(r.PostFormValue("limit_" + f.Name))
		values[f.Name] = s
		if s == "" {
			continue
		}
		if f.money {
			v, err := strconv.ParseFloat(strings.TrimPrefix(s, "$"), 64)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: %q is not an amount of dollars", strings.ToLower(f.Label), s))
				continue
			}
			f.set(&l, 0, v)
			continue
		}
		n, err := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %q is not a whole number", strings.ToLower(f.Label), s))
			continue
		}
		f.set(&l, n, 0)
	}
	return values, &l, bad
}
