package alerts

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/store"
)

// Defaults of Options.
const (
	DefaultTick        = time.Second
	DefaultGather      = time.Second
	DefaultRetryBase   = 2 * time.Second
	DefaultRetryMax    = 5 * time.Minute
	DefaultMaxAttempts = 10
	DefaultLease       = 15 * time.Second
	DefaultSendTimeout = 10 * time.Second
	// lockName is the store lock one control plane holds to observe and deliver.
	lockName = "alerts-delivery"
)

// Options configures a Service.
type Options struct {
	// Store holds the outbox and the lock. Required.
	Store *store.Store
	// Alerts returns the alert blocks of the configuration being served. Required.
	Alerts func() map[string]config.Alert
	// Lookup reads secret fields; nil means os.LookupEnv.
	Lookup func(string) (string, bool)
	// Sources are observed by the control plane holding the lock, each at its own period.
	Sources []Source
	// Logger; nil means no logging.
	Logger hclog.Logger
	// Metrics gets claude_relay_alerts_sent_total, _failed_total and _pending; nil means a
	// private registry.
	Metrics *metrics.Registry
	// Client sends messages; nil means one with a DefaultSendTimeout timeout.
	Client *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Tick is how often the lock holder observes and delivers (DefaultTick).
	Tick time.Duration
	// Gather is how long the first event of a burst waits for others (DefaultGather), so
	// that a burst seen within it becomes one message.
	Gather time.Duration
	// RetryBase doubles after each failed attempt up to RetryMax; after MaxAttempts
	// attempts a message is undeliverable (kept, status failed).
	RetryBase, RetryMax time.Duration
	MaxAttempts         int
	// Lease bounds how long a vanished lock holder blocks the others (DefaultLease).
	Lease time.Duration
}

// Source is one kind of condition the lock holder observes.
type Source struct {
	// Name appears in logs.
	Name string
	// Every is how often it is observed.
	Every time.Duration
	// Observe raises and clears conditions through the outbox.
	Observe func(ctx context.Context, o *Outbox) error
}

// Service observes conditions, routes their events into messages and delivers them. Every
// control plane runs one; the one holding the store lock does the observing and delivery,
// any may record events (Outbox.Raise). It is safe for concurrent use.
type Service struct {
	opts    Options
	out     *Outbox
	log     hclog.Logger
	sent    *metrics.CounterVec
	failed  *metrics.CounterVec
	pending atomic.Int64
	leader  atomic.Bool
	lastRun map[string]time.Time // by source name; only the Run goroutine touches it
	lock    *store.Lock          // held by Run; only the Run goroutine touches it
}

// New builds a Service.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Alerts == nil {
		return nil, errors.New("alerts: a store and the alert configuration are required")
	}
	if opts.Lookup == nil {
		opts.Lookup = os.LookupEnv
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Tick = cmp.Or(opts.Tick, DefaultTick)
	opts.Gather = cmp.Or(opts.Gather, DefaultGather)
	opts.RetryBase = cmp.Or(opts.RetryBase, DefaultRetryBase)
	opts.RetryMax = cmp.Or(opts.RetryMax, DefaultRetryMax)
	opts.MaxAttempts = cmp.Or(opts.MaxAttempts, DefaultMaxAttempts)
	opts.Lease = cmp.Or(opts.Lease, DefaultLease)
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: DefaultSendTimeout}
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewRegistry()
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Service{
		opts:    opts,
		out:     NewOutbox(opts.Store, opts.Now),
		log:     log.Named("alerts"),
		lastRun: make(map[string]time.Time),
	}
	s.sent = opts.Metrics.Counter("claude_relay_alerts_sent_total", "Alert messages a destination accepted, by alert block.", "alert")
	s.failed = opts.Metrics.Counter("claude_relay_alerts_failed_total", "Failed attempts to deliver an alert message, by alert block and outcome: retry (tried again later) or undeliverable (given up; kept for admin alerts).", "alert", "outcome")
	opts.Metrics.GaugeFunc("claude_relay_alerts_pending", "Alert messages waiting to be sent (gathering, due or retrying), as the control plane last counted.", func() float64 {
		return float64(s.pending.Load())
	})
	return s, nil
}

// Outbox is where events are recorded.
func (s *Service) Outbox() *Outbox { return s.out }

// Leader reports whether this control plane holds the alerts lock.
func (s *Service) Leader() bool { return s.leader.Load() }

// Run takes the lock when it is free and, while holding it, observes and delivers every
// Tick, until ctx ends. The lock is renewed each tick and released at the end.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Tick)
	defer t.Stop()
	defer func() {
		if s.lock != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = s.lock.Release(rctx)
			s.lock = nil
		}
		s.leader.Store(false)
	}()
	for {
		s.lock = s.hold(ctx, s.lock)
		s.leader.Store(s.lock != nil)
		if s.lock != nil {
			s.Step(ctx)
		}
		if n, err := s.out.Pending(ctx); err == nil {
			s.pending.Store(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// hold renews a held lock or tries to take a free one; nil when this process does not hold it.
func (s *Service) hold(ctx context.Context, lock *store.Lock) *store.Lock {
	if lock != nil {
		ok, err := lock.Extend(ctx, s.opts.Lease)
		if err == nil && ok {
			return lock
		}
		if ctx.Err() == nil {
			s.log.Warn("alerts lock lost; another control plane may deliver now", "error", err)
		}
		return nil
	}
	l, ok, err := s.opts.Store.TryLock(ctx, lockName, s.opts.Lease)
	if err != nil || !ok {
		return nil
	}
	s.log.Debug("this control plane observes and delivers alerts")
	return l
}

// Step is one pass of the lock holder: observe the sources that are due, route new events
// into messages, send the messages that are due.
func (s *Service) Step(ctx context.Context) {
	now := s.opts.Now()
	for _, src := range s.opts.Sources {
		if last, ok := s.lastRun[src.Name]; ok && now.Sub(last) < src.Every {
			continue
		}
		s.lastRun[src.Name] = now
		if err := src.Observe(ctx, s.out); err != nil && ctx.Err() == nil {
			s.log.Warn("cannot observe alert conditions", "source", src.Name, "error", err)
		}
	}
	if err := s.route(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("cannot route alert events", "error", err)
	}
	if err := s.deliverDue(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("cannot deliver alerts", "error", err)
	}
}

// route turns the events after the cursor into messages: an event joins the message its
// (alert, event) pair is gathering, or opens one due after the gather time, or after the
// pair's cooldown if a message went out within it. Messages, the open index and the cursor
// are written in one transaction, so a crash routes an event again, never twice.
func (s *Service) route(ctx context.Context) error {
	k := s.out.keys
	cursor, err := s.out.rdb.Get(ctx, k.AlertsCursor()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("read cursor: %w", err)
	}
	events, err := s.out.Events(ctx, cursor, 500)
	if err != nil || len(events) == 0 {
		return err
	}
	open, err := s.out.rdb.HGetAll(ctx, k.AlertsOpen()).Result()
	if err != nil {
		return fmt.Errorf("read open messages: %w", err)
	}
	last, err := s.out.rdb.HGetAll(ctx, k.AlertsLastSent()).Result()
	if err != nil {
		return fmt.Errorf("read cooldowns: %w", err)
	}
	r := router{s: s, alerts: s.opts.Alerts(), open: open, last: last, msgs: map[string]*Message{}, now: s.opts.Now()}
	for _, e := range events {
		if err := r.add(ctx, e); err != nil {
			return err
		}
	}
	msgs := make([]Message, 0, len(r.msgs))
	for _, m := range r.msgs {
		msgs = append(msgs, *m)
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].ID < msgs[j].ID })
	err = s.out.save(ctx, msgs, func(p redis.Pipeliner) {
		for pair, id := range r.opened {
			p.HSet(ctx, k.AlertsOpen(), pair, id)
		}
		p.Set(ctx, k.AlertsCursor(), events[len(events)-1].ID, 0)
	})
	if err != nil {
		return err
	}
	return s.out.trim(ctx)
}

// router is one routing pass's working state.
type router struct {
	s      *Service
	alerts map[string]config.Alert
	open   map[string]string // pair → message id
	last   map[string]string // pair → unix ms
	msgs   map[string]*Message
	opened map[string]string
	now    time.Time
}

func (r *router) add(ctx context.Context, e Event) error {
	names := make([]string, 0, len(r.alerts))
	for name := range r.alerts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if a := r.alerts[name]; !a.Wants(e.Name, e.Severity) || e.Threshold != 0 && e.Threshold != a.WindowThreshold {
			continue
		}
		m, err := r.message(ctx, name, r.alerts[name], e)
		if err != nil {
			return err
		}
		m.add(e)
	}
	return nil
}

// message finds or opens the message gathering events of e's pair for the alert.
func (r *router) message(ctx context.Context, name string, a config.Alert, e Event) (*Message, error) {
	pair := pairKey(name, e.Name, e.Resolved)
	if id, ok := r.open[pair]; ok {
		if m, ok := r.msgs[id]; ok {
			return m, nil
		}
		got, err := r.s.out.load(ctx, []string{id})
		if err != nil {
			return nil, err
		}
		if len(got) == 1 && got[0].Status == StatusPending && got[0].Attempts == 0 {
			m := got[0]
			r.msgs[id] = &m
			return &m, nil
		}
	}
	due := r.now.Add(r.s.opts.Gather)
	if ms, ok := r.last[pair]; ok {
		if cd, err := time.ParseDuration(a.Cooldown); err == nil {
			var sent int64
			fmt.Sscan(ms, &sent)
			if until := time.UnixMilli(sent).Add(cd); until.After(due) {
				due = until
			}
		}
	}
	m := &Message{ID: newMessageID(), Alert: name, Event: e.Name, Severity: e.Severity, Resolved: e.Resolved,
		Created: r.now.UTC(), Due: due.UTC(), Status: StatusPending}
	r.msgs[m.ID] = m
	r.open[pair] = m.ID
	if r.opened == nil {
		r.opened = map[string]string{}
	}
	r.opened[pair] = m.ID
	return m, nil
}
