package controlplane

import (
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// maxNameLen bounds key and account names, in characters; maxNameBytes in bytes (the store's limit).
const (
	maxNameLen   = 100
	maxNameBytes = 200
)

// checkName validates a required display name into fields.
func checkName(fields fieldErrors, field, name string) {
	switch {
	case strings.TrimSpace(name) == "":
		fields.add(field, "required")
	case !utf8.ValidString(name):
		fields.add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(name) > maxNameLen:
		fields.add(field, fmt.Sprintf("must be at most %d characters", maxNameLen))
	case len(name) > maxNameBytes:
		fields.add(field, fmt.Sprintf("must be at most %d bytes of UTF-8", maxNameBytes))
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		fields.add(field, "must not contain control characters")
	}
}

// keyStatus says whether k can be used at now, and if not why.
func keyStatus(k store.Key, now time.Time) string {
	switch {
	case k.RevokedAt != nil:
		return adminapi.KeyRevoked
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return adminapi.KeyExpired
	case !k.Enabled:
		return adminapi.KeyDisabled
	default:
		return adminapi.KeyActive
	}
}

func toAPIKey(k store.Key, now time.Time) adminapi.Key {
	return adminapi.Key{
		ID:         k.ID,
		Name:       k.Name,
		Hint:       k.Hint,
		Policy:     k.Policy,
		Enabled:    k.Enabled,
		Status:     keyStatus(k, now),
		CreatedAt:  k.CreatedAt,
		ExpiresAt:  k.ExpiresAt,
		RevokedAt:  k.RevokedAt,
		LastUsedAt: k.LastUsedAt,
	}
}

func (s *Server) handleListKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := s.st.ListKeys(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err, "keys")
		return
	}
	now := s.now()
	out := adminapi.KeyList{Keys: make([]adminapi.Key, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, toAPIKey(k, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleCreateKey(w http.ResponseWriter, r *http.Request) {
	var req adminapi.CreateKeyRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	fields := fieldErrors{}
	checkName(fields, "name", req.Name)
	if len(req.Policy) > maxNameLen {
		fields.add("policy", fmt.Sprintf("must be at most %d characters", maxNameLen))
	}
	spec := store.KeySpec{Name: strings.TrimSpace(req.Name), Policy: req.Policy}
	if req.ExpiresAt != "" {
		exp, err := time.Parse(time.RFC3339, req.ExpiresAt)
		switch {
		case err != nil:
			fields.add("expires_at", "must be an RFC 3339 time such as 2030-01-02T15:04:05Z")
		case !exp.After(s.now()):
			fields.add("expires_at", "must be in the future")
		default:
			exp = exp.UTC()
			spec.ExpiresAt = &exp
		}
	}
	if len(fields) > 0 {
		writeInvalid(w, fields)
		return
	}
	key, secret, err := s.st.CreateKey(r.Context(), spec)
	if err != nil {
		s.writeStoreError(w, r, err, "key")
		return
	}
	s.auditLog(r, "key.create", key.ID, "name", key.Name, "policy", key.Policy)
	writeJSON(w, http.StatusCreated, adminapi.CreateKeyResponse{Key: toAPIKey(key, s.now()), Secret: secret})
}

func (s *Server) handleGetKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	key, err := s.st.GetKey(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("key %q", id))
		return
	}
	writeJSON(w, http.StatusOK, adminapi.KeyResponse{Key: toAPIKey(key, s.now())})
}

func (s *Server) handleRevokeKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.st.RevokeKey(r.Context(), id); err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("key %q", id))
		return
	}
	s.auditLog(r, "key.revoke", id)
	key, err := s.st.GetKey(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("key %q", id))
		return
	}
	writeJSON(w, http.StatusOK, adminapi.KeyResponse{Key: toAPIKey(key, s.now())})
}

func toAPIUsage(u store.Usage) adminapi.Usage {
	return adminapi.Usage{
		Requests:     u.Requests,
		InputTokens:  u.InputTokens,
		OutputTokens: u.OutputTokens,
		CacheWrite5m: u.CacheWrite5m,
		CacheWrite1h: u.CacheWrite1h,
		CacheRead:    u.CacheRead,
		CostUSD:      float64(u.CostMicroUSD) / 1e6,
	}
}

func (s *Server) handleKeyUsage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	day := s.now().UTC().Truncate(24 * time.Hour)
	if q := r.URL.Query().Get("day"); q != "" {
		d, err := time.Parse(time.DateOnly, q)
		if err != nil {
			writeInvalid(w, fieldErrors{"day": "must be a date such as 2025-01-31 (YYYY-MM-DD, UTC)"})
			return
		}
		day = d
	}
	if _, err := s.st.GetKey(r.Context(), id); err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("key %q", id))
		return
	}
	byModel, err := s.st.KeyUsage(r.Context(), id, day)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("usage of key %q", id))
		return
	}
	totals, err := s.st.KeyTotals(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("usage of key %q", id))
		return
	}
	out := adminapi.KeyUsage{
		Day:    day.Format(time.DateOnly),
		Models: make(map[string]adminapi.Usage, len(byModel)),
		Totals: toAPIUsage(totals),
	}
	var sum store.Usage
	for model, u := range byModel {
		out.Models[model] = toAPIUsage(u)
		sum = sum.Add(u)
	}
	out.DayTotal = toAPIUsage(sum)
	writeJSON(w, http.StatusOK, out)
}
