package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/store"
)

// Defaults of ConfigOptions.
const (
	DefaultDebounce = 100 * time.Millisecond
	DefaultRecheck  = 10 * time.Second
)

// Results of a reload, as ConfigStatus.LastReloadResult and the reloads metric report them.
const (
	ReloadPublished = "published"
	ReloadUnchanged = "unchanged"
	ReloadRefused   = "refused"
)

// ConfigOptions configures a Config.
type ConfigOptions struct {
	// Dir is the directory of *.hcl files to watch; "" serves the embedded default.
	Dir string
	// Store numbers the versions and holds the current snapshot and the sidecar registry.
	// Required.
	Store *store.Store
	// Logger receives reloads and their diagnostics; nil means no logging.
	Logger hclog.Logger
	// Metrics gets claude_relay_config_reloads_total{result} and
	// claude_relay_config_version; nil means a private registry.
	Metrics *metrics.Registry
	// SidecarSecrets verify sidecar tokens: the current JWT secret first, then any previous
	// one still accepted during a rotation.
	SidecarSecrets [][]byte
	// Debounce is how long the directory must stay quiet before a reload (default 100ms).
	Debounce time.Duration
	// Recheck is the period of the safety-net re-read of the directory and of Redis
	// (default 10s).
	Recheck time.Duration
	// Loader reads the HCL; the zero value reads the environment with os.LookupEnv.
	Loader config.Loader
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnReload, when set, hears every reload's outcome: refused with the formatted
	// diagnostics, or accepted (published or unchanged). Alerts use it.
	OnReload func(ctx context.Context, refused bool, diagnostics string)
}

// Config watches the operator's HCL directory, publishes each valid change as a new
// versioned snapshot, keeps the last good one when an edit is broken, and serves snapshots
// to sidecars by long-poll. It is safe for concurrent use.
type Config struct {
	opts ConfigOptions
	log  hclog.Logger
	rdb  redis.UniversalClient
	keys store.Schema

	reloadMu sync.Mutex // one reload at a time

	cur     atomic.Pointer[configapi.Envelope]
	notifMu sync.Mutex
	notif   chan struct{} // closed and replaced when cur changes

	statusMu sync.Mutex
	status   configapi.ConfigStatus

	reloads *metrics.CounterVec

	// stopping is closed when Run ends, releasing held long-polls so a shutting-down
	// control plane does not wait for them.
	stopping chan struct{}
	stopOnce sync.Once
}

// publishScript publishes a snapshot unless its hash is already the current one.
// KEYS: epoch, version, current. ARGV: sha256, config JSON, created_at, a fresh epoch id
// used only when the store has none. Returns {published (0/1), epoch, version}.
var publishScript = redis.NewScript(`
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[1], epoch)
end
local cur = redis.call('HMGET', KEYS[3], 'sha256', 'epoch', 'version')
if cur[1] == ARGV[1] and cur[2] == epoch then
  return {0, epoch, cur[3]}
end
local v = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], 'epoch', epoch, 'version', v, 'sha256', ARGV[1], 'created_at', ARGV[3], 'config', ARGV[2])
return {1, epoch, tostring(v)}
`)

// NewConfig loads the current snapshot from Redis (what this or another control plane
// published before), then reads the directory once. A broken directory is an error only
// when Redis has no snapshot to keep serving either.
func NewConfig(ctx context.Context, opts ConfigOptions) (*Config, error) {
	if opts.Store == nil {
		return nil, errors.New("config: a store is required")
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Recheck <= 0 {
		opts.Recheck = DefaultRecheck
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewRegistry()
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	c := &Config{
		opts:  opts,
		log:   log.Named("config"),
		rdb:   opts.Store.Client(),
		keys:  opts.Store.Schema(),
		notif: make(chan struct{}),

		stopping: make(chan struct{}),
	}
	c.status.Dir = opts.Dir
	c.reloads = opts.Metrics.Counter("claude_relay_config_reloads_total",
		"Configuration reloads by result: published (a new version), unchanged (same content hash) or refused (invalid; the last good snapshot stays).", "result")
	for _, r := range []string{ReloadPublished, ReloadUnchanged, ReloadRefused} {
		c.reloads.With(r) // export zeros
	}
	opts.Metrics.GaugeFunc("claude_relay_config_version", "Version of the configuration snapshot being served.", func() float64 {
		if e := c.cur.Load(); e != nil {
			return float64(e.Version)
		}
		return 0
	})
	if err := c.follow(ctx); err != nil {
		return nil, err
	}
	if _, err := c.Reload(ctx); err != nil && c.cur.Load() == nil {
		return nil, err
	}
	return c, nil
}

// Current returns the snapshot being served; nil only before the first successful load.
func (c *Config) Current() *configapi.Envelope { return c.cur.Load() }

// changed returns a channel closed when the current snapshot next changes.
func (c *Config) changed() <-chan struct{} {
	c.notifMu.Lock()
	defer c.notifMu.Unlock()
	return c.notif
}

// adopt makes e current if it is newer than what is served, and wakes the long-polls.
func (c *Config) adopt(e *configapi.Envelope) bool {
	c.notifMu.Lock()
	defer c.notifMu.Unlock()
	if old := c.cur.Load(); old != nil && !(e.Epoch != old.Epoch || e.Version > old.Version) {
		return false
	}
	c.cur.Store(e)
	close(c.notif)
	c.notif = make(chan struct{})
	c.statusMu.Lock()
	c.status.Epoch, c.status.Version, c.status.SHA256, c.status.PublishedAt = e.Epoch, e.Version, e.SHA256, e.CreatedAt
	c.statusMu.Unlock()
	return true
}

// Status reports the snapshot served and the outcome of the last reload.
func (c *Config) Status() configapi.ConfigStatus {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	s := c.status
	s.Diagnostics = append([]configapi.Diagnostic(nil), s.Diagnostics...)
	return s
}

// Reload reads the directory (or the embedded default) and publishes it when it is valid
// and differs from the current snapshot. A refused reload returns an error holding the
// formatted diagnostics; the current snapshot stays.
func (c *Config) Reload(ctx context.Context) (string, error) {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	now := c.opts.Now()
	snap, diagsText, diags, err := c.load()
	if err != nil {
		c.refuse(now, diags, diagsText)
		c.log.Error("configuration refused; the last good snapshot stays", "dir", c.opts.Dir,
			"errors", len(diags), "version", c.currentVersion(), "diagnostics", diagsText)
		c.notify(ctx, true, diagsText)
		return ReloadRefused, err
	}
	env, err := configapi.NewEnvelope(snap)
	if err != nil {
		return "", err
	}
	env.CreatedAt = now.UTC()
	published, err := c.publish(ctx, env)
	if err != nil {
		return "", fmt.Errorf("publish configuration: %w", err)
	}
	result := ReloadUnchanged
	if published {
		result = ReloadPublished
	}
	c.reloads.With(result).Inc()
	c.notify(ctx, false, "")
	c.statusMu.Lock()
	c.status.LastReload, c.status.LastReloadResult = now.UTC(), result
	c.status.Diagnostics, c.status.Text = nil, ""
	c.statusMu.Unlock()
	if published {
		c.log.Info("configuration published", "dir", c.opts.Dir, "epoch", env.Epoch, "version", env.Version, "sha256", env.SHA256[:12])
	} else {
		c.log.Debug("configuration unchanged", "dir", c.opts.Dir, "version", env.Version)
	}
	return result, nil
}

// notify tells OnReload a reload's outcome.
func (c *Config) notify(ctx context.Context, refused bool, text string) {
	if c.opts.OnReload != nil {
		c.opts.OnReload(ctx, refused, text)
	}
}

func (c *Config) currentVersion() int64 {
	if e := c.cur.Load(); e != nil {
		return e.Version
	}
	return 0
}

// load reads and compiles the configuration.
func (c *Config) load() (*config.Snapshot, string, []configapi.Diagnostic, error) {
	if c.opts.Dir == "" {
		snap, err := config.Default()
		if err != nil {
			return nil, err.Error(), []configapi.Diagnostic{{Severity: "error", Summary: err.Error()}}, err
		}
		return snap, "", nil, nil
	}
	snap, src, diags := c.opts.Loader.Load(c.opts.Dir)
	if diags.HasErrors() {
		errs := diags.Errs()
		text := src.FormatDiagnostics(diags)
		return nil, text, convertDiagnostics(diags), fmt.Errorf("configuration in %s has %d error(s):\n%s", c.opts.Dir, len(errs), text)
	}
	if _, err := config.Compile(snap); err != nil {
		d := []configapi.Diagnostic{{Severity: "error", Summary: "Configuration does not compile", Detail: err.Error()}}
		return nil, err.Error(), d, fmt.Errorf("configuration in %s does not compile: %w", c.opts.Dir, err)
	}
	if len(diags) > 0 {
		c.log.Warn("configuration warnings", "dir", c.opts.Dir, "diagnostics", src.FormatDiagnostics(diags))
	}
	return snap, "", nil, nil
}

func (c *Config) refuse(now time.Time, diags []configapi.Diagnostic, text string) {
	c.reloads.With(ReloadRefused).Inc()
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	c.status.LastReload, c.status.LastReloadResult = now.UTC(), ReloadRefused
	c.status.Refused++
	c.status.Diagnostics, c.status.Text = diags, text
}

// convertDiagnostics turns HCL diagnostics into their wire form, paths relative to nothing
// (as the loader named them).
func convertDiagnostics(diags hcl.Diagnostics) []configapi.Diagnostic {
	out := make([]configapi.Diagnostic, 0, len(diags))
	for _, d := range diags {
		cd := configapi.Diagnostic{Severity: "warning", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagError {
			cd.Severity = "error"
		}
		if d.Subject != nil {
			cd.File, cd.Line, cd.Column = d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column
		}
		out = append(out, cd)
	}
	return out
}

// publish stores env as the current snapshot unless its hash already is, fills in its epoch
// and version, adopts it and announces it to other control planes.
func (c *Config) publish(ctx context.Context, env *configapi.Envelope) (bool, error) {
	fresh := make([]byte, 8)
	if _, err := rand.Read(fresh); err != nil {
		return false, fmt.Errorf("generate epoch: %w", err)
	}
	res, err := publishScript.Run(ctx, c.rdb,
		[]string{c.keys.ConfigEpoch(), c.keys.ConfigVersion(), c.keys.ConfigCurrent()},
		env.SHA256, string(env.Config), env.CreatedAt.Format(time.RFC3339Nano), hex.EncodeToString(fresh)).Slice()
	if err != nil {
		return false, err
	}
	if len(res) != 3 {
		return false, fmt.Errorf("publish script returned %d values", len(res))
	}
	published, _ := res[0].(int64)
	env.Epoch, _ = res[1].(string)
	verStr, _ := res[2].(string)
	env.Version, err = strconv.ParseInt(verStr, 10, 64)
	if err != nil {
		return false, fmt.Errorf("publish script returned version %q: %w", verStr, err)
	}
	if published == 0 {
		// Same content as the stored current: serve that (its created_at), adopting it if
		// another control plane published it and we have not caught up.
		if cur := c.cur.Load(); cur == nil || cur.Epoch != env.Epoch || cur.Version != env.Version {
			if stored, err := c.readCurrent(ctx); err == nil && stored != nil {
				c.adopt(stored)
			}
		}
		return false, nil
	}
	c.adopt(env)
	if err := c.rdb.Publish(ctx, c.keys.ConfigChannel(), strconv.FormatInt(env.Version, 10)).Err(); err != nil {
		c.log.Warn("cannot announce the new version to other control planes; they will see it at their next re-check", "error", err)
	}
	return true, nil
}

// readCurrent reads the current snapshot from Redis; nil when there is none.
func (c *Config) readCurrent(ctx context.Context) (*configapi.Envelope, error) {
	m, err := c.rdb.HGetAll(ctx, c.keys.ConfigCurrent()).Result()
	if err != nil {
		return nil, fmt.Errorf("read current configuration: %w", err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	v, err := strconv.ParseInt(m["version"], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("current configuration has version %q: %w", m["version"], err)
	}
	created, _ := time.Parse(time.RFC3339Nano, m["created_at"])
	e := &configapi.Envelope{Epoch: m["epoch"], Version: v, SHA256: m["sha256"], CreatedAt: created, Config: []byte(m["config"])}
	if configapi.Hash(e.Config) != e.SHA256 {
		return nil, fmt.Errorf("current configuration %s/%d in Redis does not match its sha256", e.Epoch, e.Version)
	}
	return e, nil
}

// follow adopts what Redis holds as current, if newer than what is served.
func (c *Config) follow(ctx context.Context) error {
	e, err := c.readCurrent(ctx)
	if err != nil || e == nil {
		return err
	}
	if c.adopt(e) {
		c.log.Info("configuration adopted from the store", "epoch", e.Epoch, "version", e.Version)
	}
	return nil
}

// Run watches the directory until ctx ends: fsnotify events on the directory (not the
// files, so editors that save by rename, symlink swaps and re-created files are all seen),
// debounced; a periodic re-read as a safety net; and announcements from other control
// planes.
func (c *Config) Run(ctx context.Context) error {
	defer c.stopOnce.Do(func() { close(c.stopping) })
	var events <-chan fsnotify.Event
	var errs <-chan error
	if c.opts.Dir != "" {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			err = w.Add(c.opts.Dir)
		}
		if err != nil {
			c.log.Error("cannot watch the configuration directory; relying on the periodic re-check and SIGHUP", "dir", c.opts.Dir, "recheck", c.opts.Recheck, "error", err)
		} else {
			defer w.Close()
			events, errs = w.Events, w.Errors
		}
	}
	sub := c.rdb.Subscribe(ctx, c.keys.ConfigChannel())
	defer sub.Close()
	announce := sub.Channel()

	recheck := time.NewTicker(c.opts.Recheck)
	defer recheck.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			c.log.Trace("configuration directory event", "name", filepath.Base(ev.Name), "op", ev.Op.String())
			debounce.Reset(c.opts.Debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			c.log.Warn("configuration watcher error", "error", err)
		case <-debounce.C:
			c.reloadLogged(ctx)
		case <-recheck.C:
			if c.opts.Dir != "" {
				c.reloadLogged(ctx)
			}
			if err := c.follow(ctx); err != nil {
				c.log.Warn("cannot re-read the current configuration from the store", "error", err)
			}
		case _, ok := <-announce:
			if !ok {
				announce = nil
				continue
			}
			if err := c.follow(ctx); err != nil {
				c.log.Warn("cannot read the configuration another control plane published", "error", err)
			}
		}
	}
}

// reloadLogged reloads; Reload has already logged a refusal.
func (c *Config) reloadLogged(ctx context.Context) {
	if _, err := c.Reload(ctx); err != nil && !errors.Is(err, context.Canceled) {
		c.log.Debug("reload failed", "error", err)
	}
}
