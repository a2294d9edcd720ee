package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/app"
	"github.com/claude-relay/claude-relay/sidecar"
)

// child is a process the harness started: the fake upstream, a proxy, Redis or nginx.
type child struct {
	name   string
	cmd    *exec.Cmd
	out    *os.File // combined output, kept for error messages
	exited chan struct{}
	addr   string // where it listens, for Redis
}

// startChild runs argv with env added to a minimal environment, logging to a file in dir.
func startChild(name, dir string, env []string, argv ...string) (*child, error) {
	out, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, out: out, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.exited) }()
	return c, nil
}

// stop sends SIGTERM and waits up to d, then kills.
func (c *child) stop(d time.Duration) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(d):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.out.Close()
}

// tail returns the end of the child's output, for error messages.
func (c *child) tail() string {
	b, _ := os.ReadFile(c.out.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// waitHTTP polls url with client until it answers (any status) or d passes.
func (c *child) waitHTTP(client *http.Client, url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited at start:\n%s", c.name, c.tail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer on %s within %s:\n%s", c.name, url, d, c.tail())
		}
	}
}

// waitOK polls url with client until it answers 200 or d passes.
func (c *child) waitOK(client *http.Client, url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	status := 0
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if status = resp.StatusCode; status == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited at start:\n%s", c.name, c.tail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer 200 on %s within %s (last status %d):\n%s", c.name, url, d, status, c.tail())
		}
	}
}

// procUsage is CPU time and resident memory of a process and its descendants.
type procUsage struct {
	CPU time.Duration
	RSS int64 // bytes
}

// clockTick is USER_HZ, 100 on every Linux platform Go supports.
const clockTick = 100

// usage reads /proc for the child and its descendants (nginx workers).
func (c *child) usage() (procUsage, error) {
	var u procUsage
	for _, pid := range descendants(c.cmd.Process.Pid) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // exited meanwhile
		}
		// Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseInt(fields[11], 10, 64)
		st, _ := strconv.ParseInt(fields[12], 10, 64)
		u.CPU += time.Duration(ut+st) * time.Second / clockTick
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(string(status)))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				u.RSS += kb * 1024
			}
		}
	}
	if u.CPU == 0 && u.RSS == 0 {
		return u, errors.New(c.name + ": no /proc data")
	}
	return u, nil
}

// descendants returns pid and every process below it.
func descendants(pid int) []int {
	pids := []int{pid}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return pids
	}
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		pp, _ := strconv.Atoi(fields[1])
		parent[p] = pp
	}
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if contains(pids, pp) && !contains(pids, p) {
				pids = append(pids, p)
				changed = true
			}
		}
	}
	return pids
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// --- the modes the harness re-executes itself in ---

// runUpstream serves the fake Anthropic API on addr (plain HTTP, for the latency and
// throughput phases) and, when tlsAddr is set, on tlsAddr over TLS with HTTP/2 offered by
// ALPN (for the open-streams phase, as api.anthropic.com serves it). Recorded requests are
// forgotten every second so memory stays flat over a long run.
func runUpstream(addr, tlsAddr, certFile, keyFile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s := fakeupstream.New(fakeupstream.Options{})
	ln, err := s.Listen(addr)
	if err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.Reset()
			}
		}
	}()
	errc := make(chan error, 2)
	if tlsAddr != "" {
		tln, err := net.Listen("tcp", tlsAddr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", tlsAddr, err)
		}
		// ServeTLS configures HTTP/2 and offers h2 and http/1.1 by ALPN; the server's
		// default of concurrent streams per connection applies.
		srv := &http.Server{
			Handler:           &streamCounter{next: s, conns: map[string]*connStreams{}},
			ReadHeaderTimeout: 10 * time.Second,
			TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}},
		}
		go func() { errc <- srv.ServeTLS(tln, certFile, keyFile) }()
		defer srv.Close()
	}
	go func() { errc <- s.Serve(ctx, ln, time.Second) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		return <-errc
	}
}

// upstreamStatsPath answers, on the fake upstream's TLS listener, which connections carry
// requests right now and with which protocol.
const upstreamStatsPath = "/bench/upstream-stats"

// upstreamStats is what the fake upstream's TLS listener carries at one moment.
type upstreamStats struct {
	Conns   int            `json:"conns"`   // connections with at least one request in flight
	Streams int            `json:"streams"` // requests in flight
	Protos  map[string]int `json:"protos"`  // connections by protocol ("HTTP/2.0", "HTTP/1.1")
}

// streamCounter counts requests in flight per client connection (its remote address).
type streamCounter struct {
	next  http.Handler
	mu    sync.Mutex
	conns map[string]*connStreams
}

type connStreams struct {
	proto  string
	active int
}

func (c *streamCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == upstreamStatsPath {
		c.mu.Lock()
		st := upstreamStats{Conns: len(c.conns), Protos: map[string]int{}}
		for _, cs := range c.conns {
			st.Streams += cs.active
			st.Protos[cs.proto]++
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
		return
	}
	c.mu.Lock()
	cs := c.conns[r.RemoteAddr]
	if cs == nil {
		cs = &connStreams{proto: r.Proto}
		c.conns[r.RemoteAddr] = cs
	}
	cs.active++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if cs.active--; cs.active == 0 {
			delete(c.conns, r.RemoteAddr)
		}
		c.mu.Unlock()
	}()
	c.next.ServeHTTP(w, r)
}

// writeCert writes a self-signed ECDSA certificate for 127.0.0.1 and its key into dir, for
// the fake upstream's TLS listener; the proxies trust it through SSL_CERT_FILE.
func writeCert(dir string) (certFile, keyFile string, pool *x509.CertPool, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", nil, fmt.Errorf("serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "claude-relay bench upstream"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", nil, fmt.Errorf("create certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", nil, fmt.Errorf("marshal key: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "upstream-cert.pem"), filepath.Join(dir, "upstream-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", "", nil, err
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool, nil
}

// fetchUpstreamStats asks the fake upstream's TLS listener what it carries now.
func fetchUpstreamStats(client *http.Client, base string) (upstreamStats, error) {
	var st upstreamStats
	resp, err := client.Get(base + upstreamStatsPath)
	if err != nil {
		return st, fmt.Errorf("upstream stats: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("upstream stats: %w", err)
	}
	return st, nil
}

// runReverseProxy is baseline (b): a plain httputil.ReverseProxy with no features and the
// relay's upstream transport. Its default flushing is the right one for this API:
// text/event-stream and unknown-length responses are flushed on every write, a JSON answer
// of known length once at its end. (Flushing every write of every response, as earlier
// runs did, cost the baseline a write per read and made it look slower than it is.) With
// pooled it is (b′): the same with a BufferPool, the tuning any Go proxy in production has,
// so the relay is also compared with the fastest ReverseProxy, not only the default one.
func runReverseProxy(addr, upstream string, pooled bool) error {
	h, err := newReverseProxy(upstream, pooled)
	if err != nil {
		return err
	}
	return serveUntilSignal(addr, h)
}

// newReverseProxy is (b)'s handler, with a BufferPool when pooled.
func newReverseProxy(upstream string, pooled bool) (http.Handler, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream url: %w", err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = sidecar.NewTransport() // the relay's own: HTTP/2 over TLS, same pool sizes
	if pooled {
		rp.BufferPool = &copyBuffers{} // (b′): without one it allocates 32 KiB per response
	}
	// Full duplex: by default the HTTP/1.1 server drains and closes a request body when the
	// response header is written. The HTTP/1.1 transport reads the body once more after its
	// last byte, to see EOF, and so got "invalid Read on closed Body" and closed the upstream
	// connection: after a short response that only cost a redial, mid-stream it cut the stream
	// (the 1–3 stream errors of earlier runs). The relay reads the body whole before it
	// forwards it, so it never hit this.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		rp.ServeHTTP(w, r)
	}), nil
}

// serveUntilSignal serves h on addr until SIGTERM or an interrupt.
func serveUntilSignal(addr string, h http.Handler) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// copyBuffers is an httputil.BufferPool of 32 KiB buffers, as the relay pools its own.
type copyBuffers struct{ p sync.Pool }

func (b *copyBuffers) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *copyBuffers) Put(buf []byte) { b.p.Put(&buf) }

// runControl is the control plane of (c), as `claude-relay control` runs it: it serves the
// sidecar its configuration and runs its background jobs on the same Redis.
func runControl(addr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	env, err := app.LoadEnv()
	if err != nil {
		return err
	}
	err = app.RunControl(ctx, env, app.Options{Listen: addr, Grace: 2 * time.Second})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// runRelay is (c): the relay's sidecar exactly as `claude-relay sidecar` runs it (the same
// app.RunSidecar), linked into this binary so it can be CPU-profiled with -cpuprofile.
func runRelay(addr, cpuProfile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	env, err := app.LoadEnv()
	if err != nil {
		return err
	}
	err = app.RunSidecar(ctx, env, app.Options{Listen: addr, Grace: 2 * time.Second})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
