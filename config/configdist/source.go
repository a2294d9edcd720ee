package configdist

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/internal/metrics"
)

// Defaults of SourceOptions.
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

// SourceOptions configures a Source.
type SourceOptions struct {
	// Dir is the directory of *.hcl files; "" reads the embedded default.
	Dir string
	// Publisher numbers each valid snapshot and makes it current in Cache. Required.
	Publisher Publisher
	// Cache is where the published snapshots go; Status reports its current one. Required.
	Cache *SnapshotCache
	// Logger receives reloads and their diagnostics; nil means no logging.
	Logger hclog.Logger
	// Metrics gets claude_relay_config_reloads_total{result} and
	// claude_relay_config_version; nil means a private registry.
	Metrics *metrics.Registry
	// Debounce is how long the directory must stay quiet before a reload (default 100ms).
	Debounce time.Duration
	// Recheck is the period of Run's safety-net re-read of the directory (default 10s).
	Recheck time.Duration
	// Loader reads the HCL; the zero value reads the environment with os.LookupEnv.
	Loader config.Loader
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnReload, when set, hears every reload's outcome: refused with the formatted
	// diagnostics, or accepted (published or unchanged). Alerts use it.
	OnReload func(ctx context.Context, refused bool, diagnostics string)
}

// Source reads the operator's HCL directory: it checks and compiles it (once), hands each
// valid change to its Publisher, keeps the diagnostics of a broken edit while the last good
// snapshot stays, and watches the directory (Run). It is safe for concurrent use.
type Source struct {
	opts SourceOptions
	log  hclog.Logger

	reloadMu sync.Mutex // one reload at a time

	statusMu sync.Mutex
	status   configapi.ConfigStatus

	reloads *metrics.CounterVec
}

// NewSource reads the directory once. A broken directory is an error only when the cache
// has no snapshot to keep serving either (one adopted from the store, say).
func NewSource(ctx context.Context, opts SourceOptions) (*Source, error) {
	if opts.Publisher == nil || opts.Cache == nil {
		return nil, errors.New("config source: a publisher and a cache are required")
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
	s := &Source{opts: opts, log: log.Named("config")}
	s.status.Dir = opts.Dir
	s.reloads = opts.Metrics.Counter("claude_relay_config_reloads_total",
		"Configuration reloads by result: published (a new version), unchanged (same content hash) or refused (invalid; the last good snapshot stays).", "result")
	for _, r := range []string{ReloadPublished, ReloadUnchanged, ReloadRefused} {
		s.reloads.With(r) // export zeros
	}
	opts.Metrics.GaugeFunc("claude_relay_config_version", "Version of the configuration snapshot being served.", func() float64 {
		if e := opts.Cache.Current(); e != nil {
			return float64(e.Version)
		}
		return 0
	})
	if opts.Dir == "" {
		log.Info("no CLAUDE_RELAY_CONFIG_DIR given: using the embedded default configuration")
	}
	if _, err := s.Reload(ctx); err != nil && opts.Cache.Current() == nil {
		return nil, err
	}
	return s, nil
}

// Dir is the directory read; "" means the embedded default.
func (s *Source) Dir() string { return s.opts.Dir }

// Status reports the snapshot served and the outcome of the last reload.
func (s *Source) Status() configapi.ConfigStatus {
	s.statusMu.Lock()
	st := s.status
	s.statusMu.Unlock()
	st.Diagnostics = append([]configapi.Diagnostic(nil), st.Diagnostics...)
	if e := s.opts.Cache.Current(); e != nil {
		st.Epoch, st.Version, st.SHA256, st.PublishedAt = e.Epoch, e.Version, e.SHA256, e.CreatedAt
	}
	return st
}

// Reload reads the directory (or the embedded default) and publishes it when it is valid
// and differs from the current snapshot. A refused reload returns ReloadRefused and an
// error holding the formatted diagnostics; the current snapshot stays.
func (s *Source) Reload(ctx context.Context) (string, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	now := s.opts.Now()
	snap, rt, diags, text, err := s.load()
	if err != nil {
		s.refuse(now, diags, text)
		s.log.Error("configuration reload refused; the last good snapshot stays", "dir", s.opts.Dir,
			"errors", len(diags), "version", s.currentVersion(), "diagnostics", text)
		s.notify(ctx, true, text)
		return ReloadRefused, err
	}
	env, err := configapi.NewEnvelope(snap)
	if err != nil {
		return "", err
	}
	env.CreatedAt = now.UTC()
	published, err := s.opts.Publisher.Publish(ctx, env, rt)
	if err != nil {
		return "", fmt.Errorf("publish configuration: %w", err)
	}
	result := ReloadUnchanged
	if published {
		result = ReloadPublished
	}
	s.reloads.With(result).Inc()
	s.notify(ctx, false, "")
	s.statusMu.Lock()
	s.status.LastReload, s.status.LastReloadResult = now.UTC(), result
	s.status.Diagnostics, s.status.Text = nil, ""
	s.statusMu.Unlock()
	if published {
		s.log.Info("configuration published", "dir", s.opts.Dir, "epoch", env.Epoch, "version", env.Version, "sha256", env.SHA256[:12])
	} else {
		s.log.Debug("configuration unchanged", "dir", s.opts.Dir, "version", env.Version)
	}
	return result, nil
}

// notify tells OnReload a reload's outcome.
func (s *Source) notify(ctx context.Context, refused bool, text string) {
	if s.opts.OnReload != nil {
		s.opts.OnReload(ctx, refused, text)
	}
}

func (s *Source) currentVersion() int64 {
	if e := s.opts.Cache.Current(); e != nil {
		return e.Version
	}
	return 0
}

// load reads and compiles the configuration: the snapshot and its runtime, or the
// diagnostics (and their formatted text) of why not.
func (s *Source) load() (*config.Snapshot, *config.Runtime, []configapi.Diagnostic, string, error) {
	var snap *config.Snapshot
	if s.opts.Dir == "" {
		var err error
		if snap, err = config.Default(); err != nil {
			return nil, nil, []configapi.Diagnostic{{Severity: "error", Summary: err.Error()}}, err.Error(), err
		}
	} else {
		var src *config.Sources
		var diags hcl.Diagnostics
		snap, src, diags = s.opts.Loader.Load(s.opts.Dir)
		if diags.HasErrors() {
			text := src.FormatDiagnostics(diags)
			return nil, nil, convertDiagnostics(diags), text, fmt.Errorf("configuration in %s has %d error(s):\n%s", s.opts.Dir, len(diags.Errs()), text)
		}
		if len(diags) > 0 {
			s.log.Warn("configuration warnings", "dir", s.opts.Dir, "diagnostics", src.FormatDiagnostics(diags))
		}
	}
	rt, err := config.Compile(snap)
	if err != nil {
		d := []configapi.Diagnostic{{Severity: "error", Summary: "Configuration does not compile", Detail: err.Error()}}
		return nil, nil, d, err.Error(), fmt.Errorf("configuration in %s does not compile: %w", s.opts.Dir, err)
	}
	return snap, rt, nil, "", nil
}

func (s *Source) refuse(now time.Time, diags []configapi.Diagnostic, text string) {
	s.reloads.With(ReloadRefused).Inc()
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	s.status.LastReload, s.status.LastReloadResult = now.UTC(), ReloadRefused
	s.status.Refused++
	s.status.Diagnostics, s.status.Text = diags, text
}

// convertDiagnostics turns HCL diagnostics into their wire form, paths as the loader named
// them.
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

// Run watches the directory until ctx ends: fsnotify events on the directory (not the
// files, so editors that save by rename, symlink swaps and re-created files are all seen),
// debounced, and a periodic re-read as a safety net. With the embedded default there is
// nothing to watch; it returns when ctx ends.
func (s *Source) Run(ctx context.Context) {
	if s.opts.Dir == "" {
		<-ctx.Done()
		return
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(s.opts.Dir)
	}
	if err != nil {
		s.log.Error("cannot watch the configuration directory; relying on the periodic re-check and SIGHUP", "dir", s.opts.Dir, "recheck", s.opts.Recheck, "error", err)
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	recheck := time.NewTicker(s.opts.Recheck)
	defer recheck.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			s.log.Trace("configuration directory event", "name", filepath.Base(ev.Name), "op", ev.Op.String())
			debounce.Reset(s.opts.Debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			s.log.Warn("configuration watcher error", "error", err)
		case <-debounce.C:
			s.reloadLogged(ctx)
		case <-recheck.C:
			s.reloadLogged(ctx)
		}
	}
}

// reloadLogged reloads; Reload has already logged a refusal.
func (s *Source) reloadLogged(ctx context.Context) {
	if _, err := s.Reload(ctx); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Debug("reload failed", "error", err)
	}
}
