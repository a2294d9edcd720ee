package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/sidecar/keyview"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
)

// KeyUsagePath is where a key holder reads their own key's usage and limits.
const KeyUsagePath = "/v1/relay/usage"

// KeyRecords is what GET /v1/relay/usage reads beyond the auth provider's answer
// (store.Store implements it): the key's record (status, expiry) and its spend.
type KeyRecords interface {
	GetKey(ctx context.Context, id string) (store.Key, error)
	KeySpend(ctx context.Context, keyID string, now time.Time) (store.KeySpend, error)
}

// serveKeyUsage answers GET /v1/relay/usage: the calling key's own view (keyview), after
// the checks a relayed request meets on /v1/messages' route (allowlist, key, the key's IP
// allowlist). It never names another key or an upstream account.
func (s *Server) serveKeyUsage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	rt := s.rt.Load()
	if rt == nil {
		writeError(w, http.StatusServiceUnavailable, errAPI, "the relay has no configuration yet; see GET /health", 0)
		return
	}
	if s.opts.Keys == nil {
		writeError(w, http.StatusNotFound, errNotFound, "this relay does not serve key usage (it has no key store)", 0)
		return
	}
	route, _, _ := rt.Resolve(http.MethodPost, "/v1/messages")
	routeName := ""
	clientIP := rt.ClientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
	if route != nil {
		routeName = route.Name
		if !route.Allowed(clientIP) {
			writeError(w, http.StatusForbidden, errPermission, fmt.Sprintf("client address %s is not allowed on route %q", clientIP, route.Name), 0)
			return
		}
	}
	p, status, msg := s.authenticateView(r, clientIP, routeName)
	if status != 0 {
		writeError(w, status, errorType(status), msg, 0)
		return
	}
	base := (*config.Policy)(nil)
	if route != nil {
		base = route.Policy
	}
	if p.Policy != "" {
		pol, ok := rt.Policy(p.Policy)
		if !ok {
			writeError(w, http.StatusForbidden, errPermission, fmt.Sprintf("this relay key is under policy %q, which the relay's configuration does not define; ask the operator to define it or change the key", p.Policy), 0)
			return
		}
		base = pol
	}
	view, err := keyview.Build(r.Context(), s.viewSources(), s.viewKey(r.Context(), p), base, s.now())
	if err != nil {
		s.log.Error("key usage unavailable", "key", p.KeyID, "error", err)
		writeError(w, http.StatusServiceUnavailable, errAPI, "the relay cannot read usage right now (its store is unavailable); retry shortly", 5*time.Second)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(view)
}

// errorType is the Anthropic error type of a refusal's status.
func errorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return errAuthentication
	case http.StatusForbidden:
		return errPermission
	}
	return errAPI
}

// authenticateView checks the credential as a relayed request's: a status and message
// when it refuses.
func (s *Server) authenticateView(r *http.Request, ip netip.Addr, route string) (Principal, int, string) {
	cred := credential(r)
	if cred == "" {
		return Principal{}, http.StatusUnauthorized, "missing relay key: send it as the x-api-key header or as Authorization: Bearer"
	}
	p, err := s.opts.Auth.Authenticate(r.Context(), AuthInput{Credential: cred, ClientIP: ip, Route: route})
	switch {
	case errors.Is(err, ErrInvalidCredential):
		return Principal{}, http.StatusUnauthorized, err.Error()
	case err != nil:
		s.m.authErrors.With("authenticate").Inc()
		return Principal{}, http.StatusServiceUnavailable, "the relay cannot check keys right now (its key store is unavailable); retry shortly"
	}
	if cidrs := p.AllowedCIDRs; cidrs != nil && !slices.ContainsFunc(cidrs, func(pf netip.Prefix) bool { return pf.Contains(ip.Unmap()) }) {
		return Principal{}, http.StatusForbidden, fmt.Sprintf("client address %s is not in this relay key's IP allowlist", ip.Unmap())
	}
	return p, 0, ""
}

// viewKey is the key as the auth provider described it, with the status and expiry of its
// record when the store holds one (another auth provider's keys have none: active, no
// expiry).
func (s *Server) viewKey(ctx context.Context, p Principal) keyview.Key {
	k := keyview.Key{ID: p.KeyID, Name: p.Name, Policy: p.Policy, Status: "active", Limits: p.Limits}
	if rec, err := s.opts.Keys.GetKey(ctx, p.KeyID); err == nil {
		k.Status, k.ExpiresAt = rec.Status(s.now()), rec.ExpiresAt
	}
	return k
}

func (s *Server) viewSources() keyview.Sources {
	src := keyview.Sources{Spend: s.opts.Keys}
	if s.limits != nil {
		src.Limits = func(ctx context.Context, keyID string, set limits.Set) (limits.KeyState, error) {
			return s.limits.State(ctx, keyID, set)
		}
	}
	return src
}
