package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/plugins/contract"
)

// Account types.
const (
	// AccountTypeAnthropicAPIKey is an Anthropic Console API key, sent upstream as x-api-key.
	AccountTypeAnthropicAPIKey = "anthropic_api_key"
	// AccountTypeClaudeOAuth is a Claude subscription OAuth token (from the PKCE flow, a setup
	// token or a pasted pair), sent as Authorization: Bearer with the OAuth beta.
	AccountTypeClaudeOAuth = "claude_oauth"
	// AccountTypeAnthropicCompatible is any endpoint speaking the Messages API: a base URL
	// and a key sent as x-api-key, with optional model-name mapping.
	AccountTypeAnthropicCompatible = "anthropic_compatible"
)

// AccountTypes lists every account type.
var AccountTypes = []string{AccountTypeAnthropicAPIKey, AccountTypeClaudeOAuth, AccountTypeAnthropicCompatible}

// DefaultBaseURL is the upstream of accounts that do not name one.
const DefaultBaseURL = "https://api.anthropic.com"

// Account is an upstream account as listed; its secrets (credential, refresh token, proxy
// URL) are only returned by AccountCredential and AccountSecrets.
type Account struct {
	ID      string
	Name    string
	Type    string
	BaseURL string
	// Priority orders accounts in a pool: lower runs first.
	Priority int
	// Group names the account group keys can be bound to ("" for none).
	Group string
	// Schedulable is false when an operator took the account out of rotation.
	Schedulable bool
	CreatedAt   time.Time
	// CredentialHint identifies the credential without revealing it, e.g. "sk-ant-…wxyz".
	CredentialHint string
	// ProxyHint is the outbound proxy URL without its credentials ("" for a direct connection).
	ProxyHint string
	// ModelMap renames request models for an Anthropic-compatible endpoint.
	ModelMap map[string]string
	// LastUsedAt is when a sidecar last sent a request with the account.
	LastUsedAt *time.Time
	// Caps bound the account's load across all sidecars (zero: none).
	Caps AccountCaps

	// OAuth accounts only.
	TokenExpiresAt  *time.Time
	HasRefreshToken bool
	Scopes          string
	// RefreshError is why the last token refresh failed ("" after a success).
	RefreshError    string
	RefreshFailedAt *time.Time
	RefreshFailures int
	// RefreshRetryAt is when the next refresh is due after a failure.
	RefreshRetryAt *time.Time
	// TokenRefreshedAt is when the tokens were last refreshed.
	TokenRefreshedAt *time.Time
}

// AccountSpec describes an upstream account to add.
type AccountSpec struct {
	Name string
	// Type defaults to AccountTypeAnthropicAPIKey.
	Type string
	// BaseURL defaults to DefaultBaseURL; it must be an http(s) URL.
	BaseURL string
	// Credential is the secret sent upstream (API key or OAuth access token); it is stored
	// sealed, bound to the account id, type, base URL and sealed proxy.
	Credential string
	// Priority orders accounts: lower runs first. Must be >= 0.
	Priority int
	Group    string
	// Unschedulable adds the account out of rotation.
	Unschedulable bool
	// ProxyURL is an http, https or socks5 proxy URL, credentials allowed; stored sealed.
	ProxyURL string
	ModelMap map[string]string
	Caps     AccountCaps
	// RefreshToken, TokenExpiresAt and Scopes are for OAuth accounts.
	RefreshToken   string
	TokenExpiresAt *time.Time
	Scopes         string
	// ID and CreatedAt keep an account's identity when it is restored from a backup or
	// imported; empty, a fresh id and now.
	ID        string
	CreatedAt time.Time
}

// AccountUpdate changes the fields that are non-nil. An empty ProxyURL removes the proxy.
type AccountUpdate struct {
	Name        *string
	BaseURL     *string
	Priority    *int
	Group       *string
	Schedulable *bool
	ProxyURL    *string
	ModelMap    *map[string]string
	// Caps replaces the account's caps (a zero AccountCaps removes them).
	Caps *AccountCaps
	// Credential replaces the API key (or the OAuth access token).
	Credential *string
}

// AccountSecrets are an account's decrypted secrets, for the control plane only, with the
// type and base URL the credential is bound to.
type AccountSecrets struct {
	Credential   string
	RefreshToken string
	ProxyURL     string
	Type         string
	BaseURL      string
}

// accountFields are the fields read for listing: never the sealed ones.
var accountFields = []string{"id", "name", "type", "base_url", "priority", "schedulable", "created_at",
	"credential_hint", "group", "proxy_hint", "model_map", "caps", "last_used_at", "token_expires_at",
	"has_refresh", "scopes", "refresh_error", "refresh_failed_at", "refresh_failures", "refresh_retry_at", "token_refreshed_at"}

// Sealed-field aad suffixes: each secret is bound to its account and its field.
const (
	aadRefresh = "/refresh"
	aadProxy   = "/proxy"
)

// ErrTampered means an account's sealed credential (or proxy) does not open under the fields
// it is bound to: its type, base URL or sealed proxy were changed, or the envelope replaced,
// outside the store (someone with write access to Redis), or it is sealed under a key the
// crypto provider no longer holds. The credential must not be used; an operator gives it
// again (or re-adds the account).
var ErrTampered = errors.New("the account's sealed credential does not open for the type, base URL and proxy its record now has (changed outside the admin API, or sealed under a key the crypto provider does not hold)")

// Credential bindings: the field credentialBindingField says what the credential's envelope
// is bound to. Absent: the account id only (records written before bindings; `claude-relay
// crypto rotate` re-seals them). bindingDestination: the account id, type, base URL and
// sealed proxy, everything that decides where and how the credential is sent.
const (
	credentialBindingField = "credential_binding"
	bindingDestination     = "2"
)

// boundFields are read together to open a credential: the envelope, its binding and what it
// is bound to.
var boundFields = []string{"credential", credentialBindingField, "type", "base_url", "proxy"}

// bound is an account's credential envelope with the fields it is bound to, as stored.
type bound struct {
	credential, binding, typ, baseURL, proxy string
}

// boundFromValues reads an HMGET of boundFields.
func boundFromValues(vals []any) bound {
	str := func(i int) string { v, _ := vals[i].(string); return v }
	return bound{credential: str(0), binding: str(1), typ: str(2), baseURL: str(3), proxy: str(4)}
}

// aad is what the credential envelope of b is sealed with.
func (b bound) aad(id string) []byte {
	if b.binding != bindingDestination {
		return []byte(id)
	}
	return destinationAAD(id, b.typ, b.baseURL, b.proxy)
}

// destinationAAD binds a credential to the account and to where and how it is sent: the
// account type (x-api-key or bearer), the base URL, and the SHA-256 of the sealed proxy URL
// ("" without a proxy). Each part is length-prefixed, so no two field sets give one aad.
func destinationAAD(id, typ, baseURL, proxyEnvelope string) []byte {
	proxy := ""
	if proxyEnvelope != "" {
		sum := sha256.Sum256([]byte(proxyEnvelope))
		proxy = hex.EncodeToString(sum[:])
	}
	var b []byte
	for _, part := range []string{"claude-relay account credential v2", id, typ, baseURL, proxy} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b
}

// isTampering reports whether err opening an envelope says the envelope does not open (it
// was rejected), rather than that the crypto provider could not be asked.
func isTampering(err error) bool {
	return err != nil && !errors.Is(err, contract.ErrUnavailable) && !errors.Is(err, contract.ErrNotConfigured) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// openFailed wraps an error opening one of an account's envelopes, as ErrTampered when the
// envelope was rejected.
func openFailed(what string, err error) error {
	if isTampering(err) {
		return fmt.Errorf("%s: %w (%w)", what, ErrTampered, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// AddAccount validates spec, seals the secrets and stores the account.
func (s *Store) AddAccount(ctx context.Context, spec AccountSpec) (Account, error) {
	a, cred, err := validateAccount(spec)
	if err != nil {
		return Account{}, fmt.Errorf("add account: %w", err)
	}
	if a.ID = spec.ID; a.ID == "" {
		if a.ID, err = newID(); err != nil {
			return Account{}, fmt.Errorf("add account: %w", err)
		}
	} else if !ValidIndexName(a.ID) {
		return Account{}, fmt.Errorf("add account: id %q must be 1 to 64 of A-Z a-z 0-9 . _ : -", a.ID)
	}
	if a.CreatedAt = s.now().UTC(); !spec.CreatedAt.IsZero() {
		a.CreatedAt = spec.CreatedAt.UTC()
	}
	var proxyEnv []byte
	if spec.ProxyURL != "" {
		if proxyEnv, err = s.sealer.Seal(ctx, []byte(spec.ProxyURL), []byte(a.ID+aadProxy)); err != nil {
			return Account{}, fmt.Errorf("add account: seal proxy URL: %w", err)
		}
	}
	envelope, err := s.sealer.Seal(ctx, []byte(cred), destinationAAD(a.ID, a.Type, a.BaseURL, string(proxyEnv)))
	if err != nil {
		return Account{}, fmt.Errorf("add account: seal credential: %w", err)
	}
	fields := []any{"id", a.ID, "name", a.Name, "type", a.Type, "base_url", a.BaseURL,
		"priority", a.Priority, "schedulable", boolString(a.Schedulable),
		"created_at", formatTime(a.CreatedAt), "credential_hint", a.CredentialHint,
		"credential", envelope, credentialBindingField, bindingDestination, "group", a.Group, "scopes", a.Scopes,
		"has_refresh", boolString(spec.RefreshToken != "")}
	if len(a.ModelMap) > 0 {
		b, _ := json.Marshal(a.ModelMap) // cannot fail: strings only
		fields = append(fields, "model_map", string(b))
	}
	if !a.Caps.IsZero() {
		fields = append(fields, "caps", a.Caps.encode())
	}
	if a.TokenExpiresAt != nil {
		fields = append(fields, "token_expires_at", formatTime(*a.TokenExpiresAt))
	}
	if spec.RefreshToken != "" {
		env, err := s.sealer.Seal(ctx, []byte(strings.TrimSpace(spec.RefreshToken)), []byte(a.ID+aadRefresh))
		if err != nil {
			return Account{}, fmt.Errorf("add account: seal refresh token: %w", err)
		}
		fields = append(fields, "refresh_token", env)
	}
	if proxyEnv != nil {
		fields = append(fields, "proxy", proxyEnv, "proxy_hint", a.ProxyHint)
	}
	keys := []string{s.keys.Account(a.ID), s.keys.AccountsByCreation(), s.keys.AccountsVersion()}
	args := append([]any{a.ID, a.CreatedAt.UnixMilli()}, fields...)
	ok, err := createAccountScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return Account{}, fmt.Errorf("add account: %w", err)
	}
	if ok == 0 {
		return Account{}, fmt.Errorf("add account: id %s: %w", a.ID, ErrConflict)
	}
	s.announceAccount(ctx, a.ID)
	return a, nil
}

// validateAccount checks spec and returns the account to store plus the credential with
// surrounding whitespace (a pasted newline) removed.
func validateAccount(spec AccountSpec) (Account, string, error) {
	a := Account{
		Name:            strings.TrimSpace(spec.Name),
		Type:            spec.Type,
		BaseURL:         spec.BaseURL,
		Priority:        spec.Priority,
		Group:           spec.Group,
		Schedulable:     !spec.Unschedulable,
		ModelMap:        spec.ModelMap,
		Caps:            spec.Caps,
		HasRefreshToken: spec.RefreshToken != "",
		Scopes:          spec.Scopes,
	}
	if a.Name == "" {
		return Account{}, "", errors.New("name is required")
	}
	if len(a.Name) > maxNameLen {
		return Account{}, "", fmt.Errorf("name is %d bytes, want at most %d", len(a.Name), maxNameLen)
	}
	if a.Type == "" {
		a.Type = AccountTypeAnthropicAPIKey
	}
	switch a.Type {
	case AccountTypeAnthropicAPIKey, AccountTypeClaudeOAuth:
	case AccountTypeAnthropicCompatible:
		if a.BaseURL == "" {
			return Account{}, "", errors.New("an anthropic_compatible account needs a base URL")
		}
	default:
		return Account{}, "", fmt.Errorf("unknown account type %q (supported: %s)", a.Type, strings.Join(AccountTypes, ", "))
	}
	if len(a.ModelMap) > 0 && a.Type != AccountTypeAnthropicCompatible {
		return Account{}, "", errors.New("a model map is only for anthropic_compatible accounts")
	}
	if a.Group != "" && !ValidIndexName(a.Group) {
		return Account{}, "", fmt.Errorf("group %q must be 1 to 64 of A-Z a-z 0-9 . _ : -", a.Group)
	}
	if a.BaseURL == "" {
		a.BaseURL = DefaultBaseURL
	}
	base, err := normBaseURL(a.BaseURL)
	if err != nil {
		return Account{}, "", err
	}
	a.BaseURL = base
	if a.Priority < 0 {
		return Account{}, "", fmt.Errorf("priority %d must be >= 0", a.Priority)
	}
	if err := a.Caps.Validate(); err != nil {
		return Account{}, "", err
	}
	if spec.ProxyURL != "" {
		if a.ProxyHint, err = ProxyHint(spec.ProxyURL); err != nil {
			return Account{}, "", err
		}
	}
	if spec.TokenExpiresAt != nil {
		t := spec.TokenExpiresAt.UTC()
		a.TokenExpiresAt = &t
	}
	cred := strings.TrimSpace(spec.Credential)
	if cred == "" {
		return Account{}, "", errors.New("credential is required")
	}
	a.CredentialHint = credentialHint(cred)
	return a, cred, nil
}

// normBaseURL checks an upstream base URL and drops a trailing slash.
func normBaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("base URL %q must be an http:// or https:// URL with a host", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("base URL %q must not carry credentials, a query or a fragment", u.Redacted())
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// ProxyHint checks an outbound proxy URL (http, https or socks5, with a host and port) and
// returns it with any credentials masked.
func ProxyHint(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("proxy URL must be a URL such as socks5://host:1080")
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return "", errors.New("proxy URL must start with http://, https:// or socks5://")
	}
	if u.Hostname() == "" || u.Port() == "" {
		return "", errors.New("proxy URL must name a host and a port")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("proxy URL must not have a path, query or fragment")
	}
	hint := u.Scheme + "://"
	if u.User != nil {
		hint += "***@"
	}
	return hint + u.Host, nil
}

// credentialHint shows a long credential's first 7 and last 4 characters (e.g. "sk-ant-…wxyz");
// shorter ones reveal nothing.
func credentialHint(c string) string {
	if len(c) < 24 {
		return "…"
	}
	return c[:7] + "…" + c[len(c)-4:]
}

// ListAccounts returns every account sorted by priority (lower first), then creation time.
// Secrets are not read.
func (s *Store) ListAccounts(ctx context.Context) ([]Account, error) {
	ids, err := s.rdb.ZRange(ctx, s.keys.AccountsByCreation(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, s.keys.Account(id), accountFields...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	var out []Account
	for _, c := range cmds {
		a, found, err := accountFromValues(c.Val())
		if err != nil {
			return nil, fmt.Errorf("list accounts: %w", err)
		}
		if found {
			out = append(out, a)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Priority != out[j].Priority {
			return out[i].Priority < out[j].Priority
		}
		return out[i].CreatedAt.Before(out[j].CreatedAt)
	})
	return out, nil
}

// GetAccount returns one account without its secrets, or ErrNotFound.
func (s *Store) GetAccount(ctx context.Context, id string) (Account, error) {
	vals, err := s.rdb.HMGet(ctx, s.keys.Account(id), accountFields...).Result()
	if err != nil {
		return Account{}, fmt.Errorf("get account %s: %w", id, err)
	}
	a, found, err := accountFromValues(vals)
	if err != nil {
		return Account{}, fmt.Errorf("get account %s: %w", id, err)
	}
	if !found {
		return Account{}, fmt.Errorf("get account %s: %w", id, ErrNotFound)
	}
	return a, nil
}

// OpenedAccount is an account's credential as opened, with the fields its envelope is bound
// to: a caller sends the credential to BaseURL, the way Type says, through ProxyURL, never
// to fields read separately.
type OpenedAccount struct {
	ID         string
	Type       string
	BaseURL    string
	Credential string
	// ProxyURL is the outbound proxy ("" for a direct connection).
	ProxyURL string
	// Legacy is true for a credential sealed before bindings: bound to the account id only,
	// so its base URL is not protected until `claude-relay crypto rotate` re-seals it.
	Legacy bool
}

// OpenAccount reads an account's credential, type, base URL and proxy in one round trip and
// opens the credential under its binding. A record whose type, base URL or proxy changed
// outside the store, or whose envelope was swapped, fails with ErrTampered; a missing one
// with ErrNotFound.
func (s *Store) OpenAccount(ctx context.Context, id string) (OpenedAccount, error) {
	vals, err := s.rdb.HMGet(ctx, s.keys.Account(id), boundFields...).Result()
	if err != nil {
		return OpenedAccount{}, fmt.Errorf("account %s credential: %w", id, err)
	}
	b := boundFromValues(vals)
	if b.credential == "" {
		return OpenedAccount{}, fmt.Errorf("account %s credential: %w", id, ErrNotFound)
	}
	return s.openBound(ctx, id, b)
}

// openBound opens the credential (and proxy) of b.
func (s *Store) openBound(ctx context.Context, id string, b bound) (OpenedAccount, error) {
	out := OpenedAccount{ID: id, Type: b.typ, BaseURL: b.baseURL, Legacy: b.binding != bindingDestination}
	plain, err := s.sealer.Open(ctx, []byte(b.credential), b.aad(id))
	if err != nil {
		return OpenedAccount{}, openFailed("account "+id+" credential", err)
	}
	out.Credential = string(plain)
	if b.proxy != "" {
		p, err := s.sealer.Open(ctx, []byte(b.proxy), []byte(id+aadProxy))
		if err != nil {
			return OpenedAccount{}, openFailed("account "+id+" proxy", err)
		}
		out.ProxyURL = string(p)
	}
	return out, nil
}

// AccountCredential opens the account's sealed credential (API key or OAuth access token);
// see OpenAccount, which also returns the fields it is bound to. The envelope is bound to the
// account, so one copied onto another account does not open.
func (s *Store) AccountCredential(ctx context.Context, id string) (string, error) {
	a, err := s.OpenAccount(ctx, id)
	if err != nil {
		return "", err
	}
	return a.Credential, nil
}

// TamperedAccounts opens the credentials of the accounts ids (one pipelined read) and returns,
// for each one that does not open under its binding, why (see ErrTampered). Accounts that
// are gone, or that could not be checked because the crypto provider is unavailable, are
// not listed; the error is only for Redis.
func (s *Store) TamperedAccounts(ctx context.Context, ids []string) (map[string]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.SliceCmd, len(ids))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, s.keys.Account(id), boundFields...)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("check accounts: %w", err)
	}
	var out map[string]string
	for i, id := range ids {
		b := boundFromValues(cmds[i].Val())
		if b.credential == "" {
			continue
		}
		if _, err := s.openBound(ctx, id, b); errors.Is(err, ErrTampered) {
			if out == nil {
				out = map[string]string{}
			}
			out[id] = err.Error()
		}
	}
	return out, nil
}

// AccountSecrets opens every secret of an account. Type and BaseURL are the fields the
// credential is bound to.
func (s *Store) AccountSecrets(ctx context.Context, id string) (AccountSecrets, error) {
	vals, err := s.rdb.HMGet(ctx, s.keys.Account(id), append(boundFields, "refresh_token")...).Result()
	if err != nil {
		return AccountSecrets{}, fmt.Errorf("account %s secrets: %w", id, err)
	}
	b := boundFromValues(vals)
	if b.credential == "" {
		return AccountSecrets{}, fmt.Errorf("account %s secrets: %w", id, ErrNotFound)
	}
	a, err := s.openBound(ctx, id, b)
	if err != nil {
		return AccountSecrets{}, fmt.Errorf("account %s secrets: %w", id, err)
	}
	out := AccountSecrets{Credential: a.Credential, ProxyURL: a.ProxyURL, Type: a.Type, BaseURL: a.BaseURL}
	if env, _ := vals[len(boundFields)].(string); env != "" {
		plain, err := s.sealer.Open(ctx, []byte(env), []byte(id+aadRefresh))
		if err != nil {
			return AccountSecrets{}, fmt.Errorf("account %s secrets: %w", id, openFailed("refresh token", err))
		}
		out.RefreshToken = string(plain)
	}
	return out, nil
}

// UpdateAccount changes an account as u says and bumps the accounts version, so sidecars
// reload it.
func (s *Store) UpdateAccount(ctx context.Context, id string, u AccountUpdate) (Account, error) {
	cur, err := s.GetAccount(ctx, id)
	if err != nil {
		return Account{}, fmt.Errorf("update account: %w", err)
	}
	var set []any
	var del []any
	if u.Name != nil {
		name := strings.TrimSpace(*u.Name)
		if name == "" || len(name) > maxNameLen {
			return Account{}, fmt.Errorf("update account %s: name must be 1 to %d bytes: %w", id, maxNameLen, ErrInvalid)
		}
		set = append(set, "name", name)
	}
	if u.BaseURL != nil {
		if _, err := normBaseURL(*u.BaseURL); err != nil {
			return Account{}, fmt.Errorf("update account %s: %w: %w", id, err, ErrInvalid)
		}
	}
	if u.Priority != nil {
		if *u.Priority < 0 {
			return Account{}, fmt.Errorf("update account %s: priority must be >= 0: %w", id, ErrInvalid)
		}
		set = append(set, "priority", *u.Priority)
	}
	if u.Group != nil {
		if *u.Group != "" && !ValidIndexName(*u.Group) {
			return Account{}, fmt.Errorf("update account %s: bad group %q: %w", id, *u.Group, ErrInvalid)
		}
		set = append(set, "group", *u.Group)
	}
	if u.Schedulable != nil {
		set = append(set, "schedulable", boolString(*u.Schedulable))
	}
	if u.ModelMap != nil {
		if len(*u.ModelMap) > 0 && cur.Type != AccountTypeAnthropicCompatible {
			return Account{}, fmt.Errorf("update account %s: a model map is only for anthropic_compatible accounts: %w", id, ErrInvalid)
		}
		if len(*u.ModelMap) == 0 {
			del = append(del, "model_map")
		} else {
			b, _ := json.Marshal(*u.ModelMap) // cannot fail: strings only
			set = append(set, "model_map", string(b))
		}
	}
	if u.Caps != nil {
		if err := u.Caps.Validate(); err != nil {
			return Account{}, fmt.Errorf("update account %s: %w: %w", id, err, ErrInvalid)
		}
		if u.Caps.IsZero() {
			del = append(del, "caps")
		} else {
			set = append(set, "caps", u.Caps.encode())
		}
	}
	if u.ProxyURL != nil && *u.ProxyURL != "" {
		if _, err := ProxyHint(*u.ProxyURL); err != nil {
			return Account{}, fmt.Errorf("update account %s: %w: %w", id, err, ErrInvalid)
		}
	}
	var cred string
	if u.Credential != nil {
		if cred = strings.TrimSpace(*u.Credential); cred == "" {
			return Account{}, fmt.Errorf("update account %s: empty credential: %w", id, ErrInvalid)
		}
	}
	if u.BaseURL == nil && u.ProxyURL == nil && u.Credential == nil {
		if err := s.writeAccount(ctx, id, set, del); err != nil {
			return Account{}, fmt.Errorf("update account: %w", err)
		}
		return s.GetAccount(ctx, id)
	}
	// The credential is bound to the base URL and the proxy: changing either seals it again,
	// in the same conditional write, so it is never bound to fields it is not stored with.
	for range casAttempts {
		ok, err := s.rebindAccount(ctx, id, u, cred, set, del)
		if err != nil {
			return Account{}, fmt.Errorf("update account %s: %w", id, err)
		}
		if ok {
			return s.GetAccount(ctx, id)
		}
	}
	return Account{}, fmt.Errorf("update account %s: changed concurrently too often; try again: %w", id, ErrConflict)
}

// rebindAccount applies an update that changes the base URL, the proxy or the credential:
// it reads the bound fields, opens the current credential unless a new one is given, seals
// it for the new fields and writes everything if nothing changed meanwhile (false if
// something did).
func (s *Store) rebindAccount(ctx context.Context, id string, u AccountUpdate, cred string, set, del []any) (bool, error) {
	set, del = slices.Clone(set), slices.Clone(del)
	vals, err := s.rdb.HMGet(ctx, s.keys.Account(id), boundFields...).Result()
	if err != nil {
		return false, err
	}
	cur := boundFromValues(vals)
	if cur.credential == "" {
		return false, ErrNotFound
	}
	next := cur
	if u.BaseURL != nil {
		base, err := normBaseURL(*u.BaseURL)
		if err != nil {
			return false, fmt.Errorf("%w: %w", err, ErrInvalid)
		}
		next.baseURL = base
		set = append(set, "base_url", base)
	}
	if u.ProxyURL != nil {
		if *u.ProxyURL == "" {
			next.proxy = ""
			del = append(del, "proxy", "proxy_hint")
		} else {
			hint, _ := ProxyHint(*u.ProxyURL) // checked by UpdateAccount
			env, err := s.sealer.Seal(ctx, []byte(*u.ProxyURL), []byte(id+aadProxy))
			if err != nil {
				return false, fmt.Errorf("seal proxy URL: %w", err)
			}
			next.proxy = string(env)
			set = append(set, "proxy", env, "proxy_hint", hint)
		}
	}
	if cred == "" {
		a, err := s.openBound(ctx, id, cur)
		if err != nil {
			return false, fmt.Errorf("%w; give the credential again with the change", err)
		}
		cred = a.Credential
	} else {
		set = append(set, "credential_hint", credentialHint(cred))
	}
	next.binding = bindingDestination
	env, err := s.sealer.Seal(ctx, []byte(cred), next.aad(id))
	if err != nil {
		return false, fmt.Errorf("seal credential: %w", err)
	}
	set = append(set, "credential", env, credentialBindingField, bindingDestination)
	return s.writeAccountIf(ctx, id, cur.checks(), set, del)
}

// checks are the compare-and-set conditions that b is still what is stored.
func (b bound) checks() []any {
	return []any{"credential", b.credential, credentialBindingField, b.binding, "type", b.typ, "base_url", b.baseURL, "proxy", b.proxy}
}

// writeAccount sets and deletes fields of an existing account and bumps the version.
func (s *Store) writeAccount(ctx context.Context, id string, set, del []any) error {
	if len(set) == 0 && len(del) == 0 {
		return nil
	}
	_, err := s.writeAccountIf(ctx, id, nil, set, del)
	return err
}

// writeAccountIf is writeAccount when every field of checks (field, expected value, …; ""
// expects the field absent) still holds its value; it reports false, writing nothing, when
// one does not.
func (s *Store) writeAccountIf(ctx context.Context, id string, checks, set, del []any) (bool, error) {
	keys := []string{s.keys.Account(id), s.keys.AccountsVersion()}
	args := append([]any{len(checks) / 2}, checks...)
	args = append(args, len(del))
	args = append(args, del...)
	args = append(args, set...)
	ok, err := updateAccountScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return false, fmt.Errorf("account %s: %w", id, err)
	}
	if ok == 0 {
		return false, fmt.Errorf("account %s: %w", id, ErrNotFound)
	}
	if ok == 1 {
		s.announceAccount(ctx, id)
	}
	return ok == 1, nil
}

// SetOAuthTokens stores a refreshed (or pasted) OAuth token set sealed and clears any refresh
// failure. An empty refresh token keeps the stored one. The access token is bound to the
// account's type, base URL and proxy as they are stored when it is written.
func (s *Store) SetOAuthTokens(ctx context.Context, id, access, refresh string, expiresAt *time.Time) error {
	set := []any{"credential_hint", credentialHint(access), "refresh_failures", 0,
		"token_refreshed_at", formatTime(s.now())}
	del := []any{"refresh_error", "refresh_failed_at", "refresh_retry_at"}
	if refresh != "" {
		renv, err := s.sealer.Seal(ctx, []byte(refresh), []byte(id+aadRefresh))
		if err != nil {
			return fmt.Errorf("set oauth tokens of %s: seal: %w", id, err)
		}
		set = append(set, "refresh_token", renv, "has_refresh", "1")
	}
	if expiresAt != nil {
		set = append(set, "token_expires_at", formatTime(*expiresAt))
	} else {
		del = append(del, "token_expires_at")
	}
	for range casAttempts {
		vals, err := s.rdb.HMGet(ctx, s.keys.Account(id), boundFields...).Result()
		if err != nil {
			return fmt.Errorf("set oauth tokens of %s: %w", id, err)
		}
		cur := boundFromValues(vals)
		if cur.credential == "" {
			return fmt.Errorf("set oauth tokens of %s: %w", id, ErrNotFound)
		}
		next := cur
		next.binding = bindingDestination
		env, err := s.sealer.Seal(ctx, []byte(access), next.aad(id))
		if err != nil {
			return fmt.Errorf("set oauth tokens of %s: seal: %w", id, err)
		}
		// Only the fields the token is bound to are checked: the previous token may
		// change meanwhile (a pasted pair), the newest write wins as before.
		checks := []any{"type", cur.typ, "base_url", cur.baseURL, "proxy", cur.proxy}
		ok, err := s.writeAccountIf(ctx, id, checks, append(set, "credential", env, credentialBindingField, bindingDestination), del)
		if err != nil {
			return fmt.Errorf("set oauth tokens: %w", err)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("set oauth tokens of %s: the account changed concurrently too often: %w", id, ErrConflict)
}

// SetRefreshFailure records a failed token refresh: why, when, how many in a row, and when to
// try again.
func (s *Store) SetRefreshFailure(ctx context.Context, id, reason string, at, retryAt time.Time, failures int) error {
	set := []any{"refresh_error", reason, "refresh_failed_at", formatTime(at),
		"refresh_retry_at", formatTime(retryAt), "refresh_failures", failures}
	if err := s.writeAccount(ctx, id, set, nil); err != nil {
		return fmt.Errorf("set refresh failure: %w", err)
	}
	return nil
}

// TouchAccount records that a sidecar used the account at at. It does not bump the accounts
// version (nothing a sidecar caches changed).
func (s *Store) TouchAccount(ctx context.Context, id string, at time.Time) error {
	ok, err := touchKeyScript.Run(ctx, s.rdb, []string{s.keys.Account(id)}, formatTime(at)).Int()
	if err != nil {
		return fmt.Errorf("touch account %s: %w", id, err)
	}
	if ok == 0 {
		return fmt.Errorf("touch account %s: %w", id, ErrNotFound)
	}
	return nil
}

// SetAccountSchedulable takes an account out of rotation (false) or puts it back (true).
func (s *Store) SetAccountSchedulable(ctx context.Context, id string, schedulable bool) error {
	if err := s.writeAccount(ctx, id, []any{"schedulable", boolString(schedulable)}, nil); err != nil {
		return fmt.Errorf("set account schedulable: %w", err)
	}
	return nil
}

// DeleteAccount removes an account and its secrets.
func (s *Store) DeleteAccount(ctx context.Context, id string) error {
	keys := []string{s.keys.Account(id), s.keys.AccountsByCreation(), s.keys.AccountsVersion()}
	ok, err := deleteAccountScript.Run(ctx, s.rdb, keys, id).Int()
	if err != nil {
		return fmt.Errorf("delete account %s: %w", id, err)
	}
	if ok == 0 {
		return fmt.Errorf("delete account %s: %w", id, ErrNotFound)
	}
	// Its window reading is shown with the account only; a failure here leaves one small
	// field that no listing shows.
	_ = s.rdb.HDel(ctx, s.keys.AccountWindows(), id).Err()
	s.announceAccount(ctx, id)
	return nil
}

// announceAccount tells sidecars that an account changed (AccountsChannel). The change is
// already stored and AccountsVersion moved with it, so a failed announcement is not the
// caller's failure: sidecars then see the change at their next version poll.
func (s *Store) announceAccount(ctx context.Context, id string) {
	_ = s.rdb.Publish(ctx, s.keys.AccountsChannel(), id).Err()
}

// SubscribeAccountChanges subscribes to the announcements of account changes. The caller
// closes the PubSub.
func (s *Store) SubscribeAccountChanges(ctx context.Context) *redis.PubSub {
	return s.rdb.Subscribe(ctx, s.keys.AccountsChannel())
}

// AccountsVersion returns a counter that changes on every account change (0 before the
// first), so sidecars can cache the account list and re-read it only when this moves.
func (s *Store) AccountsVersion(ctx context.Context) (int64, error) {
	v, err := s.rdb.Get(ctx, s.keys.AccountsVersion()).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("accounts version: %w", err)
	}
	return v, nil
}

// RequestAccountRefresh asks the control planes for one token refresh of an OAuth account
// (a sidecar calls it after meeting a 401).
func (s *Store) RequestAccountRefresh(ctx context.Context, id string) error {
	if err := s.rdb.Publish(ctx, s.keys.AccountRefreshChannel(), id).Err(); err != nil {
		return fmt.Errorf("request refresh of account %s: %w", id, err)
	}
	return nil
}

// SubscribeRefreshRequests subscribes to RequestAccountRefresh. The caller closes the PubSub.
func (s *Store) SubscribeRefreshRequests(ctx context.Context) *redis.PubSub {
	return s.rdb.Subscribe(ctx, s.keys.AccountRefreshChannel())
}

// accountFromValues builds an Account from an HMGET of accountFields; found is false when the
// record does not exist.
func accountFromValues(vals []any) (Account, bool, error) {
	m := make(map[string]string, len(accountFields))
	for i, f := range accountFields {
		if i < len(vals) {
			m[f], _ = vals[i].(string)
		}
	}
	if m["id"] == "" {
		return Account{}, false, nil
	}
	a := Account{
		ID:              m["id"],
		Name:            m["name"],
		Type:            m["type"],
		BaseURL:         m["base_url"],
		Schedulable:     m["schedulable"] == "1",
		CredentialHint:  m["credential_hint"],
		Group:           m["group"],
		ProxyHint:       m["proxy_hint"],
		HasRefreshToken: m["has_refresh"] == "1",
		Scopes:          m["scopes"],
		RefreshError:    m["refresh_error"],
	}
	var err error
	if a.Priority, err = strconv.Atoi(m["priority"]); err != nil {
		return Account{}, false, fmt.Errorf("account %s priority %q: %w", a.ID, m["priority"], err)
	}
	if f := m["refresh_failures"]; f != "" {
		if a.RefreshFailures, err = strconv.Atoi(f); err != nil {
			return Account{}, false, fmt.Errorf("account %s refresh_failures %q: %w", a.ID, f, err)
		}
	}
	if mm := m["model_map"]; mm != "" {
		if err := json.Unmarshal([]byte(mm), &a.ModelMap); err != nil {
			return Account{}, false, fmt.Errorf("account %s model_map: %w", a.ID, err)
		}
	}
	if c := m["caps"]; c != "" {
		if err := json.Unmarshal([]byte(c), &a.Caps); err != nil {
			return Account{}, false, fmt.Errorf("account %s caps: %w", a.ID, err)
		}
	}
	if a.CreatedAt, err = parseTime(m["created_at"]); err != nil {
		return Account{}, false, fmt.Errorf("account %s: %w", a.ID, err)
	}
	for _, f := range []struct {
		field string
		dst   **time.Time
	}{
		{"last_used_at", &a.LastUsedAt},
		{"token_expires_at", &a.TokenExpiresAt},
		{"refresh_failed_at", &a.RefreshFailedAt},
		{"refresh_retry_at", &a.RefreshRetryAt},
		{"token_refreshed_at", &a.TokenRefreshedAt},
	} {
		if *f.dst, err = parseOptTime(m[f.field]); err != nil {
			return Account{}, false, fmt.Errorf("account %s %s: %w", a.ID, f.field, err)
		}
	}
	return a, true, nil
}
