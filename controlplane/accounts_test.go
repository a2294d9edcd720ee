package controlplane

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

const testAPIKey = "sk-ant-api03-TESTKEY-never-shown-0123456789abcdef"

func intPtr(n int) *int { return &n }

func TestAccountAddGetListDelete(t *testing.T) {
	h, token := loggedIn(t)

	r := h.do("POST", "/admin/accounts", token, adminapi.AddAccountRequest{Name: "team console", APIKey: testAPIKey})
	created := wantDecoded[adminapi.AccountResponse](t, r, http.StatusCreated)
	want := adminapi.Account{
		ID: created.Account.ID, Name: "team console", Type: "anthropic_api_key", BaseURL: "https://api.anthropic.com",
		Priority: 50, Schedulable: true, CreatedAt: h.clock.Now(), CredentialHint: created.Account.CredentialHint,
		Status: adminapi.AccountStatus{State: adminapi.AccountActive},
	}
	if diff := cmp.Diff(want, created.Account); diff != "" {
		t.Errorf("created account with defaults (-want +got):\n%s", diff)
	}
	if created.Account.ID == "" || created.Account.CredentialHint == "" {
		t.Errorf("got id %q hint %q, want both set", created.Account.ID, created.Account.CredentialHint)
	}
	cred, err := h.st.AccountCredential(context.Background(), created.Account.ID)
	if err != nil || cred != testAPIKey {
		t.Errorf("stored credential: got (%q, %v), want the api key", cred, err)
	}

	r = h.do("POST", "/admin/accounts", token, adminapi.AddAccountRequest{
		Name: "proxy", Type: "anthropic_api_key", BaseURL: "https://llm.example.com/anthropic/", APIKey: "sk-other", Priority: intPtr(10),
	})
	second := wantDecoded[adminapi.AccountResponse](t, r, http.StatusCreated)
	if second.Account.BaseURL != "https://llm.example.com/anthropic" || second.Account.Priority != 10 {
		t.Errorf("got base_url %q priority %d, want https://llm.example.com/anthropic and 10", second.Account.BaseURL, second.Account.Priority)
	}

	var got adminapi.AccountResponse
	r = h.do("GET", "/admin/accounts/"+created.Account.ID, token, nil)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &got)
	if diff := cmp.Diff(created.Account, got.Account); diff != "" {
		t.Errorf("get account (-created +got):\n%s", diff)
	}

	var list adminapi.AccountList
	r = h.do("GET", "/admin/accounts", token, nil)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &list)
	if len(list.Accounts) != 2 {
		t.Fatalf("got %d accounts, want 2", len(list.Accounts))
	}

	wantStatus(t, h.do("DELETE", "/admin/accounts/"+created.Account.ID, token, nil), http.StatusNoContent)
	wantStatus(t, h.do("GET", "/admin/accounts/"+created.Account.ID, token, nil), http.StatusNotFound)
	wantStatus(t, h.do("DELETE", "/admin/accounts/"+created.Account.ID, token, nil), http.StatusNotFound)

	logs := h.logs.String()
	for _, action := range []string{"action=account.add", "action=account.delete"} {
		if !strings.Contains(logs, action) {
			t.Errorf("got logs %q, want an audit line with %s", logs, action)
		}
	}
}

func TestAddAccountNamesInvalidFields(t *testing.T) {
	h, token := loggedIn(t)
	tests := []struct {
		name string
		body any
		want []string
	}{
		{"missing name and key", adminapi.AddAccountRequest{}, []string{"name", "api_key"}},
		{"unknown type", adminapi.AddAccountRequest{Name: "a", APIKey: "k", Type: "bedrock"}, []string{"type"}},
		{"base url without scheme", adminapi.AddAccountRequest{Name: "a", APIKey: "k", BaseURL: "api.anthropic.com"}, []string{"base_url"}},
		{"base url ftp", adminapi.AddAccountRequest{Name: "a", APIKey: "k", BaseURL: "ftp://x"}, []string{"base_url"}},
		{"base url with userinfo", adminapi.AddAccountRequest{Name: "a", APIKey: "k", BaseURL: "https://u:p@x"}, []string{"base_url"}},
		{"priority zero", adminapi.AddAccountRequest{Name: "a", APIKey: "k", Priority: intPtr(0)}, []string{"priority"}},
		{"priority 101", adminapi.AddAccountRequest{Name: "a", APIKey: "k", Priority: intPtr(101)}, []string{"priority"}},
		{"priority as string", `{"name":"a","api_key":"k","priority":"high"}`, []string{"priority"}},
		{"key with a space", adminapi.AddAccountRequest{Name: "a", APIKey: "sk ant"}, []string{"api_key"}},
		{"name too long", adminapi.AddAccountRequest{Name: strings.Repeat("x", 101), APIKey: "k"}, []string{"name"}},
		{"oauth without token", adminapi.AddAccountRequest{Name: "a", Type: "claude_oauth"}, []string{"access_token"}},
		{"oauth with api key", adminapi.AddAccountRequest{Name: "a", Type: "claude_oauth", AccessToken: "t", APIKey: "k"}, []string{"api_key"}},
		{"oauth bad expiry", adminapi.AddAccountRequest{Name: "a", Type: "claude_oauth", AccessToken: "t", ExpiresAt: "tomorrow"}, []string{"expires_at"}},
		{"api key with tokens", adminapi.AddAccountRequest{Name: "a", APIKey: "k", RefreshToken: "r"}, []string{"refresh_token"}},
		{"compatible without base url", adminapi.AddAccountRequest{Name: "a", Type: "anthropic_compatible", APIKey: "k"}, []string{"base_url"}},
		{"model map on api key", adminapi.AddAccountRequest{Name: "a", APIKey: "k", ModelMap: map[string]string{"a": "b"}}, []string{"model_map"}},
		{"bad proxy", adminapi.AddAccountRequest{Name: "a", APIKey: "k", ProxyURL: "ftp://p:21"}, []string{"proxy_url"}},
		{"bad group", adminapi.AddAccountRequest{Name: "a", APIKey: "k", Group: "e u"}, []string{"group"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFields(t, h.do("POST", "/admin/accounts", token, tt.body), tt.want...)
		})
	}
}

func TestSecretsNeverInResponsesOrLogs(t *testing.T) {
	h, token := loggedIn(t)
	var key adminapi.CreateKeyResponse
	h.do("POST", "/admin/keys", token, adminapi.CreateKeyRequest{Name: "k"}).decode(t, &key)
	var acct adminapi.AccountResponse
	h.do("POST", "/admin/accounts", token, adminapi.AddAccountRequest{Name: "a", APIKey: testAPIKey}).decode(t, &acct)
	// A failed login whose username is a password must not be logged either.
	h.do("POST", "/admin/login", "", adminapi.LoginRequest{Username: "hunter2-typed-into-username", Password: "x"})

	secrets := map[string]string{
		"relay key secret":  key.Secret,
		"account api key":   testAPIKey,
		"admin password":    testPassword,
		"session token":     token,
		"mistyped password": "hunter2-typed-into-username",
	}
	bodies := map[string][]byte{}
	for _, path := range []string{
		"/admin/keys", "/admin/keys/" + key.Key.ID, "/admin/keys/" + key.Key.ID + "/usage",
		"/admin/accounts", "/admin/accounts/" + acct.Account.ID, "/admin/whoami",
	} {
		r := h.do("GET", path, token, nil)
		wantStatus(t, r, http.StatusOK)
		bodies["GET "+path] = r.body
	}
	r := h.do("POST", "/admin/keys/"+key.Key.ID+"/revoke", token, nil)
	bodies["POST revoke"] = r.body
	h.do("POST", "/admin/logout", token, nil)
	logs := h.logs.String()
	if logs == "" {
		t.Fatal("got no logs, want audit lines")
	}
	for what, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the %s", what)
		}
		if what == "session token" {
			continue // whoami et al. are answered to the token's holder; only logs matter
		}
		for where, body := range bodies {
			if strings.Contains(string(body), secret) {
				t.Errorf("%s response contains the %s: %s", where, what, body)
			}
		}
	}
}
