package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/sidecar/keyview"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/store"
)

// KeyUsageHandler serves GET /v1/relay/usage on the control plane: a relay key's holder
// reads their own key's view (sidecar/keyview, the code the sidecar's endpoint uses),
// authenticated with the key itself (x-api-key or Authorization: Bearer), not an admin
// session. The web console's "me" page reads it.
func (s *Server) KeyUsageHandler() http.Handler { return http.HandlerFunc(s.handleKeyView) }

func (s *Server) handleKeyView(w http.ResponseWriter, r *http.Request) {
	secret := relayCredential(r)
	if secret == "" {
		writeError(w, http.StatusUnauthorized, errAuthentication, "missing relay key: send it as the x-api-key header or as Authorization: Bearer", nil)
		return
	}
	k, err := s.st.LookupKey(r.Context(), secret)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusUnauthorized, errAuthentication, "invalid relay key", nil)
		return
	case errors.Is(err, store.ErrKeyRevoked), errors.Is(err, store.ErrKeyDisabled), errors.Is(err, store.ErrKeyExpired):
		writeError(w, http.StatusUnauthorized, errAuthentication, err.Error(), nil)
		return
	case err != nil:
		s.writeStoreError(w, r, err, "relay key")
		return
	}
	base, err := s.keyPolicy(k.Policy)
	if err != nil {
		writeError(w, http.StatusForbidden, errPermission, err.Error(), nil)
		return
	}
	now := s.now()
	src := keyview.Sources{Spend: s.st, Limits: func(ctx context.Context, keyID string, set limits.Set) (limits.KeyState, error) {
		return limits.ReadState(ctx, s.st.Client(), s.st.Schema(), keyID, set, now)
	}}
	view, err := keyview.Build(r.Context(), src, keyview.Key{ID: k.ID, Name: k.Name, Policy: k.Policy, Status: k.Status(now),
		ExpiresAt: k.ExpiresAt, Limits: k.Rules.Limits}, base, now)
	if err != nil {
		s.writeStoreError(w, r, err, "key usage")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, view)
}

func relayCredential(r *http.Request) string {
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return strings.TrimSpace(k)
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// keyPolicy returns the policy a key is under in the configuration served: its own, else
// the default of the route /v1/messages resolves to. Without a configuration (a control
// plane that does not distribute one) only the key's own limits apply.
func (s *Server) keyPolicy(name string) (*config.Policy, error) {
	rt := s.runtime()
	if rt == nil {
		return nil, nil
	}
	if name != "" {
		p, ok := rt.Policy(name)
		if !ok {
			return nil, fmt.Errorf("this relay key is under policy %q, which the relay's configuration does not define; ask the operator to define it or change the key", name)
		}
		return p, nil
	}
	if route, _, ok := rt.Resolve(http.MethodPost, "/v1/messages"); ok {
		return route.Policy, nil
	}
	return nil, nil
}
