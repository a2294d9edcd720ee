package aesgcm

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

const (
	secretA = "0123456789abcdef0123456789abcdef"
	secretB = "fedcba9876543210fedcba9876543210"
	secretC = "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"
)

func mustNew(t *testing.T, primary string, previous ...string) *Sealer {
	t.Helper()
	s, err := New(primary, previous...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := mustNew(t, secretA)
	tests := []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{"credential with aad", []byte("sk-ant-api03-secret"), []byte("acct_1")},
		{"empty plaintext", nil, []byte("acct_1")},
		{"no aad", []byte("plaintext-without-aad"), nil},
		{"binary", []byte{0, 1, 2, 255, 254}, []byte("k")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := s.Seal(ctx, tt.plaintext, tt.aad)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if len(tt.plaintext) > 0 && bytes.Contains(env, tt.plaintext) {
				t.Fatalf("envelope %q contains the plaintext", env)
			}
			if !strings.HasPrefix(string(env), "v1."+s.KeyID()+".") {
				t.Errorf("got envelope %q, want prefix %q", env, "v1."+s.KeyID()+".")
			}
			got, err := s.Open(ctx, env, tt.aad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("got %q, want %q", got, tt.plaintext)
			}
		})
	}
}

func TestSealUsesFreshNonce(t *testing.T) {
	s := mustNew(t, secretA)
	a, _ := s.Seal(context.Background(), []byte("same"), []byte("aad"))
	b, _ := s.Seal(context.Background(), []byte("same"), []byte("aad"))
	if bytes.Equal(a, b) {
		t.Errorf("got identical envelopes %q for two seals, want different nonces", a)
	}
}

func TestOpenRejectsWrongAADTamperAndWrongKey(t *testing.T) {
	ctx := context.Background()
	s := mustNew(t, secretA)
	env, err := s.Seal(ctx, []byte("sk-ant-secret"), []byte("acct_1"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		out := bytes.Clone(env)
		// Swap a base64url character for another valid one.
		if out[i] == 'A' {
			out[i] = 'B'
		} else {
			out[i] = 'A'
		}
		return out
	}
	otherKeyEnv, _ := mustNew(t, secretB).Seal(ctx, []byte("sk-ant-secret"), []byte("acct_1"))
	// Same key id header as s, but a body from a different key.
	forged := append([]byte("v1."+s.KeyID()+"."), otherKeyEnv[len("v1.12345678."):]...)

	tests := []struct {
		name     string
		envelope []byte
		aad      []byte
		want     error
	}{
		{"wrong aad", env, []byte("acct_2"), ErrAuth},
		{"missing aad", env, nil, ErrAuth},
		{"tampered ciphertext", flip(len(env) - 3), []byte("acct_1"), ErrAuth},
		{"tampered nonce", flip(len("v1.12345678.") + 1), []byte("acct_1"), ErrAuth},
		{"truncated", env[:len(env)-4], []byte("acct_1"), ErrAuth},
		{"body from another key", forged, []byte("acct_1"), ErrAuth},
		{"sealed by unknown key", otherKeyEnv, []byte("acct_1"), ErrUnknownKey},
		{"not an envelope", []byte("sk-ant-plain"), []byte("acct_1"), ErrMalformed},
		{"bad key id", []byte("v1.XYZ.abcd"), []byte("acct_1"), ErrMalformed},
		{"too short", []byte("v1." + s.KeyID() + ".AAAA"), []byte("acct_1"), ErrMalformed},
		{"empty", nil, nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Open(ctx, tt.envelope, tt.aad)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got (%q, %v), want error %v", got, err, tt.want)
			}
		})
	}
}

func TestPreviousKeyDecryptsAndRewrapMovesToPrimary(t *testing.T) {
	ctx := context.Background()
	old := mustNew(t, secretB)
	env, err := old.Seal(ctx, []byte("sk-ant-rotated"), []byte("acct_9"))
	if err != nil {
		t.Fatal(err)
	}
	rotated := mustNew(t, secretA, secretB)

	got, err := rotated.Open(ctx, env, []byte("acct_9"))
	if err != nil {
		t.Fatalf("Open with previous key: %v", err)
	}
	if string(got) != "sk-ant-rotated" {
		t.Errorf("got %q, want %q", got, "sk-ant-rotated")
	}

	newEnv, changed, err := rotated.Rewrap(ctx, env, []byte("acct_9"))
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if !changed {
		t.Errorf("got changed=false, want true for an envelope under an old key")
	}
	id, err := KeyIDOf(newEnv)
	if err != nil {
		t.Fatal(err)
	}
	if id != rotated.KeyID() {
		t.Errorf("got key id %s, want primary %s", id, rotated.KeyID())
	}
	// The primary alone (old key dropped) now reads it.
	got, err = mustNew(t, secretA).Open(ctx, newEnv, []byte("acct_9"))
	if err != nil || string(got) != "sk-ant-rotated" {
		t.Errorf("got (%q, %v), want (%q, nil)", got, err, "sk-ant-rotated")
	}

	again, changed, err := rotated.Rewrap(ctx, newEnv, []byte("acct_9"))
	if err != nil || changed || !bytes.Equal(again, newEnv) {
		t.Errorf("got (changed=%v, err=%v, same=%v), want unchanged envelope for primary key", changed, err, bytes.Equal(again, newEnv))
	}

	if _, _, err := rotated.Rewrap(ctx, env, []byte("acct_other")); !errors.Is(err, ErrAuth) {
		t.Errorf("got %v, want %v for Rewrap with wrong aad", err, ErrAuth)
	}
}

func TestKeyIDIsStableAndDistinct(t *testing.T) {
	a1, a2, b := mustNew(t, secretA), mustNew(t, secretA), mustNew(t, secretB)
	if a1.KeyID() != a2.KeyID() {
		t.Errorf("got %s and %s, want the same key id for the same secret", a1.KeyID(), a2.KeyID())
	}
	if a1.KeyID() == b.KeyID() {
		t.Errorf("got equal key ids %s for different secrets", a1.KeyID())
	}
	if len(a1.KeyID()) != 8 || !isLowerHex(a1.KeyID()) {
		t.Errorf("got key id %q, want 8 lowercase hex chars", a1.KeyID())
	}
}

func TestNewRefusesWrongLengthKey(t *testing.T) {
	tests := []struct {
		name     string
		primary  string
		previous []string
		want     string
	}{
		{"empty primary", "", nil, "CRS_SECURITY__ENCRYPTION_KEY must be exactly 32 characters, got 0"},
		{"short primary", "short", nil, "CRS_SECURITY__ENCRYPTION_KEY must be exactly 32 characters, got 5"},
		{"long primary", secretA + "x", nil, "CRS_SECURITY__ENCRYPTION_KEY must be exactly 32 characters, got 33"},
		{"short previous", secretA, []string{secretB, "nope"}, "previous encryption key #2 must be exactly 32 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.primary, tt.previous...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
			if tt.primary != "" && strings.Contains(err.Error(), tt.primary) {
				t.Errorf("got %q, want an error that does not echo the secret", err)
			}
		})
	}
}

func TestNewAcceptsDuplicatePreviousKeys(t *testing.T) {
	s, err := New(secretA, secretA, secretC, secretC)
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	if got := len(s.keys); got != 2 {
		t.Errorf("got %d keys, want 2", got)
	}
}

func TestKeyIDOfRejectsMalformed(t *testing.T) {
	for _, in := range []string{"", "v1.", "v2.12345678.AAAA", "v1.1234567.AAAA", "v1.1234567G.AAAA"} {
		t.Run(in, func(t *testing.T) {
			if id, err := KeyIDOf([]byte(in)); !errors.Is(err, ErrMalformed) {
				t.Errorf("got (%q, %v), want %v", id, err, ErrMalformed)
			}
		})
	}
}
