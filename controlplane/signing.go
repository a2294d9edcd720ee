package controlplane

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/golang-jwt/jwt/v5"
)

// SigningKeyFile is the file, under the control plane's data directory, that holds the
// Ed25519 key admin session tokens are signed with. Only control planes hold it: sidecars
// never need it (their tokens are HMACs under CRS_SECURITY__JWT_SECRET, accepted only on the
// sidecar endpoint), and control planes that serve one admin API share it (copy the file).
const SigningKeyFile = "admin-signing.key"

// pemPrivateKey is the PEM block type of a PKCS #8 private key (what openssl writes).
const pemPrivateKey = "PRIVATE KEY"

// signer signs and verifies admin session tokens with one Ed25519 key pair.
type signer struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	kid  string // KeyID(pub), the tokens' "kid" header
}

func newSigner(priv ed25519.PrivateKey) (*signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("control plane: an Ed25519 signing key for admin sessions is required (see LoadOrCreateSigningKey)")
	}
	pub, ok := priv.Public().(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("control plane: signing key has no Ed25519 public key")
	}
	return &signer{priv: priv, pub: pub, kid: KeyID(pub)}, nil
}

// KeyID names a public key in tokens and logs: the hex of the first 8 bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// LoadOrCreateSigningKey reads the Ed25519 private key at path (PEM, PKCS #8, as
// `openssl genpkey -algorithm ed25519` writes it) or, when the file does not exist,
// generates one and writes it with mode 0600 (creating the directory with mode 0700).
// Control planes that start at once on one directory agree on the first key written.
// created reports whether the key is new. A key file that group or others may read is
// refused: a sidecar holding it could sign admin sessions.
func LoadOrCreateSigningKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	key, err = readSigningKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	if err := writeNewSigningKey(path); err != nil {
		return nil, false, err
	}
	key, err = readSigningKey(path)
	return key, err == nil, err
}

// readSigningKey reads and checks the key file at path.
func readSigningKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("admin signing key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("admin signing key %s has mode %04o: only its owner may read it (chmod 600 %s)", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("admin signing key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != pemPrivateKey {
		return nil, fmt.Errorf("admin signing key %s: not a PEM %q block (delete the file to have a new key generated; every admin logs in again)", path, pemPrivateKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("admin signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("admin signing key %s: a %T, want an Ed25519 key", path, k)
	}
	return priv, nil
}

// writeNewSigningKey generates a key and links it into place only if path still does not
// exist, so a concurrent writer's key is never replaced.
func writeNewSigningKey(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("admin signing key: create %s: %w", dir, err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("admin signing key: generate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("admin signing key: encode: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".admin-signing-*.tmp")
	if err != nil {
		return fmt.Errorf("admin signing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	werr := tmp.Chmod(0o600)
	if werr == nil {
		werr = pem.Encode(tmp, &pem.Block{Type: pemPrivateKey, Bytes: der})
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if err := tmp.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("admin signing key: write %s: %w", tmp.Name(), werr)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("admin signing key: %w", err)
	}
	return nil
}

// sign signs claims (EdDSA) and names the key in the "kid" header.
func (g *signer) sign(claims jwt.Claims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = g.kid
	s, err := t.SignedString(g.priv)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// key is the jwt.Keyfunc of session tokens: this control plane's public key, for a token
// that names it.
func (g *signer) key(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if kid != g.kid {
		return nil, foreignKeyError{kid: kid}
	}
	return g.pub, nil
}

// foreignKeyError is a session token signed with a key this control plane does not hold
// (another control plane's, a replaced one, or none at all).
type foreignKeyError struct{ kid string }

func (e foreignKeyError) Error() string {
	return fmt.Sprintf("token names signing key %q, not this control plane's", e.kid)
}

// validKeyID reports whether kid looks like a KeyID (16 lower-case hex digits), so it can be
// repeated to a client safely.
func validKeyID(kid string) bool {
	if len(kid) != 16 {
		return false
	}
	for i := 0; i < len(kid); i++ {
		if c := kid[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
