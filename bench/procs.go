package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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
	"syscall"
	"time"

	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/app"
)

// child is a process the harness started: the fake upstream, a proxy, Redis or nginx.
type child struct {
	name   string
	cmd    *exec.Cmd
	out    *os.File // combined output, kept for error messages
	exited chan struct{}
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

// waitHTTP polls url until it answers (any status) or d passes.
func (c *child) waitHTTP(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(url)
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

// runUpstream serves the fake Anthropic API on addr until SIGTERM. Recorded requests are
// forgotten every second so memory stays flat over a long run.
func runUpstream(addr string) error {
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
	return s.Serve(ctx, ln, time.Second)
}

// runReverseProxy is baseline (b): a plain httputil.ReverseProxy with no features, flushing
// every write (as any SSE proxy must) and a transport sized like the relay's.
func runReverseProxy(addr, upstream string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	target, err := url.Parse(upstream)
	if err != nil {
		return fmt.Errorf("upstream url: %w", err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	rp.Transport = &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	srv := &http.Server{Addr: addr, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
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
