package adminclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// RequestsQuery asks GET /admin/requests for one page of the request ledger; empty fields
// keep the server's defaults (the last 24 hours, every record, 100 a page).
type RequestsQuery struct {
	From, To            string // UTC days (both included) or RFC 3339 times
	Key, Account, Model string
	Status              string // 2xx … 5xx
	Limit               int
	Cursor              string // a page's Next
}

func (q RequestsQuery) path() string {
	v := url.Values{}
	for k, val := range map[string]string{"from": q.From, "to": q.To, "key": q.Key, "account": q.Account,
		"model": q.Model, "status": q.Status, "cursor": q.Cursor} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if len(v) == 0 {
		return "/admin/requests"
	}
	return "/admin/requests?" + v.Encode()
}

// Requests returns one page of the request ledger, newest first.
func (c *Client) Requests(ctx context.Context, q RequestsQuery) (adminapi.LedgerPage, error) {
	var out adminapi.LedgerPage
	err := c.do(ctx, http.MethodGet, q.path(), nil, &out)
	return out, err
}
