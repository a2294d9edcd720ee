package sidecar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/plugins/auth-apikey/apikey"
	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/sidecar"
	"github.com/claude-relay/claude-relay/sidecar/limits"
	"github.com/claude-relay/claude-relay/sidecar/sched"
	"github.com/claude-relay/claude-relay/store"
)

// wiredOptions are the pieces a second sidecar on a harness's Redis and store may replace.
type wiredOptions struct {
	accountStore sidecar.AccountStore // default: the harness's store
	auth         contract.Auth        // default: the built-in API-key provider
	refreshWait  time.Duration        // > 0: the scheduler asks StoreAccounts' refresher on 401
	now          func() time.Time
	accountsPoll time.Duration // StoreAccounts' version poll (default 50 ms)
}

// wired starts another sidecar beside h's, sharing its Redis, store and accounts, with the
// scheduler's refresh hook and last-use recording wired as production wires them.
func (h *harness) wired(o wiredOptions) string {
	t := h.t
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if o.accountStore == nil {
		o.accountStore = h.st
	}
	if o.auth == nil {
		o.auth = apikey.FromStore(h.st, "test", time.Minute, time.Second)
	}
	log := hclog.New(&hclog.LoggerOptions{Output: h.logs, Level: hclog.Debug})
	auth := sidecar.NewCachedAuth(o.auth, h.st, log, time.Minute, time.Second)
	if o.accountsPoll == 0 {
		o.accountsPoll = 50 * time.Millisecond
	}
	accts := sidecar.NewStoreAccounts(o.accountStore, log, o.accountsPoll)
	go auth.Run(ctx)
	go accts.Run(ctx)
	select {
	case <-auth.Subscribed():
	case <-time.After(10 * time.Second):
		t.Fatal("the revocation subscription did not start within 10s")
	}
	so := sched.Options{Logger: log, Now: o.now}
	if o.refreshWait > 0 {
		so.Refresher = accts.Refresher(o.refreshWait)
	}
	srv := sidecar.New(sidecar.Options{
		Logger: log, Auth: auth, Accounts: accts, RequestTimeout: time.Minute, Now: o.now,
		Limits:    limits.New(h.rdb, h.st.Schema(), limits.Options{Logger: log, Now: o.now}),
		Scheduler: sched.New(h.rdb, h.st.Schema(), so),
	})
	snap, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(snap); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs.URL
}

// send posts body to base+path with the relay key and returns the status and body.
func send(t *testing.T, base, key, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req := relayRequest(context.Background(), base+"/v1/messages", key, body, hdr)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, readAll(t, resp.Body)
}

// uniqueBody is jsonBody with its own first message, so no sticky session carries over.
func uniqueBody(model string) string {
	return fmt.Sprintf(`{"model":%q,"max_tokens":256,"messages":[{"role":"user","content":"hello %d"}]}`, model, time.Now().UnixNano())
}

func TestPerKeyRulesAreEnforcedOnTheRequestPath(t *testing.T) {
	h := newHarness(t, harnessOptions{accounts: 2})
	ctx := context.Background()
	accts, err := h.st.ListAccounts(ctx)
	if err != nil || len(accts) != 2 {
		t.Fatalf("got %d accounts (%v), want 2", len(accts), err)
	}
	second := accts[0]
	if second.Priority != 11 {
		second = accts[1]
	}
	grouped, err := h.st.AddAccount(ctx, store.AccountSpec{Name: "eu", Type: "anthropic_api_key", BaseURL: h.up.URL(), Credential: upstreamKey + "-3", Priority: 20, Group: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	one := int64(1)
	cc := map[string]string{"User-Agent": "claude-cli/2.0.1 (external, cli)"}
	curl := map[string]string{"User-Agent": "curl/8.0"}
	sonnet := "claude-sonnet-4-5-20250929"
	type try struct {
		hdr    map[string]string
		status int
		want   string // in the error message; or, for 200, the upstream credential used
	}
	tests := []struct {
		name  string
		rules store.KeyRules
		tries []try
	}{
		{"allowed models", store.KeyRules{AllowedModels: []string{"claude-haiku-*"}},
			[]try{{nil, 403, `model "claude-sonnet-4-5-20250929" is not allowed`}}},
		{"denied models", store.KeyRules{DeniedModels: []string{"claude-sonnet-*"}},
			[]try{{nil, 403, "except claude-sonnet-*"}}},
		{"allowed clients", store.KeyRules{AllowedClients: []string{"claude_code"}},
			[]try{{curl, 403, `client "curl/8.0" is not allowed`}, {cc, 200, upstreamKey}}},
		{"IP allowlist without the client", store.KeyRules{AllowedCIDRs: []string{"10.0.0.0/8"}},
			[]try{{nil, 403, "not in this relay key's IP allowlist"}}},
		{"IP allowlist with the client", store.KeyRules{AllowedCIDRs: []string{"10.0.0.0/8", "127.0.0.0/8"}},
			[]try{{nil, 200, upstreamKey}}},
		{"limit override", store.KeyRules{Limits: store.KeyLimits{RequestsPerMinute: &one}},
			[]try{{nil, 200, upstreamKey}, {nil, 429, "requests_per_minute"}}},
		{"bound to an account", store.KeyRules{Binding: store.KeyBinding{AccountID: second.ID}},
			[]try{{nil, 200, upstreamKey + "-2"}, {nil, 200, upstreamKey + "-2"}}},
		{"bound to a group", store.KeyRules{Binding: store.KeyBinding{Group: grouped.Group}},
			[]try{{nil, 200, upstreamKey + "-3"}}},
		// The account's id is the operator's: the client is told the binding has no account.
		{"bound to a missing account", store.KeyRules{Binding: store.KeyBinding{AccountID: "acc_gone"}},
			[]try{{nil, 500, "bound to an upstream account or account group that has no schedulable account"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, secret, err := h.st.CreateKey(ctx, store.KeySpec{Name: "rules", Rules: tt.rules})
			if err != nil {
				t.Fatal(err)
			}
			for i, tr := range tt.tries {
				h.up.Reset()
				status, body := send(t, h.http.URL, secret, uniqueBody(sonnet), tr.hdr)
				if status != tr.status {
					t.Fatalf("try %d: got %d %s, want %d", i+1, status, body, tr.status)
				}
				if status != 200 {
					typ, msg := anthropicError(t, body)
					wantTyp := map[int]string{403: "permission_error", 429: "rate_limit_error", 500: "api_error"}[status]
					if typ != wantTyp || !strings.Contains(msg, tr.want) {
						t.Errorf("try %d: got %s %q, want %s naming %q", i+1, typ, msg, wantTyp, tr.want)
					}
					if strings.Contains(msg, "acc_gone") {
						t.Errorf("try %d: the message names the account: %q", i+1, msg)
					}
					continue
				}
				reqs, _ := h.upstream(1)
				if got := reqs[0].Header.Get("X-Api-Key"); got != tr.want {
					t.Errorf("try %d: upstream got credential %q, want %q", i+1, got, tr.want)
				}
			}
		})
	}
}

func TestMappedAccountReceivesTheMappedModelAndUsageFollowsTheUpstream(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	const from, to = "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"
	mapped, err := h.st.AddAccount(ctx, store.AccountSpec{Name: "compat", Type: store.AccountTypeAnthropicCompatible,
		BaseURL: h.up.URL(), Credential: upstreamKey + "-2", Priority: 1, ModelMap: map[string]string{from: to}})
	if err != nil {
		t.Fatal(err)
	}
	// A key bound to the mapped account, and the harness's key, bound to nothing, which
	// also reaches it (priority 1) once the sidecar has loaded it.
	boundKey, bound, err := h.st.CreateKey(ctx, store.KeySpec{Name: "compat", Rules: store.KeyRules{Binding: store.KeyBinding{AccountID: mapped.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
		status, _ := send(t, h.http.URL, bound, uniqueBody("claude-opus-4-1-20250805"), nil)
		return status == http.StatusOK
	})
	tests := []struct {
		name, model, wantModel string
	}{
		{"mapped model", from, to},
		{"model the map does not name", "claude-opus-4-1-20250805", "claude-opus-4-1-20250805"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.up.Reset()
			body := uniqueBody(tt.model)
			// Odd spacing and a "model" inside the messages: only the top-level value may change.
			body = strings.Replace(body, `"model":`, ` "model" :  `, 1)
			body = strings.Replace(body, `"content":"hello`, `"content":"\"model\":\"`+tt.model+`\" hello`, 1)
			status, resp := send(t, h.http.URL, bound, body, nil)
			if status != http.StatusOK {
				t.Fatalf("got %d %s, want 200", status, resp)
			}
			reqs, _ := h.upstream(1)
			want := strings.Replace(body, fmt.Sprintf(" :  %q", tt.model), fmt.Sprintf(" :  %q", tt.wantModel), 1)
			if got := string(reqs[0].Body); got != want {
				t.Errorf("upstream got body\n%s\nwant\n%s", got, want)
			}
			var answer struct{ Model string }
			json.Unmarshal([]byte(resp), &answer)
			if answer.Model != tt.wantModel {
				t.Errorf("got response model %q, want the upstream's %q", answer.Model, tt.wantModel)
			}
		})
	}
	// Usage is recorded under the model the upstream reported, never the one the client asked.
	var usage map[string]store.Usage
	testutil.Eventually(t, 5*time.Second, "the condition", func() bool {
		usage, err = h.st.KeyUsage(ctx, boundKey.ID, time.Now())
		return err == nil && usage[to].Requests >= 1
	})
	if got := usage[to].Requests; got != 1 {
		t.Errorf("got %d requests under %s, want 1", got, to)
	}
	if got := usage[from].Requests; got != 0 {
		t.Errorf("got %d requests under the client's model %s, want 0", got, from)
	}
}

func TestOAuth401AsksTheControlPlaneForOneRefreshThenFailsOver(t *testing.T) {
	tests := []struct {
		name        string
		refreshes   bool // a stand-in control plane installs a good token on request
		wantParked  bool
		wantAfterOK string // the credential the next request uses upstream
	}{
		{"the control plane installs a new token", true, false, "Bearer " + upstreamKey},
		{"no new token arrives in time", false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			ctx := context.Background()
			ps := h.st.SubscribeRefreshRequests(ctx)
			defer ps.Close()
			if _, err := ps.Receive(ctx); err != nil { // the subscription confirmation
				t.Fatal(err)
			}
			oauth, err := h.st.AddAccount(ctx, store.AccountSpec{Name: "sub", Type: store.AccountTypeClaudeOAuth,
				BaseURL: h.up.URL(), Credential: "sk-ant-oat01-expired", RefreshToken: "rt", Priority: 1})
			if err != nil {
				t.Fatal(err)
			}
			var published atomic.Int64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for msg := range ps.Channel() {
					if msg.Payload != oauth.ID {
						continue
					}
					published.Add(1)
					if tt.refreshes {
						if err := h.st.SetOAuthTokens(ctx, oauth.ID, upstreamKey, "rt2", nil); err != nil {
							t.Errorf("set tokens: %v", err)
						}
					}
				}
			}()
			base := h.wired(wiredOptions{refreshWait: 2 * time.Second})
			// Several clients meet the 401 at once: one refresh request, every one served.
			var clients sync.WaitGroup
			for range 4 {
				clients.Add(1)
				go func() {
					defer clients.Done()
					if status, body := send(t, base, h.key, uniqueBody("claude-sonnet-4-5-20250929"), nil); status != http.StatusOK {
						t.Errorf("got %d %s, want 200 from the failover account", status, body)
					}
				}()
			}
			clients.Wait()
			testutil.Eventually(t, 5*time.Second, "the condition", func() bool { return published.Load() >= 1 })
			if got := published.Load(); got != 1 {
				t.Errorf("got %d refresh requests, want 1", got)
			}
			parked, err := h.st.ParkedAccounts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			isParked := len(parked) == 1 && parked[0].Account == oauth.ID && parked[0].State == string(sched.Unauthorized)
			if isParked != tt.wantParked {
				t.Errorf("got parks %+v, want the OAuth account parked unauthorized: %v", parked, tt.wantParked)
			}
			if tt.wantAfterOK != "" {
				h.up.Reset()
				if status, body := send(t, base, h.key, uniqueBody("claude-sonnet-4-5-20250929"), nil); status != http.StatusOK {
					t.Fatalf("after the refresh: got %d %s, want 200", status, body)
				}
				reqs, _ := h.upstream(1)
				if got := reqs[0].Header.Get("Authorization"); got != tt.wantAfterOK {
					t.Errorf("after the refresh: upstream got Authorization %q, want %q (the refreshed OAuth account)", got, tt.wantAfterOK)
				}
			}
			ps.Close()
			wg.Wait()
		})
	}
}

// countingTouches counts the last-use writes that reach the store.
type countingTouches struct {
	*store.Store
	n atomic.Int64
}

func (c *countingTouches) TouchAccount(ctx context.Context, id string, at time.Time) error {
	c.n.Add(1)
	return c.Store.TouchAccount(ctx, id, at)
}

func TestAccountLastUseIsRecordedAtMostOncePer10sPerSidecar(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	clock := testutil.NewClock(time.Now().Truncate(time.Second))
	now, advance := clock.Now, func(d time.Duration) { clock.Advance(d) }
	cs := &countingTouches{Store: h.st}
	base := h.wired(wiredOptions{accountStore: cs, now: now})
	accts, err := h.st.ListAccounts(ctx)
	if err != nil || len(accts) != 1 {
		t.Fatalf("got %d accounts (%v), want 1", len(accts), err)
	}
	id := accts[0].ID
	lastUsed := func() time.Time {
		a, err := h.st.GetAccount(ctx, id)
		if err != nil || a.LastUsedAt == nil {
			return time.Time{}
		}
		return *a.LastUsedAt
	}
	steps := []struct {
		advance time.Duration
		want    time.Duration // last_used_at after the request, from the start
		writes  int64
	}{
		{0, 0, 1},
		{time.Second, 0, 1},
		{5 * time.Second, 0, 1},
		{5 * time.Second, 11 * time.Second, 2},
	}
	start := now()
	for i, st := range steps {
		advance(st.advance)
		if status, body := send(t, base, h.key, uniqueBody("claude-sonnet-4-5-20250929"), nil); status != http.StatusOK {
			t.Fatalf("request %d: got %d %s, want 200", i+1, status, body)
		}
		want := start.Add(st.want)
		testutil.Eventually(t, 5*time.Second, "the condition", func() bool { return lastUsed().Equal(want) && cs.n.Load() == st.writes })
	}
	// The writes are queued in order: a stray write from a throttled request would have
	// landed before the fourth one, so the count is final.
	if got := cs.n.Load(); got != 2 {
		t.Errorf("got %d last-use writes for 4 requests over 11 s, want 2", got)
	}
}

// recordingAuth passes calls to the API-key provider and keeps the last request.
type recordingAuth struct {
	contract.Auth
	mu   sync.Mutex
	last contract.AuthRequest
}

func (r *recordingAuth) Authenticate(ctx context.Context, req contract.AuthRequest) (contract.AuthResult, error) {
	r.mu.Lock()
	r.last = req
	r.mu.Unlock()
	return r.Auth.Authenticate(ctx, req)
}

func TestAuthProviderReceivesClientIPAndRoute(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	rec := &recordingAuth{Auth: apikey.FromStore(h.st, "test", time.Minute, time.Second)}
	base := h.wired(wiredOptions{auth: rec})
	if status, body := send(t, base, h.key, jsonBody, nil); status != http.StatusOK {
		t.Fatalf("got %d %s, want 200", status, body)
	}
	rec.mu.Lock()
	got := rec.last
	rec.mu.Unlock()
	if got.Credential != h.key || got.ClientIP != "127.0.0.1" || got.Route != "messages" {
		t.Errorf("got provider request {ip %q route %q credential-matches %v}, want {127.0.0.1 messages true}", got.ClientIP, got.Route, got.Credential == h.key)
	}
}
