package crs

import (
	"testing"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/store"
)

func TestADayOfAccountUsageIsPricedAtStandardRates(t *testing.T) {
	def, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := config.Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	b := &builder{opts: Options{Pricer: rt}}
	// 300k input tokens in a day is many requests, not one long prompt: $3/MTok, not $6.
	got := b.price("claude-sonnet-4-5-20250929", store.Usage{InputTokens: 300_000, OutputTokens: 1000})
	if want := int64(300_000*3 + 1000*15); got != want {
		t.Errorf("got %d micro-USD, want %d (standard rates)", got, want)
	}
}
