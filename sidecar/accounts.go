package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/claude-relay/claude-relay/sidecar/sched"
	"github.com/claude-relay/claude-relay/store"
)

// AccountStore is what StoreAccounts needs from the store.
type AccountStore interface {
	ListAccounts(ctx context.Context) ([]store.Account, error)
	OpenAccount(ctx context.Context, id string) (store.OpenedAccount, error)
	AccountsVersion(ctx context.Context) (int64, error)
	TouchAccount(ctx context.Context, id string, at time.Time) error
	RequestAccountRefresh(ctx context.Context, id string) error
}

// AccountChanges is implemented by account stores that announce every account change
// (store.Store, on store.Schema.AccountsChannel). StoreAccounts then reloads its list as
// soon as a change is announced instead of at its next version poll.
type AccountChanges interface {
	SubscribeAccountChanges(ctx context.Context) *redis.PubSub
}

// touchEvery bounds last-use writes: at most one per account per interval per sidecar.
const touchEvery = 10 * time.Second

// refreshGrace: a 401 within this long after this sidecar saw an account's credential
// change most likely met the old token in flight, so it asks for no further refresh.
const refreshGrace = 30 * time.Second

// StoreAccounts serves the schedulable accounts from memory. Run reloads the list,
// decrypting credentials, as soon as the store announces a change (AccountChanges) and
// whenever the store's account version moved at a poll (one GET per interval, the safety
// net for a missed announcement); a failed reload keeps the previous list. While the list is
// empty, every request checks the version first, so the first account added is used by the
// very next request.
type StoreAccounts struct {
	st       AccountStore
	log      hclog.Logger
	interval time.Duration

	cur   atomic.Pointer[accountSet]
	mu    sync.Mutex         // one reload at a time
	empty singleflight.Group // concurrent requests meeting an empty list share one check
	kick  chan struct{}      // an announced change: reload now

	touched sync.Map           // account id → *atomic.Int64: unix ns of the last queued touch
	touches chan touch         // queued last-use writes, written by Run
	refresh singleflight.Group // one refresh request and wait per account

	cmu     sync.Mutex
	changed map[string]time.Time // account id → when a reload saw its credential change

	warnedLegacy map[string]bool // accounts whose unbound credential was logged; under mu
}

type touch struct {
	id string
	at time.Time
}

type accountSet struct {
	version int64
	ups     []*Upstream
}

// NewStoreAccounts returns an AccountSource over st.
func NewStoreAccounts(st AccountStore, log hclog.Logger, interval time.Duration) *StoreAccounts {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &StoreAccounts{st: st, log: log.Named("accounts"), interval: interval, kick: make(chan struct{}, 1),
		touches: make(chan touch, 256), changed: make(map[string]time.Time), warnedLegacy: make(map[string]bool)}
}

// Upstreams implements AccountSource. The list comes from memory; only an empty one costs
// a version check (one GET, shared by concurrent requests), since a request that finds no
// account is refused anyway, and the account an operator has just added must not miss it.
func (a *StoreAccounts) Upstreams(ctx context.Context) ([]*Upstream, error) {
	set := a.cur.Load()
	if set != nil && len(set.ups) > 0 {
		return set.ups, nil
	}
	if set == nil {
		set, err := a.reload(ctx, -1)
		if err != nil {
			return nil, err
		}
		return set.ups, nil
	}
	v, _, _ := a.empty.Do("", func() (any, error) {
		fresh, err := a.reload(context.WithoutCancel(ctx), set.version)
		if err != nil {
			a.log.Debug("cannot check the accounts version", "error", err)
			return set, nil // as empty as before: the request is refused for want of an account
		}
		return fresh, nil
	})
	return v.(*accountSet).ups, nil
}

// reload fetches the list when the store's version differs from have.
func (a *StoreAccounts) reload(ctx context.Context, have int64) (*accountSet, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, err := a.st.AccountsVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("read accounts version: %w", err)
	}
	if cur := a.cur.Load(); cur != nil && (cur.version == v || have == -1) {
		return cur, nil
	}
	accts, err := a.st.ListAccounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	set := &accountSet{version: v}
	old := a.cur.Load()
	for _, acc := range accts {
		if !acc.Schedulable {
			continue
		}
		// The credential goes only where it is bound to: the base URL, type and proxy
		// read with it, never the listing's.
		opened, err := a.st.OpenAccount(ctx, acc.ID)
		switch {
		case err != nil && ctx.Err() != nil:
			// Stopped mid-reload (shutdown): keep the last list rather than one missing
			// every account not yet opened, and do not report a decryption failure.
			return nil, fmt.Errorf("reload accounts: %w", ctx.Err())
		case errors.Is(err, store.ErrTampered):
			a.log.Error("account record was changed outside the admin API (its credential does not open for the base URL, type and proxy it now has); account not used: check it and give its credential again",
				"account", acc.ID, "name", acc.Name, "base_url", acc.BaseURL, "error", err)
			continue
		case err != nil:
			a.log.Error("cannot decrypt account credential; account skipped", "account", acc.ID, "error", err)
			continue
		}
		if opened.Legacy && !a.warnedLegacy[acc.ID] {
			a.warnedLegacy[acc.ID] = true
			a.log.Warn("account credential is bound to the account id only, not yet to its base URL and proxy: run `claude-relay crypto rotate` once", "account", acc.ID)
		}
		up, err := NewUpstream(acc.ID, acc.Name, opened.BaseURL, opened.Credential, acc.Priority)
		if err == nil {
			err = a.configure(up, acc, opened)
		}
		if err != nil {
			a.log.Error("bad account; skipped", "account", acc.ID, "error", err)
			continue
		}
		set.ups = append(set.ups, up)
		if prev := old.find(up.ID); prev != nil && prev.Credential != up.Credential {
			a.cmu.Lock()
			a.changed[up.ID] = time.Now()
			a.cmu.Unlock()
		}
	}
	a.cur.Store(set)
	closeIdle(old)
	a.log.Debug("accounts loaded", "version", v, "schedulable", len(set.ups))
	return set, nil
}

// configure copies an account's type (as its credential is bound to it), group and model map
// onto its upstream and, when the account has an outbound proxy, gives it a transport of its
// own through that proxy.
func (a *StoreAccounts) configure(up *Upstream, acc store.Account, opened store.OpenedAccount) error {
	up.Kind, up.Group, up.ModelMap, up.Caps = opened.Type, acc.Group, acc.ModelMap, acc.Caps
	if opened.ProxyURL == "" {
		return nil
	}
	u, err := url.Parse(opened.ProxyURL)
	if err != nil {
		return fmt.Errorf("account %s proxy URL %s does not parse", acc.ID, acc.ProxyHint)
	}
	t := NewTransport()
	t.Proxy = http.ProxyURL(u)
	up.Transport = t
	return nil
}

// find returns the set's upstream with id, or nil.
func (set *accountSet) find(id string) *Upstream {
	if set == nil {
		return nil
	}
	for _, up := range set.ups {
		if up.ID == id {
			return up
		}
	}
	return nil
}

// closeIdle drops the idle connections of a replaced set's proxy transports.
func closeIdle(set *accountSet) {
	if set == nil {
		return
	}
	for _, up := range set.ups {
		if t, ok := up.Transport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
	}
}

// Run keeps the list current until ctx ends.
func (a *StoreAccounts) Run(ctx context.Context) {
	if ac, ok := a.st.(AccountChanges); ok {
		go a.listen(ctx, ac)
	}
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case tc := <-a.touches:
			a.writeTouch(ctx, tc)
			continue
		case <-t.C:
		case <-a.kick:
		}
		have := int64(0)
		if cur := a.cur.Load(); cur != nil {
			have = cur.version
		}
		if _, err := a.reload(ctx, have); err != nil && ctx.Err() == nil {
			a.log.Warn("cannot refresh accounts; keeping the last list", "error", err)
		}
	}
}

// listen turns announced account changes into reloads until ctx ends. A (re)subscription
// reloads too, since changes may have been announced while it was down; go-redis
// re-subscribes by itself after a broken connection.
func (a *StoreAccounts) listen(ctx context.Context, ac AccountChanges) {
	store.Receive(ctx, ac.SubscribeAccountChanges(ctx), func(msg any) {
		switch msg.(type) {
		case *redis.Subscription, *redis.Message:
			select {
			case a.kick <- struct{}{}:
			default: // a reload is already due
			}
		}
	}, func(err error, retry time.Duration) {
		a.log.Debug("account change subscription broken; polling meanwhile", "error", err, "retry_in", retry)
	})
}

// Touch implements AccountSource: it queues a last-use write for the account unless one
// was queued less than touchEvery ago, so a busy account costs one Redis write per 10 s per
// sidecar, never one per request. Run does the writes; Touch never blocks, and drops the
// write when the queue is full (the next use after touchEvery queues one again).
func (a *StoreAccounts) Touch(accountID string, at time.Time) {
	v, ok := a.touched.Load(accountID)
	if !ok {
		v, _ = a.touched.LoadOrStore(accountID, new(atomic.Int64))
	}
	last := v.(*atomic.Int64)
	prev, now := last.Load(), at.UnixNano()
	if prev != 0 && now-prev < int64(touchEvery) {
		return
	}
	if !last.CompareAndSwap(prev, now) {
		return // a concurrent request queued it
	}
	select {
	case a.touches <- touch{accountID, at}:
	default:
	}
}

func (a *StoreAccounts) writeTouch(ctx context.Context, tc touch) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.st.TouchAccount(ctx, tc.id, tc.at); err != nil && ctx.Err() == nil {
		if errors.Is(err, store.ErrNotFound) {
			return // deleted since
		}
		a.log.Warn("cannot record account last use", "account", tc.id, "error", err)
	}
}

// Refresher returns the scheduler's token-refresh hook (sched.Options.Refresher). When an
// account answers 401, it asks the control plane for one token refresh
// (store.RequestAccountRefresh, consumed by the control plane's refresh job) and waits up
// to wait for a new credential to reach this sidecar, re-reading the account list as it
// waits (one GET per 100 ms). A new credential in time keeps the account in the rotation
// (the request fails over, the next ones use the new token); otherwise the error makes the
// scheduler mark the account unauthorized. Concurrent 401s on one account share one request
// and one wait; a 401 shortly after this sidecar saw the credential change (a request that
// left with the old token) asks for nothing. Accounts other than claude_oauth have no token
// to refresh and are marked at once.
func (a *StoreAccounts) Refresher(wait time.Duration) sched.Refresher {
	return &tokenRefresher{a: a, wait: wait}
}

type tokenRefresher struct {
	a    *StoreAccounts
	wait time.Duration
}

// Refresh implements sched.Refresher.
func (r *tokenRefresher) Refresh(ctx context.Context, accountID string) error {
	a := r.a
	up := a.cur.Load().find(accountID)
	if up == nil {
		return fmt.Errorf("account %s is not in this sidecar's account list", accountID)
	}
	if up.Kind != store.AccountTypeClaudeOAuth {
		return fmt.Errorf("account %s is not an OAuth account: there is no token to refresh", accountID)
	}
	a.cmu.Lock()
	changed, ok := a.changed[accountID]
	a.cmu.Unlock()
	if ok && time.Since(changed) < refreshGrace {
		return nil
	}
	ch := a.refresh.DoChan(accountID, func() (any, error) {
		// Shared by every waiter: it must not end with the first one's request.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.wait+5*time.Second)
		defer cancel()
		return nil, r.requestAndWait(fctx, accountID, up.Credential)
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		// The client left; the shared wait goes on and decides for the others. Leaving
		// must not mark the account.
		return nil
	}
}

func (r *tokenRefresher) requestAndWait(ctx context.Context, id, old string) error {
	a := r.a
	if err := a.st.RequestAccountRefresh(ctx, id); err != nil {
		return fmt.Errorf("ask the control plane for a token refresh: %w", err)
	}
	a.log.Info("account answered 401; asked the control plane for a token refresh", "account", id)
	deadline := time.Now().Add(r.wait)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a token refresh: %w", ctx.Err())
		case <-t.C:
		}
		have := int64(0)
		if cur := a.cur.Load(); cur != nil {
			have = cur.version
		}
		if set, err := a.reload(ctx, have); err == nil {
			if up := set.find(id); up != nil && up.Credential != old {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("asked the control plane for a token refresh, but no new token arrived within %s (see the account's refresh status)", r.wait)
		}
	}
}

var (
	_ AccountSource   = (*StoreAccounts)(nil)
	_ sched.Refresher = (*tokenRefresher)(nil)
)
