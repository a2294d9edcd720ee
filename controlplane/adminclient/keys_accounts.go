package adminclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// KeyQuery selects keys for ListKeysPage and ListAllKeys; zero fields match everything.
type KeyQuery struct {
	Name, Tag, Status string
	// Policy filters by policy name when PolicySet (an empty Policy means the default).
	Policy    string
	PolicySet bool
	Cursor    string
	// Limit is the page size (0: the server's default).
	Limit int
}

func (q KeyQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"name": q.Name, "tag": q.Tag, "status": q.Status, "cursor": q.Cursor} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.PolicySet {
		v.Set("policy", q.Policy)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// ListKeysPage returns one page of keys and the cursor of the next ("" at the end).
func (c *Client) ListKeysPage(ctx context.Context, q KeyQuery) (adminapi.KeyList, error) {
	var out adminapi.KeyList
	path := "/admin/keys"
	if v := q.values(); len(v) > 0 {
		path += "?" + v.Encode()
	}
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// ListAllKeys follows the cursor from q.Cursor to the last page.
func (c *Client) ListAllKeys(ctx context.Context, q KeyQuery) ([]adminapi.Key, error) {
	if q.Limit == 0 {
		q.Limit = adminapi.MaxPageLimit
	}
	var all []adminapi.Key
	for {
		page, err := c.ListKeysPage(ctx, q)
		if err != nil {
			return all, err
		}
		all = append(all, page.Keys...)
		if page.NextCursor == "" {
			return all, nil
		}
		q.Cursor = page.NextCursor
	}
}

func keyPath(id, action string) string {
	p := "/admin/keys/" + url.PathEscape(id)
	if action != "" {
		p += "/" + action
	}
	return p
}

// keyCall posts an action on a key and returns the key as it is afterwards.
func (c *Client) keyCall(ctx context.Context, method, id, action string, in any, opts ...Option) (adminapi.Key, error) {
	var out adminapi.KeyResponse
	err := c.do(ctx, method, keyPath(id, action), in, &out, opts...)
	return out.Key, err
}

// UpdateKey changes the fields req sets; IfMatch makes it conditional on the key's revision.
func (c *Client) UpdateKey(ctx context.Context, id string, req adminapi.UpdateKeyRequest, opts ...Option) (adminapi.Key, error) {
	return c.keyCall(ctx, http.MethodPatch, id, "", req, opts...)
}

// ErrKeyKeptChanging is the error of ModifyKey when every attempt found the key changed.
var ErrKeyKeptChanging = errors.New("key kept changing")

// ModifyKey is a read-modify-write of one key that loses no concurrent change: it reads the
// key, asks change for the update to make from what it read, and sends that update with
// IfMatch of the revision read. When someone else changed the key in between (412) it reads
// the key again and calls change again, up to attempts times in all; after that it fails with
// an error wrapping ErrKeyKeptChanging. change may be called several times.
func (c *Client) ModifyKey(ctx context.Context, id string, attempts int, change func(adminapi.Key) (adminapi.UpdateKeyRequest, error)) (adminapi.Key, error) {
	var lastRev int64
	for i := 0; i < max(attempts, 1); i++ {
		if i > 0 {
			// Back off a little, with jitter, so writers racing for one key spread out.
			d := time.Duration(i) * (5*time.Millisecond + time.Duration(rand.Int64N(int64(10*time.Millisecond))))
			select {
			case <-ctx.Done():
				return adminapi.Key{}, ctx.Err()
			case <-time.After(d):
			}
		}
		cur, err := c.GetKey(ctx, id)
		if err != nil {
			return adminapi.Key{}, err
		}
		req, err := change(cur)
		if err != nil {
			return adminapi.Key{}, err
		}
		k, err := c.UpdateKey(ctx, id, req, IfMatch(cur.Revision))
		if !IsPreconditionFailed(err) {
			return k, err
		}
		var ae *APIError
		errors.As(err, &ae)
		lastRev = ae.Revision
	}
	return adminapi.Key{}, fmt.Errorf("key %s changed under each of %d read-modify-write attempts (now at revision %d); nothing was changed, run it again: %w",
		id, max(attempts, 1), lastRev, ErrKeyKeptChanging)
}

// EnableKey re-enables a disabled key.
func (c *Client) EnableKey(ctx context.Context, id string, opts ...Option) (adminapi.Key, error) {
	return c.keyCall(ctx, http.MethodPost, id, "enable", nil, opts...)
}

// DisableKey disables a key until it is enabled again.
func (c *Client) DisableKey(ctx context.Context, id string, opts ...Option) (adminapi.Key, error) {
	return c.keyCall(ctx, http.MethodPost, id, "disable", nil, opts...)
}

// DeleteKey soft-deletes a key; RestoreKey undoes it.
func (c *Client) DeleteKey(ctx context.Context, id string, opts ...Option) (adminapi.Key, error) {
	return c.keyCall(ctx, http.MethodDelete, id, "", nil, opts...)
}

// RestoreKey restores a soft-deleted key.
func (c *Client) RestoreKey(ctx context.Context, id string, opts ...Option) (adminapi.Key, error) {
	return c.keyCall(ctx, http.MethodPost, id, "restore", nil, opts...)
}

// RegenerateKey gives a key a new secret, returned once.
func (c *Client) RegenerateKey(ctx context.Context, id string, opts ...Option) (adminapi.CreateKeyResponse, error) {
	var out adminapi.CreateKeyResponse
	err := c.do(ctx, http.MethodPost, keyPath(id, "regenerate"), nil, &out, opts...)
	return out, err
}

// BulkCreateKeys creates several keys at once, all or none.
func (c *Client) BulkCreateKeys(ctx context.Context, req adminapi.BulkCreateKeysRequest) (adminapi.BulkCreateKeysResponse, error) {
	var out adminapi.BulkCreateKeysResponse
	err := c.do(ctx, http.MethodPost, "/admin/keys/bulk", req, &out)
	return out, err
}

func accountPath(id, action string) string {
	p := "/admin/accounts/" + url.PathEscape(id)
	if action != "" {
		p += "/" + action
	}
	return p
}

// UpdateAccount changes the fields req sets.
func (c *Client) UpdateAccount(ctx context.Context, id string, req adminapi.UpdateAccountRequest) (adminapi.Account, error) {
	var out adminapi.AccountResponse
	err := c.do(ctx, http.MethodPatch, accountPath(id, ""), req, &out)
	return out.Account, err
}

// TestAccount sends a minimal request through the account and reports the result.
func (c *Client) TestAccount(ctx context.Context, id, model string) (adminapi.TestAccountResult, error) {
	var out adminapi.TestAccountResult
	err := c.do(ctx, http.MethodPost, accountPath(id, "test"), adminapi.TestAccountRequest{Model: model}, &out)
	return out, err
}

// UnparkAccount clears the account's parks.
func (c *Client) UnparkAccount(ctx context.Context, id string) (adminapi.Account, error) {
	var out adminapi.AccountResponse
	err := c.do(ctx, http.MethodPost, accountPath(id, "unpark"), nil, &out)
	return out.Account, err
}

// UnbindAccount deletes every sticky binding to an account and returns how many.
func (c *Client) UnbindAccount(ctx context.Context, id string) (int, error) {
	var out adminapi.BindingsCleared
	err := c.do(ctx, http.MethodPost, accountPath(id, "unbind"), nil, &out)
	return out.Cleared, err
}

// ClearSession deletes one conversation's sticky bindings (session: the client's session id
// or the binding hash) and returns how many.
func (c *Client) ClearSession(ctx context.Context, session string) (int, error) {
	var out adminapi.BindingsCleared
	err := c.do(ctx, http.MethodDelete, "/admin/sessions/"+url.PathEscape(session), nil, &out)
	return out.Cleared, err
}

// RefreshAccount refreshes an OAuth account's tokens now.
func (c *Client) RefreshAccount(ctx context.Context, id string) (adminapi.Account, error) {
	var out adminapi.AccountResponse
	err := c.do(ctx, http.MethodPost, accountPath(id, "refresh"), nil, &out)
	return out.Account, err
}

// OAuthStart starts a Claude OAuth login and returns the URL to open.
func (c *Client) OAuthStart(ctx context.Context, req adminapi.OAuthStartRequest) (adminapi.OAuthStartResponse, error) {
	var out adminapi.OAuthStartResponse
	err := c.do(ctx, http.MethodPost, "/admin/accounts/oauth/start", req, &out)
	return out, err
}

// OAuthFinish exchanges the pasted code and creates the account.
func (c *Client) OAuthFinish(ctx context.Context, req adminapi.OAuthFinishRequest) (adminapi.Account, error) {
	var out adminapi.AccountResponse
	err := c.do(ctx, http.MethodPost, "/admin/accounts/oauth/finish", req, &out)
	return out.Account, err
}

// Audit returns admin actions, newest first, older than the entry before ("" for the newest).
func (c *Client) Audit(ctx context.Context, before string, limit int) (adminapi.AuditList, error) {
	v := url.Values{}
	if before != "" {
		v.Set("before", before)
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	path := "/admin/audit"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out adminapi.AuditList
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// ChangePassword changes the session user's password and returns a fresh session token; every
// older token (this client's included) stops working.
func (c *Client) ChangePassword(ctx context.Context, current, next string) (adminapi.LoginResponse, error) {
	var out adminapi.LoginResponse
	err := c.do(ctx, http.MethodPost, "/admin/password", adminapi.ChangePasswordRequest{CurrentPassword: current, NewPassword: next}, &out)
	return out, err
}
