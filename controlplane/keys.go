package controlplane

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// maxNameLen bounds key and account names, in characters; maxNameBytes in bytes (the store's limit).
const (
	maxNameLen   = 100
	maxNameBytes = 200
)

// Limits of the free-text and list fields of a key.
const (
	maxDescriptionLen = 1000
	maxListLen        = 100
	maxPatternLen     = 200
	minLifetime       = time.Minute
	// maxBulkBodyBytes caps a bulk create body (MaxBulkKeys keys with their rules).
	maxBulkBodyBytes = 4 << 20
)

// checkName validates a required display name into fields.
func checkName(fields fieldErrors, field, name string) {
	switch {
	case strings.TrimSpace(name) == "":
		fields.add(field, "required")
	default:
		checkText(fields, field, name, maxNameLen)
	}
}

// checkText validates optional single-line text of at most max characters.
func checkText(fields fieldErrors, field, s string, max int) {
	switch {
	case !utf8.ValidString(s):
		fields.add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		fields.add(field, fmt.Sprintf("must be at most %d characters", max))
	case len(s) > 2*max:
		fields.add(field, fmt.Sprintf("must be at most %d bytes of UTF-8", 2*max))
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		fields.add(field, "must not contain control characters")
	}
}

// keyStatus says whether k can be used at now, and if not why.
func keyStatus(k store.Key, now time.Time) string { return k.Status(now) }

func toAPIKey(k store.Key, now time.Time) adminapi.Key {
	out := adminapi.Key{
		ID:          k.ID,
		Name:        k.Name,
		Description: k.Description,
		Owner:       k.Owner,
		Tags:        k.Tags,
		Hint:        k.Hint,
		Policy:      k.Policy,
		KeyRules:    toAPIRules(k.Rules),
		Enabled:     k.Enabled,
		Status:      keyStatus(k, now),
		Revision:    k.Revision,
		ActivatedAt: k.ActivatedAt,
		CreatedAt:   k.CreatedAt,
		ExpiresAt:   k.ExpiresAt,
		RevokedAt:   k.RevokedAt,
		DeletedAt:   k.DeletedAt,
		LastUsedAt:  k.LastUsedAt,
	}
	if k.ExpiresAfter > 0 {
		out.ExpiresAfter = k.ExpiresAfter.String()
	}
	return out
}

func toAPIRules(r store.KeyRules) adminapi.KeyRules {
	out := adminapi.KeyRules{
		AllowedModels:  r.AllowedModels,
		DeniedModels:   r.DeniedModels,
		AllowedClients: r.AllowedClients,
		AllowedCIDRs:   r.AllowedCIDRs,
	}
	if !r.Limits.IsZero() {
		l := r.Limits
		out.Limits = &l
	}
	if r.Binding != (store.KeyBinding{}) {
		b := adminapi.KeyBinding(r.Binding)
		out.Binding = &b
	}
	return out
}

// parseLifetime reads a lifetime such as "36h", "90m" or "7d" (whole days).
func parseLifetime(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 3650 {
			return 0, errors.New("bad days")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < minLifetime {
		return 0, errors.New("too short")
	}
	return d, nil
}

const lifetimeHelp = "must be a lifetime of at least 1m such as 36h, 90m or 7d"

// checkPatterns validates a list of globs or names.
func checkPatterns(fields fieldErrors, field string, list []string) {
	if len(list) > maxListLen {
		fields.add(field, fmt.Sprintf("must have at most %d entries", maxListLen))
		return
	}
	for i, p := range list {
		if strings.TrimSpace(p) == "" || len(p) > maxPatternLen || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			fields.add(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("must be a non-empty pattern of at most %d bytes", maxPatternLen))
		}
	}
}

// checkCIDRs validates an IP allowlist and returns it in canonical form.
func checkCIDRs(fields fieldErrors, field string, list []string) []string {
	if len(list) > maxListLen {
		fields.add(field, fmt.Sprintf("must have at most %d entries", maxListLen))
		return nil
	}
	var out []string
	for i, c := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			if a, aerr := netip.ParseAddr(strings.TrimSpace(c)); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				fields.add(fmt.Sprintf("%s[%d]", field, i), "must be a CIDR such as 10.0.0.0/8 or an IP address")
				continue
			}
		}
		out = append(out, p.Masked().String())
	}
	return out
}

// checkLimits validates limit overrides: none may be negative.
func checkLimits(fields fieldErrors, l *adminapi.KeyLimits) store.KeyLimits {
	if l == nil {
		return store.KeyLimits{}
	}
	for d := range config.Limits() {
		if d.OverrideNegative(l) {
			fields.add("limits."+d.Name, "must not be negative")
		}
	}
	return *l
}

// checkBinding validates a binding: one account that exists, or a group name, not both.
func (s *Server) checkBinding(r *http.Request, fields fieldErrors, b *adminapi.KeyBinding) (store.KeyBinding, error) {
	if b == nil {
		return store.KeyBinding{}, nil
	}
	switch {
	case b.AccountID != "" && b.Group != "":
		fields.add("binding", "bind to an account or a group, not both")
	case b.Group != "" && !store.ValidIndexName(b.Group):
		fields.add("binding.group", "must be 1 to 64 of A-Z a-z 0-9 . _ : -")
	case b.AccountID != "":
		if _, err := s.st.GetAccount(r.Context(), b.AccountID); errors.Is(err, store.ErrNotFound) {
			fields.add("binding.account_id", "no such account")
		} else if err != nil {
			return store.KeyBinding{}, err
		}
	}
	return store.KeyBinding(*b), nil
}

// checkRules validates the rules of a create request.
func (s *Server) checkRules(r *http.Request, fields fieldErrors, in adminapi.KeyRules) (store.KeyRules, error) {
	out := store.KeyRules{
		Limits:         checkLimits(fields, in.Limits),
		AllowedModels:  in.AllowedModels,
		DeniedModels:   in.DeniedModels,
		AllowedClients: in.AllowedClients,
		AllowedCIDRs:   checkCIDRs(fields, "allowed_cidrs", in.AllowedCIDRs),
	}
	checkPatterns(fields, "allowed_models", in.AllowedModels)
	checkPatterns(fields, "denied_models", in.DeniedModels)
	checkPatterns(fields, "allowed_clients", in.AllowedClients)
	var err error
	out.Binding, err = s.checkBinding(r, fields, in.Binding)
	return out, err
}

// checkTags validates and lowercases tags.
func checkTags(fields fieldErrors, tags []string) []string {
	if len(tags) > maxListLen {
		fields.add("tags", fmt.Sprintf("must have at most %d entries", maxListLen))
		return nil
	}
	out := make([]string, 0, len(tags))
	for i, t := range tags {
		t = strings.ToLower(strings.TrimSpace(t))
		if !store.ValidIndexName(t) {
			fields.add(fmt.Sprintf("tags[%d]", i), "must be 1 to 64 of a-z 0-9 . _ : -")
			continue
		}
		out = append(out, t)
	}
	return out
}

// checkPolicy refuses a malformed policy name, and one the running configuration does not
// define: a key under an unknown policy would be refused on every request (403). Without a
// configuration to check against (no config pipeline wired), only the form is checked.
func (s *Server) checkPolicy(fields fieldErrors, policy string) {
	if policy == "" {
		return
	}
	if !store.ValidIndexName(policy) {
		fields.add("policy", "must be a policy name: 1 to 64 of A-Z a-z 0-9 . _ : -")
		return
	}
	if s.config == nil {
		return
	}
	env, rt := s.config.Cache.Current(), s.config.Cache.Runtime()
	if env == nil || rt == nil {
		return
	}
	if _, ok := rt.Snapshot.Policies[policy]; !ok {
		fields.add("policy", unknownPolicy(policy, env.Version, s.config.Source.Dir(), slices.Sorted(maps.Keys(rt.Snapshot.Policies))))
	}
}

// unknownPolicy says that policy is not among the defined ones and where policies come
// from: `policy "NAME" { … }` blocks in the HCL of dir ("" means the embedded default).
func unknownPolicy(policy string, version int64, dir string, defined []string) string {
	if len(defined) > 0 {
		from := "the HCL in " + dir
		if dir == "" {
			from = "the embedded default configuration"
		}
		return fmt.Sprintf("no policy %q in the running configuration (version %d); defined (policy blocks in %s): %s",
			policy, version, from, strings.Join(defined, ", "))
	}
	add := fmt.Sprintf("add a policy %q { … } block to the HCL in %s (saving reloads it)", policy, dir)
	if dir == "" {
		add = fmt.Sprintf("the control plane runs the embedded default configuration (CLAUDE_RELAY_CONFIG_DIR is unset): point CLAUDE_RELAY_CONFIG_DIR at a directory of HCL files with a policy %q { … } block", policy)
	}
	return fmt.Sprintf("no policy %q: the running configuration (version %d) defines no policies; %s, or create the key without a policy to follow its route's",
		policy, version, add)
}

// keySpec validates a create request into fields (prefixed for bulk requests).
func (s *Server) keySpec(r *http.Request, req adminapi.CreateKeyRequest) (store.KeySpec, fieldErrors, error) {
	fields := fieldErrors{}
	checkName(fields, "name", req.Name)
	checkText(fields, "description", req.Description, maxDescriptionLen)
	checkText(fields, "owner", req.Owner, maxNameLen)
	s.checkPolicy(fields, req.Policy)
	spec := store.KeySpec{
		Name: strings.TrimSpace(req.Name), Description: req.Description, Owner: req.Owner,
		Policy: req.Policy, Tags: checkTags(fields, req.Tags),
	}
	exp := s.checkExpiry(fields, req.ExpiresAt, req.ExpiresAfter)
	spec.ExpiresAt, spec.ExpiresAfter = exp.At, exp.After
	var err error
	spec.Rules, err = s.checkRules(r, fields, req.KeyRules)
	return spec, fields, err
}

// checked reports whether a key request passed validation (keySpec, keyUpdate); otherwise
// it has answered: the store's error reading the binding account the request names, or
// the invalid fields.
func (s *Server) checked(w http.ResponseWriter, r *http.Request, fields fieldErrors, err error) bool {
	if err != nil {
		s.writeStoreError(w, r, err, "binding account")
		return false
	}
	if len(fields) > 0 {
		writeInvalid(w, fields)
		return false
	}
	return true
}

// checkExpiry validates a key's expiry, the one create and update take: an RFC 3339 time
// in the future (at), or a lifetime counted from first use (after); at most one of them.
// Both "" is no expiry.
func (s *Server) checkExpiry(fields fieldErrors, at, after string) store.KeyExpiry {
	var e store.KeyExpiry
	switch {
	case at != "" && after != "":
		fields.add("expires_at", "give expires_at or expires_after, not both")
	case at != "":
		t, err := time.Parse(time.RFC3339, at)
		switch {
		case err != nil:
			fields.add("expires_at", "must be an RFC 3339 time such as 2030-01-02T15:04:05Z")
		case !t.After(s.now()):
			fields.add("expires_at", "must be in the future")
		default:
			t = t.UTC()
			e.At = &t
		}
	case after != "":
		d, err := parseLifetime(after)
		if err != nil {
			fields.add("expires_after", lifetimeHelp)
		}
		e.After = d
	}
	return e
}

func (s *Server) handleListKeys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fields := fieldErrors{}
	limit := adminapi.DefaultPageLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > adminapi.MaxPageLimit {
			fields.add("limit", fmt.Sprintf("must be an integer from 1 to %d", adminapi.MaxPageLimit))
		}
		limit = n
	}
	f := store.KeyFilter{NameContains: q.Get("name"), Tag: strings.ToLower(q.Get("tag")), Status: q.Get("status")}
	if q.Has("policy") {
		f.Policy, f.PolicySet = q.Get("policy"), true
	}
	switch f.Status {
	case "", adminapi.KeyActive, adminapi.KeyDisabled, adminapi.KeyExpired, adminapi.KeyRevoked, adminapi.KeyDeleted:
	default:
		fields.add("status", "must be active, disabled, expired, revoked or deleted")
	}
	if f.Tag != "" && !store.ValidIndexName(f.Tag) {
		fields.add("tag", "must be 1 to 64 of a-z 0-9 . _ : -")
	}
	if f.Policy != "" && !store.ValidIndexName(f.Policy) {
		fields.add("policy", "must be a policy name")
	}
	if len(fields) > 0 {
		writeInvalid(w, fields)
		return
	}
	page, err := s.st.PageKeys(r.Context(), f, q.Get("cursor"), limit)
	if errors.Is(err, store.ErrInvalid) {
		writeInvalid(w, fieldErrors{"cursor": "is not a cursor this API returned"})
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err, "keys")
		return
	}
	now := s.now()
	out := adminapi.KeyList{Keys: make([]adminapi.Key, 0, len(page.Keys)), NextCursor: page.Next}
	for _, k := range page.Keys {
		out.Keys = append(out.Keys, toAPIKey(k, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleCreateKey(w http.ResponseWriter, r *http.Request) {
	var req adminapi.CreateKeyRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	spec, fields, err := s.keySpec(r, req)
	if !s.checked(w, r, fields, err) {
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

func (s *Server) handleBulkCreateKeys(w http.ResponseWriter, r *http.Request) {
	var req adminapi.BulkCreateKeysRequest
	if !decodeJSONMax(w, r, &req, maxBulkBodyBytes) {
		return
	}
	if len(req.Keys) == 0 || len(req.Keys) > adminapi.MaxBulkKeys {
		writeInvalid(w, fieldErrors{"keys": fmt.Sprintf("must hold 1 to %d keys", adminapi.MaxBulkKeys)})
		return
	}
	fields := fieldErrors{}
	specs := make([]store.KeySpec, len(req.Keys))
	for i, kr := range req.Keys {
		spec, fe, err := s.keySpec(r, kr)
		if err != nil {
			s.writeStoreError(w, r, err, "binding account")
			return
		}
		for f, p := range fe {
			fields.add(fmt.Sprintf("keys[%d].%s", i, f), p)
		}
		specs[i] = spec
	}
	if len(fields) > 0 {
		writeInvalid(w, fields)
		return
	}
	created, err := s.st.CreateKeys(r.Context(), specs)
	if err != nil {
		s.writeStoreError(w, r, err, "keys")
		return
	}
	now := s.now()
	out := adminapi.BulkCreateKeysResponse{Keys: make([]adminapi.CreateKeyResponse, len(created))}
	ids := make([]string, len(created))
	for i, c := range created {
		out.Keys[i] = adminapi.CreateKeyResponse{Key: toAPIKey(c.Key, now), Secret: c.Secret}
		ids[i] = c.Key.ID
	}
	s.auditLog(r, "key.bulk_create", strings.Join(ids, ","), "count", len(ids))
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) handleGetKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	key, err := s.st.GetKey(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("key %q", id))
		return
	}
	writeKey(w, key, s.now())
}

// writeKey answers 200 with one key and its revision as ETag.
func writeKey(w http.ResponseWriter, key store.Key, now time.Time) {
	w.Header().Set("ETag", adminapi.ETag(key.Revision))
	writeJSON(w, http.StatusOK, adminapi.KeyResponse{Key: toAPIKey(key, now)})
}

// ifMatch reads the If-Match header of a per-key change: the revision the change is
// conditional on, or 0 when the header is absent or "*" (the key only has to exist). On a
// malformed header it has already answered 400.
func ifMatch(w http.ResponseWriter, r *http.Request) (int64, bool) {
	v := r.Header.Values("If-Match")
	if len(v) == 0 || (len(v) == 1 && strings.TrimSpace(v[0]) == "*") {
		return 0, true
	}
	if len(v) == 1 {
		if rev, ok := adminapi.ParseETag(v[0]); ok {
			return rev, true
		}
	}
	writeInvalid(w, fieldErrors{"If-Match": `must be one key revision as the ETag header gives it, e.g. "3"`})
	return 0, false
}

// maxUpdateRetries bounds how often a PATCH without If-Match re-reads a key that changed
// between its read and its write; each retry first waits a random time up to
// updateRetryBackoff times the attempt number, so writers racing for one key spread out.
const (
	maxUpdateRetries   = 20
	updateRetryBackoff = 2 * time.Millisecond
)

// handleUpdateKey applies a PATCH. The merge of rule fields with the stored rules is a
// read-modify-write, so the write is always conditional on the revision read: with If-Match
// that revision must be the one named (else 412); without it a key that changed in between is
// read again and the request reapplied, so fields the request does not name are never lost
// (the fields it names are last-writer-wins).
func (s *Server) handleUpdateKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ifRev, ok := ifMatch(w, r)
	if !ok {
		return
	}
	var req adminapi.UpdateKeyRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	for attempt := 0; ; attempt++ {
		cur, err := s.st.GetKey(r.Context(), id)
		if err == nil && ifRev > 0 && cur.Revision != ifRev {
			err = &store.StaleError{ID: id, Want: ifRev, Current: cur.Revision}
		}
		if err != nil {
			s.writeStoreError(w, r, err, fmt.Sprintf("key %q", id))
			return
		}
		u, fields, err := s.keyUpdate(r, req, cur)
		if !s.checked(w, r, fields, err) {
			return
		}
		u.IfRevision = cur.Revision
		key, err := s.st.UpdateKey(r.Context(), id, u)
		if errors.Is(err, store.ErrStale) && ifRev == 0 {
			if attempt < maxUpdateRetries {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(rand.N(time.Duration(attempt+1) * updateRetryBackoff)):
				}
				continue
			}
			writeError(w, http.StatusConflict, errConflict, fmt.Sprintf("key %q changed %d times while this update was applied; retry", id, attempt+1), nil)
			return
		}
		if err != nil {
			s.writeStoreError(w, r, err, fmt.Sprintf("key %q", id))
			return
		}
		s.auditLog(r, "key.update", id, "fields", strings.Join(presentFields(req), ","), "revision", key.Revision)
		writeKey(w, key, s.now())
		return
	}
}

// keyUpdate validates a PATCH request against the key as read into a store update; rule fields
// are merged into cur's rules.
func (s *Server) keyUpdate(r *http.Request, req adminapi.UpdateKeyRequest, cur store.Key) (store.KeyUpdate, fieldErrors, error) {
	var err error
	fields := fieldErrors{}
	u := store.KeyUpdate{Description: req.Description, Owner: req.Owner, Policy: req.Policy}
	if req.Name != nil {
		checkName(fields, "name", *req.Name)
		u.Name = req.Name
	}
	if req.Description != nil {
		checkText(fields, "description", *req.Description, maxDescriptionLen)
	}
	if req.Owner != nil {
		checkText(fields, "owner", *req.Owner, maxNameLen)
	}
	if req.Policy != nil {
		s.checkPolicy(fields, *req.Policy)
	}
	if req.Tags != nil {
		t := checkTags(fields, *req.Tags)
		u.Tags = &t
	}
	if req.ExpiresAt != nil || req.ExpiresAfter != nil {
		e := s.checkExpiry(fields, deref(req.ExpiresAt), deref(req.ExpiresAfter))
		u.Expiry = &e
	}
	if req.Limits != nil || req.AllowedModels != nil || req.DeniedModels != nil || req.AllowedClients != nil || req.AllowedCIDRs != nil || req.Binding != nil {
		rules := cur.Rules
		if req.Limits != nil {
			rules.Limits = checkLimits(fields, req.Limits)
		}
		if req.AllowedModels != nil {
			checkPatterns(fields, "allowed_models", *req.AllowedModels)
			rules.AllowedModels = *req.AllowedModels
		}
		if req.DeniedModels != nil {
			checkPatterns(fields, "denied_models", *req.DeniedModels)
			rules.DeniedModels = *req.DeniedModels
		}
		if req.AllowedClients != nil {
			checkPatterns(fields, "allowed_clients", *req.AllowedClients)
			rules.AllowedClients = *req.AllowedClients
		}
		if req.AllowedCIDRs != nil {
			rules.AllowedCIDRs = checkCIDRs(fields, "allowed_cidrs", *req.AllowedCIDRs)
		}
		if req.Binding != nil {
			if rules.Binding, err = s.checkBinding(r, fields, req.Binding); err != nil {
				return store.KeyUpdate{}, nil, err
			}
		}
		u.Rules = &rules
	}
	return u, fields, nil
}

// presentFields names the fields an update request sets, for the audit log.
func presentFields(req adminapi.UpdateKeyRequest) []string {
	var out []string
	for name, set := range map[string]bool{
		"name": req.Name != nil, "description": req.Description != nil, "owner": req.Owner != nil,
		"tags": req.Tags != nil, "policy": req.Policy != nil, "expires_at": req.ExpiresAt != nil,
		"expires_after": req.ExpiresAfter != nil, "limits": req.Limits != nil,
		"allowed_models": req.AllowedModels != nil, "denied_models": req.DeniedModels != nil,
		"allowed_clients": req.AllowedClients != nil, "allowed_cidrs": req.AllowedCIDRs != nil,
		"binding": req.Binding != nil,
	} {
		if set {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// keyAction runs a state change on a key, conditional on the revision If-Match names (if
// any), and answers with the key as it is afterwards.
func (s *Server) keyAction(action string, do func(r *http.Request, id string, ifRev int64) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		ifRev, ok := ifMatch(w, r)
		if !ok {
			return
		}
		if err := do(r, id, ifRev); err != nil {
			s.writeStoreError(w, r, err, fmt.Sprintf("key %q", id))
			return
		}
		key, err := s.st.GetKey(r.Context(), id)
		if err != nil {
			s.auditLog(r, action, id)
			s.writeStoreError(w, r, err, fmt.Sprintf("key %q", id))
			return
		}
		s.auditLog(r, action, id, "revision", key.Revision)
		writeKey(w, key, s.now())
	}
}

func (s *Server) handleRevokeKey(w http.ResponseWriter, r *http.Request) {
	s.keyAction("key.revoke", func(r *http.Request, id string, ifRev int64) error { return s.st.RevokeKeyIf(r.Context(), id, ifRev) })(w, r)
}

func (s *Server) handleEnableKey(w http.ResponseWriter, r *http.Request) {
	s.keyAction("key.enable", func(r *http.Request, id string, ifRev int64) error {
		return s.st.SetKeyEnabledIf(r.Context(), id, true, ifRev)
	})(w, r)
}

func (s *Server) handleDisableKey(w http.ResponseWriter, r *http.Request) {
	s.keyAction("key.disable", func(r *http.Request, id string, ifRev int64) error {
		return s.st.SetKeyEnabledIf(r.Context(), id, false, ifRev)
	})(w, r)
}

func (s *Server) handleDeleteKey(w http.ResponseWriter, r *http.Request) {
	s.keyAction("key.delete", func(r *http.Request, id string, ifRev int64) error { return s.st.DeleteKeyIf(r.Context(), id, ifRev) })(w, r)
}

func (s *Server) handleRestoreKey(w http.ResponseWriter, r *http.Request) {
	s.keyAction("key.restore", func(r *http.Request, id string, ifRev int64) error { return s.st.RestoreKeyIf(r.Context(), id, ifRev) })(w, r)
}

func (s *Server) handleRegenerateKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ifRev, ok := ifMatch(w, r)
	if !ok {
		return
	}
	key, secret, err := s.st.RegenerateKeyIf(r.Context(), id, ifRev)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("key %q", id))
		return
	}
	s.auditLog(r, "key.regenerate", id, "hint", key.Hint, "revision", key.Revision)
	w.Header().Set("ETag", adminapi.ETag(key.Revision))
	writeJSON(w, http.StatusOK, adminapi.CreateKeyResponse{Key: toAPIKey(key, s.now()), Secret: secret})
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

		UnpricedRequests:  u.UnpricedRequests,
		EstimatedRequests: u.EstimatedRequests,
		RefusedRequests:   u.RefusedRequests,
		FailedRequests:    u.FailedRequests,
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
