package sidecar

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/store"
)

// RevocationSource is where CachedAuth hears that keys were revoked, disabled or re-enabled.
type RevocationSource interface {
	SubscribeRevocations(ctx context.Context) *redis.PubSub
}

// CachedAuth authenticates credentials through an auth provider (a plugin process, or the
// built-in one in-process), caching answers by a hash of the credential: accepted ones for
// the TTL the provider returns (ttl when it names none), refusals for at most negTTL.
// Concurrent misses for one credential make one provider call. Revocations published by the
// control plane evict entries at once; the whole cache is flushed whenever the subscription
// (re)connects, since revocations may have been missed while it was down. While the provider
// cannot answer (no healthy plugin instance, Redis unreachable), cached keys keep working
// until their TTL ends and uncached ones fail closed (503).
type CachedAuth struct {
	provider    contract.Auth
	revocations RevocationSource
	log         hclog.Logger
	ttl, negTTL time.Duration
	now         func() time.Time
	sf          singleflight.Group

	mu      sync.RWMutex
	entries map[[32]byte]authEntry

	subscribed     chan struct{} // closed at the first confirmed subscription
	subscribedOnce sync.Once
}

type authEntry struct {
	p   Principal
	err error // a refusal (wraps ErrInvalidCredential), never a backend error
	exp time.Time
}

// NewCachedAuth returns an Authenticator over provider. Call Run to receive revocations.
func NewCachedAuth(provider contract.Auth, revocations RevocationSource, log hclog.Logger, ttl, negTTL time.Duration) *CachedAuth {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &CachedAuth{
		provider: provider, revocations: revocations, log: log.Named("auth"), ttl: ttl, negTTL: negTTL,
		now: time.Now, entries: make(map[[32]byte]authEntry), subscribed: make(chan struct{}),
	}
}

// Subscribed is closed once Run has its first revocation subscription: from then on no
// revocation is missed. Anything cached before it is flushed at that moment.
func (a *CachedAuth) Subscribed() <-chan struct{} { return a.subscribed }

// maxAuthEntries bounds the cache; past it, expired entries are swept and, if still
// full, the cache is cleared (cheap, and only under a flood of distinct keys).
const maxAuthEntries = 100_000

// maxCredentialLen bounds what is sent to the provider; real credentials (relay keys, IdP
// tokens) are far shorter.
const maxCredentialLen = 8192

// Authenticate implements Authenticator. The credential's format is the
// provider's business (relay keys, IdP tokens…); an empty or oversized one is refused without
// asking it. On a cache miss the provider also gets the client address and the route.
//
// The cache is keyed by the credential alone, on purpose: the answer is a principal whose
// per-request rules (IP allowlist, models, clients) the sidecar checks itself on every
// request, so keying by address or route too would only multiply the provider calls and
// entries per key (one per client address) without changing a decision. The price is a rule
// for providers: an answer must not vary with ClientIP or Route (they are for logging and
// auditing); a provider that restricts by address returns the allowed CIDRs as the
// principal's allowed_cidrs attribute instead.
func (a *CachedAuth) Authenticate(ctx context.Context, in AuthInput) (Principal, error) {
	credential := in.Credential
	if credential == "" || len(credential) > maxCredentialLen {
		return Principal{}, fmt.Errorf("%w: missing or oversized credential", ErrInvalidCredential)
	}
	h := sha256.Sum256([]byte(credential))
	now := a.now()
	a.mu.RLock()
	e, ok := a.entries[h]
	a.mu.RUnlock()
	if ok && now.Before(e.exp) {
		return e.p, e.err
	}
	v, err, _ := a.sf.Do(string(h[:]), func() (any, error) {
		// A caller that missed the cache just before another flight for the same key
		// stored its answer starts a flight of its own: the stored answer serves it.
		a.mu.RLock()
		e, ok := a.entries[h]
		a.mu.RUnlock()
		if ok && a.now().Before(e.exp) {
			return e, nil
		}
		// The call serves every waiter: it must not die with the first caller.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		req := contract.AuthRequest{Credential: credential, Route: in.Route}
		if in.ClientIP.IsValid() {
			req.ClientIP = in.ClientIP.String()
		}
		res, err := a.provider.Authenticate(lctx, req)
		if err != nil {
			return nil, fmt.Errorf("auth provider: %w", err)
		}
		e = authEntry{}
		if res.Accepted() {
			p, err := principalFrom(res.Principal)
			if err != nil {
				return nil, fmt.Errorf("auth provider: %w", err)
			}
			e.p = p
			ttl := a.ttl
			if res.CacheTTL > 0 {
				ttl = res.CacheTTL
			}
			e.exp = a.now().Add(ttl)
		} else {
			e.err = fmt.Errorf("%w: %s", ErrInvalidCredential, res.Refusal)
			ttl := a.negTTL
			if res.CacheTTL > 0 {
				ttl = min(ttl, res.CacheTTL)
			}
			e.exp = a.now().Add(ttl)
		}
		a.put(h, e)
		return e, nil
	})
	if err != nil {
		return Principal{}, err
	}
	e = v.(authEntry)
	return e.p, e.err
}

func (a *CachedAuth) put(h [32]byte, e authEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.entries) >= maxAuthEntries {
		now := a.now()
		for k, v := range a.entries {
			if !now.Before(v.exp) {
				delete(a.entries, k)
			}
		}
		if len(a.entries) >= maxAuthEntries {
			clear(a.entries)
		}
	}
	a.entries[h] = e
}

// Evict drops every cached result for a key id, and every cached refusal: a refusal does
// not say which key it was for (the provider names no key it refuses), and the change may
// be the one that lifts it (a key enabled again, restored, or given back its address), which
// must work on the next request rather than when the refusal expires.
func (a *CachedAuth) Evict(keyID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, e := range a.entries {
		if e.p.KeyID == keyID || e.err != nil {
			delete(a.entries, h)
		}
	}
}

// Flush drops the whole cache.
func (a *CachedAuth) Flush() {
	a.mu.Lock()
	clear(a.entries)
	a.mu.Unlock()
}

// Run receives revocations until ctx ends. go-redis re-subscribes after a broken
// connection and confirms with a subscription message, which flushes the cache.
func (a *CachedAuth) Run(ctx context.Context) {
	// Cached results keep serving while Redis is away (nothing can be revoked meanwhile);
	// the re-subscription flushes whatever may have been missed.
	store.Receive(ctx, a.revocations.SubscribeRevocations(ctx), func(msg any) {
		switch m := msg.(type) {
		case *redis.Subscription:
			a.Flush()
			a.subscribedOnce.Do(func() { close(a.subscribed) })
		case *redis.Message:
			a.Evict(m.Payload)
			a.log.Debug("key revoked", "key", m.Payload)
		}
	}, func(err error, retry time.Duration) {
		a.log.Warn("revocation subscription broken", "error", err, "retry_in", retry)
	})
}

var _ Authenticator = (*CachedAuth)(nil)
