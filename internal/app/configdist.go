package app

import (
	"context"
	"errors"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/sidecar/configclient"
)

// snapshotFile is the sidecar's last applied snapshot, under the data dir.
const snapshotFile = "config-snapshot.json"

// startupPoll bounds the first poll of a sidecar that has no saved copy.
const startupPoll = 5 * time.Second

// sidecarSecrets are the secrets sidecar tokens may be signed with: the current one, then
// the one being rotated out.
func (b *Base) sidecarSecrets() [][]byte {
	s := [][]byte{[]byte(b.Env.JWTSecret)}
	if b.Env.JWTSecretPrevious != "" {
		s = append(s, []byte(b.Env.JWTSecretPrevious))
	}
	return s
}

// newControlConfig reads the configuration directory (or the embedded default when dir is
// empty) and returns the control plane's watcher and distributor.
func newControlConfig(ctx context.Context, b *Base, dir string) (*controlplane.Config, error) {
	if dir == "" {
		b.Log.Info("no CLAUDE_RELAY_CONFIG_DIR given: serving the embedded default configuration")
	}
	return controlplane.NewConfig(ctx, controlplane.ConfigOptions{
		Dir:            dir,
		Store:          b.Store,
		Logger:         b.Log,
		Metrics:        b.Metrics,
		SidecarSecrets: b.sidecarSecrets(),
		OnReload:       configAlertHook(b, dir),
	})
}

// runControlConfig watches the directory and reloads on SIGHUP until ctx ends.
func runControlConfig(ctx context.Context, b *Base, cfg *controlplane.Config) {
	go func() { _ = cfg.Run(ctx) }()
	go onHUP(ctx, func(ctx context.Context) { reloadForHUP(ctx, b, cfg) })
}

// reloadForHUP re-reads the configuration directory for a SIGHUP and logs what was read and
// what came of it: a new version published, the same content, or a refusal (whose
// diagnostics Reload has logged) with the version still served.
func reloadForHUP(ctx context.Context, b *Base, cfg *controlplane.Config) {
	result, err := cfg.Reload(ctx)
	st := cfg.Status()
	dir := st.Dir
	if dir == "" {
		dir = "(embedded default)"
	}
	switch {
	case result == controlplane.ReloadRefused:
		b.Log.Warn("SIGHUP: configuration re-read and refused; still serving the last good one", "dir", dir, "version", st.Version)
	case err != nil:
		b.Log.Error("SIGHUP: configuration re-read but not published; still serving the last good one", "dir", dir, "version", st.Version, "error", err)
	default:
		b.Log.Info("SIGHUP: configuration re-read", "dir", dir, "result", result, "version", st.Version)
	}
}

// onHUP calls f on every SIGHUP until ctx ends.
func onHUP(ctx context.Context, f func(context.Context)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			f(ctx)
		}
	}
}

// sidecarID names this sidecar in the control plane's registry: host name and listen port.
func sidecarID(listen string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "sidecar"
	}
	if _, port, err := net.SplitHostPort(listen); err == nil && port != "" && port != "0" {
		return host + ":" + port
	}
	return host + ":" + randomHex(4)
}

// newRemoteConfig builds the config client of a sidecar that follows the control plane at
// controlURL, keeping its last applied snapshot under the data dir. apply and health (the
// report sent with each poll) are called through closures so the client can exist before
// the server it feeds.
func newRemoteConfig(b *Base, controlURL, dataDir, listen string, apply func(*config.Snapshot) error, health func(context.Context) configapi.Health) (*configclient.Client, error) {
	fetch, err := configclient.NewHTTPFetcher(controlURL, []byte(b.Env.JWTSecret), nil)
	if err != nil {
		return nil, err
	}
	path, err := dataPath(dataDir, snapshotFile)
	if err != nil {
		return nil, err
	}
	return configclient.New(configclient.Options{
		Fetcher:      fetch,
		Apply:        applyFunc(apply),
		ID:           sidecarID(listen),
		Addr:         listen,
		ControlPlane: controlURL,
		StatePath:    path,
		Logger:       b.Log,
		Health:       health,
	})
}

// newLocalConfig builds the config client of a sidecar in the same process as its control
// plane: the same client, polling cfg directly instead of over HTTP.
func newLocalConfig(b *Base, cfg *controlplane.Config, listen string, apply func(*config.Snapshot) error, health func(context.Context) configapi.Health) (*configclient.Client, error) {
	return configclient.New(configclient.Options{
		Fetcher:      configclient.FetcherFunc(cfg.Poll),
		Apply:        applyFunc(apply),
		ID:           sidecarID(listen),
		Addr:         listen,
		ControlPlane: "in-process",
		Logger:       b.Log,
		Health:       health,
	})
}

// startConfigClient applies the saved copy (or, failing that, what the control plane has
// right now) and then keeps polling until ctx ends. With neither, the sidecar starts and
// answers 503 until the control plane is reached; /health says why.
func startConfigClient(ctx context.Context, b *Base, cc *configclient.Client) {
	err := cc.LoadDisk()
	if err != nil {
		if !errors.Is(err, configclient.ErrNoDiskCopy) {
			b.Log.Warn("saved configuration unusable; waiting for the control plane", "error", err)
		}
		pctx, cancel := context.WithTimeout(ctx, startupPoll)
		if perr := cc.PollOnce(pctx); perr != nil && ctx.Err() != nil {
			b.Log.Info("stopped while waiting for the control plane's first answer")
		} else if perr != nil {
			b.Log.Error("no configuration yet: no saved copy and the control plane did not answer; answering 503 until it does", "error", perr)
		}
		cancel()
	}
	go cc.Run(ctx)
}

// controlURL is the -control-plane flag, else CLAUDE_RELAY_CONTROL_URL.
func (o *Options) controlURL(env *config.Env) string {
	if o.ControlURL != "" {
		return o.ControlURL
	}
	return env.ControlURL
}

// runRemoteSidecar runs a sidecar that takes its configuration from the control plane at
// controlURL, starting from its saved copy.
func runRemoteSidecar(ctx context.Context, b *Base, opts Options, controlURL string) error {
	var dp *dataPlane
	cc, err := newRemoteConfig(b, controlURL, opts.DataDir, opts.Listen, func(s *config.Snapshot) error { return dp.srv.Apply(s) },
		func(ctx context.Context) configapi.Health { return dp.srv.Health(ctx) })
	if err != nil {
		return err
	}
	dp, err = b.newDataPlane(opts.DataDir, cc.ID(), cc.HealthCheck()) // the registry's name for it, also with port 0
	if err != nil {
		return err
	}
	dp.onHUP = func(ctx context.Context) {
		b.Log.Info("SIGHUP: this sidecar follows the control plane; reload the control plane instead", "control_plane", controlURL)
	}
	startConfigClient(ctx, b, cc)
	return runDataPlane(ctx, b, dp, opts, dp.srv)
}

// devConfig starts dev mode's control plane configuration (watching CLAUDE_RELAY_CONFIG_DIR
// when set) and a data plane that follows it in-process; SIGHUP reloads the directory.
func devConfig(ctx context.Context, b *Base, opts Options) (*controlplane.Config, *dataPlane, error) {
	cfg, err := newControlConfig(ctx, b, opts.ConfigDir)
	if err != nil {
		return nil, nil, err
	}
	go func() { _ = cfg.Run(ctx) }()
	var dp *dataPlane
	cc, err := newLocalConfig(b, cfg, opts.Listen, func(s *config.Snapshot) error { return dp.srv.Apply(s) },
		func(ctx context.Context) configapi.Health { return dp.srv.Health(ctx) })
	if err != nil {
		return nil, nil, err
	}
	dp, err = b.newDataPlane(opts.DataDir, cc.ID(), cc.HealthCheck()) // the registry's name for it, also with port 0
	if err != nil {
		return nil, nil, err
	}
	dp.onHUP = func(ctx context.Context) { reloadForHUP(ctx, b, cfg) }
	startConfigClient(ctx, b, cc)
	return cfg, dp, nil
}
