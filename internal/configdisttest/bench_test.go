package configdisttest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configdist"
	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/sidecar"
	"github.com/claude-relay/claude-relay/sidecar/configclient"
	"github.com/claude-relay/claude-relay/store/storetest"
)

// benchSidecars is how many sidecars follow the control plane in BenchmarkEditToApplied.
const benchSidecars = 8

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkEditToApplied measures, per edit of the HCL file, the time until every one of
// benchSidecars sidecars (config clients over HTTP long-poll, applying to sidecar.Server)
// runs the new version: fsnotify, debounce (the default 100ms), validation, the Redis
// publish, the long-poll answers and the compile+swap. It reports p50 and p99 over b.N
// edits, and the debounce as the baseline they include.
func BenchmarkEditToApplied(b *testing.B) {
	st, _, _ := storetest.New(b)
	dir := b.TempDir()
	write := func(i int) {
		if err := os.WriteFile(filepath.Join(dir, "relay.hcl"), []byte(baseHCL(fmt.Sprintf("/v1/edit-%d", i))), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	write(-1)
	cfg, err := controlplane.NewDistribution(b.Context(), controlplane.DistributionOptions{Dir: dir, Store: st, SidecarSecrets: [][]byte{[]byte(jwtSecret)}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	go cfg.Run(ctx)
	cp := httptest.NewServer(cfg.Server.Handler())
	// Stop the watcher and the clients first: held long-polls are then released at once.
	defer cp.Close()
	defer cancel()

	clients := make([]*configclient.Client, benchSidecars)
	for i := range clients {
		srv := sidecar.New(sidecar.Options{})
		f, err := configclient.NewHTTPFetcher(cp.URL, []byte(jwtSecret), nil)
		if err != nil {
			b.Fatal(err)
		}
		clients[i], err = configclient.New(configclient.Options{Fetcher: f, Apply: srv.Apply, ID: fmt.Sprintf("bench-%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		go clients[i].Run(ctx)
	}
	waitAll := func(v int64) {
		for _, c := range clients {
			for c.Status().Version < v {
				time.Sleep(200 * time.Microsecond)
			}
		}
	}
	waitAll(cfg.Cache.Current().Version)

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := cfg.Cache.Current().Version + 1
		start := time.Now()
		write(i)
		waitAll(want)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(configdist.DefaultDebounce.Milliseconds()), "debounce-ms")
	b.ReportMetric(float64(percentile(lat, 0.50)-configdist.DefaultDebounce)/1e6, "p50-beyond-debounce-ms")
}

// staticAuth accepts one key.
type staticAuth struct{}

func (staticAuth) Authenticate(_ context.Context, in sidecar.AuthInput) (sidecar.Principal, error) {
	if in.Credential != "cr_bench" {
		return sidecar.Principal{}, sidecar.ErrInvalidCredential
	}
	return sidecar.Principal{KeyID: "k1", Name: "bench"}, nil
}

type staticAccounts struct{ up []*sidecar.Upstream }

func (a staticAccounts) Upstreams(context.Context) ([]*sidecar.Upstream, error) { return a.up, nil }
func (staticAccounts) Touch(string, time.Time)                                  {}

type discardUsage struct{}

func (discardUsage) Record(sidecar.UsageRecord) {}

// BenchmarkSwapCostOnInFlightRequests relays requests through a sidecar.Server to the fake
// upstream, first with no configuration change (the baseline), then while another goroutine
// swaps snapshots every millisecond, and reports p50/p99 of both and their ratios.
func BenchmarkSwapCostOnInFlightRequests(b *testing.B) {
	up := fakeupstream.Start(b, fakeupstream.Options{APIKeys: []string{upstreamKey}})
	u, err := sidecar.NewUpstream("a1", "fake", up.URL(), upstreamKey, 1)
	if err != nil {
		b.Fatal(err)
	}
	srv := sidecar.New(sidecar.Options{Auth: staticAuth{}, Accounts: staticAccounts{[]*sidecar.Upstream{u}}, Usage: discardUsage{}})
	snaps := make([]*config.Snapshot, 2)
	for i := range snaps {
		s, src, diags := config.LoadFiles(map[string][]byte{"r.hcl": []byte(baseHCL(fmt.Sprintf("/v1/swap-%d", i)))})
		if diags.HasErrors() {
			b.Fatal(src.FormatDiagnostics(diags))
		}
		snaps[i] = s
	}
	if err := srv.Apply(snaps[0]); err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	body := `{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	one := func() time.Duration {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/messages", strings.NewReader(body))
		req.Header.Set("x-api-key", "cr_bench")
		req.Header.Set("anthropic-version", "2023-06-01")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("got %d, want 200", resp.StatusCode)
		}
		return time.Since(start)
	}
	measure := func(n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = one()
		}
		return d
	}
	n := max(b.N, 200)
	measure(20) // warm up connections
	b.ResetTimer()
	base := measure(n)

	var swaps atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := srv.Apply(snaps[i%2]); err == nil {
					swaps.Add(1)
				}
			}
		}
	}()
	swapped := measure(n)
	close(stop)
	wg.Wait()
	b.StopTimer()

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(percentile(base, 0.5)), "base-p50-ms")
	b.ReportMetric(ms(percentile(base, 0.99)), "base-p99-ms")
	b.ReportMetric(ms(percentile(swapped, 0.5)), "swap-p50-ms")
	b.ReportMetric(ms(percentile(swapped, 0.99)), "swap-p99-ms")
	b.ReportMetric(float64(percentile(swapped, 0.5))/float64(percentile(base, 0.5)), "p50-ratio")
	b.ReportMetric(float64(percentile(swapped, 0.99))/float64(percentile(base, 0.99)), "p99-ratio")
	b.ReportMetric(float64(swaps.Load()), "swaps")
}
