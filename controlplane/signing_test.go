package controlplane

import (
	"crypto/ed25519"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// TestAdminTokenMintedWithTheJWTSecretIsRefused forges what a sidecar could make with what it
// holds: HS256 under CRS_SECURITY__JWT_SECRET, for a user that does not exist, valid for ten
// years, with every claim an admin session has.
func TestAdminTokenMintedWithTheJWTSecretIsRefused(t *testing.T) {
	h := newHarness(t)
	now := h.clock.Now()
	claims := jwt.MapClaims{
		"iss": tokenIssuer, "sub": "nobody", "aud": adminapi.Audience, "jti": "forged",
		"iat": now.Unix(), "exp": now.AddDate(10, 0, 0).Unix(), "gen": 0,
	}
	if epoch, err := h.st.AdminEpoch(t.Context()); err == nil && epoch != "" {
		claims["epc"] = epoch // a sidecar can read Redis
	}
	forged := signed(t, jwt.SigningMethodHS256, testJWTSecret, claims)
	claims["sub"] = testUser
	forgedAdmin := signed(t, jwt.SigningMethodHS256, testJWTSecret, claims)
	sidecarToken, err := configapi.MintToken(testJWTSecret, "sidecar:3000", time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	for name, token := range map[string]string{"unknown user": forged, "the real admin": forgedAdmin, "a sidecar's poll token": sidecarToken} {
		for _, path := range []string{"/admin/whoami", "/admin/keys"} {
			r := h.do("GET", path, token, nil)
			if r.status != http.StatusUnauthorized {
				t.Errorf("%s on %s: got %d (%s), want 401", name, path, r.status, r.body)
			}
		}
	}
}

func TestSessionTokensAreEdDSASignedAndNameTheKey(t *testing.T) {
	h, token := loggedIn(t)
	var claims sessionClaims
	parsed, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return h.key.Public(), nil },
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(h.clock.Now))
	if err != nil {
		t.Fatalf("verify with the control plane's public key: %v", err)
	}
	if kid := parsed.Header["kid"]; kid != h.kid() {
		t.Errorf("got kid %v, want %s", kid, h.kid())
	}
	if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life != DefaultTokenTTL {
		t.Errorf("got lifetime %v, want %v", life, DefaultTokenTTL)
	}
	if claims.Epoch == "" || claims.Subject != testUser {
		t.Errorf("got claims %+v, want the admin and the store's epoch", claims)
	}
}

func TestControlPlanesSharingTheKeyAcceptEachOthersSessions(t *testing.T) {
	h := newHarness(t)
	peer := func(key ed25519.PrivateKey) *httptest.Server {
		cp, err := New(Options{Store: h.st, SigningKey: key, Now: h.clock.Now, bcryptCost: bcrypt.MinCost})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(cp.Handler())
		t.Cleanup(hs.Close)
		return hs
	}
	token := h.login()
	get := func(hs *httptest.Server) response {
		req, _ := http.NewRequest("GET", hs.URL+"/admin/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return response{status: resp.StatusCode, body: body}
	}
	wantStatus(t, get(peer(h.key)), http.StatusOK)

	other := newTestKey(t)
	r := get(peer(other))
	wantStatus(t, r, http.StatusUnauthorized)
	msg := r.errorBody(t).Message
	if !strings.Contains(msg, h.kid()) || !strings.Contains(msg, KeyID(other.Public().(ed25519.PublicKey))) || !strings.Contains(msg, SigningKeyFile) {
		t.Errorf("got message %q, want both key ids and the key file to share", msg)
	}
}

func TestSigningKeyIsCreatedOnceWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control", SigningKeyFile)
	key, created, err := LoadOrCreateSigningKey(path)
	if err != nil || !created || len(key) != ed25519.PrivateKeySize {
		t.Fatalf("first load: got (%d-byte key, created %t, %v), want a new key", len(key), created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: got %v (%v), want mode 0600", fi.Mode().Perm(), err)
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("key dir: got %v (%v), want mode 0700", di.Mode().Perm(), err)
	}
	again, created, err := LoadOrCreateSigningKey(path)
	if err != nil || created || !again.Equal(key) {
		t.Fatalf("second load: got (created %t, %v), want the same key", created, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("got %d files in the key dir, want only the key (no temporary left)", len(entries))
	}
}

func TestConcurrentFirstStartsAgreeOnOneSigningKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), SigningKeyFile)
	keys := make([]ed25519.PrivateKey, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, _, err := LoadOrCreateSigningKey(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for i, k := range keys {
		if !k.Equal(keys[0]) {
			t.Errorf("start %d got another key than start 0", i)
		}
	}
}

func TestSigningKeyFileRefusedWhenOthersMayReadItOrItIsNotAKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, SigningKeyFile)
	if _, _, err := LoadOrCreateSigningKey(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateSigningKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key: got %v, want a refusal saying chmod 600", err)
	}
	junk := filepath.Join(dir, "junk.key")
	if err := os.WriteFile(junk, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateSigningKey(junk); err == nil || !strings.Contains(err.Error(), "PEM") {
		t.Errorf("junk file: got %v, want a refusal naming the expected PEM block", err)
	}
}
