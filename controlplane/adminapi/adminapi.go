// Package adminapi defines the admin API's JSON wire types, shared by the control plane and its clients.
package adminapi

import (
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/internal/keylimits"
)

// Audience is the JWT audience of admin session tokens; tokens for any other audience are refused.
const Audience = "claude-relay-admin"

// Error types returned in ErrorBody.Error.Type.
const (
	ErrInvalidRequest = "invalid_request_error"
	ErrAuthentication = "authentication_error"
	// ErrPermission (HTTP 403) answers a relay key the configuration cannot serve.
	ErrPermission = "permission_error"
	ErrNotFound   = "not_found_error"
	ErrConflict   = "conflict_error"
	// ErrPreconditionFailed (HTTP 412) answers a change whose If-Match names a revision the
	// key no longer has.
	ErrPreconditionFailed = "precondition_failed_error"
	ErrRateLimit          = "rate_limit_error"
	ErrAPI                = "api_error"
	// ErrTimeout (HTTP 408) answers a request whose body stalled.
	ErrTimeout = "timeout_error"
)

// Key statuses reported in Key.Status.
const (
	KeyActive   = "active"
	KeyRevoked  = "revoked"
	KeyExpired  = "expired"
	KeyDisabled = "disabled"
	KeyDeleted  = "deleted"
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
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Owner       string   `json:"owner,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	Hint        string   `json:"hint"`
	Policy      string   `json:"policy,omitempty"`
	KeyRules
	Enabled bool   `json:"enabled"`
	Status  string `json:"status"`
	// Revision counts the key's administrative changes (1 for a new key, and for a key stored
	// before revisions existed); the single-key responses carry it as ETag too. Send it back as
	// If-Match to make a change conditional.
	Revision int64 `json:"revision"`
	// ExpiresAfter is the lifetime counted from first use, e.g. "72h0m0s".
	ExpiresAfter string     `json:"expires_after,omitempty"`
	ActivatedAt  *time.Time `json:"activated_at,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	DeletedAt    *time.Time `json:"deleted_at,omitempty"`
	LastUsedAt   *time.Time `json:"last_used_at,omitempty"`
}

// KeyLimits override a key's policy values; unset fields keep the policy's. It is
// config.KeyLimits and store.KeyLimits, defined once in internal/keylimits.
type KeyLimits = keylimits.KeyLimits

// KeyBinding ties a key to one upstream account or to an account group.
type KeyBinding struct {
	AccountID string `json:"account_id,omitempty"`
	Group     string `json:"group,omitempty"`
}

// KeyRules are what a key may do beyond its policy.
type KeyRules struct {
	Limits *KeyLimits `json:"limits,omitempty"`
	// AllowedModels and DeniedModels are model globs, e.g. "claude-sonnet-*".
	AllowedModels []string `json:"allowed_models,omitempty"`
	DeniedModels  []string `json:"denied_models,omitempty"`
	// AllowedClients are known client names or User-Agent globs.
	AllowedClients []string `json:"allowed_clients,omitempty"`
	// AllowedCIDRs is the key's IP allowlist, e.g. "10.0.0.0/8".
	AllowedCIDRs []string    `json:"allowed_cidrs,omitempty"`
	Binding      *KeyBinding `json:"binding,omitempty"`
}

// CreateKeyRequest is the body of POST /admin/keys. ExpiresAt is RFC 3339; ExpiresAfter is a
// lifetime counted from first use such as "36h" or "7d". At most one of them is set.
type CreateKeyRequest struct {
	Name         string   `json:"name"`
	Description  string   `json:"description,omitempty"`
	Owner        string   `json:"owner,omitempty"`
	Tags         []string `json:"tags,omitempty"`
	Policy       string   `json:"policy,omitempty"`
	ExpiresAt    string   `json:"expires_at,omitempty"`
	ExpiresAfter string   `json:"expires_after,omitempty"`
	KeyRules
}

// UpdateKeyRequest is the body of PATCH /admin/keys/{id}: only the fields present change.
// Rules fields replace the stored rule each one names. Setting expires_at or expires_after
// replaces the expiry; both "" remove it.
type UpdateKeyRequest struct {
	Name           *string     `json:"name,omitempty"`
	Description    *string     `json:"description,omitempty"`
	Owner          *string     `json:"owner,omitempty"`
	Tags           *[]string   `json:"tags,omitempty"`
	Policy         *string     `json:"policy,omitempty"`
	ExpiresAt      *string     `json:"expires_at,omitempty"`
	ExpiresAfter   *string     `json:"expires_after,omitempty"`
	Limits         *KeyLimits  `json:"limits,omitempty"`
	AllowedModels  *[]string   `json:"allowed_models,omitempty"`
	DeniedModels   *[]string   `json:"denied_models,omitempty"`
	AllowedClients *[]string   `json:"allowed_clients,omitempty"`
	AllowedCIDRs   *[]string   `json:"allowed_cidrs,omitempty"`
	Binding        *KeyBinding `json:"binding,omitempty"`
}

// CreateKeyResponse is the one response that carries a key's secret (create and regenerate).
type CreateKeyResponse struct {
	Key    Key    `json:"key"`
	Secret string `json:"secret"`
}

// BulkCreateKeysRequest is the body of POST /admin/keys/bulk: up to MaxBulkKeys keys, all
// created or none.
type BulkCreateKeysRequest struct {
	Keys []CreateKeyRequest `json:"keys"`
}

// MaxBulkKeys bounds one bulk create.
const MaxBulkKeys = 500

// BulkCreateKeysResponse carries every created key with its secret, in request order.
type BulkCreateKeysResponse struct {
	Keys []CreateKeyResponse `json:"keys"`
}

// KeyResponse wraps one key.
type KeyResponse struct {
	Key Key `json:"key"`
}

// KeyList is the body of GET /admin/keys: one page, oldest first. NextCursor, when set, is the
// cursor query parameter of the next page.
type KeyList struct {
	Keys       []Key  `json:"keys"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Page sizes of GET /admin/keys (limit) and GET /admin/audit.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
)

// Usage is what a key consumed: requests, tokens by kind and cost.
type Usage struct {
	Requests     int64   `json:"requests"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	CacheWrite5m int64   `json:"cache_write_5m_tokens"`
	CacheWrite1h int64   `json:"cache_write_1h_tokens"`
	CacheRead    int64   `json:"cache_read_tokens"`
	CostUSD      float64 `json:"cost_usd"`
	// UnpricedRequests counts requests charged at pricing_fallback because no price
	// matched their model.
	UnpricedRequests int64 `json:"unpriced_requests"`
	// EstimatedRequests counts requests whose output tokens are the relay's estimate
	// (the client left before the upstream's final count).
	EstimatedRequests int64 `json:"estimated_requests"`
	// RefusedRequests counts requests the relay refused itself, FailedRequests relayed
	// requests that ended in an error; both are part of Requests.
	RefusedRequests int64 `json:"refused_requests"`
	FailedRequests  int64 `json:"failed_requests"`
}

// KeyUsage is the body of GET /admin/keys/{id}/usage: one UTC day by model, that day's sum,
// and the key's all-time totals.
type KeyUsage struct {
	Day      string           `json:"day"`
	Models   map[string]Usage `json:"models"`
	DayTotal Usage            `json:"day_total"`
	Totals   Usage            `json:"totals"`
}

// Account types.
const (
	AccountAnthropicAPIKey     = "anthropic_api_key"
	AccountClaudeOAuth         = "claude_oauth"
	AccountAnthropicCompatible = "anthropic_compatible"
)

// Account states reported in AccountStatus.State, besides the parking states the scheduler
// writes (rate_limited, near_limit, overloaded, failing, unauthorized, blocked).
const (
	AccountActive         = "active"
	AccountRefreshFailing = "refresh_failing"
	AccountTokenExpired   = "token_expired"
	// AccountTampered: the account's sealed credential does not open for the type, base URL
	// and proxy the record now has (changed outside the admin API); no sidecar uses it.
	AccountTampered = "tampered"
)

// Account is an upstream account as the admin API shows it: never a secret, only hints.
type Account struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	BaseURL        string            `json:"base_url"`
	Priority       int               `json:"priority"`
	Group          string            `json:"group,omitempty"`
	Schedulable    bool              `json:"schedulable"`
	CreatedAt      time.Time         `json:"created_at"`
	CredentialHint string            `json:"credential_hint"`
	Proxy          string            `json:"proxy,omitempty"`
	ModelMap       map[string]string `json:"model_map,omitempty"`
	LastUsedAt     *time.Time        `json:"last_used_at,omitempty"`
	Status         AccountStatus     `json:"status"`
	// Parked lists the parks in force, of the whole account or of one model family.
	Parked []Park        `json:"parked,omitempty"`
	OAuth  *OAuthDetails `json:"oauth,omitempty"`
	Caps   *AccountCaps  `json:"caps,omitempty"`
	SubscriptionWindows
}

// SubscriptionWindows is a subscription account's latest window reading, as the
// anthropic-ratelimit-unified-* headers of the last response a sidecar saw reported it
// (observed headers: Anthropic does not document them). Absent for accounts whose answers
// carry none (API keys, most compatible endpoints). A reset in the past means the window has
// started afresh since the reading.
type SubscriptionWindows struct {
	// Utilization5h and Utilization7d are the fractions (0..1) of the 5-hour and 7-day
	// windows used.
	Utilization5h *float64   `json:"utilization_5h,omitempty"`
	Reset5h       *time.Time `json:"reset_5h,omitempty"`
	Status5h      string     `json:"status_5h,omitempty"`
	Utilization7d *float64   `json:"utilization_7d,omitempty"`
	Reset7d       *time.Time `json:"reset_7d,omitempty"`
	Status7d      string     `json:"status_7d,omitempty"`
	// WindowStatus is the overall status: allowed, allowed_warning or rejected.
	WindowStatus string `json:"window_status,omitempty"`
	// RepresentativeClaim names the window that binds (five_hour, seven_day, …).
	RepresentativeClaim string `json:"representative_claim,omitempty"`
	// WindowsObservedAt is when the reading was taken.
	WindowsObservedAt *time.Time `json:"windows_observed_at,omitempty"`
}

// AccountStatus says whether an account is usable, and if not why and since or until when.
type AccountStatus struct {
	State  string     `json:"state"`
	Reason string     `json:"reason,omitempty"`
	Since  *time.Time `json:"since,omitempty"`
	Until  *time.Time `json:"until,omitempty"`
}

// Park is one entry of the scheduler's parking table.
type Park struct {
	Family     string     `json:"family,omitempty"`
	State      string     `json:"state"`
	HTTPStatus int        `json:"http_status,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Until      *time.Time `json:"until,omitempty"`
}

// OAuthDetails describe an OAuth account's tokens, never the tokens themselves.
type OAuthDetails struct {
	TokenExpiresAt  *time.Time `json:"token_expires_at,omitempty"`
	HasRefreshToken bool       `json:"has_refresh_token"`
	Scopes          string     `json:"scopes,omitempty"`
	RefreshError    string     `json:"refresh_error,omitempty"`
	RefreshFailedAt *time.Time `json:"refresh_failed_at,omitempty"`
	RefreshFailures int        `json:"refresh_failures,omitempty"`
	RefreshRetryAt  *time.Time `json:"refresh_retry_at,omitempty"`
}

// AddAccountRequest is the body of POST /admin/accounts. Type defaults to anthropic_api_key,
// BaseURL to https://api.anthropic.com and Priority (1 to 100, lower runs first) to 50.
// API-key and compatible accounts send api_key; claude_oauth accounts send access_token (a
// setup token, or with refresh_token and expires_at a pasted token pair).
type AddAccountRequest struct {
	Name         string            `json:"name"`
	Type         string            `json:"type,omitempty"`
	BaseURL      string            `json:"base_url,omitempty"`
	APIKey       string            `json:"api_key,omitempty"`
	AccessToken  string            `json:"access_token,omitempty"`
	RefreshToken string            `json:"refresh_token,omitempty"`
	ExpiresAt    string            `json:"expires_at,omitempty"`
	Priority     *int              `json:"priority,omitempty"`
	Group        string            `json:"group,omitempty"`
	Schedulable  *bool             `json:"schedulable,omitempty"`
	ProxyURL     string            `json:"proxy_url,omitempty"`
	ModelMap     map[string]string `json:"model_map,omitempty"`
	Caps         *AccountCaps      `json:"caps,omitempty"`
}

// AccountCaps bound an account's load, counted across all sidecars: requests in flight,
// tokens and cost per UTC day and per rolling 5 hours. Absent or 0: unbounded. A request
// that finds every account it could use at a cap gets a 429 naming the caps and when they
// free.
type AccountCaps struct {
	MaxConcurrency int     `json:"max_concurrency,omitempty"`
	TokensPerDay   int64   `json:"tokens_per_day,omitempty"`
	CostPerDayUSD  float64 `json:"cost_per_day_usd,omitempty"`
	TokensPer5h    int64   `json:"tokens_per_5h,omitempty"`
	CostPer5hUSD   float64 `json:"cost_per_5h_usd,omitempty"`
}

// UpdateAccountRequest is the body of PATCH /admin/accounts/{id}: only the fields present
// change. proxy_url "" removes the proxy; api_key rotates the key of an API-key account.
type UpdateAccountRequest struct {
	Name        *string            `json:"name,omitempty"`
	BaseURL     *string            `json:"base_url,omitempty"`
	Priority    *int               `json:"priority,omitempty"`
	Group       *string            `json:"group,omitempty"`
	Schedulable *bool              `json:"schedulable,omitempty"`
	ProxyURL    *string            `json:"proxy_url,omitempty"`
	ModelMap    *map[string]string `json:"model_map,omitempty"`
	APIKey      *string            `json:"api_key,omitempty"`
	// Caps replaces every cap: {} removes them all.
	Caps *AccountCaps `json:"caps,omitempty"`
}

// BindingsCleared answers POST /admin/accounts/{id}/unbind and DELETE
// /admin/sessions/{session}: how many sticky bindings were deleted. The conversations they
// bound are scheduled afresh with their next request (on any account: their prompt cache
// is written again there).
type BindingsCleared struct {
	Cleared int `json:"cleared"`
}

// AccountResponse wraps one account.
type AccountResponse struct {
	Account Account `json:"account"`
}

// AccountList is the body of GET /admin/accounts.
type AccountList struct {
	Accounts []Account `json:"accounts"`
}

// TestAccountRequest is the optional body of POST /admin/accounts/{id}/test.
type TestAccountRequest struct {
	Model string `json:"model,omitempty"`
}

// TestAccountResult is what a minimal request (max_tokens 1) through the account returned.
type TestAccountResult struct {
	OK         bool   `json:"ok"`
	Model      string `json:"model"`
	HTTPStatus int    `json:"http_status,omitempty"`
	LatencyMS  int64  `json:"latency_ms"`
	RequestID  string `json:"request_id,omitempty"`
	// Error is the upstream's error message or the connection error.
	Error string `json:"error,omitempty"`
}

// OAuthStartRequest is the body of POST /admin/accounts/oauth/start: the account to create
// when the login finishes.
type OAuthStartRequest struct {
	Name     string `json:"name"`
	Priority *int   `json:"priority,omitempty"`
	Group    string `json:"group,omitempty"`
	ProxyURL string `json:"proxy_url,omitempty"`
}

// OAuthStartResponse carries the URL the operator opens to log in, and the state that ties
// the finish call to this start.
type OAuthStartResponse struct {
	AuthorizeURL string    `json:"authorize_url"`
	State        string    `json:"state"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// OAuthFinishRequest is the body of POST /admin/accounts/oauth/finish: the code the callback
// page shows ("code#state"), or the whole callback URL; State when the code does not carry it.
type OAuthFinishRequest struct {
	Code        string `json:"code,omitempty"`
	CallbackURL string `json:"callback_url,omitempty"`
	State       string `json:"state,omitempty"`
}

// AuditEntry is one admin action.
type AuditEntry struct {
	ID     string            `json:"id"`
	At     time.Time         `json:"at"`
	Who    string            `json:"who"`
	Action string            `json:"action"`
	Target string            `json:"target,omitempty"`
	Remote string            `json:"remote,omitempty"`
	Detail map[string]string `json:"detail,omitempty"`
}

// AuditList is the body of GET /admin/audit: newest first; NextCursor is the before query
// parameter of the next page.
type AuditList struct {
	Entries    []AuditEntry `json:"entries"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// ChangePasswordRequest is the body of POST /admin/password.
type ChangePasswordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// ETag is the entity tag of a key revision as the admin API sends it in ETag and expects it
// in If-Match: the decimal revision in double quotes, e.g. "3".
func ETag(revision int64) string { return `"` + strconv.FormatInt(revision, 10) + `"` }

// ParseETag reads one entity tag made by ETag. It also accepts the revision without quotes;
// weak tags (W/"3"), lists and anything else are refused.
func ParseETag(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if s == "" || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}
