// Command bench is the load harness behind `make bench`: the relay against a direct call, a
// plain httputil.ReverseProxy and nginx, side by side on loopback, as a table and JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/store"
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
pool "default" {}
route "messages" {
  paths   = ["/v1/messages"]
  methods = ["POST"]
  pool    = "default"
  policy  = "bench"
}
`

type options struct {
	duration   time.Duration
	streams    []int
	out        string
	targets    map[string]bool
	cpuProfile string
	keep       bool
}

func main() {
	mode := flag.String("mode", "", "internal: run as upstream, revproxy or relay")
	listen := flag.String("listen", "", "internal: listen address of -mode")
	upstream := flag.String("upstream", "", "internal: upstream base URL of -mode revproxy")
	var o options
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of each latency/throughput phase")
	streams := flag.String("streams", "1000,10000", "open-stream counts at which memory per stream is measured")
	flag.StringVar(&o.out, "out", "bench/results/latest.json", "JSON results file (empty: none)")
	targets := flag.String("targets", "direct,revproxy,relay,nginx", "what to measure; nginx is skipped when not on PATH")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the relay process to this file (go tool pprof FILE)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs of every process)")
	flag.Parse()

	var err error
	switch *mode {
	case "upstream":
		err = runUpstream(*listen)
	case "revproxy":
		err = runReverseProxy(*listen, *upstream)
	case "relay":
		err = runRelay(*listen, o.cpuProfile)
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
	// A proxy holds two descriptors per open stream (client and upstream side).
	maxStreams := int(nofile/2) - 100
	for _, n := range o.streams {
		if n > maxStreams {
			res.Notes = append(res.Notes, fmt.Sprintf("%d open streams need %d descriptors per proxy; RLIMIT_NOFILE allows %d here, so %d streams were measured instead", n, 2*n+100, nofile, maxStreams))
			n = maxStreams
		}
		res.StreamLevels = append(res.StreamLevels, n)
	}

	upAddr, err := freeAddr()
	if err != nil {
		return err
	}
	up, err := startChild("upstream", work, nil, self, "-mode", "upstream", "-listen", upAddr)
	if err != nil {
		return err
	}
	defer up.stop(5 * time.Second)
	upURL := "http://" + upAddr
	if err := up.waitHTTP(upURL+"/v1/models", 10*time.Second); err != nil {
		return err
	}

	for _, name := range []string{"direct", "revproxy", "relay", "nginx"} {
		if !o.targets[name] {
			continue
		}
		t, stop, err := startTarget(name, work, self, upURL, o)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if t == nil {
			res.Notes = append(res.Notes, name+": skipped (nginx is not on PATH)")
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: measuring %s …\n", name)
		res.Targets = append(res.Targets, measure(t, o.duration, res.StreamLevels))
		stop()
	}
	res.computeRatios()
	res.writeMarkdown(stdout)
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return fmt.Errorf("results dir: %w", err)
		}
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
		fmt.Fprintf(stdout, "\nJSON: %s\n", o.out)
	}
	return nil
}

// startTarget starts the proxy for name (none for direct) and returns how to reach it.
func startTarget(name, work, self, upURL string, o options) (*target, func(), error) {
	noop := func() {}
	if name == "direct" {
		return &target{name: "direct", url: upURL, key: upstreamAPIKey}, noop, nil
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, nil, err
	}
	var c *child
	key := upstreamAPIKey
	switch name {
	case "revproxy":
		c, err = startChild("revproxy", work, nil, self, "-mode", "revproxy", "-listen", addr, "-upstream", upURL)
	case "relay":
		var env []string
		env, key, err = prepareRelay(work, upURL)
		if err != nil {
			return nil, nil, err
		}
		args := []string{self, "-mode", "relay", "-listen", addr}
		if o.cpuProfile != "" {
			abs, _ := filepath.Abs(o.cpuProfile)
			args = append(args, "-cpuprofile", abs)
		}
		c, err = startChild("relay", work, env, args...)
	case "nginx":
		bin, lerr := exec.LookPath("nginx")
		if lerr != nil {
			return nil, noop, nil
		}
		conf, cerr := writeNginxConf(work, addr, upURL)
		if cerr != nil {
			return nil, nil, cerr
		}
		c, err = startChild("nginx", work, nil, bin, "-p", work, "-c", conf, "-g", "daemon off;")
	}
	if err != nil {
		return nil, nil, err
	}
	url := "http://" + addr
	if err := c.waitHTTP(url+"/health", 20*time.Second); err != nil {
		c.stop(time.Second)
		return nil, nil, err
	}
	return &target{name: name, url: url, key: key, proc: c}, func() { c.stop(10 * time.Second) }, nil
}

// prepareRelay starts a dedicated Redis with AOF (as production runs it), stores an upstream
// account and a relay key with the bench policy, and returns the relay's environment.
func prepareRelay(work, upURL string) ([]string, string, error) {
	redisAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	host, port, _ := strings.Cut(redisAddr, ":")
	rbin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", fmt.Errorf("the relay needs redis-server on PATH: %w", err)
	}
	rdir := filepath.Join(work, "redis")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return nil, "", err
	}
	if _, err := startChild("redis", rdir, nil, rbin, "--port", port, "--bind", host, "--save", "",
		"--appendonly", "yes", "--appendfsync", "everysec", "--dir", rdir); err != nil {
		return nil, "", err
	}
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
			return nil, "", err
		}
		if st, err = store.Open(ctx, rdb, store.Options{Sealer: sealer}); err != nil {
			return nil, "", err
		}
		break
	}
	if st == nil {
		return nil, "", fmt.Errorf("redis for the relay: %w", rdbErr)
	}
	if _, err := st.AddAccount(ctx, store.AccountSpec{Name: "bench", BaseURL: upURL, Credential: upstreamAPIKey}); err != nil {
		return nil, "", err
	}
	_, secret, err := st.CreateKey(ctx, store.KeySpec{Name: "bench", Policy: "bench"})
	if err != nil {
		return nil, "", err
	}
	cdir := filepath.Join(work, "config")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(cdir, "bench.hcl"), []byte(benchHCL), 0o644); err != nil {
		return nil, "", err
	}
	if _, _, diags := config.Load(cdir); diags.HasErrors() {
		return nil, "", fmt.Errorf("bench configuration: %s", diags.Error())
	}
	env := []string{
		"REDIS_HOST=" + host, "REDIS_PORT=" + port,
		"CRS_SECURITY__JWT_SECRET=" + benchJWTSecret, "CRS_SECURITY__ENCRYPTION_KEY=" + benchEncryptionKey,
		"CLAUDE_RELAY_CONFIG_DIR=" + cdir, "CLAUDE_RELAY_DATA_DIR=" + filepath.Join(work, "data"),
		"LOG_DIR=" + filepath.Join(work, "logs"), "LOG_LEVEL=info", "MAX_CONNECTIONS=100000",
	}
	return env, secret, nil
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
