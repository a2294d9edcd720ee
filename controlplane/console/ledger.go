package console

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// The usage page's Requests tab: the request ledger (GET /admin/requests) with its filters,
// one page at a time through the API's cursor, and a note when the ledger is off.

// ledgerPageSize is how many ledger records one page shows (a page stays far under 200 KB).
const ledgerPageSize = 50

// ledgerStatuses are the status filter's choices.
var ledgerStatuses = []string{"2xx", "4xx", "5xx"}

// ledgerFilters are the query parameters the Requests tab passes on to GET /admin/requests.
var ledgerFilters = []string{"from", "to", "key", "account", "model", "status"}

// requestsData is the Requests tab's data.
type requestsData struct {
	Filter   adminclient.RequestsQuery
	Statuses []string
	Records  []adminapi.LedgerRecord
	// Ledger is the API's ledger state: on, off or unknown.
	Ledger string
	// Next is the address of the next page ("" on the last); First says there is no cursor.
	Next  template.URL
	First bool
}

// handleRequests shows one page of the request ledger, newest first.
func (c *Console) handleRequests(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	v := s.view("Requests", "usage")
	q := r.URL.Query()
	d := requestsData{Statuses: ledgerStatuses, First: q.Get("cursor") == ""}
	d.Filter = adminclient.RequestsQuery{From: q.Get("from"), To: q.Get("to"), Key: strings.TrimSpace(q.Get("key")),
		Account: strings.TrimSpace(q.Get("account")), Model: strings.TrimSpace(q.Get("model")), Status: q.Get("status"),
		Cursor: q.Get("cursor"), Limit: ledgerPageSize}
	v.Data = &d
	page, err := s.api.Requests(r.Context(), d.Filter)
	if err != nil {
		if statusOf(err) >= 500 {
			c.fail(w, r, v, err)
			return
		}
		v.Error = "The requests cannot be listed: " + fieldMessage(err)
		c.render(w, r, statusOf(err), "requests", v)
		return
	}
	d.Records, d.Ledger = page.Requests, page.Ledger
	if page.Next != "" {
		next := url.Values{"cursor": {page.Next}}
		for _, k := range ledgerFilters {
			if val := q.Get(k); val != "" {
				next.Set(k, val)
			}
		}
		d.Next = template.URL(Prefix + "usage/requests?" + next.Encode()) // every part is query-escaped
	}
	c.render(w, r, http.StatusOK, "requests", v)
}

// FirstPage is the address of the filters' first page (the cursor dropped).
func (d *requestsData) FirstPage() template.URL {
	v := url.Values{}
	f := d.Filter
	for k, val := range map[string]string{"from": f.From, "to": f.To, "key": f.Key, "account": f.Account, "model": f.Model, "status": f.Status} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if len(v) == 0 {
		return template.URL(Prefix + "usage/requests")
	}
	return template.URL(Prefix + "usage/requests?" + v.Encode()) // every part is query-escaped
}
