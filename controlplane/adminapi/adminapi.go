// Package adminapi defines the admin API's JSON wire types, shared by the control plane and its clients.
package adminapi

import "time"

// Audience is the JWT audience of admin session tokens; tokens for any other audience are refused.
const Audience = "claude-relay-admin"

// Error types returned in ErrorBody.Error.Type.
const (
	ErrInvalidRequest = "invalid_request_error"
	ErrAuthentication = "authentication_error"
	ErrNotFound       = "not_found_error"
	ErrConflict       = "conflict_error"
	ErrRateLimit      = "rate_limit_error"
	ErrAPI            = "api_error"
)

// Key statuses reported in Key.Status.
const (
	KeyActive   = "active"
	KeyRevoked  = "revoked"
	KeyExpired  = "expired"
	KeyDisabled = "disabled"
)

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong; Fields maps request field names to what is wrong with them.
type ErrorDetail struct {
	Type    string            `json:"type"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// LoginRequest is the body of POST /admin/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse carries a session token for the Authorization: Bearer header.
type LoginResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// WhoAmI is the body of GET /admin/whoami.
type WhoAmI struct {
	Username  string    `json:"username"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Key is a relay key as the admin API shows it: never its secret, only a hint.
type Key struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Hint       string     `json:"hint"`
	Policy     string     `json:"policy,omitempty"`
	Enabled    bool       `json:"enabled"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// CreateKeyRequest is the body of POST /admin/keys. ExpiresAt is RFC 3339 when set.
type CreateKeyRequest struct {
	Name      string `json:"name"`
	Policy    string `json:"policy,omitempty"`
	ExpiresAt string `json:"expires_at,omitempty"`
}

// CreateKeyResponse is the one response that carries a key's secret.
type CreateKeyResponse struct {
	Key    Key    `json:"key"`
	Secret string `json:"secret"`
}

// KeyResponse wraps one key.
type KeyResponse struct {
	Key Key `json:"key"`
}

// KeyList is the body of GET /admin/keys.
type KeyList struct {
	Keys []Key `json:"keys"`
}

// Usage is what a key consumed: requests, tokens by kind and cost.
type Usage struct {
	Requests     int64   `json:"requests"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	CacheWrite5m int64   `json:"cache_write_5m_tokens"`
	CacheWrite1h int64   `json:"cache_write_1h_tokens"`
	CacheRead    int64   `json:"cache_read_tokens"`
	CostUSD      float64 `json:"cost_usd"`
}

// KeyUsage is the body of GET /admin/keys/{id}/usage: one UTC day by model, that day's sum,
// and the key's all-time totals.
type KeyUsage struct {
	Day      string           `json:"day"`
	Models   map[string]Usage `json:"models"`
	DayTotal Usage            `json:"day_total"`
	Totals   Usage            `json:"totals"`
}

// Account is an upstream account as the admin API shows it: never its credential, only a hint.
type Account struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	Type           string    `json:"type"`
	BaseURL        string    `json:"base_url"`
	Priority       int       `json:"priority"`
	Schedulable    bool      `json:"schedulable"`
	CreatedAt      time.Time `json:"created_at"`
	CredentialHint string    `json:"credential_hint"`
}

// AddAccountRequest is the body of POST /admin/accounts. Type defaults to anthropic_api_key,
// BaseURL to https://api.anthropic.com and Priority (1 to 100, lower runs first) to 50.
type AddAccountRequest struct {
	Name     string `json:"name"`
	Type     string `json:"type,omitempty"`
	BaseURL  string `json:"base_url,omitempty"`
	APIKey   string `json:"api_key"`
	Priority *int   `json:"priority,omitempty"`
}

// AccountResponse wraps one account.
type AccountResponse struct {
	Account Account `json:"account"`
}

// AccountList is the body of GET /admin/accounts.
type AccountList struct {
	Accounts []Account `json:"accounts"`
}
