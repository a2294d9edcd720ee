package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	smallBody  = `{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"ping"}]}`
	streamBody = `{"model":"claude-sonnet-4-5-20250929","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"Tell me a story"}]}`
	// streamScript paces a stream like a model generating text: the first event at once,
	// then 10 text deltas 10 ms apart.
	streamScript = `{"pace":"10ms","deltas":10}`
	// longScript keeps a stream open for minutes: an event every 2 s.
	longScript = `{"pace":"2s","deltas":120}`
)

// target is one way to reach the fake upstream: direct or through a proxy.
type target struct {
	name string
	url  string // base URL
	key  string // x-api-key to send
	proc *child // the proxy process measured; nil for direct
	// redis is the relay's Redis server, whose CPU is reported on its own, and rdb one
	// connection to it for INFO; nil for the others.
	redis *child
	rdb   *redis.Client
	// control is the relay's control plane (its Redis traffic is counted with the sidecar's).
	control    *child
	controlURL string
	// upstreamStats, when set, tells what the fake upstream carries while streams are open.
	upstreamStats func() (upstreamStats, error)
}

func (t *target) request(ctx context.Context, body, script string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url+"/v1/messages", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	req.Header.Set("X-Api-Key", t.key)
	if script != "" {
		req.Header.Set("X-Fake-Script", script)
	}
	return req, nil
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}}
}

// phase is what one load phase measured.
type phase struct {
	Requests int64
	Errors   int64
	Lat      []time.Duration // per request: full response, or first byte for streams
	Elapsed  time.Duration
	CPU      time.Duration // proxy CPU time spent during the phase
	RedisCPU time.Duration // CPU time of the relay's Redis during the phase (/proc)
	CtlCPU   time.Duration // CPU time of the relay's control plane during the phase
	Redis    *redisCost    // the relay's Redis cost per request; nil for the others
}

// redisSettle is how long a phase waits after its last response before its Redis and CPU
// readings, so work a request leaves behind (the charge after the response, the usage
// recorder's batch, at most 20 ms late) is counted in the phase that caused it.
const redisSettle = 250 * time.Millisecond

// redisWindow is the readings at the start of a phase against the relay's Redis.
type redisWindow struct {
	info  redisInfo
	relay relayCounters
	err   error
}

// openRedisWindow reads the relay's counters, then Redis's; nil for targets without Redis.
func (t *target) openRedisWindow() *redisWindow {
	if t.rdb == nil {
		return nil
	}
	w := &redisWindow{}
	if w.relay, w.err = t.relayCounters(); w.err == nil {
		w.info, w.err = readRedisInfo(context.Background(), t.rdb)
	}
	return w
}

// relayCounters are the Redis counters of the sidecar and its control plane, summed: both
// send to the relay's Redis.
func (t *target) relayCounters() (relayCounters, error) {
	rc, err := fetchRelayCounters(t.url)
	if err != nil || t.controlURL == "" {
		return rc, err
	}
	cc, err := fetchRelayCounters(t.controlURL)
	if err != nil {
		return rc, err
	}
	return rc.plus(cc), nil
}

// close reads Redis, then the relay (the reverse order of open, so the relay's sends and
// Redis's executions cover the same span), and returns the cost per request.
func (w *redisWindow) close(t *target, requests int64) (*redisCost, error) {
	if w.err != nil {
		return nil, w.err
	}
	info, err := readRedisInfo(context.Background(), t.rdb)
	if err != nil {
		return nil, err
	}
	rc, err := t.relayCounters()
	if err != nil {
		return nil, err
	}
	c := perRequest(info.since(w.info), rc.since(w.relay), requests)
	return &c, nil
}

// closedLoop runs conc workers that send requests back to back for d and times each one;
// with firstByte it times the first body byte of a stream instead of the whole response.
func closedLoop(t *target, conc int, d time.Duration, body, script string, firstByte bool) phase {
	client := newClient(conc)
	defer client.CloseIdleConnections()
	var (
		mu   sync.Mutex
		p    phase
		errs atomic.Int64
	)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	window := t.openRedisWindow()
	before, redisBefore, ctlBefore := t.cpu(), cpuOf(t.redis), cpuOf(t.control)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			buf := make([]byte, 32<<10)
			for ctx.Err() == nil {
				req, err := t.request(context.Background(), body, script)
				if err != nil {
					errs.Add(1)
					continue
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				var first time.Duration
				n, err := resp.Body.Read(buf)
				if n > 0 || err == nil {
					first = time.Since(t0)
				}
				for err == nil {
					_, err = resp.Body.Read(buf)
				}
				resp.Body.Close()
				if !errors.Is(err, io.EOF) || resp.StatusCode != 200 {
					errs.Add(1)
					continue
				}
				if firstByte {
					lat = append(lat, first)
				} else {
					lat = append(lat, time.Since(t0))
				}
			}
			mu.Lock()
			p.Lat = append(p.Lat, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	p.Elapsed = time.Since(start)
	if window != nil {
		time.Sleep(redisSettle)
	}
	p.CPU = t.cpu() - before
	p.RedisCPU = cpuOf(t.redis) - redisBefore
	p.CtlCPU = cpuOf(t.control) - ctlBefore
	p.Requests = int64(len(p.Lat))
	p.Errors = errs.Load()
	if window != nil {
		var err error
		if p.Redis, err = window.close(t, p.Requests); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: Redis counters: %v\n", t.name, err)
		} else if p.Redis.CPUUS == 0 && p.Requests > 0 {
			p.Redis.CPUUS = float64(p.RedisCPU.Microseconds()) / float64(p.Requests) // INFO without cpu
		}
	}
	return p
}

func (t *target) cpu() time.Duration { return cpuOf(t.proc) }

// cpuOf is the CPU time c and its descendants have used so far; 0 for nil.
func cpuOf(c *child) time.Duration {
	if c == nil {
		return 0
	}
	u, err := c.usage()
	if err != nil {
		return 0
	}
	return u.CPU
}

// streamsResult is what holding n streams open measured.
type streamsResult struct {
	Wanted, Open int
	Errors       int64
	RSSBefore    int64
	RSSOpen      int64
	OpenTime     time.Duration
	Upstream     *upstreamStats // what the upstream carried with every stream open, when known
}

// holdStreams opens n long streams (at most 256 connecting at once), waits until each has
// delivered its first byte, samples the proxy's resident memory, then closes them all.
func holdStreams(t *target, n int, timeout time.Duration) streamsResult {
	r := streamsResult{Wanted: n}
	client := newClient(16)
	defer client.CloseIdleConnections()
	if t.proc != nil {
		time.Sleep(200 * time.Millisecond)
		r.RSSBefore = medianRSS(t.proc)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		open atomic.Int64
		errs atomic.Int64
		wg   sync.WaitGroup
	)
	gate := make(chan struct{}, 256)
	stream := func() {
		defer wg.Done()
		released := false
		release := func() {
			if !released {
				released = true
				<-gate
			}
		}
		defer release()
		req, err := t.request(ctx, streamBody, longScript)
		if err != nil {
			errs.Add(1)
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			errs.Add(1)
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 512)
		if _, err := resp.Body.Read(buf); err != nil || resp.StatusCode != 200 {
			errs.Add(1)
			return
		}
		open.Add(1)
		release()
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				if ctx.Err() == nil {
					errs.Add(1) // ended before we closed it
				}
				return
			}
		}
	}
	start := time.Now()
	launched := make(chan struct{})
	go func() {
		defer close(launched)
		for range n {
			wg.Add(1)
			gate <- struct{}{}
			go stream()
		}
	}()
	deadline := time.Now().Add(timeout)
	for open.Load()+errs.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	r.OpenTime = time.Since(start)
	time.Sleep(500 * time.Millisecond) // let the proxy settle with every stream open
	r.Open = int(open.Load())
	if t.proc != nil {
		r.RSSOpen = medianRSS(t.proc)
	}
	if t.upstreamStats != nil {
		if st, err := t.upstreamStats(); err == nil {
			r.Upstream = &st
		}
	}
	r.Errors = errs.Load() // streams that failed to open or ended early, before the close
	cancel()
	<-launched
	wg.Wait()
	if short := int64(n) - int64(r.Open) - r.Errors; short > 0 {
		r.Errors += short // never opened within the timeout
	}
	return r
}

func percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

// medianRSS samples the process's resident memory five times, 100 ms apart, and returns the
// median, so one sample taken just before or after a GC cycle does not decide the result.
func medianRSS(c *child) int64 {
	var samples []int64
	for i := range 5 {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		if u, err := c.usage(); err == nil {
			samples = append(samples, u.RSS)
		}
	}
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	return samples[len(samples)/2]
}
