package sidecar_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/health"
	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/plugins/auth-apikey/apikey"
	"github.com/claude-relay/claude-relay/sidecar"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/sidecar/sched"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

const (
	testEncryptionKey = "0123456789abcdef0123456789abcdef"
	upstreamKey       = "sk-ant-api03-upstream-test-key-1"
)

// harness is a sidecar wired to a real Redis, the real store and a fake upstream.
type harness struct {
	t        *testing.T
	rdb      redis.UniversalClient
	st       *store.Store
	up       *fakeupstream.Server
	srv      *sidecar.Server
	http     *httptest.Server
	key      string
	keyID    string
	logs     *testutil.Buffer
	reg      *metrics.Registry
	stopRec  context.CancelFunc
	recorder *sidecar.Recorder
	sched    *sched.Scheduler
}

type harnessOptions struct {
	rdb       redis.UniversalClient // default: testredis.New
	hcl       string                // default: the embedded default configuration
	accounts  int                   // upstream accounts, all on the one fake upstream (default 1)
	spoolPath string
	now       func() time.Time // the sidecar's clock (limit windows, parking); nil: time.Now
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	prefix := ""
	if o.rdb == nil {
		o.rdb, prefix = testredis.New(t)
	} else {
		prefix = "crs-test:" + strings.ReplaceAll(t.Name(), "/", "-") + ":"
	}
	if o.accounts == 0 {
		o.accounts = 1
	}
	st := storetest.Open(t, o.rdb, store.Options{Prefix: prefix})
	up := fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{upstreamKey, upstreamKey + "-2", upstreamKey + "-3"}})
	for i := range o.accounts {
		cred := upstreamKey
		if i > 0 {
			cred += "-" + string(rune('1'+i))
		}
		if _, err := st.AddAccount(ctx, store.AccountSpec{Name: "acct" + string(rune('1'+i)), Type: "anthropic_api_key", BaseURL: up.URL(), Credential: cred, Priority: 10 + i}); err != nil {
			t.Fatal(err)
		}
	}
	k, secret, err := st.CreateKey(ctx, store.KeySpec{Name: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.Buffer{}
	log := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	reg := metrics.NewRegistry()
	auth := sidecar.NewCachedAuth(apikey.FromStore(st, "test", time.Minute, time.Second), st, log, time.Minute, time.Second)
	accts := sidecar.NewStoreAccounts(st, log, 50*time.Millisecond)
	rec := sidecar.NewRecorder(st, sidecar.RecorderOptions{Logger: log, Metrics: reg, SpoolPath: o.spoolPath})
	recCtx, stopRec := context.WithCancel(context.Background())
	go auth.Run(ctx)
	select { // requests made before the subscription would be flushed by it
	case <-auth.Subscribed():
	case <-time.After(10 * time.Second):
		t.Fatal("the revocation subscription did not start within 10s")
	}
	go accts.Run(ctx)
	go rec.Run(recCtx, 2*time.Second)
	t.Cleanup(func() { stopRec(); rec.Wait() })
	sc := sched.New(o.rdb, st.Schema(), sched.Options{Logger: log, Now: o.now})
	go sc.Run(ctx)

	srv := sidecar.New(sidecar.Options{
		Logger: log, Version: "test", Auth: auth, Accounts: accts, Usage: rec, Metrics: reg,
		RequestTimeout: time.Minute,
		Health:         []health.Check{{Name: "redis", Check: func(ctx context.Context) error { return o.rdb.Ping(ctx).Err() }}},
		Limits:         limits.New(o.rdb, st.Schema(), limits.Options{Logger: log, Now: o.now}),
		Scheduler:      sc,
		Now:            o.now,
		Keys:           st,
		Retention:      st,
		SidecarID:      "sc-test:1",
	})
	var snap *config.Snapshot
	if o.hcl == "" {
		snap, err = config.Default()
		if err != nil {
			t.Fatal(err)
		}
	} else {
		s, src, diags := config.LoadFiles(map[string][]byte{"test.hcl": []byte(o.hcl)})
		snap = s
		if diags.HasErrors() {
			var b bytes.Buffer
			src.WriteDiagnostics(&b, diags)
			t.Fatalf("test config: %s", b.String())
		}
	}
	if err := srv.Apply(snap); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &harness{t: t, rdb: o.rdb, st: st, up: up, srv: srv, http: hs, key: secret, keyID: k.ID, logs: logs, reg: reg, stopRec: stopRec, recorder: rec, sched: sc}
}

// post sends a raw request to the relay.
func (h *harness) post(path, key, body string, hdr map[string]string) *http.Response {
	h.t.Helper()
	req := relayRequest(context.Background(), h.http.URL+path, key, body, hdr)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

// postStatus posts body with the harness's key and hdr to /v1/messages and returns the
// answer's body; an answer with another status than want fails the test.
func (h *harness) postStatus(t *testing.T, body string, hdr map[string]string, want int) string {
	t.Helper()
	resp := h.post("/v1/messages", h.key, body, hdr)
	got := readAll(t, resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("got %d %s, want %d", resp.StatusCode, got, want)
	}
	return got
}

// relayRequest is a POST of body to url with the API version, the relay key (none when
// key is "") and hdr's headers: the request every test sends a sidecar.
func relayRequest(ctx context.Context, url, key, body string, hdr map[string]string) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		panic(err) // a URL the test built itself
	}
	req.Header.Set("Anthropic-Version", "2023-06-01")
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return req
}

// sendMessage posts body to base's /v1/messages with the relay key and the fake upstream's
// script (none when ""), and returns the answer with its body read and closed.
func sendMessage(base, key, body, script string) (*http.Response, string, error) {
	var hdr map[string]string
	if script != "" {
		hdr = map[string]string{fakeupstream.ScriptHeader: script}
	}
	resp, err := http.DefaultClient.Do(relayRequest(context.Background(), base+"/v1/messages", key, body, hdr))
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// burst sends n requests at once, the i-th to urls[i%len(urls)] with the fake upstream's
// script, and hands each answer and its body to count (from the request's goroutine); a
// request that fails fails the test.
func burst(t *testing.T, urls []string, key, script string, n int, count func(resp *http.Response, body string)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, body, err := sendMessage(urls[i%len(urls)], key, jsonBody, script)
			if err != nil {
				t.Error(err)
				return
			}
			count(resp, body)
		})
	}
	wg.Wait()
}

func readAll(t *testing.T, r io.ReadCloser) string {
	t.Helper()
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// waitUsage waits until the store shows want requests for the key and returns the usage.
func (h *harness) waitUsage(model string, requests int64) store.Usage {
	h.t.Helper()
	var got store.Usage
	testutil.Eventually(h.t, 10*time.Second, "the condition", func() bool {
		m, err := h.st.KeyUsage(context.Background(), h.keyID, time.Now())
		if err != nil {
			return false
		}
		got = m[model]
		return got.Requests >= requests
	})
	return got
}

const streamBody = `{"model":"claude-sonnet-4-5-20250929","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"Hello, relay"}]}`
const jsonBody = `{"model":"claude-sonnet-4-5-20250929","max_tokens":256,"messages":[{"role":"user","content":"Hello, relay"}]}`

// upstream waits (bounded) until the fake upstream has finished n requests.
func (h *harness) upstream(n int) ([]fakeupstream.Request, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	reqs, err := h.up.WaitRequests(ctx, n)
	if err != nil {
		h.t.Fatalf("the fake upstream did not see %d requests: %v", n, err)
	}
	return reqs, nil
}

// waitWritten waits until the recorder has had n records acknowledged by Redis.
func (h *harness) waitWritten(n int) {
	h.t.Helper()
	want := fmt.Sprintf("claude_relay_usage_records_written_total %d\n", n)
	testutil.Eventually(h.t, 10*time.Second, "the condition", func() bool {
		resp, err := http.Get(h.http.URL + "/metrics")
		if err != nil {
			return false
		}
		return strings.Contains(readAll(h.t, resp.Body), want)
	})
}
