package alerts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/store"
)

// Outbox bounds.
const (
	// streamLen caps the event stream (approximately).
	streamLen = 10000
	// keptMessages is how many messages `admin alerts` can list.
	keptMessages = 500
)

func severityRank(s string) int { return config.SeverityRank(s) }

// Outbox records events and messages in Redis. Every key carries the {alerts} hash tag, so
// its scripts and transactions run on Redis Cluster. It is safe for concurrent use.
type Outbox struct {
	rdb  redis.UniversalClient
	keys store.Schema
	now  func() time.Time
}

// NewOutbox returns the outbox in st's Redis; now nil means time.Now.
func NewOutbox(st *store.Store, now func() time.Time) *Outbox {
	if now == nil {
		now = time.Now
	}
	return &Outbox{rdb: st.Client(), keys: st.Schema(), now: now}
}

// raiseScript records a condition's event once: a raise when the condition is not already
// raised, an all-clear when it is. KEYS: state, events. ARGV: condition, event JSON,
// resolved (0/1), stream length. Returns the stream id, or false when nothing changed.
var raiseScript = redis.NewScript(`
local changed
if ARGV[3] == '1' then
  changed = redis.call('HDEL', KEYS[1], ARGV[1])
else
  changed = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
end
if changed == 0 then
  return false
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'e', ARGV[2])
`)

// Raise records e unless its condition (name and subject) is already raised. It reports
// whether the event entered the stream.
func (o *Outbox) Raise(ctx context.Context, e Event) (bool, error) {
	e.Resolved = false
	return o.record(ctx, e)
}

// Clear records e as the all-clear of its condition if the condition is raised. The
// all-clear takes the raise's severity.
func (o *Outbox) Clear(ctx context.Context, e Event) (bool, error) {
	e.Resolved = true
	if raw, err := o.rdb.HGet(ctx, o.keys.AlertsState(), e.condition()).Result(); err == nil {
		var raised Event
		if json.Unmarshal([]byte(raw), &raised) == nil && raised.Severity != "" {
			e.Severity = raised.Severity
		}
	} else if errors.Is(err, redis.Nil) {
		return false, nil
	} else {
		return false, fmt.Errorf("alerts: read condition: %w", err)
	}
	return o.record(ctx, e)
}

func (o *Outbox) record(ctx context.Context, e Event) (bool, error) {
	if e.Time.IsZero() {
		e.Time = o.now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("alerts: encode event: %w", err)
	}
	resolved := "0"
	if e.Resolved {
		resolved = "1"
	}
	err = raiseScript.Run(ctx, o.rdb, []string{o.keys.AlertsState(), o.keys.AlertsEvents()},
		e.condition(), b, resolved, streamLen).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("alerts: record %s: %w", e.Name, err)
	}
	return true, nil
}

// Raised returns the conditions raised now, keyed "<event>|<subject>".
func (o *Outbox) Raised(ctx context.Context) (map[string]Event, error) {
	m, err := o.rdb.HGetAll(ctx, o.keys.AlertsState()).Result()
	if err != nil {
		return nil, fmt.Errorf("alerts: read conditions: %w", err)
	}
	out := make(map[string]Event, len(m))
	for k, v := range m {
		var e Event
		if json.Unmarshal([]byte(v), &e) == nil {
			out[k] = e
		}
	}
	return out, nil
}

// Events returns up to n events recorded after the stream id after ("" for the start).
func (o *Outbox) Events(ctx context.Context, after string, n int64) ([]Event, error) {
	start := "-"
	if after != "" {
		start = "(" + after
	}
	msgs, err := o.rdb.XRangeN(ctx, o.keys.AlertsEvents(), start, "+", n).Result()
	if err != nil {
		return nil, fmt.Errorf("alerts: read events: %w", err)
	}
	return decodeEntries(msgs), nil
}

// RecentEvents returns the newest n events, newest first.
func (o *Outbox) RecentEvents(ctx context.Context, n int64) ([]Event, error) {
	msgs, err := o.rdb.XRevRangeN(ctx, o.keys.AlertsEvents(), "+", "-", n).Result()
	if err != nil {
		return nil, fmt.Errorf("alerts: read events: %w", err)
	}
	return decodeEntries(msgs), nil
}

func decodeEntries(msgs []redis.XMessage) []Event {
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		raw, _ := m.Values["e"].(string)
		var e Event
		if json.Unmarshal([]byte(raw), &e) != nil {
			continue
		}
		e.ID = m.ID
		out = append(out, e)
	}
	return out
}

// Messages returns the newest n messages, newest first.
func (o *Outbox) Messages(ctx context.Context, n int64) ([]Message, error) {
	ids, err := o.rdb.ZRevRange(ctx, o.keys.AlertsRecent(), 0, n-1).Result()
	if err != nil {
		return nil, fmt.Errorf("alerts: list messages: %w", err)
	}
	return o.load(ctx, ids)
}

// Pending counts the messages still to send.
func (o *Outbox) Pending(ctx context.Context) (int64, error) {
	n, err := o.rdb.ZCard(ctx, o.keys.AlertsDue()).Result()
	if err != nil {
		return 0, fmt.Errorf("alerts: count pending: %w", err)
	}
	return n, nil
}

// load reads messages by id, skipping any that vanished.
func (o *Outbox) load(ctx context.Context, ids []string) ([]Message, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	vals, err := o.rdb.HMGet(ctx, o.keys.AlertsMessages(), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("alerts: read messages: %w", err)
	}
	out := make([]Message, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		var m Message
		if json.Unmarshal([]byte(s), &m) == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

// dueMessages returns up to n pending messages due at now, earliest first.
func (o *Outbox) dueMessages(ctx context.Context, now time.Time, n int64) ([]Message, error) {
	ids, err := o.rdb.ZRangeByScore(ctx, o.keys.AlertsDue(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: n,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("alerts: read due messages: %w", err)
	}
	return o.load(ctx, ids)
}

// save writes messages (and their place in the due set) in one transaction, with extra
// writes of the caller's.
func (o *Outbox) save(ctx context.Context, msgs []Message, extra func(redis.Pipeliner)) error {
	_, err := o.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range msgs {
			b, err := json.Marshal(m)
			if err != nil {
				return fmt.Errorf("encode message: %w", err)
			}
			p.HSet(ctx, o.keys.AlertsMessages(), m.ID, b)
			p.ZAddNX(ctx, o.keys.AlertsRecent(), redis.Z{Score: float64(m.Created.UnixMilli()), Member: m.ID})
			if m.Status == StatusPending {
				p.ZAdd(ctx, o.keys.AlertsDue(), redis.Z{Score: float64(m.Due.UnixMilli()), Member: m.ID})
			} else {
				p.ZRem(ctx, o.keys.AlertsDue(), m.ID)
			}
		}
		if extra != nil {
			extra(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("alerts: save messages: %w", err)
	}
	return nil
}

// trim drops the messages beyond the newest keptMessages, except those still pending.
func (o *Outbox) trim(ctx context.Context) error {
	old, err := o.rdb.ZRange(ctx, o.keys.AlertsRecent(), 0, -keptMessages-1).Result()
	if err != nil || len(old) == 0 {
		return err
	}
	pending, err := o.rdb.ZMScore(ctx, o.keys.AlertsDue(), old...).Result()
	if err != nil {
		return fmt.Errorf("alerts: trim: %w", err)
	}
	drop := slices.DeleteFunc(slices.Clone(old), func(id string) bool {
		i := slices.Index(old, id)
		return pending[i] != 0
	})
	if len(drop) == 0 {
		return nil
	}
	_, err = o.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, o.keys.AlertsMessages(), drop...)
		p.ZRem(ctx, o.keys.AlertsRecent(), toAny(drop)...)
		return nil
	})
	return err
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// newMessageID is a Standard Webhooks message id: "msg_" and 24 hex digits.
func newMessageID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return "msg_" + hex.EncodeToString(b)
}
