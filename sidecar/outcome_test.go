package sidecar

import (
	"fmt"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/sidecar/limits"
)

// TestRefusalsAreNamedByTheirReason: key refusals are named from the key provider's reason,
// limit refusals from the limit (a queue's wait told apart).
func TestRefusalsAreNamedByTheirReason(t *testing.T) {
	for reason, want := range map[string]string{
		"relay key cr_ab…cd has been revoked":         "key_revoked",
		"relay key cr_ab…cd is disabled":              "key_disabled",
		"relay key cr_ab…cd has expired":              "key_expired",
		"unknown relay key":                           "key_invalid",
		"relay keys look like cr_ followed by 64 hex": "key_invalid",
		"only the credential \"env\" is accepted":     "key_invalid",
	} {
		if got := keyRefusalKind(fmt.Errorf("%w: %s", ErrInvalidCredential, reason)); got != want {
			t.Errorf("%q: got %s, want %s", reason, got, want)
		}
	}
	for _, tt := range []struct {
		r    limits.Refusal
		want string
	}{
		{limits.Refusal{Limit: "cost_per_day_usd"}, "limit_cost_per_day_usd"},
		{limits.Refusal{Limit: "conversation_tokens_per_minute", Conversation: true}, "limit_conversation_tokens_per_minute"},
		{limits.Refusal{Limit: limits.ConcurrencyLimit}, "limit_concurrency"},
		{limits.Refusal{Limit: limits.ConcurrencyLimit, Waited: time.Second}, "queue_timeout"},
		{limits.Refusal{Limit: limits.ConcurrencyLimit, QueueFull: true}, "queue_full"},
	} {
		if got := limitRefusalKind(&tt.r); got != tt.want {
			t.Errorf("%+v: got %s, want %s", tt.r, got, tt.want)
		}
	}
}
