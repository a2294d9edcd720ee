// Command bench is the load harness behind `make bench`: the relay against a direct call, a
// plain httputil.ReverseProxy and nginx, side by side on loopback, as a table and JSON.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/store"
	"github.com/redis/go-redis/v9"
)

const (
	benchJWTSecret     = "bench-jwt-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
	benchEncryptionKey = "0123456789abcdef0123456789abcdef"
	upstreamAPIKey     = "sk-ant-api03-bench-upstream"
)

// benchHCL is the relay's configuration: the default routes with a limit policy on every
// request, so the limits path is measured too (limits far above what the run reaches).
const benchHCL = `
server { trusted_proxies = ["127.0.0.1/32"] }
policy "bench" {
  requests_per_minute = 1000000000
  tokens_per_day      = 1000000000000
  cost_per_day_usd    = 1000000000
  concurrency         = 1000000
}
# "open" has no limits: keys under it skip the limit checks (and their Redis round trips).
policy "open" {}
pool "default" {}
route "messages" {
  paths   = ["/v1/messages"]
  methods = ["POST"]
  pool    = "default"
  policy  = "bench"
}
`

// targetOrder is every target, in the order they are measured.
var targetOrder = []string{"direct", "revproxy", "revproxy-pool", "floor", "relay", "relay-open", "nginx"}

// ledgerHCL turns the request ledger on (measureLedger switches it on and off).
const ledgerHCL = `
usage { ledger = true }
`

type options struct {
	duration   time.Duration
	streams    []int
	out        string
	targets    map[string]bool
	cpuProfile string
	profiled   string // the target whose relay process -cpuprofile covers
	keep       bool
	// ledgerRounds is how many times the relay's ledger is measured off and on.
	ledgerRounds int
}

func main() {
	mode := flag.String("mode", "", "internal: run as upstream, revproxy, relay or control")
	listen := flag.String("listen", "", "internal: listen address of -mode")
	tlsListen := flag.String("tls-listen", "", "internal: TLS listen address of -mode upstream")
	certFile := flag.String("cert", "", "internal: TLS certificate of -mode upstream")
	keyFile := flag.String("key", "", "internal: TLS key of -mode upstream")
	upstream := flag.String("upstream", "", "internal: upstream base URL of -mode revproxy and floor")
	redisAddr := flag.String("redis", "", "internal: Redis address of -mode floor")
	var o options
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of each latency/throughput phase")
	streams := flag.String("streams", "1000,10000", "open-stream counts at which memory per stream is measured")
	flag.StringVar(&o.out, "out", "bench/results/latest.json", "JSON results file (empty: none)")
	targets := flag.String("targets", strings.Join(targetOrder, ","), "what to measure (revproxy-pool: the ReverseProxy with a BufferPool; floor: the ReverseProxy plus an INCR before and a DECR after each request on a Redis of its own, the Redis floor of an exact limiter; relay-open: the relay with a key under a policy without limits); nginx is skipped when not on PATH")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the relay process to this file (go tool pprof FILE)")
	flag.StringVar(&o.profiled, "cpuprofile-target", "relay", "which relay -cpuprofile covers: relay or relay-open")
	flag.IntVar(&o.ledgerRounds, "ledger-rounds", 5, "JSON c=32 phases of the relay with the request ledger off and on, alternated in one process (0: none)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs of every process)")
	flag.Parse()

	var err error
	switch *mode {
	case "upstream":
		err = runUpstream(*listen, *tlsListen, *certFile, *keyFile)
	case "revproxy":
		err = runReverseProxy(*listen, *upstream, false)
	case "revproxy-pool":
		err = runReverseProxy(*listen, *upstream, true)
	case "floor":
		err = runFloorProxy(*listen, *upstream, *redisAddr)
	case "relay":
		err = runRelay(*listen, o.cpuProfile)
	case "control":
		err = runControl(*listen)
	case "":
		for _, s := range strings.Split(*streams, ",") {
			n, perr := strconv.Atoi(strings.TrimSpace(s))
			if perr != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "bench: -streams: %q is not a positive number\n", s)
				os.Exit(2)
			}
			o.streams = append(o.streams, n)
		}
		o.targets = map[string]bool{}
		for _, t := range strings.Split(*targets, ",") {
			o.targets[strings.TrimSpace(t)] = true
		}
		err = run(o, os.Stdout)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit (children inherit it) and
// returns the limit in force.
func raiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

func run(o options, stdout io.Writer) error {
	nofile := raiseFileLimit()
	work, err := os.MkdirTemp("", "claude-relay-bench-")
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	if o.keep {
		fmt.Fprintln(stdout, "work dir (logs):", work)
	} else {
		defer os.RemoveAll(work)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	res := &results{
		Date: time.Now().UTC().Format(time.RFC3339), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		PhaseSeconds: o.duration.Seconds(), NoFile: nofile,
	}
	res.StreamLevels = o.streams

	up, upstreams, upTLSURL, statsClient, err := startUpstream(work, self)
	if err != nil {
		return err
	}
	defer up.stop(5 * time.Second)
	upURL := upstreams.plain

	for _, name := range targetOrder {
		if !o.targets[name] {
			continue
		}
		t, stop, err := startTarget(name, name, work, self, upURL, upstreams, o)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if t == nil {
			res.Notes = append(res.Notes, name+": skipped (nginx is not on PATH)")
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: measuring %s …\n", name)
		r := measure(t, o.duration)
		if name != "direct" && name != "revproxy" && name != "relay" && name != "nginx" {
			// Variants of (b) and (c) for the request phases; the open-streams phase is
			// measured on (b) and (c) themselves.
			res.Targets = append(res.Targets, r)
			stop()
			continue
		}
		if name == "relay" && o.ledgerRounds > 0 {
			fmt.Fprintf(os.Stderr, "bench: measuring the request ledger off and on …\n")
			if res.Ledger, err = measureLedger(t, filepath.Join(work, "config"), o.duration, o.ledgerRounds); err != nil {
				stop()
				return fmt.Errorf("ledger: %w", err)
			}
		}
		if name == "revproxy" || name == "relay" {
			// A fresh instance of the proxy whose upstream is the TLS listener.
			stop()
			t, stop, err = startTarget(name, name+"-h2", work, self, upTLSURL, upstreams, o)
			if err != nil {
				return fmt.Errorf("%s with the TLS upstream: %w", name, err)
			}
			t.upstreamStats = func() (upstreamStats, error) { return fetchUpstreamStats(statsClient, upTLSURL) }
		}
		measureStreams(t, &r, res.streamLevels(name, o.streams, nofile), o.duration/3)
		res.Targets = append(res.Targets, r)
		stop()
	}
	res.computeRatios()
	res.writeMarkdown(stdout)
	if o.out == "" {
		return nil
	}
	if err := res.writeJSON(o.out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nJSON: %s\n", o.out)
	return nil
}

// startUpstream starts the fake upstream in work. It serves plain HTTP/1.1 for the latency
// and throughput phases (comparable with earlier runs) and HTTP/2 over TLS for the
// open-streams phase of the Go proxies, as api.anthropic.com does: there, many streams share
// a few upstream connections. It returns the TLS listener's URL and a client that trusts it.
func startUpstream(work, self string) (*child, upstreamURLs, string, *http.Client, error) {
	certFile, keyFile, pool, err := writeCert(work)
	if err != nil {
		return nil, upstreamURLs{}, "", nil, err
	}
	upAddr, err := freeAddr()
	if err != nil {
		return nil, upstreamURLs{}, "", nil, err
	}
	upTLSAddr, err := freeAddr()
	if err != nil {
		return nil, upstreamURLs{}, "", nil, err
	}
	up, err := startChild("upstream", work, nil, self, "-mode", "upstream", "-listen", upAddr,
		"-tls-listen", upTLSAddr, "-cert", certFile, "-key", keyFile)
	if err != nil {
		return nil, upstreamURLs{}, "", nil, err
	}
	upURL, upTLSURL := "http://"+upAddr, "https://"+upTLSAddr
	if err := up.waitHTTP(http.DefaultClient, upURL+"/v1/models", 10*time.Second); err != nil {
		up.stop(time.Second)
		return nil, upstreamURLs{}, "", nil, err
	}
	statsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true,
	}}
	if err := up.waitHTTP(statsClient, upTLSURL+upstreamStatsPath, 10*time.Second); err != nil {
		up.stop(time.Second)
		return nil, upstreamURLs{}, "", nil, err
	}
	return up, upstreamURLs{plain: upURL, caFile: certFile}, upTLSURL, statsClient, nil
}

// streamLevels are the open-stream counts measured through target name: the wanted ones,
// each capped at what RLIMIT_NOFILE allows (with a note saying so).
func (res *results) streamLevels(name string, wanted []int, nofile uint64) []int {
	var levels []int
	for _, n := range wanted {
		if max := maxStreams(name, nofile); n > max {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %d open streams need %d descriptors (HTTP/1.1 to the upstream: two per stream); RLIMIT_NOFILE allows %d here, so %d streams were measured instead", name, n, 2*n+100, nofile, max))
			n = max
		}
		levels = append(levels, n)
	}
	return levels
}

// writeJSON writes the results to path.
func (res *results) writeJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// maxStreams is how many streams can be open through target name within RLIMIT_NOFILE. The
// load generator holds one descriptor per stream; direct, the upstream holds one too; the Go
// proxies hold one for the client and share a few HTTP/2 connections upstream; nginx speaks
// HTTP/1.1 to its upstream, so it holds two.
func maxStreams(name string, nofile uint64) int {
	if name == "nginx" {
		return int(nofile/2) - 100
	}
	return int(nofile) - 100
}

// upstreamURLs are the fake upstream's plain HTTP URL (nginx's upstream) and the CA file the
// Go proxies trust for its TLS listener.
type upstreamURLs struct {
	plain, caFile string
}

// startTarget starts the proxy for name (none for direct) as instance (its log's name) with
// upstream upURL, and returns how to reach it.
func startTarget(name, instance, work, self, upURL string, ups upstreamURLs, o options) (*target, func(), error) {
	noop := func() {}
	if name == "direct" {
		return &target{name: "direct", url: upURL, key: upstreamAPIKey}, noop, nil
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, nil, err
	}
	var c, ctl, rds *child
	key := upstreamAPIKey
	caEnv := []string{"SSL_CERT_FILE=" + ups.caFile} // Go reads it for its root CAs on Linux
	switch name {
	case "revproxy", "revproxy-pool":
		c, err = startChild(instance, work, caEnv, self, "-mode", name, "-listen", addr, "-upstream", upURL)
	case "floor":
		if rds, err = startRedis(work, instance); err == nil {
			c, err = startChild(instance, work, caEnv, self, "-mode", name, "-listen", addr, "-upstream", upURL, "-redis", rds.addr)
		}
	case "relay", "relay-open":
		c, ctl, rds, key, err = startRelay(name, instance, work, self, addr, upURL, caEnv, o)
	case "nginx":
		bin, lerr := exec.LookPath("nginx")
		if lerr != nil {
			return nil, noop, nil
		}
		conf, cerr := writeNginxConf(work, addr, ups.plain)
		if cerr != nil {
			return nil, nil, cerr
		}
		c, err = startChild("nginx", work, nil, bin, "-p", work, "-c", conf, "-g", "daemon off;")
	}
	var rdb *redis.Client
	if rds != nil {
		rdb = redis.NewClient(&redis.Options{Addr: rds.addr, PoolSize: 1})
	}
	stopAll := func(d time.Duration) {
		if c != nil {
			c.stop(d)
		}
		if ctl != nil {
			ctl.stop(d)
		}
		if rdb != nil {
			_ = rdb.Close()
		}
		if rds != nil {
			rds.stop(d)
		}
	}
	if err != nil {
		stopAll(time.Second)
		return nil, nil, err
	}
	url := "http://" + addr
	wait := c.waitHTTP
	if ctl != nil {
		wait = c.waitOK // a sidecar answers 503 until the control plane's configuration is applied
	}
	if err := wait(http.DefaultClient, url+"/health", 30*time.Second); err != nil {
		stopAll(time.Second)
		return nil, nil, err
	}
	t := &target{name: name, url: url, key: key, proc: c, redis: rds, rdb: rdb, control: ctl}
	if ctl != nil {
		t.controlURL = "http://" + ctl.addr
	}
	return t, func() { stopAll(10 * time.Second) }, nil
}

// startRelay starts the relay in production shape: its own Redis, a control plane on it
// serving the configuration, and the sidecar (the process measured) taking its configuration
// from the control plane.
func startRelay(name, instance, work, self, addr, upURL string, caEnv []string, o options) (c, ctl, rds *child, key string, err error) {
	policy := "bench"
	if name == "relay-open" {
		policy = "open"
	}
	env, key, rds, err := prepareRelay(work, instance, upURL, policy)
	if err != nil {
		return nil, nil, nil, "", err
	}
	ctlAddr, err := freeAddr()
	if err == nil {
		cenv := append(slices.Clone(env), "CLAUDE_RELAY_DATA_DIR="+filepath.Join(work, "data-control-"+instance))
		ctl, err = startChild("control-"+instance, work, cenv, self, "-mode", "control", "-listen", ctlAddr)
	}
	if err == nil {
		ctl.addr = ctlAddr
		err = ctl.waitOK(http.DefaultClient, "http://"+ctlAddr+"/health", 30*time.Second)
	}
	if err != nil {
		if ctl != nil {
			ctl.stop(time.Second)
		}
		rds.stop(time.Second)
		return nil, nil, nil, "", fmt.Errorf("control plane: %w", err)
	}
	args := []string{self, "-mode", "relay", "-listen", addr}
	if o.cpuProfile != "" && instance == name && name == o.profiled { // the latency phases
		abs, _ := filepath.Abs(o.cpuProfile)
		args = append(args, "-cpuprofile", abs)
	}
	env = append(env, "CLAUDE_RELAY_CONTROL_URL=http://"+ctlAddr)
	c, err = startChild(instance, work, append(env, caEnv...), args...)
	return c, ctl, rds, key, err
}

// prepareRelay starts a dedicated Redis with AOF (as production runs it), stores an upstream
// account and a relay key with the bench policy, and returns the relay's environment, its key
// and the Redis process. Each relay instance gets its own Redis, in a directory of its own.
func prepareRelay(work, instance, upURL, policy string) (env []string, secret string, redis *child, err error) {
	defer func() {
		if err != nil && redis != nil {
			redis.stop(time.Second)
			redis = nil
		}
	}()
	if redis, err = startRedis(work, instance); err != nil {
		return nil, "", nil, err
	}
	redisAddr := redis.addr
	host, port, _ := strings.Cut(redisAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var rdbErr error
	var st *store.Store
	for ctx.Err() == nil {
		rdb, err := store.Connect(ctx, store.RedisConfig{Addr: redisAddr})
		if err != nil {
			rdbErr = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		defer rdb.Close()
		sealer, err := aesgcm.New(benchEncryptionKey)
		if err != nil {
			return nil, "", nil, err
		}
		if st, err = store.Open(ctx, rdb, store.Options{Sealer: sealer}); err != nil {
			return nil, "", nil, err
		}
		break
	}
	if st == nil {
		return nil, "", nil, fmt.Errorf("redis for the relay: %w", rdbErr)
	}
	if _, err := st.AddAccount(ctx, store.AccountSpec{Name: "bench", BaseURL: upURL, Credential: upstreamAPIKey}); err != nil {
		return nil, "", nil, err
	}
	_, secret, err = st.CreateKey(ctx, store.KeySpec{Name: "bench", Policy: policy})
	if err != nil {
		return nil, "", nil, err
	}
	cdir := filepath.Join(work, "config")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return nil, "", nil, err
	}
	if err := os.WriteFile(filepath.Join(cdir, "bench.hcl"), []byte(benchHCL), 0o644); err != nil {
		return nil, "", nil, err
	}
	if _, _, diags := config.Load(cdir); diags.HasErrors() {
		return nil, "", nil, fmt.Errorf("bench configuration: %s", diags.Error())
	}
	env = []string{
		"REDIS_HOST=" + host, "REDIS_PORT=" + port,
		"CRS_SECURITY__JWT_SECRET=" + benchJWTSecret, "CRS_SECURITY__ENCRYPTION_KEY=" + benchEncryptionKey,
		"CLAUDE_RELAY_CONFIG_DIR=" + cdir, "CLAUDE_RELAY_DATA_DIR=" + filepath.Join(work, "data-"+instance),
		"LOG_DIR=" + filepath.Join(work, "logs-"+instance), "LOG_LEVEL=info", "MAX_CONNECTIONS=100000",
	}
	return env, secret, redis, nil
}

// startRedis starts a redis-server of instance's own in work, with AOF (appendfsync everysec)
// and no RDB snapshots, as production runs it.
func startRedis(work, instance string) (*child, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := strings.Cut(addr, ":")
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("%s needs redis-server on PATH: %w", instance, err)
	}
	dir := filepath.Join(work, "redis-"+instance)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	srv, err := startChild("redis", dir, nil, bin, "--port", port, "--bind", host, "--save", "",
		"--appendonly", "yes", "--appendfsync", "everysec", "--dir", dir)
	if err != nil {
		return nil, err
	}
	srv.addr = addr
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		err := rdb.Ping(context.Background()).Err()
		if err == nil {
			return srv, nil
		}
		if time.Since(start) > 15*time.Second {
			srv.stop(time.Second)
			return nil, fmt.Errorf("%s: redis-server at %s: %w", instance, addr, err)
		}
	}
}

// writeNginxConf writes an nginx configuration for proxy_pass with the SSE settings of the
// deployment guide (no buffering, keep-alive upstream).
func writeNginxConf(work, addr, upURL string) (string, error) {
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			return "", err
		}
	}
	conf := fmt.Sprintf(`worker_processes 1;
error_log %[1]s/logs/nginx-error.log warn;
pid %[1]s/nginx.pid;
worker_rlimit_nofile 65536;
events { worker_connections 30000; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp;
  proxy_temp_path %[1]s/tmp;
  upstream fake { server %[2]s; keepalive 256; }
  server {
    listen %[3]s;
    client_max_body_size 10m;
    location = /health { return 200 "ok"; }
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
`, work, strings.TrimPrefix(upURL, "http://"), addr)
	path := filepath.Join(work, "nginx.conf")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}
