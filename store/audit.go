package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// AuditMaxLen is about how many admin actions the audit stream keeps (XADD MAXLEN ~).
const AuditMaxLen = 10000

// AuditEntry is one admin action: who did what to which object, when and from where.
type AuditEntry struct {
	// ID is the stream entry id, usable as a paging cursor.
	ID     string            `json:"id"`
	At     time.Time         `json:"at"`
	Who    string            `json:"who"`
	Action string            `json:"action"`
	Target string            `json:"target,omitempty"`
	Remote string            `json:"remote,omitempty"`
	Detail map[string]string `json:"detail,omitempty"`
}

// AppendAudit records an admin action. Callers must never put a secret in it.
func (s *Store) AppendAudit(ctx context.Context, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = s.now()
	}
	detail := ""
	if len(e.Detail) > 0 {
		b, err := json.Marshal(e.Detail)
		if err != nil {
			return fmt.Errorf("append audit: %w", err)
		}
		detail = string(b)
	}
	err := s.rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: s.keys.AdminAudit(),
		MaxLen: AuditMaxLen,
		Approx: true,
		Values: []any{"at", formatTime(e.At), "who", e.Who, "action", e.Action, "target", e.Target, "remote", e.Remote, "detail", detail},
	}).Err()
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// ListAudit returns up to limit admin actions, newest first, older than the entry id before
// ("" for the newest), and the cursor of the next page ("" at the end).
func (s *Store) ListAudit(ctx context.Context, before string, limit int) ([]AuditEntry, string, error) {
	if limit <= 0 || limit > MaxPageLimit {
		return nil, "", fmt.Errorf("list audit: limit %d must be 1 to %d: %w", limit, MaxPageLimit, ErrInvalid)
	}
	end := "+"
	if before != "" {
		prev, ok := previousStreamID(before)
		if !ok {
			return nil, "", fmt.Errorf("list audit: malformed cursor: %w", ErrInvalid)
		}
		if prev == "" {
			return nil, "", nil
		}
		end = prev
	}
	msgs, err := s.rdb.XRevRangeN(ctx, s.keys.AdminAudit(), end, "-", int64(limit)).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list audit: %w", err)
	}
	out := make([]AuditEntry, 0, len(msgs))
	for _, m := range msgs {
		e := AuditEntry{ID: m.ID}
		str := func(k string) string { v, _ := m.Values[k].(string); return v }
		e.Who, e.Action, e.Target, e.Remote = str("who"), str("action"), str("target"), str("remote")
		if e.At, err = parseTime(str("at")); err != nil {
			return nil, "", fmt.Errorf("list audit entry %s: %w", m.ID, err)
		}
		if d := str("detail"); d != "" {
			if err := json.Unmarshal([]byte(d), &e.Detail); err != nil {
				return nil, "", fmt.Errorf("list audit entry %s detail: %w", m.ID, err)
			}
		}
		out = append(out, e)
	}
	next := ""
	if len(msgs) == limit {
		next = msgs[len(msgs)-1].ID
	}
	return out, next, nil
}

// previousStreamID returns the greatest stream id below id ("" when id is the smallest), so
// paging works on Redis before 6.2 (no exclusive ranges).
func previousStreamID(id string) (string, bool) {
	msPart, seqPart, ok := strings.Cut(id, "-")
	if !ok {
		return "", false
	}
	ms, err1 := strconv.ParseUint(msPart, 10, 64)
	seq, err2 := strconv.ParseUint(seqPart, 10, 64)
	if errors.Join(err1, err2) != nil {
		return "", false
	}
	switch {
	case seq > 0:
		return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq-1, 10), true
	case ms > 0:
		return strconv.FormatUint(ms-1, 10) + "-18446744073709551615", true
	}
	return "", true
}
