package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// AccountTypeAnthropicAPIKey is an Anthropic Console API key, or the key of any
// Anthropic-compatible endpoint, sent upstream as x-api-key.
const AccountTypeAnthropicAPIKey = "anthropic_api_key"

// DefaultBaseURL is the upstream of accounts that do not name one.
const DefaultBaseURL = "https://api.anthropic.com"

// Account is an upstream account as listed; its credential is only returned by AccountCredential.
type Account struct {
	ID      string
	Name    string
	Type    string
	BaseURL string
	// Priority orders accounts in a pool: lower runs first.
	Priority int
	// Schedulable is false when an operator took the account out of rotation.
	Schedulable bool
	CreatedAt   time.Time
	// CredentialHint identifies the credential without revealing it, e.g. "sk-ant-…wxyz".
	CredentialHint string
}

// AccountSpec describes an upstream account to add.
type AccountSpec struct {
	Name string
	// Type defaults to AccountTypeAnthropicAPIKey, the only type so far.
	Type string
	// BaseURL defaults to DefaultBaseURL; it must be an http(s) URL.
	BaseURL string
	// Credential is the secret sent upstream; it is stored sealed with aad = account id.
	Credential string
	// Priority orders accounts: lower runs first. Must be >= 0.
	Priority int
}

// accountFields are the fields read for listing: never "credential".
var accountFields = []string{"id", "name", "type", "base_url", "priority", "schedulable", "created_at", "credential_hint"}

// AddAccount validates spec, seals the credential and stores the account.
func (s *Store) AddAccount(ctx context.Context, spec AccountSpec) (Account, error) {
	a, cred, err := validateAccount(spec)
	if err != nil {
		return Account{}, fmt.Errorf("add account: %w", err)
	}
	if a.ID, err = newID(); err != nil {
		return Account{}, fmt.Errorf("add account: %w", err)
	}
	a.CreatedAt = s.now().UTC()
	envelope, err := s.sealer.Seal(ctx, []byte(cred), []byte(a.ID))
	if err != nil {
		return Account{}, fmt.Errorf("add account: seal credential: %w", err)
	}
	keys := []string{s.keys.Account(a.ID), s.keys.AccountsByCreation(), s.keys.AccountsVersion()}
	ok, err := createAccountScript.Run(ctx, s.rdb, keys, a.ID, a.CreatedAt.UnixMilli(),
		"id", a.ID, "name", a.Name, "type", a.Type, "base_url", a.BaseURL,
		"priority", a.Priority, "schedulable", boolString(a.Schedulable),
		"created_at", formatTime(a.CreatedAt), "credential_hint", a.CredentialHint,
		"credential", envelope).Int()
	if err != nil {
		return Account{}, fmt.Errorf("add account: %w", err)
	}
	if ok == 0 {
		return Account{}, fmt.Errorf("add account: id %s: %w", a.ID, ErrConflict)
	}
	return a, nil
}

// validateAccount checks spec and returns the account to store plus the credential with
// surrounding whitespace (a pasted newline) removed.
func validateAccount(spec AccountSpec) (Account, string, error) {
	a := Account{
		Name:        strings.TrimSpace(spec.Name),
		Type:        spec.Type,
		BaseURL:     spec.BaseURL,
		Priority:    spec.Priority,
		Schedulable: true,
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
	if a.Type != AccountTypeAnthropicAPIKey {
		return Account{}, "", fmt.Errorf("unknown account type %q (supported: %s)", a.Type, AccountTypeAnthropicAPIKey)
	}
	if a.BaseURL == "" {
		a.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(a.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Account{}, "", fmt.Errorf("base URL %q must be an http:// or https:// URL with a host", a.BaseURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Account{}, "", fmt.Errorf("base URL %q must not carry credentials, a query or a fragment", u.Redacted())
	}
	a.BaseURL = strings.TrimRight(u.String(), "/")
	if a.Priority < 0 {
		return Account{}, "", fmt.Errorf("priority %d must be >= 0", a.Priority)
	}
	cred := strings.TrimSpace(spec.Credential)
	if cred == "" {
		return Account{}, "", errors.New("credential is required")
	}
	a.CredentialHint = credentialHint(cred)
	return a, cred, nil
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
// Credentials are not read.
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

// GetAccount returns one account without its credential, or ErrNotFound.
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

// AccountCredential opens the account's sealed credential. The envelope is bound to the
// account id, so one copied onto another account does not open.
func (s *Store) AccountCredential(ctx context.Context, id string) (string, error) {
	env, err := s.rdb.HGet(ctx, s.keys.Account(id), "credential").Bytes()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("account %s credential: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("account %s credential: %w", id, err)
	}
	plain, err := s.sealer.Open(ctx, env, []byte(id))
	if err != nil {
		return "", fmt.Errorf("account %s credential: open: %w", id, err)
	}
	return string(plain), nil
}

// SetAccountSchedulable takes an account out of rotation (false) or puts it back (true).
func (s *Store) SetAccountSchedulable(ctx context.Context, id string, schedulable bool) error {
	keys := []string{s.keys.Account(id), s.keys.AccountsVersion()}
	ok, err := updateAccountScript.Run(ctx, s.rdb, keys, "schedulable", boolString(schedulable)).Int()
	if err != nil {
		return fmt.Errorf("set account %s schedulable: %w", id, err)
	}
	if ok == 0 {
		return fmt.Errorf("set account %s schedulable: %w", id, ErrNotFound)
	}
	return nil
}

// DeleteAccount removes an account and its credential.
func (s *Store) DeleteAccount(ctx context.Context, id string) error {
	keys := []string{s.keys.Account(id), s.keys.AccountsByCreation(), s.keys.AccountsVersion()}
	ok, err := deleteAccountScript.Run(ctx, s.rdb, keys, id).Int()
	if err != nil {
		return fmt.Errorf("delete account %s: %w", id, err)
	}
	if ok == 0 {
		return fmt.Errorf("delete account %s: %w", id, ErrNotFound)
	}
	return nil
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

// accountFromValues builds an Account from an HMGET of accountFields; found is false when the
// record does not exist.
func accountFromValues(vals []any) (Account, bool, error) {
	str := make([]string, len(accountFields))
	for i := range accountFields {
		if i < len(vals) {
			str[i], _ = vals[i].(string)
		}
	}
	if str[0] == "" {
		return Account{}, false, nil
	}
	a := Account{
		ID:             str[0],
		Name:           str[1],
		Type:           str[2],
		BaseURL:        str[3],
		Schedulable:    str[5] == "1",
		CredentialHint: str[7],
	}
	var err error
	if a.Priority, err = strconv.Atoi(str[4]); err != nil {
		return Account{}, false, fmt.Errorf("account %s priority %q: %w", a.ID, str[4], err)
	}
	if a.CreatedAt, err = parseTime(str[6]); err != nil {
		return Account{}, false, fmt.Errorf("account %s: %w", a.ID, err)
	}
	return a, true, nil
}
