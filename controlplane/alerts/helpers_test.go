package alerts

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

// testSecret is a Standard Webhooks secret (whsec_ + base64).
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// received is one request a receiver got.
type received struct {
	path   string
	query  string
	header http.Header
	body   []byte
}

// receiver is a local HTTP destination that records requests and answers 500 to the first
// failFirst of them.
type receiver struct {
	srv       *httptest.Server
	mu        sync.Mutex
	got       []received
	failFirst atomic.Int32
	answer    string // body of a 200
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{answer: `{}`}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{path: req.URL.Path, query: req.URL.RawQuery, header: req.Header.Clone(), body: b})
		r.mu.Unlock()
		if r.failFirst.Add(-1) >= 0 {
			http.Error(w, "receiver down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, r.answer)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// testEnv is what the secret fields read in these tests.
var testEnv = map[string]string{}

func lookup(extra map[string]string) func(string) (string, bool) {
	return func(n string) (string, bool) { v, ok := extra[n]; return v, ok }
}

// openStore opens a store on a fresh prefix of the test Redis.
func openStore(t *testing.T) (*store.Store, redis.UniversalClient, string) {
	t.Helper()
	rdb, prefix := testredis.New(t)
	return openStoreOn(t, rdb, prefix), rdb, prefix
}

func openStoreOn(t *testing.T, rdb redis.UniversalClient, prefix string) *store.Store {
	t.Helper()
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix})
	return st
}

// newTestService builds a fast Service: 20 ms ticks, 150 ms gathering, 50 ms retry base.
func newTestService(t *testing.T, st *store.Store, alerts map[string]config.Alert, env map[string]string, tweak ...func(*Options)) *Service {
	t.Helper()
	opts := Options{
		Store:     st,
		Alerts:    func() map[string]config.Alert { return alerts },
		Lookup:    lookup(env),
		Tick:      20 * time.Millisecond,
		Gather:    150 * time.Millisecond,
		RetryBase: 50 * time.Millisecond,
		Lease:     time.Second,
	}
	for _, f := range tweak {
		f(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs s until the test ends.
func run(t *testing.T, s *Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func webhookAlert(url string, events ...string) config.Alert {
	return config.Alert{Kind: config.AlertWebhook, URL: url, Secret: config.Secret{Env: "HOOK_SECRET"},
		Events: events, MinSeverity: config.SeverityInfo, Cooldown: "300ms"}
}

func parked(id string) Event {
	return Event{Name: config.EventAccountParked, Severity: config.SeverityWarning, Subject: id, Summary: "parked as unauthorized (401)"}
}
