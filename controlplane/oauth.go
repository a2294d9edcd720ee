package controlplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// Defaults of the Claude subscription OAuth client: Claude Code's public client. Anthropic
// has moved these endpoints before (console.anthropic.com → platform.claude.com), so each is
// configuration (CLAUDE_RELAY_OAUTH_*).
const (
	DefaultOAuthAuthorizeURL = "https://claude.ai/oauth/authorize"
	DefaultOAuthTokenURL     = "https://platform.claude.com/v1/oauth/token"
	DefaultOAuthClientID     = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
	DefaultOAuthRedirectURI  = "https://platform.claude.com/oauth/code/callback"
	DefaultOAuthScopes       = "org:create_api_key user:profile user:inference"
)

// OAuthConfig names the OAuth endpoints and client used to add Claude subscription accounts
// and refresh their tokens. Empty fields take the Default… values.
type OAuthConfig struct {
	AuthorizeURL string
	TokenURL     string
	ClientID     string
	RedirectURI  string
	// Scopes are space-separated.
	Scopes string
}

// withDefaults fills empty fields.
func (c OAuthConfig) withDefaults() OAuthConfig {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&c.AuthorizeURL, DefaultOAuthAuthorizeURL)
	def(&c.TokenURL, DefaultOAuthTokenURL)
	def(&c.ClientID, DefaultOAuthClientID)
	def(&c.RedirectURI, DefaultOAuthRedirectURI)
	def(&c.Scopes, DefaultOAuthScopes)
	return c
}

// validate checks the endpoint URLs.
func (c OAuthConfig) validate() error {
	for name, raw := range map[string]string{"authorize URL": c.AuthorizeURL, "token URL": c.TokenURL, "redirect URI": c.RedirectURI} {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("control plane: OAuth %s %q must be an http(s) URL", name, raw)
		}
	}
	return nil
}

// oauthPending is what the control plane keeps between start and finish (sealed in Redis).
type oauthPending struct {
	Verifier string `json:"verifier"`
	Name     string `json:"name"`
	Priority int    `json:"priority"`
	Group    string `json:"group,omitempty"`
	ProxyURL string `json:"proxy_url,omitempty"`
	By       string `json:"by"`
}

// oauthTokens is a token endpoint's answer.
type oauthTokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// pkceChallenge is the S256 code challenge of a verifier (RFC 7636 §4.2).
func pkceChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeURL builds the URL the operator opens to log in.
func (c OAuthConfig) authorizeURL(state, challenge string) string {
	q := url.Values{}
	q.Set("code", "true")
	q.Set("client_id", c.ClientID)
	q.Set("response_type", "code")
	q.Set("redirect_uri", c.RedirectURI)
	q.Set("scope", c.Scopes)
	q.Set("code_challenge", challenge)
	q.Set("code_challenge_method", "S256")
	q.Set("state", state)
	sep := "?"
	if strings.Contains(c.AuthorizeURL, "?") {
		sep = "&"
	}
	return c.AuthorizeURL + sep + q.Encode()
}

func (s *Server) handleOAuthStart(w http.ResponseWriter, r *http.Request) {
	var req adminapi.OAuthStartRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	p := oauthPending{Name: strings.TrimSpace(req.Name), Priority: defaultPriority, Group: req.Group, ProxyURL: req.ProxyURL}
	if req.Priority != nil {
		p.Priority = *req.Priority
	}
	fields := fieldErrors{}
	checkName(fields, "name", req.Name)
	checkGroup(fields, req.Group)
	checkProxy(fields, req.ProxyURL)
	if p.Priority < minPriority || p.Priority > maxPriority {
		fields.add("priority", fmt.Sprintf("must be between %d and %d", minPriority, maxPriority))
	}
	if len(fields) > 0 {
		writeInvalid(w, fields)
		return
	}
	if sess, ok := sessionFrom(r.Context()); ok {
		p.By = sess.username
	}
	verifier, err1 := randomToken(32)
	state, err2 := randomToken(32)
	if err := errors.Join(err1, err2); err != nil {
		s.log.Error("oauth start", "error", err)
		writeError(w, http.StatusInternalServerError, errAPI, "internal error; see the control plane log", nil)
		return
	}
	p.Verifier = verifier
	data, _ := json.Marshal(p) // cannot fail: strings and ints
	if err := s.st.PutOAuthPending(r.Context(), state, data); err != nil {
		s.writeStoreError(w, r, err, "oauth login")
		return
	}
	s.auditLog(r, "account.oauth_start", "", "name", p.Name)
	writeJSON(w, http.StatusOK, adminapi.OAuthStartResponse{
		AuthorizeURL: s.oauth.authorizeURL(state, pkceChallenge(verifier)),
		State:        state,
		ExpiresAt:    s.now().Add(store.OAuthPendingTTL()).UTC(),
	})
}

// parseOAuthCode takes what the operator pasted: a "code#state" string from the callback
// page, a bare code (with state given separately), or the whole callback URL.
func parseOAuthCode(req adminapi.OAuthFinishRequest) (code, state string, fields fieldErrors) {
	fields = fieldErrors{}
	switch {
	case req.Code != "" && req.CallbackURL != "":
		fields.add("code", "give code or callback_url, not both")
		return "", "", fields
	case req.CallbackURL != "":
		u, err := url.Parse(strings.TrimSpace(req.CallbackURL))
		if err != nil || u.Scheme == "" {
			fields.add("callback_url", "must be the URL the browser ended on after logging in")
			return "", "", fields
		}
		q := u.Query()
		code, state = q.Get("code"), q.Get("state")
		if code == "" {
			fields.add("callback_url", "has no code parameter")
		}
	case req.Code != "":
		code = strings.TrimSpace(req.Code)
	default:
		fields.add("code", "required (or callback_url)")
		return "", "", fields
	}
	if c, st, ok := strings.Cut(code, "#"); ok {
		code = c
		if state == "" {
			state = st
		}
	}
	switch {
	case req.State != "" && state != "" && req.State != state:
		fields.add("state", "does not match the state in the code")
	case state == "":
		state = req.State
	}
	if state == "" {
		fields.add("state", "required: paste the whole code#state the callback page shows, or the callback URL")
	}
	if len(code) > maxCredentialLength || len(state) > 512 {
		fields.add("code", "too long")
	}
	return code, state, fields
}

func (s *Server) handleOAuthFinish(w http.ResponseWriter, r *http.Request) {
	var req adminapi.OAuthFinishRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	code, state, fields := parseOAuthCode(req)
	if len(fields) > 0 {
		writeInvalid(w, fields)
		return
	}
	data, err := s.st.TakeOAuthPending(r.Context(), state)
	if errors.Is(err, store.ErrNotFound) {
		writeInvalid(w, fieldErrors{"state": "no OAuth login was started with this state, or its ten minutes are over: start again"})
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err, "oauth login")
		return
	}
	var p oauthPending
	if err := json.Unmarshal(data, &p); err != nil {
		s.log.Error("oauth finish: stored login does not decode", "error", err)
		writeError(w, http.StatusInternalServerError, errAPI, "internal error; see the control plane log", nil)
		return
	}
	tok, err := s.exchangeToken(r.Context(), p.ProxyURL, map[string]string{
		"grant_type":    "authorization_code",
		"code":          code,
		"state":         state,
		"client_id":     s.oauth.ClientID,
		"redirect_uri":  s.oauth.RedirectURI,
		"code_verifier": p.Verifier,
	})
	if err != nil {
		s.audit.Warn("oauth code exchange failed", "remote", r.RemoteAddr, "error", err)
		writeError(w, http.StatusBadGateway, errAPI, "the OAuth token endpoint refused the code: "+err.Error()+"; start again", nil)
		return
	}
	spec := store.AccountSpec{
		Name: p.Name, Type: store.AccountTypeClaudeOAuth, Priority: p.Priority, Group: p.Group,
		ProxyURL: p.ProxyURL, Credential: tok.AccessToken, RefreshToken: tok.RefreshToken, Scopes: tok.Scope,
	}
	if tok.ExpiresIn > 0 {
		exp := s.now().Add(time.Duration(tok.ExpiresIn) * time.Second).UTC()
		spec.TokenExpiresAt = &exp
	}
	acct, err := s.st.AddAccount(r.Context(), spec)
	if err != nil {
		s.writeStoreError(w, r, err, "account")
		return
	}
	s.auditLog(r, "account.oauth_finish", acct.ID, "name", acct.Name, "started_by", p.By)
	s.writeAccount(w, r, http.StatusCreated, acct.ID)
}

// maxTokenResponse caps a token endpoint's answer.
const maxTokenResponse = 64 << 10

// exchangeToken posts a grant to the token endpoint (JSON, as Claude Code does) through the
// account's proxy, and returns the tokens. A redirect is refused, never followed (the grant
// carries a code or a refresh token). Errors never contain a token.
func (s *Server) exchangeToken(ctx context.Context, proxyURL string, grant map[string]string) (oauthTokens, error) {
	t, err := accountTransport(proxyURL)
	if err != nil {
		return oauthTokens{}, err
	}
	defer t.CloseIdleConnections()
	body, _ := json.Marshal(grant) // cannot fail: strings only
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.oauth.TokenURL, bytes.NewReader(body))
	if err != nil {
		return oauthTokens{}, fmt.Errorf("build token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := credentialClient(t).Do(req)
	if err != nil {
		return oauthTokens{}, errors.New(redactURLError(err))
	}
	defer resp.Body.Close()
	if to, ok := redirectedTo(resp); ok {
		return oauthTokens{}, fmt.Errorf("the token endpoint answered %d redirect to %s; the grant was not sent there (the relay never follows redirects): check CLAUDE_RELAY_OAUTH_TOKEN_URL", resp.StatusCode, to)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return oauthTokens{}, fmt.Errorf("read token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return oauthTokens{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, oauthErrorMessage(data))
	}
	var tok oauthTokens
	if err := json.Unmarshal(data, &tok); err != nil {
		return oauthTokens{}, errors.New("the token response is not JSON")
	}
	if tok.AccessToken == "" {
		return oauthTokens{}, errors.New("the token response has no access_token")
	}
	return tok, nil
}

// oauthErrorMessage extracts error/error_description (RFC 6749 §5.2) or an Anthropic-shaped
// error message; it never echoes a whole body, which could hold a token.
func oauthErrorMessage(body []byte) string {
	var e struct {
		Error       json.RawMessage `json:"error"`
		Description string          `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil {
		return "unreadable error response"
	}
	var code string
	if json.Unmarshal(e.Error, &code) != nil {
		var nested struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(e.Error, &nested)
		code, e.Description = nested.Type, nested.Message
	}
	msg := strings.TrimSpace(code + " " + e.Description)
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	if msg == "" {
		msg = "no error description"
	}
	return msg
}
