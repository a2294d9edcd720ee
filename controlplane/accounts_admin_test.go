package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/store"
)

// addAccount adds an account through the API.
func (h *harness) addAccount(token string, req adminapi.AddAccountRequest) adminapi.Account {
	h.t.Helper()
	r := h.do("POST", "/admin/accounts", token, req)
	out := wantDecoded[adminapi.AccountResponse](h.t, r, http.StatusCreated)
	return out.Account
}

func boolPtr(b bool) *bool { return &b }

func TestAccountTypesStoreSecretsAndShowOnlyHints(t *testing.T) {
	h, token := loggedIn(t)
	const access, refresh = "sk-ant-oat01-ACCESS-0123456789abcdef", "sk-ant-ort01-REFRESH-0123456789abcdef"
	exp := h.clock.Now().Add(8 * time.Hour)

	oauth := h.addAccount(token, adminapi.AddAccountRequest{
		Name: "my subscription", Type: adminapi.AccountClaudeOAuth, AccessToken: access, RefreshToken: refresh,
		ExpiresAt: exp.Format(time.RFC3339), Group: "eu", Schedulable: boolPtr(false),
		ProxyURL: "http://bob:hunter2@proxy.internal:3128",
	})
	want := adminapi.Account{
		ID: oauth.ID, Name: "my subscription", Type: "claude_oauth", BaseURL: "https://api.anthropic.com", Priority: 50,
		Group: "eu", Schedulable: false, CreatedAt: h.clock.Now(), CredentialHint: "sk-ant-…cdef",
		Proxy: "http://***@proxy.internal:3128", Status: adminapi.AccountStatus{State: adminapi.AccountActive},
		OAuth: &adminapi.OAuthDetails{TokenExpiresAt: &exp, HasRefreshToken: true},
	}
	if diff := cmp.Diff(want, oauth); diff != "" {
		t.Errorf("oauth account (-want +got):\n%s", diff)
	}

	setup := h.addAccount(token, adminapi.AddAccountRequest{Name: "setup token", Type: adminapi.AccountClaudeOAuth, AccessToken: "sk-ant-oat01-LONGLIVED-0123456789"})
	if setup.OAuth == nil || setup.OAuth.HasRefreshToken {
		t.Errorf("setup token account: got oauth %+v, want details without a refresh token", setup.OAuth)
	}
	compat := h.addAccount(token, adminapi.AddAccountRequest{
		Name: "gateway", Type: adminapi.AccountAnthropicCompatible, BaseURL: "https://llm.example.com/anthropic/", APIKey: testAPIKey,
		ModelMap: map[string]string{"claude-sonnet-4-5": "sonnet-latest"}, Priority: intPtr(10),
	})
	if compat.BaseURL != "https://llm.example.com/anthropic" || compat.ModelMap["claude-sonnet-4-5"] != "sonnet-latest" || compat.Priority != 10 {
		t.Errorf("compatible account: got %+v", compat)
	}

	r := h.do("GET", "/admin/accounts", token, nil)
	wantStatus(t, r, http.StatusOK)
	for _, secret := range []string{access, refresh, "hunter2", testAPIKey} {
		if strings.Contains(string(r.body), secret) {
			t.Errorf("account list reveals %q", secret)
		}
	}
	if strings.Contains(h.logs.String(), "hunter2") || strings.Contains(h.logs.String(), access) {
		t.Error("the log holds a secret")
	}
	sec, err := h.st.AccountSecrets(context.Background(), oauth.ID)
	if err != nil || sec.Credential != access || sec.RefreshToken != refresh || sec.ProxyURL != "http://bob:hunter2@proxy.internal:3128" {
		t.Errorf("stored secrets: got (%+v, %v), want them sealed and intact", sec, err)
	}
}

func TestAccountUpdateAndUnpark(t *testing.T) {
	h, token := loggedIn(t)
	a := h.addAccount(token, adminapi.AddAccountRequest{Name: "console", APIKey: testAPIKey})
	path := "/admin/accounts/" + a.ID
	ctx := context.Background()
	v0, _ := h.st.AccountsVersion(ctx)

	r := h.do("PATCH", path, token, adminapi.UpdateAccountRequest{
		Name: strPtr("console 2"), Priority: intPtr(7), Group: strPtr("us"), Schedulable: boolPtr(false),
		ProxyURL: strPtr("socks5://proxy:1080"), APIKey: strPtr("sk-ant-api03-rotated-key-000000000000"),
	})
	got := wantDecoded[adminapi.AccountResponse](t, r, http.StatusOK)
	if got.Account.Name != "console 2" || got.Account.Priority != 7 || got.Account.Group != "us" || got.Account.Schedulable ||
		got.Account.Proxy != "socks5://proxy:1080" || got.Account.CredentialHint != "sk-ant-…0000" {
		t.Errorf("updated account: got %+v", got.Account)
	}
	if v1, _ := h.st.AccountsVersion(ctx); v1 <= v0 {
		t.Errorf("accounts version: got %d after update, want more than %d so sidecars reload", v1, v0)
	}
	r = h.do("PATCH", path, token, adminapi.UpdateAccountRequest{ProxyURL: strPtr("")})
	got = adminapi.AccountResponse{}
	r.decode(t, &got)
	if got.Account.Proxy != "" {
		t.Errorf("proxy after clearing: got %q, want none", got.Account.Proxy)
	}
	wantFields(t, h.do("PATCH", path, token, adminapi.UpdateAccountRequest{Priority: intPtr(0), BaseURL: strPtr("ftp://x")}), "priority", "base_url")
	wantStatus(t, h.do("PATCH", "/admin/accounts/nope", token, adminapi.UpdateAccountRequest{Name: strPtr("x")}), http.StatusNotFound)

	// The scheduler parks the account; the API shows it and unpark clears it.
	until := h.clock.Now().Add(time.Minute)
	h.st.Client().HSet(ctx, h.st.Schema().AccountsParked(), a.ID, fmt.Sprintf("%d|rate_limited|429|rate limit exceeded", until.UnixMilli()))
	r = h.do("GET", path, token, nil)
	got = adminapi.AccountResponse{}
	r.decode(t, &got)
	wantStatus := adminapi.AccountStatus{State: "rate_limited", Reason: "rate limit exceeded", Until: &until}
	if diff := cmp.Diff(wantStatus, got.Account.Status); diff != "" {
		t.Errorf("parked status (-want +got):\n%s", diff)
	}
	r = h.do("POST", path+"/unpark", token, nil)
	got = adminapi.AccountResponse{}
	r.decode(t, &got)
	if got.Account.Status.State != adminapi.AccountActive || len(got.Account.Parked) != 0 {
		t.Errorf("after unpark: got %+v %v, want active and no parks", got.Account.Status, got.Account.Parked)
	}
	if r := h.do("POST", "/admin/accounts/nope/unpark", token, nil); r.status != http.StatusNotFound {
		t.Errorf("unpark a missing account: got %d, want 404", r.status)
	}
}

func TestAccountTestSendsOneTokenRequestWithTheAccountsCredential(t *testing.T) {
	up := fakeupstream.Start(t, fakeupstream.Options{})
	h, token := loggedIn(t)
	key := h.addAccount(token, adminapi.AddAccountRequest{Name: "key", BaseURL: up.URL(), APIKey: testAPIKey})
	oauth := h.addAccount(token, adminapi.AddAccountRequest{Name: "sub", Type: "claude_oauth", BaseURL: up.URL(), AccessToken: "sk-ant-oat01-token-0123456789abcdef"})

	tests := []struct {
		name      string
		id        string
		script    *fakeupstream.Script
		wantOK    bool
		wantCode  int
		check     func(t *testing.T, hdr http.Header)
		wantError string
	}{
		{"api key", key.ID, nil, true, 200, func(t *testing.T, hdr http.Header) {
			if hdr.Get("X-Api-Key") != testAPIKey || hdr.Get("Authorization") != "" {
				t.Errorf("got x-api-key %q authorization %q, want the key as x-api-key only", hdr.Get("X-Api-Key"), hdr.Get("Authorization"))
			}
		}, ""},
		{"oauth bearer with beta", oauth.ID, nil, true, 200, func(t *testing.T, hdr http.Header) {
			if hdr.Get("Authorization") != "Bearer sk-ant-oat01-token-0123456789abcdef" || hdr.Get("Anthropic-Beta") != "oauth-2025-04-20" || hdr.Get("X-Api-Key") != "" {
				t.Errorf("got authorization %q beta %q x-api-key %q", hdr.Get("Authorization"), hdr.Get("Anthropic-Beta"), hdr.Get("X-Api-Key"))
			}
		}, ""},
		{"upstream refusal is reported", key.ID, &fakeupstream.Script{Status: 403, ErrorMessage: "account disabled"}, false, 403, nil, "account disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.Reset()
			if tt.script != nil {
				up.Enqueue(*tt.script)
			}
			r := h.do("POST", "/admin/accounts/"+tt.id+"/test", token, nil)
			res := wantDecoded[adminapi.TestAccountResult](t, r, http.StatusOK)
			if res.OK != tt.wantOK || res.HTTPStatus != tt.wantCode || res.Model != DefaultTestModel || !strings.Contains(res.Error, tt.wantError) {
				t.Errorf("got %+v, want ok %t status %d error containing %q", res, tt.wantOK, tt.wantCode, tt.wantError)
			}
			reqs := up.Requests()
			if len(reqs) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(reqs))
			}
			if !strings.Contains(string(reqs[0].Body), `"max_tokens":1`) {
				t.Errorf("test request body %s: want max_tokens 1", reqs[0].Body)
			}
			if tt.check != nil {
				tt.check(t, reqs[0].Header)
			}
		})
	}
	t.Run("connect error", func(t *testing.T) {
		dead := h.addAccount(token, adminapi.AddAccountRequest{Name: "dead", BaseURL: "http://127.0.0.1:1", APIKey: testAPIKey})
		r := h.do("POST", "/admin/accounts/"+dead.ID+"/test", token, adminapi.TestAccountRequest{Model: "claude-x"})
		var res adminapi.TestAccountResult
		r.decode(t, &res)
		if res.OK || res.Error == "" || res.Model != "claude-x" {
			t.Errorf("got %+v, want a failed test with the connect error", res)
		}
	})
	wantStatus(t, h.do("POST", "/admin/accounts/nope/test", token, nil), http.StatusNotFound)
}

// relayKey has the format of a claude-relay key, as a pasted `export ANTHROPIC_API_KEY=cr_…`
// holds one.
var relayKey = "cr_" + strings.Repeat("ab12", 16)

func TestRelayKeyIsRefusedForAnthropicsOwnAPIButAllowedForAnotherRelay(t *testing.T) {
	h, token := loggedIn(t)
	refused := []struct {
		name  string
		req   adminapi.AddAccountRequest
		field string
	}{
		{"console key account", adminapi.AddAccountRequest{Name: "a", APIKey: relayKey}, "api_key"},
		{"compatible account at api.anthropic.com", adminapi.AddAccountRequest{Name: "a", Type: "anthropic_compatible", BaseURL: "https://API.anthropic.com/", APIKey: relayKey}, "api_key"},
		{"oauth account", adminapi.AddAccountRequest{Name: "a", Type: "claude_oauth", AccessToken: relayKey}, "access_token"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do("POST", "/admin/accounts", token, tt.req)
			wantFields(t, r, tt.field)
			msg := r.errorBody(t).Fields[tt.field]
			for _, want := range []string{"claude-relay key (cr_…)", "api.anthropic.com can never accept it", "anthropic_compatible"} {
				if !strings.Contains(msg, want) {
					t.Errorf("%s: got %q, want it to say %q", tt.field, msg, want)
				}
			}
			if strings.Contains(string(r.body), relayKey) {
				t.Error("the answer repeats the key")
			}
		})
	}

	// Another relay (an Anthropic-compatible endpoint) may be reached with a relay key.
	other := h.addAccount(token, adminapi.AddAccountRequest{Name: "other relay", Type: "anthropic_compatible", BaseURL: "https://relay.example.com", APIKey: relayKey})
	// ...but not moved to Anthropic's API while it holds one, unless its key changes too.
	wantFields(t, h.do("PATCH", "/admin/accounts/"+other.ID, token, map[string]any{"base_url": "https://api.anthropic.com"}), "base_url")
	r := h.do("PATCH", "/admin/accounts/"+other.ID, token, map[string]any{"base_url": "https://api.anthropic.com", "api_key": testAPIKey})
	wantStatus(t, r, http.StatusOK)

	console := h.addAccount(token, adminapi.AddAccountRequest{Name: "console", APIKey: testAPIKey})
	wantFields(t, h.do("PATCH", "/admin/accounts/"+console.ID, token, map[string]any{"api_key": relayKey}), "api_key")
	if strings.Contains(h.logs.String(), relayKey) {
		t.Error("the log holds the relay key")
	}
}

func TestAccountShowsItsSubscriptionWindowsAndNearLimitPark(t *testing.T) {
	h, token := loggedIn(t)
	a := h.addAccount(token, adminapi.AddAccountRequest{Name: "max", APIKey: testAPIKey})
	b := h.addAccount(token, adminapi.AddAccountRequest{Name: "console", APIKey: testAPIKey + "2"})
	ctx := context.Background()
	now := h.clock.Now().UTC()
	reset5h, reset7d := now.Add(2*time.Hour).Truncate(time.Second), now.Add(90*time.Hour).Truncate(time.Second)
	reading := store.Windows{Status: "allowed_warning", Claim: "five_hour", ObservedAt: now,
		FiveHour: &store.Window{Utilization: 0.93, Reset: reset5h, Status: "allowed_warning"},
		SevenDay: &store.Window{Utilization: 0.41, Reset: reset7d, Status: "allowed"}}
	// What a sidecar writes after a response with the headers, and its near_limit park.
	h.st.Client().HSet(ctx, h.st.Schema().AccountWindows(), a.ID, reading.Encode())
	h.st.Client().HSet(ctx, h.st.Schema().AccountsParked(), a.ID, fmt.Sprintf("%d|near_limit|200|5-hour window 93%% used (the pool stops at 90%%)", reset5h.UnixMilli()))

	u5, u7 := 0.93, 0.41
	want := adminapi.SubscriptionWindows{Utilization5h: &u5, Reset5h: &reset5h, Status5h: "allowed_warning",
		Utilization7d: &u7, Reset7d: &reset7d, Status7d: "allowed", WindowStatus: "allowed_warning", RepresentativeClaim: "five_hour", WindowsObservedAt: &now}
	var got adminapi.AccountResponse
	r := h.do("GET", "/admin/accounts/"+a.ID, token, nil)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &got)
	if diff := cmp.Diff(want, got.Account.SubscriptionWindows); diff != "" {
		t.Errorf("get: windows (-want +got):\n%s", diff)
	}
	if st := got.Account.Status; st.State != "near_limit" || st.Until == nil || !st.Until.Equal(reset5h) {
		t.Errorf("get: status %+v, want near_limit until %s", st, reset5h)
	}
	var list adminapi.AccountList
	r = h.do("GET", "/admin/accounts", token, nil)
	r.decode(t, &list)
	for _, acct := range list.Accounts {
		switch acct.ID {
		case a.ID:
			if diff := cmp.Diff(want, acct.SubscriptionWindows); diff != "" {
				t.Errorf("list: windows (-want +got):\n%s", diff)
			}
		case b.ID:
			if acct.SubscriptionWindows != (adminapi.SubscriptionWindows{}) {
				t.Errorf("list: an account without a reading shows %+v, want nothing", acct.SubscriptionWindows)
			}
		}
	}
	if !strings.Contains(string(r.body), `"utilization_5h":0.93`) || strings.Count(string(r.body), `"utilization_7d"`) != 1 {
		t.Errorf("list JSON: got %s, want utilization_5h and utilization_7d on the one account with a reading", r.body)
	}
	wantStatus(t, h.do("DELETE", "/admin/accounts/"+a.ID, token, nil), http.StatusNoContent)
	if n, _ := h.st.Client().HLen(ctx, h.st.Schema().AccountWindows()).Result(); n != 0 {
		t.Errorf("windows after delete: got %d fields, want 0", n)
	}
}

func TestClearSessionAndUnbindAccountAnswerHowManyAndAreAudited(t *testing.T) {
	h, token := loggedIn(t)
	ctx := context.Background()
	rdb, keys := h.st.Client(), h.st.Schema()
	rdb.Set(ctx, keys.StickySession("p", store.StickySessionHash("sess-1")), "acct-a", time.Hour)
	rdb.Set(ctx, keys.StickySession("p", store.StickySessionHash("sess-2")), "acct-a", time.Hour)
	rdb.Set(ctx, keys.StickySession("p", store.StickySessionHash("sess-3")), "acct-b", time.Hour)

	var got adminapi.BindingsCleared
	r := h.do("DELETE", "/admin/sessions/"+store.StickySessionHash("sess-1"), token, nil) // by its hash
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &got)
	if got.Cleared != 1 {
		t.Errorf("clear by hash: got %+v, want 1", got)
	}
	r = h.do("POST", "/admin/accounts/acct-a/unbind", token, nil)
	wantStatus(t, r, http.StatusOK)
	got = adminapi.BindingsCleared{}
	r.decode(t, &got)
	if got.Cleared != 1 {
		t.Errorf("unbind: got %+v, want 1 (sess-2; sess-3 is another account's)", got)
	}
	wantFields(t, h.do("DELETE", "/admin/sessions/"+strings.Repeat("x", 300), token, nil), "session")
	logs := h.logs.String()
	for _, action := range []string{"action=session.clear", "action=account.unbind"} {
		if !strings.Contains(logs, action) {
			t.Errorf("want an audit line with %s", action)
		}
	}
}
