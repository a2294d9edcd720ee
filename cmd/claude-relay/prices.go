package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/claude-relay/claude-relay/config"
)

// writePriceTable prints the effective price table of snap, one model glob a
// line in the order globs are matched (the first that matches prices a
// model), then the fallback: its five prices in USD per million tokens and
// where the row came from (built-in, or the file:line of its pricing block).
// A long-context tier follows its row on an indented line: its rates price
// every token of a request whose prompt is longer.
func writePriceTable(w io.Writer, snap *config.Snapshot, src *config.Sources) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL GLOB\tINPUT\tOUTPUT\tCACHE WRITE 5M\tCACHE WRITE 1H\tCACHE READ\tSOURCE")
	for _, p := range snap.Pricing {
		writePriceRow(tw, p.Model, p, src.PriceOrigin(p.Model))
		if t := p.LongContext; t.AboveInputTokens > 0 {
			writePriceRow(tw, fmt.Sprintf("  prompt > %d tokens", t.AboveInputTokens),
				config.Price{Input: t.Input, Output: t.Output, CacheWrite5m: t.CacheWrite5m, CacheWrite1h: t.CacheWrite1h, CacheRead: t.CacheRead}, "  (long context)")
		}
	}
	writePriceRow(tw, "(fallback: any other model)", snap.Fallback, src.PriceOrigin(""))
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write price table: %w", err)
	}
	if _, err := fmt.Fprintln(w, "(USD per million tokens; the first glob that matches a model prices it)"); err != nil {
		return fmt.Errorf("write price table: %w", err)
	}
	return nil
}

func writePriceRow(w io.Writer, name string, p config.Price, origin string) {
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, usd(p.Input), usd(p.Output), usd(p.CacheWrite5m), usd(p.CacheWrite1h), usd(p.CacheRead), origin)
}

// usd formats a price with as few digits as it needs.
func usd(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
