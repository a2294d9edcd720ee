package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/claude-relay/claude-relay/config/configdist"
	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/internal/health"
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

// newDistribution reads the configuration directory (or the embedded default when dir is
// empty) and returns the control plane's configuration distribution; run it with
// runDistribution.
func newDistribution(ctx context.Context, b *Base, dir string) (*controlplane.Distribution, error) {
	return controlplane.NewDistribution(ctx, controlplane.DistributionOptions{
		Dir:            dir,
		Store:          b.Store,
		Logger:         b.Log,
		Metrics:        b.Metrics,
		SidecarSecrets: b.sidecarSecrets(),
		OnReload:       configAlertHook(b, dir),
	})
}

// reloadForHUP re-reads the configuration directory for a SIGHUP and logs what was read and
// what came of it: a new version published, the same content, or a refusal (whose
// diagnostics Reload has logged) with the version still served. Every process that reads
// HCL (control plane, dev mode, standalone sidecar) reloads through it.
func reloadForHUP(b *Base, src *configdist.Source) func(context.Context) {
	return func(ctx context.Context) {
		result, err := src.Reload(ctx)
		st := src.Status()
		dir := st.Dir
		if dir == "" {
			dir = "(embedded default)"
		}
		switch {
		case result == configdist.ReloadRefused:
			b.Log.Warn("SIGHUP: configuration re-read and refused; still serving the last good one", "dir", dir, "version", st.Version)
		case err != nil:
			b.Log.Error("SIGHUP: configuration re-read but not published; still serving the last good one", "dir", dir, "version", st.Version, "error", err)
		default:
			b.Log.Info("SIGHUP: configuration re-read", "dir", dir, "result", result, "version", st.Version)
		}
	}
}

// onHUP calls f on every SIGHUP until ctx ends: the one SIGHUP loop of every process.
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

// feed is where a sidecar's config client takes its snapshots from. Whichever it is, the
// sidecar applies them through the same path: configclient → sidecar.Server.Apply, with
// the same NACK, logging and saved-copy rules.
type feed struct {
	fetcher configclient.Fetcher
	// controlPlane names the source in messages and /health.
	controlPlane string
	// statePath keeps the last applied snapshot; "" keeps none.
	statePath string
	// followed: a control plane is followed, so the sidecar reports its health with each
	// poll and shows the channel as the "control_plane" component of /health.
	followed bool
	// local: the HCL is read in this process, so a first snapshot that cannot be applied
	// stops the start (there is no control plane to wait for).
	local bool
	// hup is what SIGHUP does.
	hup func(context.Context)
}

// remoteFeed follows the control plane at controlURL over HTTP, keeping the last applied
// snapshot under the data dir. SIGHUP only says so: the control plane reloads.
func remoteFeed(b *Base, controlURL, dataDir string) (feed, error) {
	fetch, err := configclient.NewHTTPFetcher(controlURL, []byte(b.Env.JWTSecret), nil)
	if err != nil {
		return feed{}, err
	}
	path, err := dataPath(dataDir, snapshotFile)
	if err != nil {
		return feed{}, err
	}
	return feed{fetcher: fetch, controlPlane: controlURL, statePath: path, followed: true, hup: func(context.Context) {
		b.Log.Info("SIGHUP: this sidecar follows the control plane; reload the control plane instead", "control_plane", controlURL)
	}}, nil
}

// inProcessFeed follows dev mode's control plane in this process: the same long-poll, called
// directly instead of over HTTP, recorded in the registry like any sidecar's.
func inProcessFeed(b *Base, dist *controlplane.Distribution) feed {
	return feed{fetcher: configclient.FetcherFunc(dist.Server.Poll), controlPlane: "in-process", followed: true, hup: reloadForHUP(b, dist.Source)}
}

// localFeed reads the HCL in dir (or the embedded default) for a sidecar without a control
// plane: a Source numbering its snapshots in memory into a cache that the config client
// polls directly. SIGHUP re-reads the directory.
func localFeed(ctx context.Context, b *Base, dir string) (feed, error) {
	cache := configdist.NewSnapshotCache()
	src, err := configdist.NewSource(ctx, configdist.SourceOptions{Dir: dir, Publisher: configdist.NewLocalPublisher(cache), Cache: cache, Logger: b.Log})
	if err != nil {
		return feed{}, err
	}
	name := "local HCL in " + dir
	if dir == "" {
		name = "the embedded default configuration"
	}
	return feed{fetcher: configclient.FetcherFunc(cache.Poll), controlPlane: name, local: true, hup: reloadForHUP(b, src)}, nil
}

// startSidecar builds the data plane and its config client from f, applies the first
// snapshot and keeps polling until ctx ends. The client's state exists first, so that the
// data plane's /health can report it and the client can apply to the data plane.
func (b *Base) startSidecar(ctx context.Context, opts Options, f feed) (*dataPlane, error) {
	ccOpts := configclient.Options{
		Fetcher:      f.fetcher,
		ID:           sidecarID(opts.Listen),
		Addr:         opts.Listen,
		ControlPlane: f.controlPlane,
		StatePath:    f.statePath,
		Logger:       b.Log,
	}
	ccOpts.State = configclient.NewState(ccOpts)
	var extra []health.Check
	if f.followed {
		extra = append(extra, ccOpts.State.HealthCheck())
	}
	dp, err := b.newDataPlane(opts.DataDir, ccOpts.ID, extra...)
	if err != nil {
		return nil, err
	}
	ccOpts.Apply = applyFunc(dp.srv.Apply)
	if f.followed {
		ccOpts.Health = dp.srv.Health
	}
	cc, err := configclient.New(ccOpts)
	if err != nil {
		return nil, err
	}
	if err := startConfigClient(ctx, b, cc, f.local); err != nil {
		return nil, fmt.Errorf("apply %s: %w", f.controlPlane, err)
	}
	return dp, nil
}

// startConfigClient applies the saved copy (or, failing that, what the feed has right now)
// and then keeps polling until ctx ends. With neither, a sidecar that follows a control
// plane starts and answers 503 until the control plane is reached (/health says why); one
// that reads its own HCL (local) does not start.
func startConfigClient(ctx context.Context, b *Base, cc *configclient.Client, local bool) error {
	if err := cc.LoadDisk(); err != nil {
		if !errors.Is(err, configclient.ErrNoDiskCopy) {
			b.Log.Warn("saved configuration unusable; waiting for the control plane", "error", err)
		}
		pctx, cancel := context.WithTimeout(ctx, startupPoll)
		err := cc.PollOnce(pctx)
		cancel()
		switch {
		case err != nil && local:
			return err
		case err != nil && ctx.Err() != nil:
			b.Log.Info("stopped while waiting for the control plane's first answer")
		case err != nil:
			b.Log.Error("no configuration yet: no saved copy and the control plane did not answer; answering 503 until it does", "error", err)
		}
	}
	go cc.Run(ctx)
	return nil
}
