package sidecar

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testutil"
)

type countingSealer struct{ opens atomic.Int64 }

func (c *countingSealer) Seal(_ context.Context, p, aad []byte) ([]byte, error) {
	return append(append([]byte("sealed:"), aad...), p...), nil
}

func (c *countingSealer) Open(_ context.Context, env, aad []byte) ([]byte, error) {
	c.opens.Add(1)
	return env[len("sealed:")+len(aad):], nil
}

func TestDecryptCacheIsBoundedBySizeAndTTL(t *testing.T) {
	inner := &countingSealer{}
	c := NewDecryptCache(inner, 3, time.Minute)
	clk := testutil.NewClock(time.Unix(1_700_000_000, 0))
	c.now = clk.Now
	ctx := context.Background()
	open := func(i int) string {
		t.Helper()
		aad := []byte(fmt.Sprint("acct-", i))
		env, _ := c.Seal(ctx, []byte(fmt.Sprint("secret-", i)), aad)
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
