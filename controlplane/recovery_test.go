package controlplane

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/store"
)

// announced collects the generated admin passwords a control plane shows.
type announced struct {
	mu        sync.Mutex
	passwords []string
}

func (a *announced) announce(_, password string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.passwords = append(a.passwords, password)
}

func (a *announced) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.passwords...)
}

// ownRedis starts a redis-server of the test's own (no persistence) with a client on it.
func ownRedis(t *testing.T) (*testredis.Server, *redis.Client) {
	t.Helper()
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return srv, rdb
}

// loginWith logs in as the admin with password and returns the answer.
func (h *harness) loginWith(password string) response {
	h.t.Helper()
	return h.do("POST", "/admin/login", "", adminapi.LoginRequest{Username: testUser, Password: password})
}

func TestEmptiedRedisIsNoticedOnLoginAndRefusesOlderSessions(t *testing.T) {
	for _, loss := range []struct {
		name string
		lose func(t *testing.T, srv *testredis.Server, rdb *redis.Client)
	}{
		{"FLUSHALL", func(t *testing.T, _ *testredis.Server, rdb *redis.Client) {
			if err := rdb.FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"restart without persistence", func(t *testing.T, srv *testredis.Server, _ *redis.Client) {
			srv.Stop()
			srv.Start()
		}},
	} {
		t.Run(loss.name, func(t *testing.T) {
			srv, rdb := ownRedis(t)
			// The periodic check is out of the way: this is the check on a failed login.
			h := newHarnessOn(t, rdb, "", func(o *Options) { o.StoreCheck = time.Hour })
			old := h.login()
			wantStatus(t, h.do("GET", "/admin/whoami", old, nil), http.StatusOK)

			loss.lose(t, srv, rdb)

			// The admin logs in at once with ADMIN_PASSWORD: the failed lookup noticed the loss.
			r := h.loginWith(testPassword)
			fresh := wantDecoded[adminapi.LoginResponse](t, r, http.StatusOK)
			wantStatus(t, h.do("GET", "/admin/keys", fresh.Token, nil), http.StatusOK)

			// The session from before the loss is refused, though its revocation list is gone.
			r = h.do("GET", "/admin/keys", old, nil)
			wantStatus(t, r, http.StatusUnauthorized)
			if msg := r.errorBody(t).Message; !strings.Contains(msg, "Redis was emptied") {
				t.Errorf("got message %q, want it to say Redis was emptied", msg)
			}
			if !strings.Contains(h.logs.String(), "Redis has lost the admin state") {
				t.Errorf("the control plane did not log the loss:\n%s", h.logs.String())
			}
		})
	}
}

func TestEmptiedRedisIsNoticedOnASessionAndPeriodically(t *testing.T) {
	srv, rdb := ownRedis(t)
	got := &announced{}
	h := newHarnessOn(t, rdb, "", func(o *Options) {
		o.Admin.Password = "" // generated, announced once, as at a first start without ADMIN_PASSWORD
		o.Admin.Announce = got.announce
		o.StoreCheck = 50 * time.Millisecond
	})
	if n := len(got.list()); n != 1 {
		t.Fatalf("got %d announced passwords at the first bootstrap, want 1", n)
	}
	first := got.list()[0]
	r := h.loginWith(first)
	before := wantDecoded[adminapi.LoginResponse](t, r, http.StatusOK)

	// A session's request after the loss is refused and triggers the recovery itself.
	srv.Stop()
	srv.Start()
	r = h.do("GET", "/admin/whoami", before.Token, nil)
	wantStatus(t, r, http.StatusUnauthorized)
	if n := len(got.list()); n != 2 {
		t.Fatalf("got %d announced passwords after the loss, want a second one", n)
	}
	second := got.list()[1]
	if second == first {
		t.Fatal("the re-created admin got the old password, want a new generated one")
	}
	wantStatus(t, h.loginWith(first), http.StatusUnauthorized)
	wantStatus(t, h.loginWith(second), http.StatusOK)

	// With nobody asking, the periodic check notices the next loss by itself.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.srv.RefreshTokens(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(got.list()) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the periodic check did not re-create the admin within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if epoch, err := h.st.AdminEpoch(ctx); err != nil || epoch == "" {
		t.Errorf("got admin epoch (%q, %v) after the periodic recovery, want a new one", epoch, err)
	}
}

func TestKeysCreatedAfterAnEmptiedRedisAreFoundByProcessesStartedLater(t *testing.T) {
	_, rdb := ownRedis(t)
	h := newHarnessOn(t, rdb, "", func(o *Options) { o.StoreCheck = time.Hour })
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	token := h.loginWithToken(testPassword) // notices the loss
	r := h.do("POST", "/admin/keys", token, adminapi.CreateKeyRequest{Name: "after the loss"})
	created := wantDecoded[adminapi.CreateKeyResponse](t, r, http.StatusCreated)

	// A sidecar started now opens the store afresh and must find the key.
	sealer, err := aesgcm.New("0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	later, err := store.Open(context.Background(), rdb, store.Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := later.LookupKey(context.Background(), created.Secret); err != nil {
		t.Errorf("a process started after the loss: LookupKey got %v, want the key", err)
	}
}

// loginWithToken logs in as the admin with password and returns the session token.
func (h *harness) loginWithToken(password string) string {
	h.t.Helper()
	r := h.loginWith(password)
	out := wantDecoded[adminapi.LoginResponse](h.t, r, http.StatusOK)
	return out.Token
}
