package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/store"
)

// AccountStore is what StoreAccounts needs from the store.
type AccountStore interface {
	ListAccounts(ctx context.Context) ([]store.Account, error)
	AccountCredential(ctx context.Context, id string) (string, error)
	AccountProxy(ctx context.Context, id string) (string, error)
	AccountsVersion(ctx context.Context) (int64, error)
}

// StoreAccounts serves the schedulable accounts from memory. Run polls the store's
// account version (one GET per interval) and reloads the list, decrypting credentials,
// only when it changed; a failed reload keeps the previous list.
type StoreAccounts struct {
	st       AccountStore
	log      hclog.Logger
	interval time.Duration

	cur atomic.Pointer[accountSet]
	mu  sync.Mutex // one reload at a time
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
	return &StoreAccounts{st: st, log: log.Named("accounts"), interval: interval}
}

// Upstreams implements AccountSource.
func (a *StoreAccounts) Upstreams(ctx context.Context) ([]*Upstream, error) {
	if set := a.cur.Load(); set != nil {
		return set.ups, nil
	}
	set, err := a.reload(ctx, -1)
	if err != nil {
		return nil, err
	}
	return set.ups, nil
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
	for _, acc := range accts {
		if !acc.Schedulable {
			continue
		}
		cred, err := a.st.AccountCredential(ctx, acc.ID)
		if err != nil {
			a.log.Error("cannot decrypt account credential; account skipped", "account", acc.ID, "error", err)
			continue
		}
		up, err := NewUpstream(acc.ID, acc.Name, acc.BaseURL, cred, acc.Priority)
		if err == nil {
			err = a.configure(ctx, up, acc)
		}
		if err != nil {
			a.log.Error("bad account; skipped", "account", acc.ID, "error", err)
			continue
		}
		set.ups = append(set.ups, up)
	}
	old := a.cur.Swap(set)
	closeIdle(old)
	a.log.Debug("accounts loaded", "version", v, "schedulable", len(set.ups))
	return set, nil
}

// configure copies an account's type, group and model map onto its upstream and, when the
// account has an outbound proxy, gives it a transport of its own through that proxy.
func (a *StoreAccounts) configure(ctx context.Context, up *Upstream, acc store.Account) error {
	up.Kind, up.Group, up.ModelMap = acc.Type, acc.Group, acc.ModelMap
	if acc.ProxyHint == "" {
		return nil
	}
	raw, err := a.st.AccountProxy(ctx, acc.ID)
	if err != nil {
		return fmt.Errorf("account %s proxy: %w", acc.ID, err)
	}
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("account %s proxy URL %s does not parse", acc.ID, acc.ProxyHint)
	}
	t := NewTransport()
	t.Proxy = http.ProxyURL(u)
	up.Transport = t
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
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
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

var _ AccountSource = (*StoreAccounts)(nil)
