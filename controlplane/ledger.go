package controlplane

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// defaultLedgerLimit is a page's size when the query names none.
const defaultLedgerLimit = 100

// handleRequests answers GET /admin/requests: the request ledger, newest first, filtered,
// one page at a time.
func (s *Server) handleRequests(w http.ResponseWriter, r *http.Request) {
	q, bad := s.parseLedgerQuery(r)
	if len(bad) > 0 {
		writeInvalid(w, bad)
		return
	}
	page, err := s.st.Ledger(r.Context(), q)
	if errors.Is(err, store.ErrLedgerQuery) {
		writeInvalid(w, fieldErrors{"query": strings.TrimPrefix(err.Error(), store.ErrLedgerQuery.Error()+": ")})
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err, "request ledger")
		return
	}
	out := adminapi.LedgerPage{Requests: make([]adminapi.LedgerRecord, 0, len(page.Records)), Next: page.Next, Ledger: s.ledgerState()}
	for _, rec := range page.Records {
		out.Requests = append(out.Requests, toAPILedgerRecord(rec))
	}
	writeJSON(w, http.StatusOK, out)
}

// ledgerState says whether the configuration served turns the ledger on.
func (s *Server) ledgerState() string {
	rt := s.runtime()
	if rt == nil || rt.Snapshot == nil {
		return adminapi.LedgerUnknown
	}
	if _, _, on := rt.Snapshot.Usage.LedgerBounds(); on {
		return adminapi.LedgerOn
	}
	return adminapi.LedgerOff
}

// parseLedgerQuery reads from and to (UTC days, both included, or RFC 3339 times; default the
// last 24 hours), key, account, model, status (2xx … 5xx), limit and cursor.
func (s *Server) parseLedgerQuery(r *http.Request) (store.LedgerQuery, fieldErrors) {
	v := r.URL.Query()
	bad := fieldErrors{}
	now := s.now().UTC()
	q := store.LedgerQuery{From: now.Add(-24 * time.Hour), To: now.Add(time.Minute), Limit: defaultLedgerLimit,
		KeyID: v.Get("key"), Account: v.Get("account"), Model: v.Get("model"), Cursor: v.Get("cursor")}
	for _, p := range []struct {
		name string
		dst  *time.Time
		end  bool
	}{{"from", &q.From, false}, {"to", &q.To, true}} {
		if val := v.Get(p.name); val != "" {
			t, err := parseLedgerTime(val, p.end)
			if err != nil {
				bad.add(p.name, err.Error())
			}
			*p.dst = t
		}
	}
	if st := v.Get("status"); st != "" {
		if len(st) != 3 || st[1:] != "xx" || st[0] < '1' || st[0] > '5' {
			bad.add("status", "must be a status class: 1xx, 2xx, 3xx, 4xx or 5xx")
		} else {
			q.StatusClass = int(st[0] - '0')
		}
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > store.MaxLedgerLimit {
			bad.add("limit", "must be 1 to "+strconv.Itoa(store.MaxLedgerLimit))
		}
		q.Limit = n
	}
	return q, bad
}

// parseLedgerTime reads a UTC day (an end means the end of that day) or an RFC 3339 time.
func parseLedgerTime(s string, end bool) (time.Time, error) {
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		if end {
			d = d.AddDate(0, 0, 1)
		}
		return d, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("must be a UTC day such as 2026-01-31 or an RFC 3339 time such as 2026-01-31T13:04:05Z")
	}
	return t.UTC(), nil
}

func toAPILedgerRecord(r store.LedgerRecord) adminapi.LedgerRecord {
	u := r.Usage
	return adminapi.LedgerRecord{
		ID: r.ID, Time: r.At.Format("2006-01-02T15:04:05.000Z07:00"), Key: r.KeyID, Owner: r.Owner,
		Account: r.Account, Model: r.Model, Route: r.Route, Status: r.Status,
		UsageCounters: adminapi.UsageCounters{Requests: u.Requests, InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
			CacheWrite5m: u.CacheWrite5m, CacheWrite1h: u.CacheWrite1h, CacheRead: u.CacheRead,
			CostUSD: float64(u.CostMicroUSD) / 1e6, UnpricedRequests: u.UnpricedRequests,
			RefusedRequests: u.RefusedRequests, FailedRequests: u.FailedRequests},
		EstimatedOutput: u.EstimatedRequests > 0, TTFBMillis: r.TTFBMillis, DurationMillis: r.DurationMillis,
		Client: r.Client, Sidecar: r.Sidecar, Session: r.SessionHash, Error: r.ErrorKind, Moved: r.Moved,
	}
}
