package controlplane

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

const (
	testUser     = "admin"
	testPassword = "correct horse battery staple"
)

var testJWTSecret = []byte("test-jwt-secret-0123456789abcdef-0123456789")

// harness is a control plane on a real Redis, served over loopback HTTP.
type harness struct {
	t     *testing.T
	st    *store.Store
	srv   *Server
	http  *httptest.Server
	logs  *testutil.Buffer
	clock *testutil.Clock
	key   ed25519.PrivateKey // the control plane's session signing key
}

func newHarness(t *testing.T, tweak ...func(*Options)) *harness {
	t.Helper()
	rdb, prefix := testredis.New(t)
	return newHarnessOn(t, rdb, prefix, tweak...)
}

// newHarnessOn is newHarness on the given Redis and key prefix.
func newHarnessOn(t *testing.T, rdb redis.UniversalClient, prefix string, tweak ...func(*Options)) *harness {
	t.Helper()
	ctx := context.Background()
	clk := testutil.NewClock(time.Now().UTC().Truncate(time.Second))
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix, Now: clk.Now})
	logs := &testutil.Buffer{}
	key := newTestKey(t)
	opts := Options{
		Store:      st,
		SigningKey: key,
		Admin:      AdminBootstrap{Username: testUser, Password: testPassword},
		Logger:     hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace}),
		Now:        clk.Now,
		bcryptCost: bcrypt.MinCost,
	}
	for _, f := range tweak {
		f(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &harness{t: t, st: st, srv: srv, http: hs, logs: logs, clock: clk, key: opts.SigningKey}
}

// newTestKey returns a fresh Ed25519 signing key.
func newTestKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// response is a decoded HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorBody decodes an error response.
func (r response) errorBody(t *testing.T) adminapi.ErrorDetail {
	t.Helper()
	var e adminapi.ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("decode error body %q: %v", r.body, err)
	}
	return e.Error
}

// decode decodes a successful response into v.
func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode body %q: %v", r.body, err)
	}
}

// do sends body (a string is sent as is, anything else as JSON) with token as bearer.
func (h *harness) do(method, path, token string, body any) response {
	h.t.Helper()
	return h.doHeader(method, path, token, nil, body)
}

// doHeader is do with extra request headers.
func (h *harness) doHeader(method, path, token string, hdr map[string]string, body any) response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			h.t.Fatalf("encode request: %v", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, h.http.URL+path, rd)
	if err != nil {
		h.t.Fatalf("new request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("read %s %s: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// login returns a fresh session token for the test admin.
// loggedIn is a harness and an admin session token of it.
func loggedIn(t *testing.T, tweak ...func(*Options)) (*harness, string) {
	t.Helper()
	h := newHarness(t, tweak...)
	return h, h.login()
}

func (h *harness) login() string {
	h.t.Helper()
	r := h.do("POST", "/admin/login", "", adminapi.LoginRequest{Username: testUser, Password: testPassword})
	if r.status != http.StatusOK {
		h.t.Fatalf("login: got status %d (%s), want 200", r.status, r.body)
	}
	var out adminapi.LoginResponse
	r.decode(h.t, &out)
	return out.Token
}

// wantDecoded fails the test unless r has status want, and returns r's body decoded.
func wantDecoded[T any](t *testing.T, r response, want int) T {
	t.Helper()
	wantStatus(t, r, want)
	var out T
	r.decode(t, &out)
	return out
}

// wantStatus fails the test unless r has status want.
func wantStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("got status %d (body %s), want %d", r.status, r.body, want)
	}
}

// wantFields fails the test unless r is a 400 naming exactly the fields in want.
func wantFields(t *testing.T, r response, want ...string) {
	t.Helper()
	wantStatus(t, r, http.StatusBadRequest)
	e := r.errorBody(t)
	if e.Type != adminapi.ErrInvalidRequest {
		t.Errorf("got error type %q, want %q", e.Type, adminapi.ErrInvalidRequest)
	}
	if len(e.Fields) != len(want) {
		t.Errorf("got fields %v, want exactly %v", e.Fields, want)
	}
	for _, f := range want {
		if e.Fields[f] == "" {
			t.Errorf("got fields %v, want a problem for %q", e.Fields, f)
		}
	}
}
