package decryptcache

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/store"
)

// countingSealer counts the opens that reach the real crypto provider.
type countingSealer struct {
	store.Sealer
	opens atomic.Int64
}

func (c *countingSealer) Open(ctx context.Context, env, aad []byte) ([]byte, error) {
	c.opens.Add(1)
	return c.Sealer.Open(ctx, env, aad)
}

func TestDecryptCacheIsBoundedBySizeAndTTL(t *testing.T) {
	aes, err := aesgcm.New("0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	inner := &countingSealer{Sealer: aes}
	c := New(inner, 3, time.Minute)
	clk := testutil.NewClock(time.Unix(1_700_000_000, 0))
	c.now = clk.Now
	ctx := context.Background()
	envs := map[int][]byte{} // each credential sealed once, as the store keeps it
	open := func(i int) string {
		t.Helper()
		aad := []byte(fmt.Sprint("acct-", i))
		env, ok := envs[i]
		if !ok {
			if env, err = c.Seal(ctx, []byte(fmt.Sprint("secret-", i)), aad); err != nil {
				t.Fatal(err)
			}
			envs[i] = env
		}
		plain, err := c.Open(ctx, env, aad)
		if err != nil {
			t.Fatal(err)
		}
		return string(plain)
	}
	steps := []struct {
		name      string
		do        func()
		wantOpens int64
		wantLen   int
	}{
		{"first opens go to the provider", func() {
			open(1)
			clk.Advance(time.Second)
			open(2)
			clk.Advance(time.Second)
			open(3)
		}, 3, 3},
		{"repeats are served from memory", func() { open(1); open(2); open(3) }, 3, 3},
		{"the cap evicts the entry closest to expiry", func() { open(4) }, 4, 3},
		{"an evicted entry is opened again", func() { open(1) }, 5, 3},
		{"expired entries are opened again", func() { clk.Advance(2 * time.Minute); open(4) }, 6, 3},
	}
	for _, s := range steps {
		s.do()
		if got := inner.opens.Load(); got != s.wantOpens {
			t.Errorf("%s: got %d provider opens, want %d", s.name, got, s.wantOpens)
		}
		if got := c.Len(); got != s.wantLen {
			t.Errorf("%s: got %d entries, want %d", s.name, got, s.wantLen)
		}
	}
	if got := open(2); got != "secret-2" {
		t.Errorf("got %q, want secret-2", got)
	}
}

func TestDecryptCacheNeverCachesARefusedEnvelope(t *testing.T) {
	aes, err := aesgcm.New("0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	inner := &countingSealer{Sealer: aes}
	c := New(inner, 3, time.Minute)
	env, err := c.Seal(t.Context(), []byte("secret"), []byte("acct-1"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // an envelope moved to another record does not open, twice
		if _, err := c.Open(t.Context(), env, []byte("acct-2")); err == nil {
			t.Fatal("an envelope opened under another record's context")
		}
	}
	if got := inner.opens.Load(); got != 2 || c.Len() != 0 {
		t.Errorf("got %d provider opens and %d entries, want 2 and 0", got, c.Len())
	}
	if got, err := c.Open(t.Context(), env, []byte("acct-1")); err != nil || string(got) != "secret" {
		t.Errorf("got %q, %v, want secret", got, err)
	}
}
