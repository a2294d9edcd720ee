package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/controlplane/alerts"
	"github.com/claude-relay/claude-relay/store"
)

// Token refresh defaults.
const (
	// DefaultRefreshAhead is how long before expiry an OAuth token is refreshed.
	DefaultRefreshAhead = 10 * time.Minute
	// DefaultRefreshInterval is how often the refresh job looks for due tokens.
	DefaultRefreshInterval = time.Minute
	// refreshLease bounds how long a crashed control plane holds an account's refresh lock.
	refreshLease = time.Minute
	// refreshBackoffBase and refreshBackoffMax shape the retry delay after failures:
	// base·2^(failures-1), at most max.
	refreshBackoffBase = 30 * time.Second
	refreshBackoffMax  = 30 * time.Minute
	// refreshRequestDebounce: a sidecar's refresh request is ignored when the tokens were
	// refreshed this recently (every control plane hears the request; one refresh is enough).
	refreshRequestDebounce = 30 * time.Second
)

// errRefreshBusy means another control plane holds the account's refresh lock.
var errRefreshBusy = errors.New("another control plane is refreshing this account")

// refreshBackoff is the wait before retry number failures (1-based).
func refreshBackoff(failures int) time.Duration {
	d := refreshBackoffBase
	for i := 1; i < failures && d < refreshBackoffMax; i++ {
		d *= 2
	}
	return min(d, refreshBackoffMax)
}

// refreshDue reports whether an OAuth account's tokens should be refreshed at now.
func (s *Server) refreshDue(a store.Account, now time.Time) bool {
	if a.Type != store.AccountTypeClaudeOAuth || !a.HasRefreshToken || a.TokenExpiresAt == nil {
		return false
	}
	if a.RefreshRetryAt != nil && now.Before(*a.RefreshRetryAt) {
		return false
	}
	return !now.Before(a.TokenExpiresAt.Add(-s.refreshAhead))
}

// RefreshDue refreshes every OAuth account whose token expires within the refresh-ahead
// window, each under a Redis lock so that however many control planes run, one refreshes an
// account. It returns how many accounts it refreshed; failures are recorded on the accounts.
func (s *Server) RefreshDue(ctx context.Context) (int, error) {
	accts, err := s.st.ListAccounts(ctx)
	if err != nil {
		return 0, fmt.Errorf("refresh due tokens: %w", err)
	}
	n := 0
	for _, a := range accts {
		if !s.refreshDue(a, s.now()) {
			continue
		}
		ok, err := s.refreshAccount(ctx, a.ID, false)
		switch {
		case errors.Is(err, errRefreshBusy):
		case err != nil:
			s.log.Warn("token refresh failed", "account", a.ID, "error", err)
		case ok:
			n++
		}
	}
	return n, nil
}

// refreshAccount refreshes one account's tokens under its lock. Unless force is set, it
// re-checks after taking the lock that the refresh is still due (another control plane may
// have just done it). It reports whether it refreshed.
func (s *Server) refreshAccount(ctx context.Context, id string, force bool) (bool, error) {
	lock, ok, err := s.st.TryLock(ctx, "oauth-refresh:"+id, refreshLease)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, errRefreshBusy
	}
	defer func() {
		// Release even when ctx ended, so the lease does not block others for a minute.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := lock.Release(rctx); err != nil {
			s.log.Warn("cannot release refresh lock", "account", id, "error", err)
		}
	}()
	a, err := s.st.GetAccount(ctx, id)
	if err != nil {
		return false, err
	}
	now := s.now()
	if !force && !s.refreshDue(a, now) {
		return false, nil
	}
	if a.Type != store.AccountTypeClaudeOAuth || !a.HasRefreshToken {
		return false, fmt.Errorf("account %s has no refresh token: %w", id, store.ErrConflict)
	}
	sec, err := s.st.AccountSecrets(ctx, id)
	if err != nil {
		return false, err
	}
	tok, err := s.exchangeToken(ctx, sec.ProxyURL, map[string]string{
		"grant_type":    "refresh_token",
		"refresh_token": sec.RefreshToken,
		"client_id":     s.oauth.ClientID,
	})
	if err != nil {
		failures := a.RefreshFailures + 1
		retry := now.Add(refreshBackoff(failures))
		if serr := s.st.SetRefreshFailure(ctx, id, err.Error(), now, retry, failures); serr != nil {
			return false, errors.Join(err, serr)
		}
		s.log.Warn("oauth token refresh failed", "account", id, "failures", failures, "retry_at", retry, "error", err)
		a.RefreshFailures, a.RefreshError, a.RefreshRetryAt = failures, err.Error(), &retry
		s.alertRefresh(ctx, a)
		return false, fmt.Errorf("refresh: %w", err)
	}
	var exp *time.Time
	if tok.ExpiresIn > 0 {
		t := now.Add(time.Duration(tok.ExpiresIn) * time.Second).UTC()
		exp = &t
	}
	if err := s.st.SetOAuthTokens(ctx, id, tok.AccessToken, tok.RefreshToken, exp); err != nil {
		return false, err
	}
	s.log.Info("oauth token refreshed", "account", id, "expires_at", exp)
	a.RefreshFailures = 0
	s.alertRefresh(ctx, a)
	// A sidecar that met a 401 may have parked the account as unauthorized while it
	// waited for this refresh: the new token ends that park (and only that one).
	if cleared, err := s.st.ClearUnauthorized(ctx, id); err != nil {
		s.log.Warn("cannot clear the unauthorized park after a refresh", "account", id, "error", err)
	} else if cleared {
		s.log.Info("account back in rotation after its token refresh", "account", id)
	}
	return true, nil
}

// alertRefresh records a refresh's outcome for the alerts at once (the alerts' own
// RefreshSource would see it within seconds too).
func (s *Server) alertRefresh(ctx context.Context, a store.Account) {
	if s.alerts == nil {
		return
	}
	if err := alerts.RecordRefresh(ctx, s.alerts.Outbox(), a); err != nil {
		s.log.Warn("cannot record the token refresh alert", "account", a.ID, "error", err)
	}
}

// handleRefreshAccount refreshes an OAuth account's tokens now.
func (s *Server) handleRefreshAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.refreshAccount(r.Context(), id, true); err != nil {
		switch {
		case errors.Is(err, errRefreshBusy):
			writeError(w, http.StatusConflict, errConflict, "account "+id+": "+err.Error()+"; try again in a moment", nil)
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
			s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		default:
			s.auditLog(r, "account.refresh", id, "ok", false)
			writeError(w, http.StatusBadGateway, errAPI, "token refresh failed: "+err.Error(), nil)
		}
		return
	}
	s.auditLog(r, "account.refresh", id, "ok", true)
	s.writeAccount(w, r, http.StatusOK, id)
}

// RefreshTokens runs the OAuth token refresh until ctx ends: a pass over every account every
// refresh interval, and one refresh for each account a sidecar reports a 401 on. It is the
// control plane's one background loop, so it also indexes, once at start, relay keys made by
// an older version for listing, and runs beside it the check for an emptied Redis (see
// Bootstrap) every Options.StoreCheck.
func (s *Server) RefreshTokens(ctx context.Context) {
	if n, err := s.st.BackfillKeyIndexes(ctx); err != nil && ctx.Err() != nil {
		return // stopped during start-up
	} else if err != nil {
		s.log.Error("cannot index relay keys created by an older version; they are missing from listings", "error", err)
	} else if n > 0 {
		s.log.Info("indexed relay keys created by an older version", "keys", n)
	}
	go s.watchStore(ctx)
	requests := make(chan string, 16)
	go s.receiveRefreshRequests(ctx, requests)
	t := time.NewTicker(s.refreshEvery)
	defer t.Stop()
	for {
		if _, err := s.RefreshDue(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("token refresh pass failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case id := <-requests:
			s.refreshRequested(ctx, id)
		}
	}
}

// refreshRequested refreshes an account a sidecar met a 401 on, unless its tokens were
// refreshed moments ago (by this or another control plane).
func (s *Server) refreshRequested(ctx context.Context, id string) {
	a, err := s.st.GetAccount(ctx, id)
	if err != nil || a.Type != store.AccountTypeClaudeOAuth || !a.HasRefreshToken {
		return
	}
	if a.TokenRefreshedAt != nil && s.now().Sub(*a.TokenRefreshedAt) < refreshRequestDebounce {
		return
	}
	if _, err := s.refreshAccount(ctx, id, true); err != nil && !errors.Is(err, errRefreshBusy) {
		s.log.Warn("requested token refresh failed", "account", id, "error", err)
	}
}

// receiveRefreshRequests forwards account ids published by sidecars until ctx ends.
func (s *Server) receiveRefreshRequests(ctx context.Context, out chan<- string) {
	store.Receive(ctx, s.st.SubscribeRefreshRequests(ctx), func(msg any) {
		if m, ok := msg.(*redis.Message); ok {
			select {
			case out <- m.Payload:
			default: // a burst: the periodic pass catches up
			}
		}
	}, nil)
}
