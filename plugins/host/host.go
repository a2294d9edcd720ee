// Package host runs provider plugins as subprocesses: it starts, health-checks, restarts and
// hot-swaps them, and gives the rest of the relay the contract interfaces in front of them.
package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/claude-relay/claude-relay/plugins/contract"
)

// Config says how to run one plugin binary.
type Config struct {
	// Name names the plugin in logs and status, e.g. "auth-apikey".
	Name string
	// Path is the plugin binary. Its directory is watched for a new version.
	Path string
	// Settings are sent with Configure after every start. They may hold secrets and are
	// never logged.
	Settings map[string]string
	// Env is the whole environment the plugin gets ("KEY=VALUE"); nothing of the host's
	// environment is inherited.
	Env []string
	// Logger receives the host's messages and the plugin's own (re-logged from its stderr
	// under its name).
	Logger hclog.Logger

	StartTimeout   time.Duration // handshake, configure and self-test of a new process; default 10s
	HealthTimeout  time.Duration // deadline of one health check; default 2s
	HealthInterval time.Duration // between health checks; default 5s
	RestartWait    time.Duration // how long a call waits for a healthy instance; default 5s
	DrainTimeout   time.Duration // how long a replaced instance may finish its calls; default 30s
	Debounce       time.Duration // quiet time after a file event before a reload; default 250ms
	BackoffMin     time.Duration // first restart delay after a failed start; default 100ms
	BackoffMax     time.Duration // longest restart delay; default 10s
	// NoWatch disables watching the binary for changes.
	NoWatch bool
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.StartTimeout, 10*time.Second)
	set(&c.HealthTimeout, 2*time.Second)
	set(&c.HealthInterval, 5*time.Second)
	set(&c.RestartWait, 5*time.Second)
	set(&c.DrainTimeout, 30*time.Second)
	set(&c.Debounce, 250*time.Millisecond)
	set(&c.BackoffMin, 100*time.Millisecond)
	set(&c.BackoffMax, 10*time.Second)
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Name == "" {
		c.Name = filepath.Base(c.Path)
	}
}

// Status is what /health and operators see of a plugin.
type Status struct {
	Name      string    `json:"name"`
	Path      string    `json:"path"`
	Healthy   bool      `json:"healthy"`
	Version   string    `json:"version,omitempty"`
	PID       int       `json:"pid,omitempty"`
	Checksum  string    `json:"sha256,omitempty"`
	StartedAt time.Time `json:"started_at"`
	Restarts  int       `json:"restarts"`
	Swaps     int       `json:"swaps"`
	LastError string    `json:"last_error,omitempty"`
	// Refused describes a binary on disk that failed to start or self-test and was not
	// swapped in; the running instance keeps serving.
	Refused string `json:"refused,omitempty"`
}

// Plugin is one plugin binary run as a supervised subprocess. Calls go to the current
// instance; a replaced instance finishes its calls before it is stopped.
type Plugin[T contract.Configurer] struct {
	cfg      Config
	kind     string
	log      hclog.Logger
	selfTest func(context.Context, T) error

	cur  atomic.Pointer[instance[T]]
	kick chan struct{} // a call saw the instance fail
	file chan struct{} // the binary changed on disk

	mu       sync.Mutex
	changed  chan struct{} // closed when cur gets a new instance
	settings map[string]string
	status   Status
	refused  string // checksum of the refused binary

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type instance[T any] struct {
	client   *plugin.Client
	impl     T
	info     contract.Info
	checksum string
	pid      int
	started  time.Time

	broken  atomic.Bool
	mu      sync.Mutex
	calls   int
	closing bool
	drained chan struct{}
}

// acquire counts a call in, unless the instance is being drained.
func (in *instance[T]) acquire() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closing || in.broken.Load() {
		return false
	}
	in.calls++
	return true
}

func (in *instance[T]) release() {
	in.mu.Lock()
	in.calls--
	if in.closing && in.calls == 0 {
		close(in.drained)
	}
	in.mu.Unlock()
}

// drain refuses new calls and waits until the running ones end or timeout passes.
func (in *instance[T]) drain(timeout time.Duration) bool {
	in.mu.Lock()
	if !in.closing {
		in.closing = true
		if in.calls == 0 {
			close(in.drained)
		}
	}
	in.mu.Unlock()
	select {
	case <-in.drained:
		return true
	case <-time.After(timeout):
		return false
	}
}

// start runs the plugin binary and returns once a first instance is healthy; the returned
// Plugin supervises it until Close.
func start[T contract.Configurer](ctx context.Context, cfg Config, kind string, selfTest func(context.Context, T) error) (*Plugin[T], error) {
	cfg.defaults()
	p := &Plugin[T]{
		cfg:      cfg,
		kind:     kind,
		log:      cfg.Logger.Named("plugin").With("plugin", cfg.Name),
		selfTest: selfTest,
		kick:     make(chan struct{}, 1),
		file:     make(chan struct{}, 1),
		changed:  make(chan struct{}),
		settings: cfg.Settings,
		status:   Status{Name: cfg.Name, Path: cfg.Path},
	}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	sum, err := checksumFile(cfg.Path)
	if err == nil {
		var in *instance[T]
		if in, err = p.startInstance(ctx, sum); err == nil {
			p.swapIn(in, false)
		}
	}
	if err != nil {
		p.cancel()
		return nil, fmt.Errorf("start plugin %s: %w", cfg.Name, err)
	}
	if !cfg.NoWatch {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			err = w.Add(filepath.Dir(cfg.Path))
		}
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("watch plugin %s: %w", cfg.Name, err)
		}
		p.wg.Add(1)
		go p.watch(w)
	}
	p.wg.Add(1)
	go p.supervise()
	return p, nil
}

// checksumFile returns the hex SHA-256 of a file.
func checksumFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open plugin binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read plugin binary: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// startInstance starts a process from the binary whose checksum is sum (go-plugin checks it
// again before exec), configures, health-checks and self-tests it.
func (p *Plugin[T]) startInstance(ctx context.Context, sum string) (*instance[T], error) {
	want, err := hex.DecodeString(sum)
	if err != nil {
		return nil, fmt.Errorf("bad checksum: %w", err)
	}
	cmd := exec.Command(p.cfg.Path)
	cmd.Env = append([]string(nil), p.cfg.Env...)
	dieWithHost(cmd)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  contract.Handshake(),
		Plugins:          contract.PluginMap(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SecureConfig:     &plugin.SecureConfig{Checksum: want, Hash: sha256.New()},
		SkipHostEnv:      true,
		StartTimeout:     p.cfg.StartTimeout,
		Logger:           p.cfg.Logger.Named("plugin"),
	})
	in := &instance[T]{client: client, checksum: sum, drained: make(chan struct{}), started: time.Now()}
	fail := func(err error) (*instance[T], error) {
		client.Kill()
		return nil, err
	}
	rpc, err := client.Client()
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", p.cfg.Path, err))
	}
	raw, err := rpc.Dispense(p.kind)
	if err != nil {
		return fail(fmt.Errorf("dispense %s provider: %w", p.kind, err))
	}
	impl, ok := raw.(T)
	if !ok {
		return fail(fmt.Errorf("plugin does not serve a %s provider", p.kind))
	}
	in.impl = impl
	if rc := client.ReattachConfig(); rc != nil {
		in.pid = rc.Pid
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.StartTimeout)
	defer cancel()
	p.mu.Lock()
	settings := p.settings
	p.mu.Unlock()
	if err := impl.Configure(sctx, settings); err != nil {
		return fail(fmt.Errorf("configure: %w", err))
	}
	if in.info, err = impl.Info(sctx); err != nil {
		return fail(fmt.Errorf("health check: %w", err))
	}
	if p.selfTest != nil {
		if err := p.selfTest(sctx, impl); err != nil {
			return fail(fmt.Errorf("self-test: %w", err))
		}
	}
	return in, nil
}

// swapIn makes in the current instance and returns the one it replaced.
func (p *Plugin[T]) swapIn(in *instance[T], counted bool) *instance[T] {
	old := p.cur.Swap(in)
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.status.Healthy = true
	p.status.Version = in.info.Version
	p.status.PID = in.pid
	p.status.Checksum = in.checksum
	p.status.StartedAt = in.started
	p.status.LastError = ""
	if counted && old != nil {
		p.status.Swaps++
	}
	p.mu.Unlock()
	p.log.Info("plugin serving", "version", in.info.Version, "pid", in.pid, "sha256", short(in.checksum))
	return old
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// acquire returns the current instance with a call counted in, waiting up to RestartWait
// for one when none is healthy.
func (p *Plugin[T]) acquire(ctx context.Context) (*instance[T], error) {
	var timeout <-chan time.Time
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		if in := p.cur.Load(); in != nil && in.acquire() {
			return in, nil
		}
		if timeout == nil {
			t := time.NewTimer(p.cfg.RestartWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for plugin %s: %w", p.cfg.Name, ctx.Err())
		case <-p.ctx.Done():
			return nil, fmt.Errorf("%w: plugin %s is stopped", contract.ErrUnavailable, p.cfg.Name)
		case <-timeout:
			p.mu.Lock()
			last := p.status.LastError
			p.mu.Unlock()
			return nil, fmt.Errorf("%w: no healthy instance of plugin %s (%s)", contract.ErrUnavailable, p.cfg.Name, last)
		}
	}
}

// call runs fn on the current instance. When the instance dies under the call, the call is
// retried once on the restarted instance: every contract call is idempotent (a read, or a
// seal with a fresh nonce), so a second attempt is always safe.
func (p *Plugin[T]) call(ctx context.Context, fn func(T) error) error {
	for attempt := 0; ; attempt++ {
		in, err := p.acquire(ctx)
		if err != nil {
			return err
		}
		err = fn(in.impl)
		in.release()
		// A cancellation the caller did not ask for means the connection to the
		// instance was closed under the call (it died, or was retired): the
		// instance failed, not the call.
		lost := errors.Is(err, contract.ErrUnavailable) || errors.Is(err, context.Canceled)
		if err == nil || !lost || ctx.Err() != nil {
			return err
		}
		p.markBroken(in, err)
		if attempt == 1 {
			return err
		}
	}
}

// markBroken takes a failed instance out of service and asks the supervisor to restart.
func (p *Plugin[T]) markBroken(in *instance[T], cause error) {
	if !in.broken.CompareAndSwap(false, true) {
		return
	}
	if p.cur.CompareAndSwap(in, nil) {
		p.mu.Lock()
		p.status.Healthy = false
		p.status.LastError = cause.Error()
		p.mu.Unlock()
	}
	if p.ctx.Err() != nil {
		in.client.Kill()
		return
	}
	p.log.Warn("plugin instance failed; restarting", "pid", in.pid, "error", cause)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		in.client.Kill()
	}()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// supervise restarts failed instances and swaps in new binaries until Close.
func (p *Plugin[T]) supervise() {
	defer p.wg.Done()
	health := time.NewTicker(p.cfg.HealthInterval)
	defer health.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	backoff := p.cfg.BackoffMin
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.file:
			debounce.Reset(p.cfg.Debounce)
			continue
		case <-debounce.C:
			p.reload()
			continue
		case <-p.kick:
		case <-health.C:
		}
		if in := p.cur.Load(); in != nil {
			if err := p.check(in); err == nil {
				backoff = p.cfg.BackoffMin
				continue
			} else {
				p.markBroken(in, err)
			}
		}
		p.restart(&backoff)
	}
}

// check health-checks an instance with a deadline.
func (p *Plugin[T]) check(in *instance[T]) error {
	if in.client.Exited() {
		return errors.New("plugin process exited")
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.HealthTimeout)
	defer cancel()
	if _, err := in.impl.Info(ctx); err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	return nil
}

// restart starts a new instance from the binary on disk, retrying with backoff until one
// is healthy or the plugin is closed.
func (p *Plugin[T]) restart(backoff *time.Duration) {
	for p.ctx.Err() == nil && p.cur.Load() == nil {
		sum, err := checksumFile(p.cfg.Path)
		var in *instance[T]
		if err == nil {
			in, err = p.startInstance(p.ctx, sum)
		}
		if err == nil {
			if old := p.swapIn(in, false); old != nil {
				p.retire(old)
			}
			p.mu.Lock()
			p.status.Restarts++
			if sum == p.refused {
				p.refused, p.status.Refused = "", ""
			}
			p.mu.Unlock()
			return
		}
		if p.ctx.Err() != nil {
			return // closed while starting: shutting down, not a failure
		}
		p.mu.Lock()
		p.status.LastError = err.Error()
		p.mu.Unlock()
		p.log.Error("plugin restart failed; auth and crypto calls fail closed until it starts", "error", err, "retry_in", *backoff)
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(*backoff):
		}
		*backoff = min(*backoff*2, p.cfg.BackoffMax)
	}
}

// reload starts the binary now on disk if it differs from the running one, and swaps it in
// when it is healthy; otherwise it is refused and the running instance keeps serving.
func (p *Plugin[T]) reload() {
	sum, err := checksumFile(p.cfg.Path)
	if err != nil {
		p.log.Warn("plugin binary unreadable; keeping the running instance", "error", err)
		return
	}
	cur := p.cur.Load()
	p.mu.Lock()
	refused := p.refused
	p.mu.Unlock()
	if cur != nil && cur.checksum == sum {
		// The running binary is back on disk: nothing is refused any more.
		p.mu.Lock()
		p.refused, p.status.Refused = "", ""
		p.mu.Unlock()
		return
	}
	if sum == refused {
		return
	}
	p.log.Info("plugin binary changed; starting the new version", "sha256", short(sum))
	in, err := p.startInstance(p.ctx, sum)
	if err != nil {
		p.mu.Lock()
		p.refused = sum
		p.status.Refused = fmt.Sprintf("binary sha256 %s refused at %s: %v", short(sum), time.Now().UTC().Format(time.RFC3339), err)
		p.mu.Unlock()
		p.log.Error("new plugin binary refused; the running instance keeps serving", "sha256", short(sum), "error", err)
		return
	}
	old := p.swapIn(in, true)
	p.mu.Lock()
	p.refused, p.status.Refused = "", ""
	p.mu.Unlock()
	if old != nil {
		p.retire(old)
	}
}

// retire stops a replaced instance once its calls have drained.
func (p *Plugin[T]) retire(old *instance[T]) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if !old.drain(p.cfg.DrainTimeout) {
			p.log.Warn("replaced plugin instance still busy after the drain timeout; stopping it", "pid", old.pid)
		}
		old.client.Kill()
		p.log.Debug("replaced plugin instance stopped", "pid", old.pid)
	}()
}

// watch forwards changes of the binary (write-then-rename installs, in-place writes) to the
// supervisor, which debounces them.
func (p *Plugin[T]) watch(w *fsnotify.Watcher) {
	defer p.wg.Done()
	defer w.Close()
	target := filepath.Clean(p.cfg.Path)
	for {
		select {
		case <-p.ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if filepath.Clean(ev.Name) != target || !ev.Has(fsnotify.Create|fsnotify.Write|fsnotify.Rename|fsnotify.Chmod) {
				continue
			}
			select {
			case p.file <- struct{}{}:
			default:
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			p.log.Warn("plugin directory watch error", "error", err)
		}
	}
}

// Status reports the plugin's state.
func (p *Plugin[T]) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Check is the plugin's /health component: an error while no healthy instance serves, or
// while a new binary on disk has been refused.
func (p *Plugin[T]) Check(context.Context) error {
	s := p.Status()
	switch {
	case !s.Healthy:
		return fmt.Errorf("no healthy instance: %s", s.LastError)
	case s.Refused != "":
		return fmt.Errorf("serving version %s (sha256 %s); %s", s.Version, short(s.Checksum), s.Refused)
	}
	return nil
}

// Close stops supervising and stops every instance.
func (p *Plugin[T]) Close() error {
	p.cancel()
	if in := p.cur.Swap(nil); in != nil {
		in.client.Kill()
	}
	p.wg.Wait()
	return nil
}
