// Package priceimport turns the community price table in LiteLLM's model_prices_and_context_window.json format into claude-relay pricing blocks.
//
// LiteLLM's table (github.com/BerriAI/litellm, the one other relays read) keys each model by
// name and prices it in USD per token: input_cost_per_token, output_cost_per_token,
// cache_creation_input_token_cost (5-minute cache writes),
// cache_creation_input_token_cost_above_1hr (1-hour writes), cache_read_input_token_cost, and
// for a long-context tier the same names with an _above_200k_tokens suffix
// (cache_creation_input_token_cost_above_1hr_above_200k_tokens for the tier's 1-hour writes).
// Parse keeps the Anthropic API's own models (litellm_provider "anthropic", no provider
// prefix such as "bedrock/"); Render writes them as pricing blocks, one exact model name each,
// in USD per million tokens.
package priceimport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/claude-relay/claude-relay/config"
)

// Row is one imported model's price, with what the import had to derive or found odd.
type Row struct {
	Price config.Price
	// Derived names the prices the table left out, filled from Anthropic's multipliers of
	// the input price (cache writes 1.25x for 5 minutes, 2x for an hour; reads 0.1x).
	Derived []string
	// Warnings are prices a reviewer should check before writing.
	Warnings []string
}

// entry is the part of a LiteLLM model entry the import reads.
type entry struct {
	Provider string `json:"litellm_provider"`
	Mode     string `json:"mode"`
	prices   map[string]float64
}

// ErrNoModels is returned when the table holds no Anthropic model with a price.
var ErrNoModels = errors.New("the table has no Anthropic model with input and output prices (litellm_provider \"anthropic\")")

// Parse reads a table in LiteLLM's format and returns the Anthropic API models' prices,
// sorted by model name.
func Parse(r io.Reader) ([]Row, error) {
	var table map[string]json.RawMessage
	if err := json.NewDecoder(r).Decode(&table); err != nil {
		return nil, fmt.Errorf("read the price table (want LiteLLM's model_prices_and_context_window.json format): %w", err)
	}
	var rows []Row
	for name, raw := range table {
		if name == "sample_spec" || strings.Contains(name, "/") || !validModelName(name) {
			continue
		}
		e, err := decodeEntry(raw)
		if err != nil || e.Provider != "anthropic" || (e.Mode != "" && e.Mode != "chat") {
			continue
		}
		if row, ok := e.row(name); ok {
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 {
		return nil, ErrNoModels
	}
	slices.SortFunc(rows, func(a, b Row) int { return strings.Compare(a.Price.Model, b.Price.Model) })
	return rows, nil
}

// validModelName keeps names that are safe as an HCL label and as an exact glob: letters,
// digits, '-', '.', '_', ':' and '@'.
func validModelName(name string) bool {
	if name == "" || len(name) > 200 {
		return false
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._:@", c)
		if !ok {
			return false
		}
	}
	return true
}

func decodeEntry(raw json.RawMessage) (entry, error) {
	var e entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return e, fmt.Errorf("decode entry: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return e, fmt.Errorf("decode entry: %w", err)
	}
	e.prices = make(map[string]float64)
	for k, v := range fields {
		var f float64
		if json.Unmarshal(v, &f) == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && f >= 0 {
			e.prices[k] = f
		}
	}
	return e, nil
}

// tierSuffix finds the long-context tier's threshold in a field name.
var tierSuffix = regexp.MustCompile(`^input_cost_per_token_above_([0-9]+)k_tokens$`)

// row converts e; ok is false when it has no input or output price.
func (e entry) row(name string) (Row, bool) {
	in, okIn := e.prices["input_cost_per_token"]
	out, okOut := e.prices["output_cost_per_token"]
	if !okIn || !okOut {
		return Row{}, false
	}
	r := Row{Price: config.Price{Model: name, Input: perMillion(in), Output: perMillion(out)}}
	r.Price.CacheWrite5m = e.or(&r, "cache_write_5m", "cache_creation_input_token_cost", in*1.25)
	r.Price.CacheWrite1h = e.or(&r, "cache_write_1h", "cache_creation_input_token_cost_above_1hr", in*2)
	r.Price.CacheRead = e.or(&r, "cache_read", "cache_read_input_token_cost", in*0.1)
	if k := e.tierThousands(); k > 0 {
		sfx := fmt.Sprintf("_above_%dk_tokens", k)
		tin := e.prices["input_cost_per_token"+sfx]
		t := config.PriceTier{AboveInputTokens: int64(k) * 1000, Input: perMillion(tin)}
		t.Output = e.or(&r, "long_context.output", "output_cost_per_token"+sfx, out)
		t.CacheWrite5m = e.or(&r, "long_context.cache_write_5m", "cache_creation_input_token_cost"+sfx, tin*1.25)
		t.CacheWrite1h = e.or(&r, "long_context.cache_write_1h", "cache_creation_input_token_cost_above_1hr"+sfx, tin*2)
		t.CacheRead = e.or(&r, "long_context.cache_read", "cache_read_input_token_cost"+sfx, tin*0.1)
		r.Price.LongContext = t
	}
	r.Warnings = oddities(r.Price)
	return r, true
}

// or returns the field's price per million tokens, else def's (recording that it was
// derived).
func (e entry) or(r *Row, name, field string, def float64) float64 {
	if v, ok := e.prices[field]; ok {
		return perMillion(v)
	}
	r.Derived = append(r.Derived, name)
	return perMillion(def)
}

// tierThousands is the lowest long-context threshold the entry prices, in thousands of
// tokens, or 0.
func (e entry) tierThousands() int {
	best := 0
	for k := range e.prices {
		m := tierSuffix.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		if n, err := strconv.Atoi(m[1]); err == nil && n > 0 && (best == 0 || n < best) {
			best = n
		}
	}
	return best
}

// oddities flags prices that break Anthropic's published multipliers by a wide margin, as
// a table typo would.
func oddities(p config.Price) []string {
	var w []string
	check := func(name string, v, want float64) {
		if want > 0 && (v > want*1.5 || v < want/1.5) {
			w = append(w, fmt.Sprintf("%s is %s, %.3gx the input price (Anthropic's multiplier gives %s)", name, fmtPrice(v), v/p.Input, fmtPrice(want)))
		}
	}
	check("cache_write_5m", p.CacheWrite5m, p.Input*1.25)
	check("cache_write_1h", p.CacheWrite1h, p.Input*2)
	return w
}

// perMillion converts a per-token price to USD per million tokens, rounded to a billionth
// so that float noise (3.7499999999999996) does not reach the file.
func perMillion(perToken float64) float64 { return math.Round(perToken*1e6*1e9) / 1e9 }

func fmtPrice(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// Render writes rows as an HCL file of pricing blocks, one exact model name each, with a
// header naming the source.
func Render(rows []Row, source string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Generated by `claude-relay pricing import` from\n#   %s\n", hclComment(source))
	b.WriteString("# (LiteLLM's model_prices_and_context_window.json format), Anthropic API models only.\n")
	b.WriteString("# USD per million tokens. Each label is an exact model name; these blocks are matched\n")
	b.WriteString("# before the built-in table, which still prices every model not listed here.\n")
	b.WriteString("# Review it (the import prints a diff) before writing; run the import again to refresh.\n")
	for _, r := range rows {
		p := r.Price
		b.WriteString("\n")
		if len(r.Derived) > 0 {
			fmt.Fprintf(&b, "# derived from the input price (not in the table): %s\n", strings.Join(r.Derived, ", "))
		}
		for _, w := range r.Warnings {
			fmt.Fprintf(&b, "# CHECK: %s\n", w)
		}
		fmt.Fprintf(&b, "pricing %q {\n", p.Model)
		writeRates(&b, "  ", "", p.Input, p.Output, p.CacheWrite5m, p.CacheWrite1h, p.CacheRead)
		if t := p.LongContext; t.AboveInputTokens > 0 {
			b.WriteString("  long_context {\n")
			fmt.Fprintf(&b, "    above_input_tokens = %d\n", t.AboveInputTokens)
			writeRates(&b, "    ", "    ", t.Input, t.Output, t.CacheWrite5m, t.CacheWrite1h, t.CacheRead)
			b.WriteString("  }\n")
		}
		b.WriteString("}\n")
	}
	return b.Bytes()
}

func writeRates(b *bytes.Buffer, indent, pad string, in, out, w5, w1, read float64) {
	fmt.Fprintf(b, "%sinput          %s= %s\n", indent, pad, fmtPrice(in))
	fmt.Fprintf(b, "%soutput         %s= %s\n", indent, pad, fmtPrice(out))
	fmt.Fprintf(b, "%scache_write_5m %s= %s\n", indent, pad, fmtPrice(w5))
	fmt.Fprintf(b, "%scache_write_1h %s= %s\n", indent, pad, fmtPrice(w1))
	fmt.Fprintf(b, "%scache_read     %s= %s\n", indent, pad, fmtPrice(read))
}

// hclComment keeps s on one comment line.
func hclComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
