package host_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/plugins/auth-apikey/apikey"
	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/plugins/host"
	"github.com/claude-relay/claude-relay/sidecar"
)

// BenchmarkAuth measures one request's authentication: a hit in the sidecar's cache (the
// baseline), a call to the auth plugin process (cache miss), and the same provider
// in-process; each is reported as a multiple of the cache hit.
func BenchmarkAuth(b *testing.B) {
	f := newKeyFixture(b, 1)
	path := filepath.Join(b.TempDir(), "auth-apikey")
	install(b, bins.authV1, path)
	a, err := host.StartAuth(context.Background(), hostConfig(b, path, f.settings, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	secret := f.secrets[0]
	var baseNs float64
	report := func(b *testing.B) {
		if baseNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseNs, "x_cache_hit")
		}
	}
	b.Run("baseline_cache_hit", func(b *testing.B) {
		ca := sidecar.NewCachedAuth(a, f.st, nil, time.Hour, time.Second)
		if _, err := ca.Authenticate(ctx, sidecar.AuthInput{Credential: secret}); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := ca.Authenticate(ctx, sidecar.AuthInput{Credential: secret}); err != nil {
				b.Fatal(err)
			}
		}
		baseNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("plugin_call", func(b *testing.B) {
		for b.Loop() {
			if res, err := a.Authenticate(ctx, contract.AuthRequest{Credential: secret}); err != nil || !res.Accepted() {
				b.Fatal(res, err)
			}
		}
		report(b)
	})
	b.Run("in_process_provider", func(b *testing.B) {
		p := apikey.FromStore(f.st, "bench", time.Minute, time.Second)
		for b.Loop() {
			if res, err := p.Authenticate(ctx, contract.AuthRequest{Credential: secret}); err != nil || !res.Accepted() {
				b.Fatal(res, err)
			}
		}
		report(b)
	})
}

// BenchmarkCryptoDecrypt measures opening a credential through the crypto plugin process
// against the same AES-256-GCM code in-process (the baseline).
func BenchmarkCryptoDecrypt(b *testing.B) {
	ctx := context.Background()
	inproc, err := aesgcm.New(newKey)
	if err != nil {
		b.Fatal(err)
	}
	aad := []byte("acct-1")
	env, err := inproc.Seal(ctx, []byte("sk-ant-api03-a-credential-of-typical-length-0123456789"), aad)
	if err != nil {
		b.Fatal(err)
	}
	var baseNs float64
	b.Run("baseline_in_process", func(b *testing.B) {
		for b.Loop() {
			if _, err := inproc.Open(ctx, env, aad); err != nil {
				b.Fatal(err)
			}
		}
		baseNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("plugin_call", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "crypto-aesgcm")
		install(b, bins.crypto, path)
		c, err := host.StartCrypto(ctx, hostConfig(b, path, map[string]string{aesgcm.SettingKey: newKey}, nil))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		for b.Loop() {
			if _, err := c.Decrypt(ctx, env, aad); err != nil {
				b.Fatal(err)
			}
		}
		if baseNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseNs, "x_in_process")
		}
	})
}
