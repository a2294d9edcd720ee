package configclient

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
)

// envelope builds a valid snapshot envelope with a route at path.
func envelope(t *testing.T, epoch string, version int64, path string) *configapi.Envelope {
	t.Helper()
	snap, src, diags := config.LoadFiles(map[string][]byte{"r.hcl": []byte(
		"pool \"p\" {}\nroute \"r\" {\n  paths = [\"" + path + "\"]\n  pool = \"p\"\n}\n")})
	if diags.HasErrors() {
		t.Fatal(src.FormatDiagnostics(diags))
	}
	e, err := configapi.NewEnvelope(snap)
	if err != nil {
		t.Fatal(err)
	}
	e.Epoch, e.Version = epoch, version
	return e
}

// script is a Fetcher that answers polls from a queue and records the requests.
type script struct {
	mu      sync.Mutex
	answers []func() (*configapi.Envelope, error)
	reqs    []configapi.PollRequest
	polled  chan struct{}
}

func newScript(answers ...func() (*configapi.Envelope, error)) *script {
	return &script{answers: answers, polled: make(chan struct{}, 100)}
}

func (s *script) Fetch(ctx context.Context, req configapi.PollRequest) (*configapi.Envelope, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	var next func() (*configapi.Envelope, error)
	if len(s.answers) > 0 {
		next, s.answers = s.answers[0], s.answers[1:]
	}
	s.mu.Unlock()
	s.polled <- struct{}{}
	if next == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return next()
}

func (s *script) requests() []configapi.PollRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]configapi.PollRequest(nil), s.reqs...)
}

func answer(e *configapi.Envelope) func() (*configapi.Envelope, error) {
	return func() (*configapi.Envelope, error) { return e, nil }
}

// applier records applied snapshots' first route path and refuses those in refuse.
type applier struct {
	mu      sync.Mutex
	applied []string
	refuse  string
}

func (a *applier) apply(s *config.Snapshot) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := s.Routes[0].Paths[0]
	if p == a.refuse {
		return errors.New("cannot compile " + p)
	}
	a.applied = append(a.applied, p)
	return nil
}

func (a *applier) paths() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.applied...)
}

// runUntilPolls runs the client until the fetcher has been called n times.
func runUntilPolls(t *testing.T, c *Client, s *script, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	for range n {
		select {
		case <-s.polled:
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for poll; requests so far: %+v", s.requests())
		}
	}
	cancel()
	<-done
}

func TestStaleDuplicateAndNewEpochSnapshots(t *testing.T) {
	s := newScript(
		answer(envelope(t, "e1", 2, "/v2")),
		answer(envelope(t, "e1", 2, "/dup")),   // duplicate version: ignored
		answer(envelope(t, "e1", 1, "/stale")), // older version: ignored
		answer(envelope(t, "e2", 1, "/epoch")), // new epoch: applied despite the lower number
	)
	a := &applier{}
	c, err := New(Options{Fetcher: s, Apply: a.apply, ID: "s1", MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runUntilPolls(t, c, s, 5)
	if got, want := strings.Join(a.paths(), ","), "/v2,/epoch"; got != want {
		t.Errorf("applied: got %s, want %s", got, want)
	}
	reqs := s.requests()
	if r := reqs[4]; r.Epoch != "e2" || r.Version != 1 {
		t.Errorf("last poll reports %s/%d, want e2/1", r.Epoch, r.Version)
	}
	if st := c.Status(); st.Version != 1 || st.Epoch != "e2" || !st.Reachable || st.Source != SourceControlPlane {
		t.Errorf("status: got %+v", st)
	}
}

func TestRefusedSnapshotIsReportedOnTheNextPollAndTheOldOneKept(t *testing.T) {
	s := newScript(
		answer(envelope(t, "e1", 1, "/good")),
		answer(envelope(t, "e1", 2, "/bad")),
		answer(envelope(t, "e1", 2, "/bad")), // sent again: not re-applied
		answer(envelope(t, "e1", 3, "/fixed")),
	)
	a := &applier{refuse: "/bad"}
	c, err := New(Options{Fetcher: s, Apply: a.apply, ID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	runUntilPolls(t, c, s, 5)
	reqs := s.requests()
	tests := []struct {
		poll        int
		version     int64
		nackVersion int64
	}{
		{0, 0, 0},
		{1, 1, 0}, // ACK of 1
		{2, 1, 2}, // NACK of 2, still running 1
		{3, 1, 2},
		{4, 3, 0}, // ACK of 3 clears the NACK
	}
	for _, tt := range tests {
		r := reqs[tt.poll]
		if r.Version != tt.version || r.NackVersion != tt.nackVersion {
			t.Errorf("poll %d: got version %d nack %d, want version %d nack %d", tt.poll, r.Version, r.NackVersion, tt.version, tt.nackVersion)
		}
	}
	if !strings.Contains(reqs[2].NackError, "cannot compile /bad") {
		t.Errorf("NACK error: got %q, want the apply error", reqs[2].NackError)
	}
	if got, want := strings.Join(a.paths(), ","), "/good,/fixed"; got != want {
		t.Errorf("applied: got %s, want %s", got, want)
	}
}

func TestAppliedSnapshotIsSavedAndServedAtTheNextStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "config-snapshot.json")
	s := newScript(answer(envelope(t, "e1", 7, "/saved")))
	a := &applier{}
	c, err := New(Options{Fetcher: s, Apply: a.apply, ID: "s1", StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.LoadDisk(); !errors.Is(err, ErrNoDiskCopy) {
		t.Fatalf("before any apply: got %v, want ErrNoDiskCopy", err)
	}
	runUntilPolls(t, c, s, 2)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved copy: got %v, %v, want a 0600 file", fi, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want only the snapshot (no temporary files left)", len(entries))
	}

	// A restart without a control plane.
	down := FetcherFunc(func(context.Context, configapi.PollRequest) (*configapi.Envelope, error) {
		return nil, errors.New("connection refused")
	})
	b := &applier{}
	c2, err := New(Options{Fetcher: down, Apply: b.apply, ID: "s1", StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.LoadDisk(); err != nil {
		t.Fatal(err)
	}
	if got := b.paths(); len(got) != 1 || got[0] != "/saved" {
		t.Errorf("applied from disk: got %v, want [/saved]", got)
	}
	if st := c2.Status(); st.Version != 7 || st.Source != SourceDisk {
		t.Errorf("status: got %+v, want version 7 from disk", st)
	}

	// A corrupted copy is refused rather than applied.
	raw, _ := os.ReadFile(path)
	var env configapi.Envelope
	json.Unmarshal(raw, &env)
	env.Config = []byte(strings.Replace(string(env.Config), "/saved", "/evil", 1))
	raw, _ = json.Marshal(env)
	if err := WriteFileAtomic(path, raw); err != nil {
		t.Fatal(err)
	}
	c3, _ := New(Options{Fetcher: down, Apply: b.apply, ID: "s1", StatePath: path})
	if err := c3.LoadDisk(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt copy: got %v, want it refused as corrupt", err)
	}
}

func TestHealthSaysWhyWhenNothingIsApplied(t *testing.T) {
	down := FetcherFunc(func(context.Context, configapi.PollRequest) (*configapi.Envelope, error) {
		return nil, errors.New("dial tcp 127.0.0.1:3100: connection refused")
	})
	c, err := New(Options{Fetcher: down, Apply: (&applier{}).apply, ID: "s1", ControlPlane: "http://127.0.0.1:3100", StatePath: "/nonexistent/x.json"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PollOnce(t.Context()); err == nil {
		t.Fatal("got nil error, want the poll's failure")
	}
	hc := c.HealthCheck()
	err = hc.Check(t.Context())
	for _, want := range []string{"http://127.0.0.1:3100", "unreachable since", "connection refused", "no saved copy at /nonexistent/x.json"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("health: got %v, want it to contain %q", err, want)
		}
	}
	if st := hc.Info().(Status); st.Reachable || st.LastError == "" {
		t.Errorf("details: got %+v, want unreachable with the error", st)
	}
}

func TestBackoffGrowsWithJitterAndIsCapped(t *testing.T) {
	c, err := New(Options{Fetcher: newScript(), Apply: (&applier{}).apply, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		failures int
		lo, hi   time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{10, 500 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		for range 50 {
			if d := c.backoff(tt.failures); d < tt.lo || d > tt.hi {
				t.Fatalf("backoff(%d): got %s, want within [%s, %s]", tt.failures, d, tt.lo, tt.hi)
			}
		}
	}
}

func TestStateMadeBeforeTheClientReportsWhatTheClientDoes(t *testing.T) {
	opts := Options{Fetcher: newScript(answer(envelope(t, "e1", 3, "/v3"))), ID: "s1", ControlPlane: "http://cp:3100"}
	state := NewState(opts)
	check := state.HealthCheck() // what /health holds before the client exists
	if err := check.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "http://cp:3100") {
		t.Fatalf("before any poll: got %v, want a problem naming the control plane", err)
	}
	a := &applier{}
	opts.Apply, opts.State = a.apply, state
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PollOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := check.Check(t.Context()); err != nil {
		t.Errorf("after the client applied version 3: got %v, want healthy", err)
	}
	if st := state.Status(); st.Version != 3 || st.Epoch != "e1" || !st.Reachable || st != c.Status() {
		t.Errorf("state: got %+v, want version 3 of e1, reachable, the client's own status", st)
	}
}
