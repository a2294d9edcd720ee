package host_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/plugins/host"
	"github.com/claude-relay/claude-relay/sidecar"
	"github.com/claude-relay/claude-relay/store"
)

func TestRevokedKeyIsRefusedByEverySidecarWithinOneSecond(t *testing.T) {
	f := newKeyFixture(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sidecars []*sidecar.CachedAuth
	for range 2 {
		a, _ := startAuth(t, bins.authV1, f)
		ca := sidecar.NewCachedAuth(a, f.st, nil, time.Minute, 2*time.Second)
		go ca.Run(ctx)
		sidecars = append(sidecars, ca)
	}
	secret := f.secrets[0]
	for i, ca := range sidecars {
		testutil.Eventually(t, 5*time.Second, fmt.Sprintf("sidecar %d to accept the key", i), func() bool {
			_, err := ca.Authenticate(ctx, sidecar.AuthInput{Credential: secret})
			return err == nil
		})
	}
	p, err := sidecars[0].Authenticate(ctx, sidecar.AuthInput{Credential: secret})
	if err != nil {
		t.Fatal(err)
	}
	// Both sidecars now answer from their caches (60 s); only the revocation can evict.
	revokedAt := time.Now()
	if err := f.st.RevokeKey(ctx, p.KeyID); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	took := make([]time.Duration, len(sidecars))
	for i, ca := range sidecars {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(revokedAt) < 5*time.Second {
				_, err := ca.Authenticate(ctx, sidecar.AuthInput{Credential: secret})
				if errors.Is(err, sidecar.ErrInvalidCredential) {
					took[i] = time.Since(revokedAt)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			took[i] = -1
		}()
	}
	wg.Wait()
	for i, d := range took {
		if d < 0 || d > time.Second {
			t.Errorf("sidecar %d refused the revoked key after %v, want within 1s", i, d)
		}
	}
	t.Logf("revocation reached the sidecars after %v", took)
}

// TestRotationUnderLoadNeverFailsADecrypt rotates the encryption key while "sidecars" (crypto
// plugin processes, no decryption cache) keep opening every credential.
func TestRotationUnderLoadNeverFailsADecrypt(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testredis.New(t)
	oldSealer, err := aesgcm.New(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := store.Open(ctx, rdb, store.Options{Prefix: prefix, Sealer: oldSealer})
	if err != nil {
		t.Fatal(err)
	}
	const accounts = 40
	ids := make([]string, accounts)
	for i := range ids {
		a, err := seed.AddAccount(ctx, store.AccountSpec{Name: fmt.Sprint("acct-", i), Credential: fmt.Sprintf("sk-ant-api03-credential-%04d-xxxxxxxx", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = a.ID
	}
	_, secret, err := seed.CreateKey(ctx, store.KeySpec{Name: "before rotation"})
	if err != nil {
		t.Fatal(err)
	}

	startCrypto := func(primary string, previous ...string) *host.Crypto {
		path := filepath.Join(t.TempDir(), "crypto-aesgcm")
		install(t, bins.crypto, path)
		c, err := host.StartCrypto(ctx, hostConfig(t, path, map[string]string{
			aesgcm.SettingKey: primary, aesgcm.SettingPreviousKeys: strings.Join(previous, ","),
		}, nil))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	openStore := func(c contract.Crypto) *store.Store {
		st, err := store.Open(ctx, rdb, store.Options{Prefix: prefix, Sealer: contract.Sealer{Crypto: c}})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// Sidecar A already runs with the new key as primary; sidecar B has not been restarted
	// yet and still seals under the old key, but accepts the new one.
	a := openStore(startCrypto(newKey, oldKey))
	b := openStore(startCrypto(oldKey, newKey))

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := []*store.Store{a, b}[w%2]
			for i := 0; loadCtx.Err() == nil; i++ {
				id := ids[(w*7+i)%accounts]
				cred, err := st.AccountCredential(ctx, id)
				if err == nil && !strings.HasPrefix(cred, "sk-ant-api03-credential-") {
					err = fmt.Errorf("account %s opened to %q", id, cred)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	waitOK := func(n int64) {
		target := ok.Load() + n
		testutil.Eventually(t, 30*time.Second, "decrypts", func() bool { return ok.Load() >= target })
	}
	waitOK(200) // before
	rot := contract.Sealer{Crypto: startCrypto(newKey, oldKey)}
	res, err := a.RotateSecrets(ctx, rot, func(store.RotateProgress) {
		time.Sleep(2 * time.Millisecond) // stretch the rotation so the load overlaps it
	})
	if err != nil {
		t.Fatal(err)
	}
	waitOK(200) // after
	stopLoad()
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Errorf("got %d failed decrypts of %d (first: %v), want 0", f, f+ok.Load(), firstErr.Load())
	}
	if res.Rewrapped != accounts+1 || res.Failed != 0 {
		t.Errorf("got %+v, want %d re-encrypted and none failed", res, accounts+1)
	}

	// Every envelope now names the new key, and the old key can be dropped.
	newID := mustKeyID(t, newKey)
	sealed, err := a.SealedSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != accounts+1 {
		t.Errorf("got %d sealed secrets, want %d", len(sealed), accounts+1)
	}
	for name, env := range sealed {
		if id, err := aesgcm.KeyIDOf(env); err != nil || id != newID {
			t.Errorf("%s is under key %q (%v), want %s", name, id, err, newID)
		}
	}
	onlyNew := openStore(startCrypto(newKey))
	for _, id := range ids {
		if _, err := onlyNew.AccountCredential(ctx, id); err != nil {
			t.Errorf("with the old key dropped: %v", err)
		}
	}
	if _, err := onlyNew.LookupKey(ctx, secret); err != nil {
		t.Errorf("a relay key made before the rotation: got %v, want it valid (the pepper is unchanged)", err)
	}
	again, err := a.RotateSecrets(ctx, rot, nil)
	if err != nil || again.Rewrapped != 0 || again.Current != accounts+1 {
		t.Errorf("second run: got %+v, %v; want everything already current", again, err)
	}
}

func mustKeyID(t *testing.T, secret string) string {
	t.Helper()
	s, err := aesgcm.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s.KeyID()
}
