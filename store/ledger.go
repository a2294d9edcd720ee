package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// LedgerSettings turn the request ledger on: one record per relayed request, kept Retention
// after its UTC day and at most MaxPerDay records a day (the oldest trimmed first).
type LedgerSettings struct {
	Retention time.Duration
	MaxPerDay int64
}

// SetLedger turns the request ledger on with settings, or off with nil: records written from
// now on follow them.
// Unset bounds take DefaultLedgerRetention and DefaultLedgerMaxPerDay.
func (s *Store) SetLedger(settings *LedgerSettings) {
	if settings != nil {
		c := *settings
		if c.Retention <= 0 {
			c.Retention = DefaultLedgerRetention
		}
		if c.MaxPerDay <= 0 {
			c.MaxPerDay = DefaultLedgerMaxPerDay
		}
		settings = &c
	}
	s.ledger.Store(settings)
}

// Default ledger bounds when the usage block turns the ledger on without them.
const (
	DefaultLedgerRetention = 7 * 24 * time.Hour
	DefaultLedgerMaxPerDay = 1_000_000
)

// LedgerEntry is what a usage record adds for the request ledger, beyond its key, account,
// model, time and counts. Metadata only: never a prompt or an answer.
type LedgerEntry struct {
	Route  string `json:"route,omitempty"`
	Status int    `json:"status,omitempty"`
	// TTFBMillis is the time from the request's arrival to the upstream's answer headers.
	TTFBMillis     int64  `json:"ttfb_ms,omitempty"`
	DurationMillis int64  `json:"duration_ms,omitempty"`
	Client         string `json:"client,omitempty"`
	Sidecar        string `json:"sidecar,omitempty"`
	// SessionHash is the conversation's hash (sched.SessionKey), never the raw session id.
	SessionHash string `json:"session,omitempty"`
	// ErrorKind names how the request ended when not well (see the README's Request
	// ledger): a refusal ("key_invalid", "limit_requests_per_minute", …) or a failure
	// ("upstream_529", "client_gone", …); the record's RefusedRequests or FailedRequests says
	// which.
	ErrorKind string `json:"error,omitempty"`
	// Moved says why the conversation is on another account than the one it was bound to
	// ("park", "cap" or "failover"), on its first request there: that request writes the
	// prompt cache again (its cache-write tokens are the re-warm cost).
	Moved string `json:"moved,omitempty"`
}

// ledgerFields names the fields of a ledger stream entry, in the order ledgerValues gives
// them. Every entry has them all, so Redis stores the names once per stream node.
var ledgerFields = [...]string{"t", "key", "acct", "model", "route", "status", "in", "out",
	"cw5m", "cw1h", "cr", "cost", "unpriced", "estimated", "ttfb", "dur", "client", "sidecar", "session", "err",
	"refused", "failed", "moved"}

func ledgerValues(r UsageRecord, at time.Time, model string) []any {
	e, u := r.Ledger, r.Usage
	return []any{at.UnixMilli(), r.KeyID, r.AccountID, model, e.Route, e.Status, u.InputTokens, u.OutputTokens,
		u.CacheWrite5m, u.CacheWrite1h, u.CacheRead, u.CostMicroUSD, u.UnpricedRequests, u.EstimatedRequests,
		e.TTFBMillis, e.DurationMillis, e.Client, e.Sidecar, e.SessionHash, e.ErrorKind,
		u.RefusedRequests, u.FailedRequests, e.Moved}
}

// LedgerRecord is one request as the ledger answers it.
type LedgerRecord struct {
	ID      string // the stream entry id, unique within its day
	At      time.Time
	KeyID   string
	Owner   string // the key's owner now (resolved when read)
	Account string
	Model   string
	Usage   Usage // Requests is 1
	LedgerEntry
}

// LedgerQuery asks for ledger records newest first.
type LedgerQuery struct {
	From, To              time.Time // To excluded
	KeyID, Account, Model string    // "" matches any
	StatusClass           int       // 2 for 2xx … 5 for 5xx; 0 matches any
	Limit                 int       // 1..MaxLedgerLimit
	Cursor                string    // "" for the first page, else a page's Next
}

// LedgerPage is one page of records and the cursor of the next ("" at the end).
type LedgerPage struct {
	Records []LedgerRecord
	Next    string
}

// Ledger read bounds: records per page, entries examined per page (a filter matching few
// records returns a short page and a cursor rather than reading a whole day), days per query.
const (
	MaxLedgerLimit = 1000
	maxLedgerScan  = 20000
	maxLedgerDays  = 400
	ledgerChunk    = 500
)

// ErrLedgerQuery means a ledger query cannot be answered as asked.
var ErrLedgerQuery = errors.New("invalid ledger query")

// ledgerCursor is where a page stopped: the day and the last entry id returned or examined.
type ledgerCursor struct {
	day time.Time
	id  string
}

func (c ledgerCursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(dayString(c.day) + "/" + c.id))
}

func decodeLedgerCursor(s string) (ledgerCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ledgerCursor{}, fmt.Errorf("%w: cursor is not one this API gave", ErrLedgerQuery)
	}
	day, id, ok := strings.Cut(string(b), "/")
	d, err := time.Parse(time.DateOnly, day)
	if !ok || err != nil || !validStreamID(id) {
		return ledgerCursor{}, fmt.Errorf("%w: cursor is not one this API gave", ErrLedgerQuery)
	}
	return ledgerCursor{day: d, id: id}, nil
}

func validStreamID(id string) bool {
	ms, seq, ok := strings.Cut(id, "-")
	_, e1 := strconv.ParseUint(ms, 10, 64)
	_, e2 := strconv.ParseUint(seq, 10, 64)
	return ok && e1 == nil && e2 == nil
}

// Ledger reads one page of the request ledger, newest first (by when each record was
// written; a day's records all come before the previous day's), filtered by q.
func (s *Store) Ledger(ctx context.Context, q LedgerQuery) (*LedgerPage, error) {
	if q.Limit < 1 || q.Limit > MaxLedgerLimit {
		return nil, fmt.Errorf("%w: limit must be 1 to %d", ErrLedgerQuery, MaxLedgerLimit)
	}
	if !q.From.Before(q.To) {
		return nil, fmt.Errorf("%w: from must be before to", ErrLedgerQuery)
	}
	first := q.From.UTC().Truncate(24 * time.Hour)
	cur := ledgerCursor{day: q.To.Add(-time.Nanosecond).UTC().Truncate(24 * time.Hour), id: "+"}
	if q.Cursor != "" {
		c, err := decodeLedgerCursor(q.Cursor)
		if err != nil {
			return nil, err
		}
		cur = c
	}
	page := &LedgerPage{}
	scanned := 0
	for days := 0; !cur.day.Before(first); days++ {
		if days == maxLedgerDays {
			return nil, fmt.Errorf("%w: more than %d days asked", ErrLedgerQuery, maxLedgerDays)
		}
		done, err := s.ledgerDay(ctx, q, &cur, page, &scanned)
		if err != nil {
			return nil, err
		}
		if !done {
			page.Next = cur.encode()
			break
		}
		cur = ledgerCursor{day: cur.day.Add(-24 * time.Hour), id: "+"}
	}
	return page, s.ledgerOwners(ctx, page.Records)
}

// ledgerDay reads cur's day from just below cur.id into page until the day ends (done), the
// page is full or the scan budget is spent; cur.id follows the last entry examined.
func (s *Store) ledgerDay(ctx context.Context, q LedgerQuery, cur *ledgerCursor, page *LedgerPage, scanned *int) (bool, error) {
	key := s.keys.LedgerDay(cur.day)
	for {
		end := cur.id
		if end != "+" {
			end = "(" + end
		}
		msgs, err := s.rdb.XRevRangeN(ctx, key, end, "-", ledgerChunk).Result()
		if err != nil {
			return false, fmt.Errorf("ledger %s: %w", dayString(cur.day), err)
		}
		for _, m := range msgs {
			cur.id = m.ID
			*scanned++
			if rec, ok := parseLedgerEntry(m); ok && q.matches(rec) {
				page.Records = append(page.Records, rec)
				if len(page.Records) == q.Limit {
					return false, nil
				}
			}
			if *scanned >= maxLedgerScan {
				return false, nil
			}
		}
		if len(msgs) < ledgerChunk {
			return true, nil
		}
	}
}

func (q LedgerQuery) matches(r LedgerRecord) bool {
	return !r.At.Before(q.From) && r.At.Before(q.To) &&
		(q.KeyID == "" || r.KeyID == q.KeyID) && (q.Account == "" || r.Account == q.Account) &&
		(q.Model == "" || r.Model == q.Model) && (q.StatusClass == 0 || r.Status/100 == q.StatusClass)
}

// parseLedgerEntry reads a stream entry; one it cannot read (a newer writer's, damaged) is
// skipped rather than failing the page.
func parseLedgerEntry(m redis.XMessage) (LedgerRecord, bool) {
	str := func(f string) string { v, _ := m.Values[f].(string); return v }
	num := func(f string) int64 { n, _ := strconv.ParseInt(str(f), 10, 64); return n }
	ms, err := strconv.ParseInt(str("t"), 10, 64)
	if err != nil {
		return LedgerRecord{}, false
	}
	return LedgerRecord{
		ID: m.ID, At: time.UnixMilli(ms).UTC(), KeyID: str("key"), Account: str("acct"), Model: str("model"),
		Usage: Usage{Requests: 1, InputTokens: num("in"), OutputTokens: num("out"), CacheWrite5m: num("cw5m"),
			CacheWrite1h: num("cw1h"), CacheRead: num("cr"), CostMicroUSD: num("cost"),
			UnpricedRequests: num("unpriced"), EstimatedRequests: num("estimated"),
			RefusedRequests: num("refused"), FailedRequests: num("failed")},
		LedgerEntry: LedgerEntry{Route: str("route"), Status: int(num("status")), TTFBMillis: num("ttfb"),
			DurationMillis: num("dur"), Client: str("client"), Sidecar: str("sidecar"),
			SessionHash: str("session"), ErrorKind: str("err"), Moved: str("moved")},
	}, true
}

// ledgerOwners fills each record's owner with its key's owner now (one pipelined round trip).
func (s *Store) ledgerOwners(ctx context.Context, recs []LedgerRecord) error {
	var ids []string
	seen := map[string]bool{}
	for _, r := range recs {
		if r.KeyID != "" && !seen[r.KeyID] {
			seen[r.KeyID] = true
			ids = append(ids, r.KeyID)
		}
	}
	attrs, err := s.keyAttributes(ctx, ids, []string{GroupOwner})
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	for i := range recs {
		recs[i].Owner = attrs[recs[i].KeyID].owner
	}
	return nil
}
