package configapi

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	current  = []byte("current-secret-0123456789abcdef0123456789")
	previous = []byte("previous-secret-0123456789abcdef012345678")
	other    = []byte("someone-elses-secret-0123456789abcdef0123")
)

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSidecarTokensAreVerified(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": tokenIssuer, "sub": "host:3000", "aud": Audience, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	minted, err := MintToken(current, "host:3000", DefaultTokenTTL, now)
	if err != nil {
		t.Fatal(err)
	}
	mintedPrev, err := MintToken(previous, "host:3000", DefaultTokenTTL, now)
	if err != nil {
		t.Fatal(err)
	}
	_, adminKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		token   string
		wantErr string // "" means accepted
	}{
		{"minted with the current secret", minted, ""},
		{"minted with the previous secret during a rotation", mintedPrev, ""},
		{"signed with an unknown secret", sign(t, jwt.SigningMethodHS256, other, claims(nil)), "signature is invalid"},
		{"expired", sign(t, jwt.SigningMethodHS256, current, claims(func(c jwt.MapClaims) {
			c["iat"], c["exp"] = now.Add(-3*time.Minute).Unix(), now.Add(-2*time.Minute).Unix()
		})), "expired"},
		{"without exp", sign(t, jwt.SigningMethodHS256, current, claims(func(c jwt.MapClaims) { delete(c, "exp") })), "exp claim is required"},
		{"without iat", sign(t, jwt.SigningMethodHS256, current, claims(func(c jwt.MapClaims) { delete(c, "iat") })), "iat is required"},
		{"living longer than five minutes", sign(t, jwt.SigningMethodHS256, current, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(10 * time.Minute).Unix() })), "exceeds"},
		{"an admin session token", sign(t, jwt.SigningMethodHS256, current, claims(func(c jwt.MapClaims) { c["aud"], c["iss"] = "claude-relay-admin", "claude-relay" })), "audience"},
		{"an admin session token (EdDSA)", sign(t, jwt.SigningMethodEdDSA, adminKey, claims(func(c jwt.MapClaims) { c["aud"], c["iss"] = "claude-relay-admin", "claude-relay" })), "signing method EdDSA is invalid"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), "signing method none is invalid"},
		{"HS512 instead of the pinned HS256", sign(t, jwt.SigningMethodHS512, current, claims(nil)), "signing method HS512 is invalid"},
		{"without a sidecar id", sign(t, jwt.SigningMethodHS256, current, claims(func(c jwt.MapClaims) { delete(c, "sub") })), "sub"},
		{"not a token", "not.a.token", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := VerifyToken([][]byte{current, previous}, tt.token, now)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got error %v, want the token accepted", err)
			case tt.wantErr == "" && id != "host:3000":
				t.Fatalf("got id %q, want host:3000", id)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPreviousSecretStopsWorkingOnceRemoved(t *testing.T) {
	now := time.Now()
	tok, err := MintToken(previous, "s1", time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyToken([][]byte{current}, tok, now); err == nil {
		t.Fatal("got nil error, want a token signed with a retired secret refused")
	}
}

func TestMintTokenRefusesLongLifetimes(t *testing.T) {
	if _, err := MintToken(current, "s1", MaxTokenTTL+time.Second, time.Now()); err == nil {
		t.Fatal("got nil error, want a lifetime over MaxTokenTTL refused")
	}
}

func TestEnvelopeRejectsCorruptConfig(t *testing.T) {
	e := &Envelope{Epoch: "e", Version: 1, Config: []byte(`{"routes":[]}`)}
	e.SHA256 = Hash(e.Config)
	if _, err := e.Snapshot(); err != nil {
		t.Fatalf("intact envelope: got %v, want nil", err)
	}
	e.Config = []byte(`{"routes":[] }`)
	if _, err := e.Snapshot(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt envelope: got %v, want a corrupt error", err)
	}
}
