// Package adminclient is a typed Go client for the claude-relay admin API.
package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/alerts"
)

// maxResponseBytes caps how much of a response body the client reads.
const maxResponseBytes = 16 << 20

// defaultTimeout bounds each call when the caller supplies no HTTP client.
const defaultTimeout = 30 * time.Second

// Client calls the admin API of one control plane with one session token.
// It is safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client for the control plane at addr (e.g. "http://127.0.0.1:3000") that
// sends token, which may be empty before Login. A nil hc means a client with a 30s timeout
// that never follows a redirect: Go would send the session token, or re-post a password, to
// wherever the Location points; a redirect is reported as an error naming it instead.
func New(addr, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(addr))
	if err != nil {
		return nil, fmt.Errorf("admin address %q: %w", addr, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin address %q must be an http(s) URL such as http://127.0.0.1:3000", addr)
	}
	if hc == nil {
		hc = &http.Client{Timeout: defaultTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	return &Client{base: strings.TrimRight(u.String(), "/"), token: token, hc: hc}, nil
}

// Addr returns the control plane's base URL.
func (c *Client) Addr() string { return c.base }

// APIError is an error response of the admin API.
type APIError struct {
	// StatusCode is the HTTP status, e.g. 401.
	StatusCode int
	// Type is the error type, e.g. adminapi.ErrAuthentication.
	Type string
	// Message says what went wrong.
	Message string
	// Fields maps request field names to what is wrong with them (400 only).
	Fields map[string]string
	// RetryAfter is how long to wait before retrying (429 only).
	RetryAfter time.Duration
	// Revision is the key's current revision from the ETag header (412 only).
	Revision int64
}

// Error returns the server's message (which names each invalid field) and the status.
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.StatusCode)
}

// IsUnauthorized reports whether err is an admin API 401: no, a bad, an expired or a
// logged-out session token.
func IsUnauthorized(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusUnauthorized
}

// IsNotFound reports whether err is an admin API 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

// IsPreconditionFailed reports whether err is an admin API 412: a change sent with IfMatch
// found the key at another revision (APIError.Revision), because someone changed it since it
// was read.
func IsPreconditionFailed(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusPreconditionFailed
}

// Option adjusts one call, e.g. IfMatch.
type Option func(h http.Header)

// IfMatch makes a key change conditional on the key still being at revision (Key.Revision as
// read): if it changed since, nothing changes and the call fails with a 412 error (see
// IsPreconditionFailed). Without it a change is last-writer-wins.
func IfMatch(revision int64) Option {
	return func(h http.Header) { h.Set("If-Match", adminapi.ETag(revision)) }
}

// do sends in (when non-nil) as JSON and decodes a 2xx response into out (when non-nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any, opts ...Option) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for _, o := range opts {
		o(req.Header)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp, data)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

func decodeError(resp *http.Response, data []byte) error {
	ae := &APIError{StatusCode: resp.StatusCode}
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		to := "an address without a Location"
		if loc, err := resp.Location(); err == nil {
			to = loc.Scheme + "://" + loc.Host
		}
		ae.Message = "the control plane address answered with a redirect to " + to +
			"; the admin client does not follow redirects (it would send your token or password there): use the address the control plane really serves on (--addr)"
		return ae
	}
	var body adminapi.ErrorBody
	if err := json.Unmarshal(data, &body); err == nil && body.Error.Type != "" {
		ae.Type, ae.Message, ae.Fields = body.Error.Type, body.Error.Message, body.Error.Fields
	} else {
		ae.Message = strings.TrimSpace(string(data))
		if len(ae.Message) > 200 {
			ae.Message = ae.Message[:200] + "…"
		}
	}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		ae.RetryAfter = time.Duration(secs) * time.Second
	}
	if rev, ok := adminapi.ParseETag(resp.Header.Get("ETag")); ok && resp.StatusCode == http.StatusPreconditionFailed {
		ae.Revision = rev
	}
	return ae
}

// Login exchanges an admin's username and password for a session token. It does not change
// the token c sends; build a new client with the returned token.
func (c *Client) Login(ctx context.Context, username, password string) (adminapi.LoginResponse, error) {
	var out adminapi.LoginResponse
	err := c.do(ctx, http.MethodPost, "/admin/login", adminapi.LoginRequest{Username: username, Password: password}, &out)
	return out, err
}

// Logout revokes the session token c sends.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/admin/logout", nil, nil)
}

// WhoAmI returns the admin the session token belongs to and when it expires.
func (c *Client) WhoAmI(ctx context.Context) (adminapi.WhoAmI, error) {
	var out adminapi.WhoAmI
	err := c.do(ctx, http.MethodGet, "/admin/whoami", nil, &out)
	return out, err
}

// ListKeys returns every relay key but deleted ones, oldest first, reading every page.
func (c *Client) ListKeys(ctx context.Context) ([]adminapi.Key, error) {
	return c.ListAllKeys(ctx, KeyQuery{})
}

// CreateKey creates a relay key; the response carries its secret, which is never shown again.
func (c *Client) CreateKey(ctx context.Context, req adminapi.CreateKeyRequest) (adminapi.CreateKeyResponse, error) {
	var out adminapi.CreateKeyResponse
	err := c.do(ctx, http.MethodPost, "/admin/keys", req, &out)
	return out, err
}

// GetKey returns one relay key.
func (c *Client) GetKey(ctx context.Context, id string) (adminapi.Key, error) {
	var out adminapi.KeyResponse
	err := c.do(ctx, http.MethodGet, "/admin/keys/"+url.PathEscape(id), nil, &out)
	return out.Key, err
}

// RevokeKey revokes a relay key for good and returns it as revoked.
func (c *Client) RevokeKey(ctx context.Context, id string, opts ...Option) (adminapi.Key, error) {
	return c.keyCall(ctx, http.MethodPost, id, "revoke", nil, opts...)
}

// KeyUsage returns a relay key's usage on day (YYYY-MM-DD, UTC; "" means today) by model,
// and its all-time totals.
func (c *Client) KeyUsage(ctx context.Context, id, day string) (adminapi.KeyUsage, error) {
	path := "/admin/keys/" + url.PathEscape(id) + "/usage"
	if day != "" {
		path += "?day=" + url.QueryEscape(day)
	}
	var out adminapi.KeyUsage
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// ListAccounts returns every upstream account, oldest first.
func (c *Client) ListAccounts(ctx context.Context) ([]adminapi.Account, error) {
	var out adminapi.AccountList
	err := c.do(ctx, http.MethodGet, "/admin/accounts", nil, &out)
	return out.Accounts, err
}

// ConfigStatus returns the configuration the control plane serves and the diagnostics of
// its last refused reload.
func (c *Client) ConfigStatus(ctx context.Context) (configapi.ConfigStatus, error) {
	var out configapi.ConfigStatus
	err := c.do(ctx, http.MethodGet, "/admin/config/status", nil, &out)
	return out, err
}

// Sidecars lists the sidecars that polled the control plane in the last day, with the
// version each runs, its last refused snapshot and the health it reported.
func (c *Client) Sidecars(ctx context.Context) (configapi.SidecarList, error) {
	var out configapi.SidecarList
	err := c.do(ctx, http.MethodGet, "/admin/sidecars", nil, &out)
	return out, err
}

// Alerts returns the alert destinations, the conditions raised now, and the newest messages
// (with their delivery status) and events.
func (c *Client) Alerts(ctx context.Context) (alerts.Status, error) {
	var out alerts.Status
	err := c.do(ctx, http.MethodGet, "/admin/alerts", nil, &out)
	return out, err
}

// TestAlert sends a test message to the named alert destination now and returns it, sent or
// failed with the error.
func (c *Client) TestAlert(ctx context.Context, name string) (alerts.Message, error) {
	var out alerts.Message
	err := c.do(ctx, http.MethodPost, "/admin/alerts/"+url.PathEscape(name)+"/test", nil, &out)
	return out, err
}

// Health returns the control plane's own health with every component's error and details
// (the public /health shows statuses only).
func (c *Client) Health(ctx context.Context) (configapi.Health, error) {
	var out configapi.Health
	err := c.do(ctx, http.MethodGet, "/admin/health", nil, &out)
	return out, err
}

// AddAccount adds an upstream account. Its credential is never returned, only a hint.
func (c *Client) AddAccount(ctx context.Context, req adminapi.AddAccountRequest) (adminapi.Account, error) {
	var out adminapi.AccountResponse
	err := c.do(ctx, http.MethodPost, "/admin/accounts", req, &out)
	return out.Account, err
}

// GetAccount returns one upstream account.
func (c *Client) GetAccount(ctx context.Context, id string) (adminapi.Account, error) {
	var out adminapi.AccountResponse
	err := c.do(ctx, http.MethodGet, "/admin/accounts/"+url.PathEscape(id), nil, &out)
	return out.Account, err
}

// DeleteAccount deletes an upstream account and its credential.
func (c *Client) DeleteAccount(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/admin/accounts/"+url.PathEscape(id), nil, nil)
}
