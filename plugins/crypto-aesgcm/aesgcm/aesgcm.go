// Package aesgcm seals and opens secrets with AES-256-GCM under keys derived from CRS_SECURITY__ENCRYPTION_KEY.
package aesgcm

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/hkdf"
)

// SecretLen is the exact length, in characters, of an encryption secret.
const SecretLen = 32

// EnvVar names the environment variable operators set the primary secret in.
const EnvVar = "CRS_SECURITY__ENCRYPTION_KEY"

const (
	version   = "v1"
	keyInfo   = "claude-relay aes-256-gcm v1"
	keyIDInfo = "claude-relay key-id v1"
	nonceLen  = 12
	keyIDLen  = 8 // hex characters
)

var (
	// ErrMalformed is returned for an envelope that is not in the "v1.<keyid>.<base64url>" form.
	ErrMalformed = errors.New("malformed envelope")
	// ErrUnknownKey is returned when an envelope was sealed under a key the Sealer does not hold.
	ErrUnknownKey = errors.New("envelope sealed under an unknown key")
	// ErrAuth is returned when an envelope fails authentication: wrong key, wrong aad or tampering.
	ErrAuth = errors.New("envelope failed authentication (wrong key, wrong aad or tampered data)")
)

// Sealer seals under a primary key and opens envelopes sealed under the primary or any previous key.
// It is safe for concurrent use.
type Sealer struct {
	primary *key
	keys    map[string]*key // by key id, includes primary
}

type key struct {
	id   string
	aead cipher.AEAD
}

// New builds a sealer from the operator's CRS_SECURITY__ENCRYPTION_KEY (must be exactly 32
// characters) plus older keys accepted for decrypt only (rotation).
func New(primary string, previous ...string) (*Sealer, error) {
	if len(primary) != SecretLen {
		return nil, fmt.Errorf("%s must be exactly %d characters, got %d", EnvVar, SecretLen, len(primary))
	}
	p, err := deriveKey(primary)
	if err != nil {
		return nil, err
	}
	s := &Sealer{primary: p, keys: map[string]*key{p.id: p}}
	seen := map[string]string{p.id: primary}
	for i, prev := range previous {
		if len(prev) != SecretLen {
			return nil, fmt.Errorf("previous encryption key #%d must be exactly %d characters like %s, got %d", i+1, SecretLen, EnvVar, len(prev))
		}
		k, err := deriveKey(prev)
		if err != nil {
			return nil, err
		}
		if other, ok := seen[k.id]; ok {
			if other != prev {
				return nil, fmt.Errorf("previous encryption key #%d has the same key id %s as another key; choose a different secret", i+1, k.id)
			}
			continue
		}
		seen[k.id] = prev
		s.keys[k.id] = k
	}
	return s, nil
}

func deriveKey(secret string) (*key, error) {
	aesKey := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, []byte(secret), nil, []byte(keyInfo)), aesKey); err != nil {
		return nil, fmt.Errorf("derive encryption key: %w", err)
	}
	idBytes := make([]byte, keyIDLen/2)
	if _, err := io.ReadFull(hkdf.New(sha256.New, []byte(secret), nil, []byte(keyIDInfo)), idBytes); err != nil {
		return nil, fmt.Errorf("derive key id: %w", err)
	}
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return nil, fmt.Errorf("aes cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return &key{id: hex.EncodeToString(idBytes), aead: aead}, nil
}

// KeyID returns the id of the primary key, which new envelopes carry.
func (s *Sealer) KeyID() string { return s.primary.id }

// Seal encrypts plaintext under the primary key, binding aad (e.g. the record id) so the
// envelope cannot be moved to another record. The envelope is "v1.<keyid>.<base64url(nonce||ciphertext)>".
func (s *Sealer) Seal(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	return s.seal(s.primary, plaintext, aad)
}

func (s *Sealer) seal(k *key, plaintext, aad []byte) ([]byte, error) {
	header := version + "." + k.id + "."
	buf := make([]byte, nonceLen, nonceLen+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return nil, fmt.Errorf("read nonce: %w", err)
	}
	sealed := k.aead.Seal(buf, buf[:nonceLen], plaintext, fullAAD(header, aad))
	out := make([]byte, len(header)+base64.RawURLEncoding.EncodedLen(len(sealed)))
	copy(out, header)
	base64.RawURLEncoding.Encode(out[len(header):], sealed)
	return out, nil
}

// Open authenticates and decrypts an envelope sealed by the primary or a previous key with the same aad.
func (s *Sealer) Open(_ context.Context, envelope, aad []byte) ([]byte, error) {
	id, body, err := parse(envelope)
	if err != nil {
		return nil, err
	}
	k, ok := s.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: key id %s (add the old secret as a previous key to read it)", ErrUnknownKey, id)
	}
	raw := make([]byte, base64.RawURLEncoding.DecodedLen(len(body)))
	n, err := base64.RawURLEncoding.Decode(raw, body)
	if err != nil {
		return nil, fmt.Errorf("%w: bad base64", ErrMalformed)
	}
	raw = raw[:n]
	if len(raw) < nonceLen+k.aead.Overhead() {
		return nil, fmt.Errorf("%w: too short", ErrMalformed)
	}
	header := string(envelope[:len(envelope)-len(body)])
	plain, err := k.aead.Open(nil, raw[:nonceLen], raw[nonceLen:], fullAAD(header, aad))
	if err != nil {
		return nil, ErrAuth
	}
	return plain, nil
}

// Rewrap re-seals an envelope under the primary key if it was sealed by an older key; changed
// reports whether a new envelope was produced. An envelope already under the primary is
// returned as is.
func (s *Sealer) Rewrap(ctx context.Context, envelope, aad []byte) ([]byte, bool, error) {
	id, _, err := parse(envelope)
	if err != nil {
		return nil, false, err
	}
	if id == s.primary.id {
		return envelope, false, nil
	}
	plain, err := s.Open(ctx, envelope, aad)
	if err != nil {
		return nil, false, err
	}
	out, err := s.seal(s.primary, plain, aad)
	clear(plain)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// KeyIDOf returns the id of the key an envelope was sealed under, without decrypting it.
func KeyIDOf(envelope []byte) (string, error) {
	id, _, err := parse(envelope)
	return id, err
}

// parse splits "v1.<keyid>.<body>" and returns the key id and body.
func parse(envelope []byte) (id string, body []byte, err error) {
	rest, ok := strings.CutPrefix(string(envelope), version+".")
	if !ok {
		return "", nil, fmt.Errorf("%w: want prefix %q", ErrMalformed, version+".")
	}
	id, _, ok = strings.Cut(rest, ".")
	if !ok || len(id) != keyIDLen || !isLowerHex(id) {
		return "", nil, fmt.Errorf("%w: bad key id", ErrMalformed)
	}
	return id, envelope[len(version)+1+keyIDLen+1:], nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// fullAAD binds the envelope header (version and key id) as well as the caller's aad.
func fullAAD(header string, aad []byte) []byte {
	out := make([]byte, 0, len(header)+len(aad))
	out = append(out, header...)
	return append(out, aad...)
}
