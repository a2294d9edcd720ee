package crs

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/scrypt"
)

// Salts CRS derives its AES keys with, one per account type.
const (
	// SaltClaudeOAuth is the scrypt salt of Claude OAuth accounts (claudeAccountService).
	SaltClaudeOAuth = "salt"
	// SaltClaudeConsole is the scrypt salt of Claude Console accounts.
	SaltClaudeConsole = "claude-console-salt"
)

// ErrWrongKey means an envelope did not open: the CRS ENCRYPTION_KEY given is not the one it
// was sealed with, or the value is damaged.
var ErrWrongKey = errors.New("does not decrypt with this CRS encryption key")

// Field encodings found in CRS account hashes.
const (
	encIV     = "aes-256-cbc"        // "<iv hex>:<ciphertext hex>" under scrypt(key, salt)
	encLegacy = "aes-256-cbc legacy" // hex ciphertext under EVP_BytesToKey(MD5, key) (createCipher)
	encPlain  = "unencrypted"        // CRS kept the value as is (its encryption failed once)
)

// Decrypter opens CRS's account envelopes: AES-256-CBC, PKCS#7 padding, hex, with a key
// derived by scrypt (N=16384, r=8, p=1, Node's defaults) from ENCRYPTION_KEY and a salt per
// account type. Keys are derived once.
type Decrypter struct {
	keys      map[string][]byte // salt → AES key
	legacyKey []byte            // createCipher's EVP_BytesToKey key and IV
	legacyIV  []byte
}

// NewDecrypter derives the keys of both Claude account types from CRS's ENCRYPTION_KEY.
func NewDecrypter(encryptionKey string) (*Decrypter, error) {
	if encryptionKey == "" {
		return nil, errors.New("empty CRS encryption key")
	}
	d := &Decrypter{keys: map[string][]byte{}}
	for _, salt := range []string{SaltClaudeOAuth, SaltClaudeConsole} {
		k, err := DeriveKey(encryptionKey, salt)
		if err != nil {
			return nil, err
		}
		d.keys[salt] = k
	}
	d.legacyKey, d.legacyIV = evpBytesToKey([]byte(encryptionKey))
	return d, nil
}

// DeriveKey is CRS's crypto.scryptSync(encryptionKey, salt, 32).
func DeriveKey(encryptionKey, salt string) ([]byte, error) {
	k, err := scrypt.Key([]byte(encryptionKey), []byte(salt), 16384, 8, 1, 32)
	if err != nil {
		return nil, fmt.Errorf("derive CRS key: %w", err)
	}
	return k, nil
}

// Open decrypts a field of an account of the type salt names and says how it was stored.
// An empty field is "". Claude OAuth accounts may hold the pre-IV format (createCipher);
// a value that is in neither format is one CRS kept unencrypted, as CRS reads it too.
func (d *Decrypter) Open(salt, field string) (plain, encoding string, err error) {
	if field == "" {
		return "", "", nil
	}
	key, ok := d.keys[salt]
	if !ok {
		return "", "", fmt.Errorf("unknown salt %q", salt)
	}
	if ivHex, ctHex, found := strings.Cut(field, ":"); found && !strings.Contains(ctHex, ":") {
		iv, err1 := hex.DecodeString(ivHex)
		ct, err2 := hex.DecodeString(ctHex)
		if err1 != nil || err2 != nil || len(iv) != aes.BlockSize {
			return field, encPlain, nil // not an envelope: CRS returns it as is
		}
		out, err := cbcOpen(key, iv, ct)
		if err != nil {
			return "", encIV, err
		}
		return out, encIV, nil
	}
	if salt == SaltClaudeOAuth {
		if ct, err := hex.DecodeString(field); err == nil && len(ct) > 0 {
			if out, err := cbcOpen(d.legacyKey, d.legacyIV, ct); err == nil {
				return out, encLegacy, nil
			}
		}
	}
	return field, encPlain, nil
}

// cbcOpen decrypts AES-256-CBC with PKCS#7 padding and insists on printable UTF-8 (tokens,
// keys and URLs are): a wrong key passes the padding check about once in 256 tries.
func cbcOpen(key, iv, ct []byte) (string, error) {
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return "", ErrWrongKey
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", fmt.Errorf("aes: %w", err)
	}
	out := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ct)
	n := int(out[len(out)-1])
	if n == 0 || n > aes.BlockSize || !bytes.Equal(out[len(out)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return "", ErrWrongKey
	}
	out = out[:len(out)-n]
	if !utf8.Valid(out) || bytes.ContainsFunc(out, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) {
		return "", ErrWrongKey
	}
	return string(out), nil
}

// evpBytesToKey is OpenSSL's EVP_BytesToKey(AES-256-CBC, MD5, no salt, 1 round), what Node's
// deprecated crypto.createCipher derived from a password.
func evpBytesToKey(password []byte) (key, iv []byte) {
	var out, prev []byte
	for len(out) < 48 {
		h := md5.New()
		h.Write(prev)
		h.Write(password)
		prev = h.Sum(nil)
		out = append(out, prev...)
	}
	return out[:32], out[32:48]
}

// Seal is CRS's encryption of field under salt with the given IV, for building test data:
// "<iv hex>:<ciphertext hex>".
func Seal(encryptionKey, salt string, iv []byte, field string) (string, error) {
	key, err := DeriveKey(encryptionKey, salt)
	if err != nil {
		return "", err
	}
	return sealWith(key, iv, field)
}

func sealWith(key, iv []byte, field string) (string, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", fmt.Errorf("aes: %w", err)
	}
	if len(iv) != aes.BlockSize {
		return "", fmt.Errorf("iv is %d bytes, want %d", len(iv), aes.BlockSize)
	}
	n := aes.BlockSize - len(field)%aes.BlockSize
	buf := append([]byte(field), bytes.Repeat([]byte{byte(n)}, n)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)
	return hex.EncodeToString(iv) + ":" + hex.EncodeToString(buf), nil
}
