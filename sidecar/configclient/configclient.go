// Package configclient keeps a sidecar's configuration in step with the control plane: long-poll, apply, ACK/NACK, and a last-known-good copy on disk.
package configclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/internal/atomicfile"
	"github.com/claude-relay/claude-relay/internal/health"
)

// Defaults of Options.
const (
	DefaultMinBackoff  = 250 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
	DefaultHealthEvery = 5 * time.Second
)

// Where a sidecar's applied snapshot came from, as Status.Source reports it.
const (
	SourceDisk         = "disk"
	SourceControlPlane = "control_plane"
)

// ErrNoDiskCopy means there is no saved snapshot to start from.
var ErrNoDiskCopy = errors.New("no saved configuration")

// Fetcher performs one long-poll. It returns nil (and no error) when the control plane had
// nothing newer before the wait ended.
type Fetcher interface {
	Fetch(ctx context.Context, req configapi.PollRequest) (*configapi.Envelope, error)
}

// FetcherFunc adapts a function (such as an in-process control plane's Poll) to Fetcher.
type FetcherFunc func(ctx context.Context, req configapi.PollRequest) (*configapi.Envelope, error)

// Fetch calls f.
func (f FetcherFunc) Fetch(ctx context.Context, req configapi.PollRequest) (*configapi.Envelope, error) {
	return f(ctx, req)
}

// Options configures a Client.
type Options struct {
	// Fetcher reaches the control plane (HTTPFetcher, or in-process). Required.
	Fetcher Fetcher
	// Apply compiles and swaps in a snapshot (sidecar.Server.Apply); an error is a NACK.
	// Required.
	Apply func(*config.Snapshot) error
	// ID and Addr identify this sidecar in the control plane's registry.
	ID, Addr string
	// ControlPlane describes the control plane in messages (its URL).
	ControlPlane string
	// StatePath is the file that keeps the last applied snapshot; "" keeps none.
	StatePath string
	// Wait is how long the control plane may hold a poll (default configapi.DefaultWait).
	Wait time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff after a failed poll.
	MinBackoff, MaxBackoff time.Duration
	// Health, when set, reports the sidecar's health; each poll carries it to the control
	// plane (sidecar.Server.Health).
	Health func(ctx context.Context) configapi.Health
	// HealthEvery is how often Health is checked while a poll waits: a component whose
	// status changed ends the poll early, so the control plane hears of it at once
	// (default 5s).
	HealthEvery time.Duration
	// Logger; nil means no logging.
	Logger hclog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// State, when set, is the client's state made beforehand with NewState from these
	// options, so that what reports it (the sidecar's /health, through State.HealthCheck)
	// can be built before the client that applies to it; nil makes one.
	State *State
}

// Status is what /health reports about the configuration channel.
type Status struct {
	// Epoch and Version name the applied snapshot; Version 0 means none.
	Epoch     string    `json:"epoch,omitempty"`
	Version   int64     `json:"version"`
	Source    string    `json:"source,omitempty"`
	AppliedAt time.Time `json:"applied_at,omitzero"`
	// ControlPlane is the control plane's address; Reachable says whether the last poll
	// reached it, and Since when that has been so.
	ControlPlane string    `json:"control_plane"`
	Reachable    bool      `json:"reachable"`
	Since        time.Time `json:"since"`
	// LastError is the last failed poll or refused snapshot; NackVersion names the refused
	// snapshot, if any.
	LastError   string `json:"last_error,omitempty"`
	NackVersion int64  `json:"nack_version,omitempty"`
}

// Client polls the control plane and applies what it gets. It is safe for concurrent use.
type Client struct {
	*State
	opts Options
	log  hclog.Logger
}

// State is what a Client knows about its channel: the applied snapshot, the last poll's
// outcome, the refused snapshot. It reports them (Status, HealthCheck) and is safe for
// concurrent use.
type State struct {
	controlPlane string
	statePath    string

	mu        sync.Mutex
	applied   *configapi.Envelope
	source    string
	appliedAt time.Time
	reachable bool
	since     time.Time
	contacted bool
	lastErr   string
	nackEpoch string
	nackVer   int64
	nackErr   string
}

// NewState returns the state of the client that New(opts) will make.
func NewState(opts Options) *State {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &State{controlPlane: opts.ControlPlane, statePath: opts.StatePath, since: now()}
}

// New validates opts and returns a client; call LoadDisk, then Run.
func New(opts Options) (*Client, error) {
	if opts.Fetcher == nil || opts.Apply == nil {
		return nil, errors.New("config client: a fetcher and an apply function are required")
	}
	if opts.Wait <= 0 {
		opts.Wait = configapi.DefaultWait
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.HealthEvery <= 0 {
		opts.HealthEvery = DefaultHealthEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if opts.State == nil {
		opts.State = NewState(opts)
	}
	return &Client{State: opts.State, opts: opts, log: log.Named("configclient")}, nil
}

// LoadDisk applies the saved snapshot, so the sidecar serves before (or without) the
// control plane. It returns an error wrapping ErrNoDiskCopy when there is none.
func (c *Client) LoadDisk() error {
	if c.opts.StatePath == "" {
		return ErrNoDiskCopy
	}
	b, err := os.ReadFile(c.opts.StatePath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w at %s", ErrNoDiskCopy, c.opts.StatePath)
	}
	if err != nil {
		return fmt.Errorf("read saved configuration: %w", err)
	}
	var env configapi.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("decode saved configuration %s: %w", c.opts.StatePath, err)
	}
	snap, err := env.Snapshot()
	if err == nil {
		err = c.opts.Apply(snap)
	}
	if err != nil {
		return fmt.Errorf("apply saved configuration %s: %w", c.opts.StatePath, err)
	}
	c.mu.Lock()
	c.applied, c.source, c.appliedAt = &env, SourceDisk, c.opts.Now()
	c.mu.Unlock()
	c.log.Info("configuration applied from the saved copy", "path", c.opts.StatePath, "epoch", env.Epoch, "version", env.Version)
	return nil
}

// Run polls until ctx ends. While the control plane is not known to be reachable (at start,
// after a failed poll) it polls without waiting, so that the control plane's return is
// known as soon as it answers, not when a long-poll ends.
func (c *Client) Run(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		req := c.pollRequest()
		if !c.isReachable() {
			req.Wait = 0
		}
		req.Health = c.health(ctx)
		env, interrupted, err := c.fetch(ctx, req)
		if ctx.Err() != nil {
			return
		}
		if interrupted {
			continue // the health report changed: poll again at once to send it
		}
		if err != nil {
			c.unreachable(err)
			if !sleep(ctx, c.backoff(failures)) {
				return
			}
			failures++
			continue
		}
		failures = 0
		c.reached()
		if env != nil {
			c.handle(env)
		}
	}
}

// health returns the sidecar's health report, or nil when there is no Health option.
func (c *Client) health(ctx context.Context) *configapi.Health {
	if c.opts.Health == nil {
		return nil
	}
	h := c.opts.Health(ctx)
	return &h
}

// fetch performs one poll. While a long-poll waits, the sidecar's health is checked every
// HealthEvery; when a component's status differs from the one the poll carries, the poll
// is abandoned (interrupted) so that the next one reports the change at once.
func (c *Client) fetch(ctx context.Context, req configapi.PollRequest) (env *configapi.Envelope, interrupted bool, err error) {
	if req.Health == nil || req.Wait == 0 {
		env, err = c.opts.Fetcher.Fetch(ctx, req)
		return env, false, err
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sent := req.Health.Statuses()
	var changed atomic.Bool
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		t := time.NewTicker(c.opts.HealthEvery)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
			now := c.opts.Health(pctx)
			if pctx.Err() == nil && !maps.Equal(now.Statuses(), sent) {
				changed.Store(true)
				cancel()
				return
			}
		}
	}()
	env, err = c.opts.Fetcher.Fetch(pctx, req)
	cancel()
	<-watched
	if err != nil && changed.Load() && ctx.Err() == nil {
		c.log.Debug("health changed while polling; reporting it now")
		return nil, true, nil
	}
	return env, false, err
}

// isReachable reports whether the last poll reached the control plane.
func (c *Client) isReachable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reachable
}

// PollOnce asks the control plane for what it has now, without waiting, and applies it.
// It returns the poll's error, or the apply error of a refused snapshot.
func (c *Client) PollOnce(ctx context.Context) error {
	req := c.pollRequest()
	req.Wait = 0
	req.Health = c.health(ctx)
	env, err := c.opts.Fetcher.Fetch(ctx, req)
	if err != nil {
		c.unreachable(err)
		return err
	}
	c.reached()
	if env == nil {
		return nil
	}
	c.handle(env)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nackVer == env.Version && c.nackEpoch == env.Epoch {
		return errors.New(c.lastErr)
	}
	return nil
}

// pollRequest reports what runs and what was refused.
func (c *Client) pollRequest() configapi.PollRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	req := configapi.PollRequest{
		SidecarID: c.opts.ID, Addr: c.opts.Addr, Wait: c.opts.Wait,
		NackEpoch: c.nackEpoch, NackVersion: c.nackVer, NackError: c.nackErr,
	}
	if c.applied != nil {
		req.Epoch, req.Version = c.applied.Epoch, c.applied.Version
	}
	return req
}

// backoff is the wait after n consecutive failures: exponential from MinBackoff, capped at
// MaxBackoff, with full jitter in its upper half.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.MinBackoff
	for i := 0; i < n && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.opts.MaxBackoff)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *Client) unreachable(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err.Error()
	if c.reachable || !c.contacted {
		c.log.Warn("control plane unreachable; serving the applied configuration", "control_plane", c.opts.ControlPlane, "version", c.versionLocked(), "error", err)
		if c.reachable {
			c.since = c.opts.Now()
		}
		c.contacted = true
	}
	c.reachable = false
}

func (c *Client) reached() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.reachable {
		c.log.Info("control plane reachable", "control_plane", c.opts.ControlPlane)
		c.since = c.opts.Now()
		if c.nackVer == 0 {
			c.lastErr = ""
		}
	}
	c.reachable, c.contacted = true, true
}

func (c *State) versionLocked() int64 {
	if c.applied == nil {
		return 0
	}
	return c.applied.Version
}

// handle applies env unless it is stale, a duplicate, or the one already refused.
func (c *Client) handle(env *configapi.Envelope) {
	c.mu.Lock()
	cur := c.applied
	refused := env.Epoch == c.nackEpoch && env.Version == c.nackVer
	c.mu.Unlock()
	if cur != nil && !env.Newer(cur.Epoch, cur.Version) {
		c.log.Debug("ignoring a stale or duplicate snapshot", "version", env.Version, "applied", cur.Version)
		return
	}
	if refused {
		return
	}
	if cur != nil && env.Epoch != cur.Epoch {
		c.log.Warn("the control plane's store has a new epoch; taking its numbering", "old_epoch", cur.Epoch, "epoch", env.Epoch, "version", env.Version)
	}
	snap, err := env.Snapshot()
	if err == nil {
		err = c.opts.Apply(snap)
	}
	c.mu.Lock()
	if err != nil {
		c.nackEpoch, c.nackVer, c.nackErr = env.Epoch, env.Version, configapi.CleanError(err.Error())
		c.lastErr = fmt.Sprintf("version %d refused: %v", env.Version, err)
		c.mu.Unlock()
		c.log.Error("configuration refused; keeping the running one", "version", env.Version, "running", c.versionOf(cur), "error", err)
		return
	}
	c.applied, c.source, c.appliedAt = env, SourceControlPlane, c.opts.Now()
	c.nackEpoch, c.nackVer, c.nackErr, c.lastErr = "", 0, "", ""
	c.mu.Unlock()
	c.log.Info("configuration applied", "epoch", env.Epoch, "version", env.Version)
	if err := c.save(env); err != nil {
		c.log.Warn("cannot save the configuration; a restart without the control plane will not have it", "path", c.opts.StatePath, "error", err)
	}
}

func (c *Client) versionOf(e *configapi.Envelope) int64 {
	if e == nil {
		return 0
	}
	return e.Version
}

// save writes env to StatePath atomically: a temporary file in the same directory, fsync,
// rename over the old copy, fsync of the directory.
func (c *Client) save(env *configapi.Envelope) error {
	if c.opts.StatePath == "" {
		return nil
	}
	b, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return WriteFileAtomic(c.opts.StatePath, b)
}

// WriteFileAtomic replaces path with data (mode 0600, its directory created 0700) so that a
// crash leaves either the old or the new content, never a mix.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return atomicfile.WriteFile(path, data, 0o600)
}

// ID is the name this client polls under (Options.ID), the sidecar's name in the registry.
func (c *Client) ID() string { return c.opts.ID }

// Status reports the applied snapshot and the state of the control plane channel.
func (c *State) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{
		Source: c.source, AppliedAt: c.appliedAt, ControlPlane: c.controlPlane,
		Reachable: c.reachable, Since: c.since, LastError: c.lastErr, NackVersion: c.nackVer,
	}
	if c.applied != nil {
		s.Epoch, s.Version = c.applied.Epoch, c.applied.Version
	}
	return s
}

// HealthCheck is the "control_plane" component of /health, always consistent with the last
// poll: "ok" while the control plane is reachable; "unreachable", a warning, while the
// sidecar serves its applied configuration without it; an error when nothing is applied
// (the sidecar is answering 503). The public /health shows only that; the error (with the
// control plane's address and the poll's failure) and the details (applied version,
// source, since when) go to operators through the admin API.
func (c *State) HealthCheck() health.Check {
	return health.Check{
		Name:  "control_plane",
		Check: func(context.Context) error { return c.check() },
		Info:  func() any { return c.Status() },
	}
}

func (c *State) check() error {
	s := c.Status()
	if s.Version != 0 {
		if s.Reachable {
			return nil
		}
		return &health.Problem{Public: "unreachable", Warning: true, Err: fmt.Errorf(
			"control plane %s unreachable since %s (%s); serving version %d from %s",
			c.controlPlane, s.Since.UTC().Format(time.RFC3339), orNone(s.LastError), s.Version, s.Source)}
	}
	public, why := "unreachable, and no saved configuration", "not reached yet"
	switch {
	case !s.Reachable && s.LastError != "":
		why = fmt.Sprintf("unreachable since %s (%s)", s.Since.UTC().Format(time.RFC3339), s.LastError)
	case s.Reachable:
		public, why = "no configuration applied yet", "reachable, but no configuration applied yet"
		if s.LastError != "" {
			why += ": " + s.LastError
		}
	}
	disk := "no saved copy"
	if c.statePath != "" {
		disk = "no saved copy at " + c.statePath
	}
	return &health.Problem{Public: public, Err: fmt.Errorf("no configuration: control plane %s %s, and %s", c.controlPlane, why, disk)}
}

func orNone(s string) string {
	if s == "" {
		return "no error recorded"
	}
	return s
}
