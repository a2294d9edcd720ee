package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestAdminPasswordHashRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := newStore(t)
	if _, err := s.AdminPasswordHash(ctx, "admin"); !errors.Is(err, ErrNotFound) {
		t.Errorf("got %v, want %v before it is set", err, ErrNotFound)
	}
	hash := []byte("$2a$10$abcdefghijklmnopqrstuv\x00binary")
	if err := s.SetAdminPassword(ctx, "admin", hash); err != nil {
		t.Fatal(err)
	}
	got, err := s.AdminPasswordHash(ctx, "admin")
	if err != nil || !bytes.Equal(got, hash) {
		t.Errorf("got (%q, %v), want (%q, nil)", got, err, hash)
	}
	for name, err := range map[string]error{
		"empty user": s.SetAdminPassword(ctx, "", hash),
		"empty hash": s.SetAdminPassword(ctx, "admin", nil),
	} {
		if err == nil {
			t.Errorf("%s: got nil, want an error", name)
		}
	}
}

func TestRevokedTokenIsRememberedUntilExpiry(t *testing.T) {
	ctx := context.Background()
	s, clk, rdb, _ := newStore(t)
	tests := []struct {
		name        string
		jti         string
		until       time.Time
		wantRevoked bool
		wantTTL     time.Duration
	}{
		{"future expiry", "jti-1", clk.Now().Add(time.Hour), true, time.Hour + tokenRevocationGrace},
		{"already expired", "jti-2", clk.Now().Add(-time.Hour), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.RevokeToken(ctx, tt.jti, tt.until); err != nil {
				t.Fatal(err)
			}
			got, err := s.TokenRevoked(ctx, tt.jti)
			if err != nil || got != tt.wantRevoked {
				t.Fatalf("got (%v, %v), want (%v, nil)", got, err, tt.wantRevoked)
			}
			if !tt.wantRevoked {
				return
			}
			ttl := rdb.PTTL(ctx, s.keys.RevokedToken(tt.jti)).Val()
			if d := tt.wantTTL - ttl; d < 0 || d > 5*time.Second {
				t.Errorf("got TTL %v, want about %v", ttl, tt.wantTTL)
			}
		})
	}
	if got, err := s.TokenRevoked(ctx, "never"); err != nil || got {
		t.Errorf("got (%v, %v), want (false, nil) for an unknown token", got, err)
	}
	if err := s.RevokeToken(ctx, "", clk.Now().Add(time.Hour)); err == nil {
		t.Errorf("got nil, want an error for an empty jti")
	}
}
