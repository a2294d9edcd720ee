// Package storetest opens the store under test, as Nomad's state.TestStateStore does: a real
// Redis (internal/testredis: single, or a three-master Cluster under
// CLAUDE_RELAY_TEST_REDIS=cluster), a fresh key prefix and the default crypto provider.
package storetest

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/store"
)

// EncryptionKey is the key a store under test seals with unless told otherwise (the 32
// characters of CRS_SECURITY__ENCRYPTION_KEY).
const EncryptionKey = "0123456789abcdef0123456789abcdef"

// New opens a store on the test Redis under a fresh key prefix, sealed with EncryptionKey,
// and returns the client and prefix too (to look at the keys, or open a second store on the
// same data).
func New(t testing.TB) (*store.Store, redis.UniversalClient, string) {
	t.Helper()
	rdb, prefix := testredis.New(t)
	return Open(t, rdb, store.Options{Prefix: prefix}), rdb, prefix
}

// Open opens a store on rdb with o, sealed with EncryptionKey when o names no Sealer; it
// fails the test when the store cannot open.
func Open(t testing.TB, rdb redis.UniversalClient, o store.Options) *store.Store {
	t.Helper()
	if o.Sealer == nil {
		o.Sealer = Sealer(t, EncryptionKey)
	}
	st, err := store.Open(t.Context(), rdb, o)
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	return st
}

// Sealer is the default crypto provider under keys: the first seals, every one opens.
func Sealer(t testing.TB, keys ...string) *aesgcm.Sealer {
	t.Helper()
	s, err := aesgcm.New(keys[0], keys[1:]...)
	if err != nil {
		t.Fatalf("aesgcm.New: %v", err)
	}
	return s
}
