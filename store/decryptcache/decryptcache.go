// Package decryptcache keeps opened credential envelopes in memory, bounded by a size cap
// and a TTL, in front of the crypto provider (a store.Sealer that caches Open).
package decryptcache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"

	"github.com/claude-relay/claude-relay/store"
)

// Cache is the deployment guide's "decryption cache": opened envelopes kept in memory,
// bounded by a size cap and a TTL, in front of the crypto provider, so reloading the account
// list does not make a provider call per credential. Entries are keyed by a hash of the
// envelope and its context; every seal uses a fresh nonce, so a changed credential is a new
// key and nothing needs invalidating. It is a store.Sealer; Seal passes through.
type Cache struct {
	inner store.Sealer
	max   int
	ttl   time.Duration
	now   func() time.Time

	mu      sync.Mutex
	entries map[[32]byte]decrypted
}

type decrypted struct {
	plain []byte
	exp   time.Time
}

// New caches up to size (at least 1) opened envelopes of inner for ttl each.
func New(inner store.Sealer, size int, ttl time.Duration) *Cache {
	return &Cache{inner: inner, max: max(size, 1), ttl: ttl, now: time.Now, entries: make(map[[32]byte]decrypted)}
}

// Seal implements store.Sealer.
func (c *Cache) Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	return c.inner.Seal(ctx, plaintext, aad)
}

// Open implements store.Sealer from the cache when it can, else through the provider.
func (c *Cache) Open(ctx context.Context, envelope, aad []byte) ([]byte, error) {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(aad)))
	h.Write(n[:])
	h.Write(aad)
	h.Write(envelope)
	var k [32]byte
	h.Sum(k[:0])
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(e.exp) {
		return append([]byte(nil), e.plain...), nil
	}
	plain, err := c.inner.Open(ctx, envelope, aad)
	if err != nil {
		return nil, err
	}
	c.put(k, decrypted{plain: append([]byte(nil), plain...), exp: now.Add(c.ttl)})
	return plain, nil
}

func (c *Cache) put(k [32]byte, e decrypted) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		now := c.now()
		var oldest [32]byte
		var oldestExp time.Time
		for key, v := range c.entries {
			if !now.Before(v.exp) {
				clear(v.plain)
				delete(c.entries, key)
				continue
			}
			if oldestExp.IsZero() || v.exp.Before(oldestExp) {
				oldest, oldestExp = key, v.exp
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries[oldest].plain)
			delete(c.entries, oldest)
		}
	}
	c.entries[k] = e
}

// Len returns the number of cached entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

var _ store.Sealer = (*Cache)(nil)
