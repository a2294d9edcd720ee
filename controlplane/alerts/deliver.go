package alerts

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
)

// ErrUnknownAlert is Test's answer for a name no alert block has.
var ErrUnknownAlert = errors.New("no alert block of that name")

// deliverDue attempts every message that is due.
func (s *Service) deliverDue(ctx context.Context) error {
	due, err := s.out.dueMessages(ctx, s.opts.Now(), 50)
	if err != nil {
		return err
	}
	alerts := s.opts.Alerts()
	for i := range due {
		if ctx.Err() != nil || !s.keepLock(ctx) {
			return nil
		}
		if err := s.attempt(ctx, alerts, &due[i]); err != nil {
			return err
		}
	}
	return nil
}

// keepLock renews the lease before a send (a slow destination must not let it lapse and
// another control plane send the same message); false when the lock was lost. A Step run
// without Run (tests) holds no lock and goes on.
func (s *Service) keepLock(ctx context.Context) bool {
	if s.lock == nil {
		return true
	}
	s.lock = s.hold(ctx, s.lock)
	s.leader.Store(s.lock != nil)
	return s.lock != nil
}

// attempt sends one message and records the outcome: sent; pending again after a backoff;
// or failed (undeliverable) after MaxAttempts or when its alert block is gone. The first
// attempt closes the message to further events and starts its pair's cooldown.
func (s *Service) attempt(ctx context.Context, alerts map[string]config.Alert, m *Message) error {
	now := s.opts.Now()
	first := m.Attempts == 0
	a, ok := alerts[m.Alert]
	var err error
	if !ok {
		err = fmt.Errorf("alert block %q is no longer in the configuration", m.Alert)
		m.Attempts = s.opts.MaxAttempts - 1
	} else {
		err = s.sendMessage(ctx, a, m, now)
	}
	m.Attempts++
	s.judge(m, err, now)
	pair := pairKey(m.Alert, m.Event, m.Resolved)
	k := s.out.keys
	return s.out.save(ctx, []Message{*m}, func(p redis.Pipeliner) {
		if first {
			p.HSet(ctx, k.AlertsLastSent(), pair, strconv.FormatInt(now.UnixMilli(), 10))
			// EVAL, not EVALSHA: a transaction cannot fall back when the script is not cached.
			closeOpen.Eval(ctx, p, []string{k.AlertsOpen()}, pair, m.ID)
		}
	})
}

// judge records an attempt's outcome in m, logs it and counts it.
func (s *Service) judge(m *Message, err error, now time.Time) {
	if err == nil {
		t := now.UTC()
		m.Status, m.SentAt, m.LastError = StatusSent, &t, ""
		s.sent.With(m.Alert).Inc()
		s.log.Info("alert sent", "alert", m.Alert, "event", m.Event, "resolved", m.Resolved, "events", len(m.Events), "id", m.ID, "attempts", m.Attempts)
		return
	}
	m.LastError = err.Error()
	if m.Attempts >= s.opts.MaxAttempts {
		m.Status = StatusFailed
		s.failed.With(m.Alert, "undeliverable").Inc()
		s.log.Error("alert undeliverable; kept for claude-relay admin alerts", "alert", m.Alert, "event", m.Event, "id", m.ID, "attempts", m.Attempts, "error", err)
		return
	}
	m.Due = now.Add(s.backoff(m.Attempts)).UTC()
	s.failed.With(m.Alert, "retry").Inc()
	s.log.Warn("alert not delivered; will retry", "alert", m.Alert, "event", m.Event, "id", m.ID, "attempts", m.Attempts, "retry_at", m.Due, "error", err)
}

// closeOpen removes a pair's open message if it is still the given one.
var closeOpen = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`)

// backoff is the wait after attempt number n (1-based): RetryBase·2^(n-1), at most RetryMax.
func (s *Service) backoff(n int) time.Duration {
	d := s.opts.RetryBase
	for i := 1; i < n && d < s.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, s.opts.RetryMax)
}

// sendMessage formats and posts m to the alert's destination.
func (s *Service) sendMessage(ctx context.Context, a config.Alert, m *Message, now time.Time) error {
	sec, err := resolve(a, s.opts.Lookup)
	if err != nil {
		return err
	}
	req, err := format(a, sec, m, now)
	if err != nil {
		return err
	}
	return send(ctx, s.opts.Client, a.Kind, req)
}

// Test sends a test message to the named alert block now, and records it (sent, or failed
// with the error) where `admin alerts` lists messages. A failed test is not retried.
func (s *Service) Test(ctx context.Context, name string) (Message, error) {
	a, ok := s.opts.Alerts()[name]
	if !ok {
		return Message{}, fmt.Errorf("alert %q: %w", name, ErrUnknownAlert)
	}
	now := s.opts.Now()
	e := Event{Name: config.EventTest, Severity: config.SeverityInfo, Subject: name,
		Summary: "a test message from claude-relay admin alerts test: this destination works", Time: now.UTC()}
	m := Message{ID: newMessageID(), Alert: name, Event: config.EventTest, Severity: config.SeverityInfo,
		Created: now.UTC(), Due: now.UTC(), Status: StatusPending}
	m.add(e)
	err := s.sendMessage(ctx, a, &m, now)
	m.Attempts = 1
	if err == nil {
		t := now.UTC()
		m.Status, m.SentAt = StatusSent, &t
		s.sent.With(name).Inc()
	} else {
		m.Status, m.LastError = StatusFailed, err.Error()
		s.failed.With(name, "undeliverable").Inc()
	}
	if serr := s.out.save(ctx, []Message{m}, nil); serr != nil {
		return m, serr
	}
	return m, nil
}
