package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAccountCapsAreStoredUpdatedAndRemoved(t *testing.T) {
	s, _, _, _ := newStore(t)
	ctx := context.Background()
	caps := AccountCaps{MaxConcurrency: 3, TokensPerDay: 1_000_000, CostPer5hUSD: 2.5}
	a, err := s.AddAccount(ctx, AccountSpec{Name: "capped", Credential: "sk-ant-api03-x", Caps: caps})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAccount(ctx, a.ID); got.Caps != caps {
		t.Errorf("stored caps: got %+v, want %+v", got.Caps, caps)
	}
	more := AccountCaps{TokensPer5h: 10}
	if got, err := s.UpdateAccount(ctx, a.ID, AccountUpdate{Caps: &more}); err != nil || got.Caps != more {
		t.Errorf("updated caps: got %+v %v, want %+v (replaced whole)", got.Caps, err, more)
	}
	if got, err := s.UpdateAccount(ctx, a.ID, AccountUpdate{Caps: &AccountCaps{}}); err != nil || !got.Caps.IsZero() {
		t.Errorf("removed caps: got %+v %v, want none", got.Caps, err)
	}
	bad := AccountCaps{MaxConcurrency: -1, CostPerDayUSD: -2}
	_, err = s.UpdateAccount(ctx, a.ID, AccountUpdate{Caps: &bad})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "max_concurrency") || !strings.Contains(err.Error(), "cost_per_day_usd") {
		t.Errorf("negative caps: got %v, want ErrInvalid naming both", err)
	}
	if _, err := s.AddAccount(ctx, AccountSpec{Name: "bad", Credential: "sk-ant-api03-y", Caps: AccountCaps{TokensPer5h: -5}}); err == nil || !strings.Contains(err.Error(), "tokens_per_5h") {
		t.Errorf("add with a negative cap: got %v, want it refused", err)
	}
}

func TestAccountWindowsRoundTripAndSkipWhatDoesNotDecode(t *testing.T) {
	s, _, rdb, _ := newStore(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	w := Windows{Status: "allowed", Claim: "seven_day", ObservedAt: at,
		FiveHour: &Window{Utilization: 0.5, Reset: at.Add(time.Hour), Status: "allowed"},
		SevenDay: &Window{Utilization: 1.02, Reset: at.Add(48 * time.Hour), Status: "rejected"}}
	rdb.HSet(ctx, s.Schema().AccountWindows(), "a1", w.Encode(), "a2", "not json", "a3", `{"5h":{"u":0.1}}`)
	got, err := s.AccountWindows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["a1"].Encode() != w.Encode() {
		t.Errorf("got %+v, want only a1's reading back as written", got)
	}
}
