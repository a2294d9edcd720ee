package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// Account defaults and limits.
const (
	accountTypeAPIKey   = store.AccountTypeAnthropicAPIKey
	defaultBaseURL      = store.DefaultBaseURL
	defaultPriority     = 50
	minPriority         = 1
	maxPriority         = 100
	maxCredentialLength = 4096
	maxModelMapEntries  = 100
)

// DefaultTestModel is the model POST /admin/accounts/{id}/test asks for when none is given.
const DefaultTestModel = "claude-haiku-4-5"

// testTimeout bounds an account test request.
const testTimeout = 30 * time.Second

// oauthBeta is the anthropic-beta value an OAuth bearer token needs upstream.
const oauthBeta = "oauth-2025-04-20"

// toAPIAccount shows an account with its status: a tampered record (tampered is why, "" when
// it is not) wins, then a park of the whole account, then a failing token refresh, then an
// expired token without a way to refresh it.
func toAPIAccount(a store.Account, parks []store.Parked, tampered string, now time.Time) adminapi.Account {
	out := adminapi.Account{
		ID:             a.ID,
		Name:           a.Name,
		Type:           a.Type,
		BaseURL:        a.BaseURL,
		Priority:       a.Priority,
		Group:          a.Group,
		Schedulable:    a.Schedulable,
		CreatedAt:      a.CreatedAt,
		CredentialHint: a.CredentialHint,
		Proxy:          a.ProxyHint,
		ModelMap:       a.ModelMap,
		LastUsedAt:     a.LastUsedAt,
		Status:         adminapi.AccountStatus{State: adminapi.AccountActive},
	}
	if !a.Caps.IsZero() {
		c := adminapi.AccountCaps(a.Caps)
		out.Caps = &c
	}
	if a.Type == store.AccountTypeClaudeOAuth {
		out.OAuth = &adminapi.OAuthDetails{
			TokenExpiresAt: a.TokenExpiresAt, HasRefreshToken: a.HasRefreshToken, Scopes: a.Scopes,
			RefreshError: a.RefreshError, RefreshFailedAt: a.RefreshFailedAt,
			RefreshFailures: a.RefreshFailures, RefreshRetryAt: a.RefreshRetryAt,
		}
	}
	whole := false
	for _, p := range parks {
		if p.Account != a.ID {
			continue
		}
		ap := adminapi.Park{Family: p.Family, State: p.State, HTTPStatus: p.Status, Reason: p.Reason}
		if !p.Until.IsZero() {
			u := p.Until
			ap.Until = &u
		}
		out.Parked = append(out.Parked, ap)
		if p.Family == "" {
			whole = true
			out.Status = adminapi.AccountStatus{State: p.State, Reason: p.Reason, Until: ap.Until}
		}
	}
	switch {
	case tampered != "":
		out.Status = adminapi.AccountStatus{State: adminapi.AccountTampered, Reason: tampered +
			"; no sidecar uses it: check the record (base URL, type, proxy) and give the credential again (update api_key, or add the account again)"}
	case whole:
	case a.RefreshError != "":
		out.Status = adminapi.AccountStatus{State: adminapi.AccountRefreshFailing, Reason: a.RefreshError, Since: a.RefreshFailedAt}
	case a.Type == store.AccountTypeClaudeOAuth && a.TokenExpiresAt != nil && !now.Before(*a.TokenExpiresAt) && !a.HasRefreshToken:
		out.Status = adminapi.AccountStatus{State: adminapi.AccountTokenExpired, Reason: "the access token expired and there is no refresh token: add the account again", Since: a.TokenExpiresAt}
	}
	return out
}

// toAPIWindows shows a subscription-window reading.
func toAPIWindows(w store.Windows, ok bool) adminapi.SubscriptionWindows {
	if !ok {
		return adminapi.SubscriptionWindows{}
	}
	at := w.ObservedAt.UTC()
	out := adminapi.SubscriptionWindows{WindowStatus: w.Status, RepresentativeClaim: w.Claim, WindowsObservedAt: &at}
	if x := w.FiveHour; x != nil {
		u := x.Utilization
		out.Utilization5h, out.Status5h, out.Reset5h = &u, x.Status, optTime(x.Reset)
	}
	if x := w.SevenDay; x != nil {
		u := x.Utilization
		out.Utilization7d, out.Status7d, out.Reset7d = &u, x.Status, optTime(x.Reset)
	}
	return out
}

// optTime is t in UTC, nil when zero.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// checkBaseURL reports what is wrong with an upstream base URL, or "".
func checkBaseURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "must be a URL such as https://api.anthropic.com"
	case u.Scheme != "https" && u.Scheme != "http":
		return "must start with https:// (or http://)"
	case u.Host == "":
		return "must name a host"
	case u.User != nil:
		return "must not carry credentials; send them as api_key"
	case u.RawQuery != "" || u.Fragment != "":
		return "must not have a query or fragment"
	}
	return ""
}

// CheckUpstreamCredential says why credential can never work against the upstream at
// baseURL, or returns nil. A claude-relay key (cr_…) sent to Anthropic's own API
// (anthropic.com and its subdomains) can only be refused there, and would hand a relay
// key to a third party; it is usually a pasted `export ANTHROPIC_API_KEY=cr_…` left in a
// shell. Another relay's base URL may take one (an anthropic_compatible account).
func CheckUpstreamCredential(baseURL, credential string) error {
	host := anthropicHost(baseURL)
	if host == "" || !strings.HasPrefix(credential, store.SecretPrefix) {
		return nil
	}
	return fmt.Errorf("is a claude-relay key (%s…), not an Anthropic key: %s can never accept it. "+
		"Give an Anthropic Console key (sk-ant-…); to relay through another claude-relay, add that relay as an anthropic_compatible account with its URL as base_url",
		store.SecretPrefix, host)
}

// anthropicHost returns baseURL's host when it is Anthropic's own (anthropic.com or a
// subdomain), else "".
func anthropicHost(baseURL string) string {
	u, err := url.Parse(baseURL)
	if err != nil {
		return "" // the base URL's own check reports it
	}
	host := strings.ToLower(u.Hostname())
	if host != "anthropic.com" && !strings.HasSuffix(host, ".anthropic.com") {
		return ""
	}
	return host
}

// checkSecret validates a pasted credential.
func checkSecret(fields fieldErrors, field, v string) {
	switch {
	case v == "":
		fields.add(field, "required")
	case len(v) > maxCredentialLength:
		fields.add(field, fmt.Sprintf("must be at most %d bytes", maxCredentialLength))
	case strings.ContainsFunc(v, func(r rune) bool { return r <= 0x20 || r == 0x7f }):
		fields.add(field, "must not contain spaces or control characters")
	}
}

func checkModelMap(fields fieldErrors, m map[string]string) {
	if len(m) > maxModelMapEntries {
		fields.add("model_map", fmt.Sprintf("must have at most %d entries", maxModelMapEntries))
		return
	}
	for from, to := range m {
		if strings.TrimSpace(from) == "" || strings.TrimSpace(to) == "" || len(from) > maxPatternLen || len(to) > maxPatternLen {
			fields.add("model_map", "maps non-empty model names of at most 200 bytes")
			return
		}
	}
}

func checkProxy(fields fieldErrors, raw string) {
	if raw == "" {
		return
	}
	if _, err := store.ProxyHint(raw); err != nil {
		fields.add("proxy_url", strings.TrimPrefix(err.Error(), "proxy URL "))
	}
}

func checkGroup(fields fieldErrors, g string) {
	if g != "" && !store.ValidIndexName(g) {
		fields.add("group", "must be 1 to 64 of A-Z a-z 0-9 . _ : -")
	}
}

// checkedCaps converts and checks the caps of an add request (nil: none).
func checkedCaps(fields fieldErrors, c *adminapi.AccountCaps) store.AccountCaps {
	if c == nil {
		return store.AccountCaps{}
	}
	caps := store.AccountCaps(*c)
	checkCaps(fields, caps)
	return caps
}

// checkCaps reports negative caps.
func checkCaps(fields fieldErrors, c store.AccountCaps) {
	if err := c.Validate(); err != nil {
		fields.add("caps", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
}

// parks returns the parks in force, from which account status is derived.
func (s *Server) parks(ctx context.Context) ([]store.Parked, error) {
	return s.st.ParkedAccounts(ctx)
}

func (s *Server) handleListAccounts(w http.ResponseWriter, r *http.Request) {
	accts, err := s.st.ListAccounts(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err, "accounts")
		return
	}
	parks, err := s.parks(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err, "accounts")
		return
	}
	ids := make([]string, len(accts))
	for i, a := range accts {
		ids[i] = a.ID
	}
	tampered, err := s.st.TamperedAccounts(r.Context(), ids)
	if err != nil {
		s.writeStoreError(w, r, err, "accounts")
		return
	}
	windows, err := s.st.AccountWindows(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err, "accounts")
		return
	}
	now := s.now()
	out := adminapi.AccountList{Accounts: make([]adminapi.Account, 0, len(accts))}
	for _, a := range accts {
		acct := toAPIAccount(a, parks, tampered[a.ID], now)
		wnd, ok := windows[a.ID]
		acct.SubscriptionWindows = toAPIWindows(wnd, ok)
		out.Accounts = append(out.Accounts, acct)
	}
	writeJSON(w, http.StatusOK, out)
}

// writeAccount answers with one account and its status.
func (s *Server) writeAccount(w http.ResponseWriter, r *http.Request, status int, id string) {
	acct, err := s.st.GetAccount(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	parks, err := s.parks(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	tampered, err := s.st.TamperedAccounts(r.Context(), []string{id})
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	windows, err := s.st.AccountWindows(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	out := toAPIAccount(acct, parks, tampered[id], s.now())
	wnd, ok := windows[id]
	out.SubscriptionWindows = toAPIWindows(wnd, ok)
	writeJSON(w, status, adminapi.AccountResponse{Account: out})
}

func (s *Server) handleAddAccount(w http.ResponseWriter, r *http.Request) {
	var req adminapi.AddAccountRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	spec := store.AccountSpec{
		Name:     strings.TrimSpace(req.Name),
		Type:     req.Type,
		BaseURL:  strings.TrimRight(req.BaseURL, "/"),
		Priority: defaultPriority,
		Group:    req.Group,
		ProxyURL: req.ProxyURL,
		ModelMap: req.ModelMap,
	}
	if spec.Type == "" {
		spec.Type = accountTypeAPIKey
	}
	if req.Priority != nil {
		spec.Priority = *req.Priority
	}
	if req.Schedulable != nil {
		spec.Unschedulable = !*req.Schedulable
	}

	fields := fieldErrors{}
	checkName(fields, "name", req.Name)
	checkNewCredential(fields, req, &spec)
	if spec.BaseURL == "" {
		spec.BaseURL = defaultBaseURL
	}
	if problem := checkBaseURL(spec.BaseURL); problem != "" {
		fields.add("base_url", problem)
	}
	credField := "api_key"
	if spec.Type == store.AccountTypeClaudeOAuth {
		credField = "access_token"
	}
	if err := CheckUpstreamCredential(spec.BaseURL, spec.Credential); err != nil {
		fields.add(credField, err.Error())
	}
	if len(req.ModelMap) > 0 && spec.Type != store.AccountTypeAnthropicCompatible {
		fields.add("model_map", "only for anthropic_compatible accounts")
	}
	checkModelMap(fields, req.ModelMap)
	checkProxy(fields, req.ProxyURL)
	checkGroup(fields, req.Group)
	spec.Caps = checkedCaps(fields, req.Caps)
	if spec.Priority < minPriority || spec.Priority > maxPriority {
		fields.add("priority", fmt.Sprintf("must be between %d and %d", minPriority, maxPriority))
	}
	if len(fields) > 0 {
		writeInvalid(w, fields)
		return
	}

	acct, err := s.st.AddAccount(r.Context(), spec)
	if err != nil {
		s.writeStoreError(w, r, err, "account")
		return
	}
	s.auditLog(r, "account.add", acct.ID, "name", acct.Name, "type", acct.Type, "base_url", acct.BaseURL, "priority", acct.Priority)
	s.writeAccount(w, r, http.StatusCreated, acct.ID)
}

// checkNewCredential takes a new account's credential from the fields its type uses (api_key;
// access_token, refresh_token and expires_at for claude_oauth) into spec, and notes the fields
// its type does not take and an unknown type.
func checkNewCredential(fields fieldErrors, req adminapi.AddAccountRequest, spec *store.AccountSpec) {
	switch spec.Type {
	case store.AccountTypeAnthropicAPIKey, store.AccountTypeAnthropicCompatible:
		spec.Credential = strings.TrimSpace(req.APIKey)
		checkSecret(fields, "api_key", spec.Credential)
		for field, v := range map[string]string{"access_token": req.AccessToken, "refresh_token": req.RefreshToken, "expires_at": req.ExpiresAt} {
			if v != "" {
				fields.add(field, "only for claude_oauth accounts")
			}
		}
		if spec.Type == store.AccountTypeAnthropicCompatible && spec.BaseURL == "" {
			fields.add("base_url", "required for anthropic_compatible accounts")
		}
	case store.AccountTypeClaudeOAuth:
		spec.Credential = strings.TrimSpace(req.AccessToken)
		checkSecret(fields, "access_token", spec.Credential)
		if req.APIKey != "" {
			fields.add("api_key", "claude_oauth accounts take access_token (and refresh_token), not api_key")
		}
		if req.RefreshToken != "" {
			spec.RefreshToken = strings.TrimSpace(req.RefreshToken)
			checkSecret(fields, "refresh_token", spec.RefreshToken)
		}
		if req.ExpiresAt != "" {
			t, err := time.Parse(time.RFC3339, req.ExpiresAt)
			if err != nil {
				fields.add("expires_at", "must be an RFC 3339 time such as 2030-01-02T15:04:05Z")
			} else {
				spec.TokenExpiresAt = &t
			}
		}
	default:
		fields.add("type", "must be one of "+strings.Join(store.AccountTypes, ", "))
	}
}

func (s *Server) handleGetAccount(w http.ResponseWriter, r *http.Request) {
	s.writeAccount(w, r, http.StatusOK, r.PathValue("id"))
}

func (s *Server) handleUpdateAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req adminapi.UpdateAccountRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	cur, err := s.st.GetAccount(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	fields := fieldErrors{}
	u := store.AccountUpdate{Name: req.Name, Priority: req.Priority, Group: req.Group, Schedulable: req.Schedulable, ProxyURL: req.ProxyURL, ModelMap: req.ModelMap}
	var changed []string
	if req.Name != nil {
		checkName(fields, "name", *req.Name)
		changed = append(changed, "name")
	}
	if req.BaseURL != nil {
		b := strings.TrimRight(*req.BaseURL, "/")
		if problem := checkBaseURL(b); problem != "" {
			fields.add("base_url", problem)
		}
		u.BaseURL = &b
		changed = append(changed, "base_url")
	}
	if req.Priority != nil {
		if *req.Priority < minPriority || *req.Priority > maxPriority {
			fields.add("priority", fmt.Sprintf("must be between %d and %d", minPriority, maxPriority))
		}
		changed = append(changed, "priority")
	}
	if req.Group != nil {
		checkGroup(fields, *req.Group)
		changed = append(changed, "group")
	}
	if req.Schedulable != nil {
		changed = append(changed, "schedulable")
	}
	if req.ProxyURL != nil {
		checkProxy(fields, *req.ProxyURL)
		changed = append(changed, "proxy_url")
	}
	if req.ModelMap != nil {
		if len(*req.ModelMap) > 0 && cur.Type != store.AccountTypeAnthropicCompatible {
			fields.add("model_map", "only for anthropic_compatible accounts")
		}
		checkModelMap(fields, *req.ModelMap)
		changed = append(changed, "model_map")
	}
	if req.Caps != nil {
		c := store.AccountCaps(*req.Caps)
		checkCaps(fields, c)
		u.Caps = &c
		changed = append(changed, "caps")
	}
	baseURL := cur.BaseURL
	if u.BaseURL != nil {
		baseURL = *u.BaseURL
	}
	if req.APIKey != nil {
		if cur.Type == store.AccountTypeClaudeOAuth {
			fields.add("api_key", "an OAuth account's tokens change through the OAuth flow or a refresh")
		}
		k := strings.TrimSpace(*req.APIKey)
		checkSecret(fields, "api_key", k)
		if err := CheckUpstreamCredential(baseURL, k); err != nil {
			fields.add("api_key", err.Error())
		}
		u.Credential = &k
		changed = append(changed, "api_key")
	} else if req.BaseURL != nil && strings.HasPrefix(cur.CredentialHint, store.SecretPrefix) {
		// The stored key is sealed; its hint shows it is a relay key.
		if host := anthropicHost(baseURL); host != "" {
			fields.add("base_url", fmt.Sprintf("this account holds a claude-relay key (%s…), which %s can never accept; "+
				"give an Anthropic Console key (sk-ant-…) as api_key in the same request, or keep the base URL of the relay the key belongs to", store.SecretPrefix, host))
		}
	}
	if len(fields) > 0 {
		writeInvalid(w, fields)
		return
	}
	if _, err := s.st.UpdateAccount(r.Context(), id, u); err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	s.auditLog(r, "account.update", id, "fields", strings.Join(changed, ","))
	s.writeAccount(w, r, http.StatusOK, id)
}

func (s *Server) handleDeleteAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.st.DeleteAccount(r.Context(), id); err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	if _, err := s.st.UnparkAccount(r.Context(), id); err != nil {
		s.log.Warn("cannot clear parks of a deleted account", "account", id, "error", err)
	}
	s.auditLog(r, "account.delete", id)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleUnparkAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.st.GetAccount(r.Context(), id); err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	if _, err := s.st.UnparkAccount(r.Context(), id); err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	s.auditLog(r, "account.unpark", id)
	s.writeAccount(w, r, http.StatusOK, id)
}

// handleUnbindAccount deletes every sticky binding to an account (it need not exist any
// more: a deleted account's bindings can be cleared too).
func (s *Server) handleUnbindAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n, err := s.st.ClearAccountBindings(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("bindings of account %q", id))
		return
	}
	s.auditLog(r, "account.unbind", id, "cleared", n)
	writeJSON(w, http.StatusOK, adminapi.BindingsCleared{Cleared: n})
}

// handleClearSession deletes one conversation's sticky bindings, in every pool.
func (s *Server) handleClearSession(w http.ResponseWriter, r *http.Request) {
	session := r.PathValue("session")
	if session == "" || len(session) > 256 {
		writeInvalid(w, fieldErrors{"session": "must be the session id a client sends (Claude Code's session uuid) or the binding's 32-hex hash, at most 256 bytes"})
		return
	}
	n, err := s.st.ClearStickySession(r.Context(), session)
	if err != nil {
		s.writeStoreError(w, r, err, "sticky session")
		return
	}
	s.auditLog(r, "session.clear", session, "cleared", n)
	writeJSON(w, http.StatusOK, adminapi.BindingsCleared{Cleared: n})
}

// accountTransport returns the transport an account's requests take: through its outbound
// proxy when it has one. The caller closes its idle connections when done.
func accountTransport(proxyURL string) (*http.Transport, error) {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   true,
	}
	if proxyURL != "" {
		u, err := url.Parse(proxyURL)
		if err != nil {
			return nil, errors.New("the account's proxy URL does not parse")
		}
		t.Proxy = http.ProxyURL(u)
	}
	return t, nil
}

// credentialClient returns an HTTP client for requests that carry a credential (an account's
// key or token, an OAuth code or refresh token): it never follows a redirect, because Go
// re-sends x-api-key, and a 307/308 re-posts the body, to wherever the Location points —
// another host, or plain http. The redirect itself is the answer; see redirectedTo.
func credentialClient(t http.RoundTripper) *http.Client {
	return &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// redirectedTo reports whether resp is a redirect and, if so, the scheme and host it points
// to (never its path or query, which may carry a token), for a message such as "upstream
// answered 302 redirect to https://other.example".
func redirectedTo(resp *http.Response) (string, bool) {
	if resp.StatusCode < 300 || resp.StatusCode > 399 {
		return "", false
	}
	loc, err := resp.Location()
	switch {
	case errors.Is(err, http.ErrNoLocation):
		return "nowhere (no Location header)", true
	case err != nil:
		return "an unreadable Location", true
	}
	return loc.Scheme + "://" + loc.Host, true
}

// setUpstreamCredential puts an account's credential on a request the way the sidecar does:
// OAuth tokens as a bearer token with the OAuth beta, keys as x-api-key.
func setUpstreamCredential(h http.Header, accountType, credential string) {
	if accountType == store.AccountTypeClaudeOAuth {
		h.Set("Authorization", "Bearer "+credential)
		h.Set("Anthropic-Beta", oauthBeta)
		return
	}
	h.Set("X-Api-Key", credential)
}

func (s *Server) handleTestAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req adminapi.TestAccountRequest
	if r.ContentLength != 0 && !decodeJSON(w, r, &req) {
		return
	}
	if req.Model == "" {
		req.Model = s.testModel
	}
	if len(req.Model) > maxPatternLen {
		writeInvalid(w, fieldErrors{"model": "must be at most 200 bytes"})
		return
	}
	acct, err := s.st.GetAccount(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	sec, err := s.st.AccountSecrets(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	// The request goes where the credential is bound to, not to a separately read base URL.
	acct.Type, acct.BaseURL = sec.Type, sec.BaseURL
	model := req.Model
	if m, ok := acct.ModelMap[model]; ok {
		model = m
	}
	res := s.testAccount(r.Context(), acct, sec, model)
	res.Model = req.Model
	s.auditLog(r, "account.test", id, "ok", res.OK, "http_status", res.HTTPStatus)
	writeJSON(w, http.StatusOK, res)
}

// testAccount sends a one-token Messages request through the account and reports the result.
func (s *Server) testAccount(ctx context.Context, acct store.Account, sec store.AccountSecrets, model string) adminapi.TestAccountResult {
	var res adminapi.TestAccountResult
	t, err := accountTransport(sec.ProxyURL)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer t.CloseIdleConnections()
	body, _ := json.Marshal(map[string]any{ // cannot fail: plain values
		"model":      model,
		"max_tokens": 1,
		"messages":   []map[string]string{{"role": "user", "content": "ping"}},
	})
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, acct.BaseURL+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		res.Error = "cannot build the request: " + err.Error()
		return res
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Anthropic-Version", "2023-06-01")
	setUpstreamCredential(hreq.Header, acct.Type, sec.Credential)
	start := s.now()
	resp, err := credentialClient(t).Do(hreq)
	res.LatencyMS = s.now().Sub(start).Milliseconds()
	if err != nil {
		res.Error = redactURLError(err)
		return res
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	res.HTTPStatus = resp.StatusCode
	res.RequestID = resp.Header.Get("Request-Id")
	res.OK = resp.StatusCode == http.StatusOK
	if to, ok := redirectedTo(resp); ok {
		res.Error = fmt.Sprintf("upstream answered %d redirect to %s; the credential was not sent there (the relay never follows redirects): check the account's base URL", resp.StatusCode, to)
		return res
	}
	if !res.OK {
		res.Error = upstreamErrorMessage(data)
	}
	return res
}

// redactURLError reports a transport error without the URL (which may hold proxy credentials).
func redactURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// upstreamErrorMessage extracts the message of an Anthropic-shaped error body.
func upstreamErrorMessage(body []byte) string {
	var e struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return e.Error.Type + ": " + e.Error.Message
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return msg
}
