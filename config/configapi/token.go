package configapi

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Audience is the JWT audience of sidecar tokens. It differs from admin session tokens'
// ("claude-relay-admin"), so neither kind of token is accepted in place of the other.
const Audience = "claude-relay-sidecar"

// tokenIssuer is the iss claim of sidecar tokens.
const tokenIssuer = "claude-relay-sidecar"

// MaxTokenTTL is the longest lifetime a sidecar token may claim.
const MaxTokenTTL = 5 * time.Minute

// DefaultTokenTTL is the lifetime of the tokens sidecars mint.
const DefaultTokenTTL = time.Minute

// clockSkew is the leeway allowed between the clocks of a sidecar and its control plane.
const clockSkew = 30 * time.Second

// MintToken signs a token for sidecar id with secret (HS256), valid for ttl from now
// (at most MaxTokenTTL).
func MintToken(secret []byte, id string, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("mint sidecar token: no secret")
	}
	if id == "" {
		return "", errors.New("mint sidecar token: no sidecar id")
	}
	if ttl <= 0 || ttl > MaxTokenTTL {
		return "", fmt.Errorf("mint sidecar token: ttl %s must be in (0, %s]", ttl, MaxTokenTTL)
	}
	claims := jwt.RegisteredClaims{
		Issuer:    tokenIssuer,
		Subject:   id,
		Audience:  jwt.ClaimStrings{Audience},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("mint sidecar token: %w", err)
	}
	return s, nil
}

// VerifyToken checks a sidecar token against any of secrets (the current one and, during a
// rotation, the previous one) and returns the sidecar id. The method is pinned to HS256,
// exp and iat are required, the lifetime may not exceed MaxTokenTTL, and the audience must
// be Audience.
func VerifyToken(secrets [][]byte, raw string, now time.Time) (string, error) {
	keys := make([]jwt.VerificationKey, 0, len(secrets))
	for _, s := range secrets {
		if len(s) > 0 {
			keys = append(keys, s)
		}
	}
	if len(keys) == 0 {
		return "", errors.New("verify sidecar token: no secret configured")
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(raw, &claims,
		func(*jwt.Token) (any, error) { return jwt.VerificationKeySet{Keys: keys}, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithAudience(Audience),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithLeeway(clockSkew),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return "", fmt.Errorf("verify sidecar token: %w", err)
	}
	if claims.IssuedAt == nil {
		return "", errors.New("verify sidecar token: iat is required")
	}
	if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life > MaxTokenTTL {
		return "", fmt.Errorf("verify sidecar token: lifetime %s exceeds %s", life, MaxTokenTTL)
	}
	if claims.ExpiresAt.After(now.Add(MaxTokenTTL + clockSkew)) {
		return "", errors.New("verify sidecar token: expires too far in the future")
	}
	if claims.Subject == "" {
		return "", errors.New("verify sidecar token: sub (the sidecar id) is required")
	}
	return claims.Subject, nil
}
