package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

func strPtr(s string) *string { return &s }

func int64Ptr(n int64) *int64 { return &n }

// createKey creates a key through the API and returns it with its secret.
func (h *harness) createKey(token string, req adminapi.CreateKeyRequest) adminapi.CreateKeyResponse {
	h.t.Helper()
	r := h.do("POST", "/admin/keys", token, req)
	out := wantDecoded[adminapi.CreateKeyResponse](h.t, r, http.StatusCreated)
	return out
}

func TestKeyCreateCarriesEveryField(t *testing.T) {
	h, token := loggedIn(t)
	acct := h.addAccount(token, adminapi.AddAccountRequest{Name: "console", APIKey: testAPIKey})
	req := adminapi.CreateKeyRequest{
		Name: "ci", Description: "build farm", Owner: "platform team", Tags: []string{"CI", "eng"}, Policy: "team",
		ExpiresAfter: "7d",
		KeyRules: adminapi.KeyRules{
			Limits:        &adminapi.KeyLimits{RequestsPerMinute: int64Ptr(10), Concurrency: int64Ptr(2)},
			AllowedModels: []string{"claude-sonnet-*"}, DeniedModels: []string{"claude-opus-*"},
			AllowedClients: []string{"claude_code"}, AllowedCIDRs: []string{"10.1.2.3/8", "192.168.1.7"},
			Binding: &adminapi.KeyBinding{AccountID: acct.ID},
		},
	}
	got := h.createKey(token, req)
	want := adminapi.Key{
		ID: got.Key.ID, Name: "ci", Description: "build farm", Owner: "platform team", Tags: []string{"ci", "eng"},
		Hint: got.Key.Hint, Policy: "team", Enabled: true, Status: adminapi.KeyActive, ExpiresAfter: "168h0m0s",
		CreatedAt: h.clock.Now(), Revision: 1,
		KeyRules: adminapi.KeyRules{
			Limits:        &adminapi.KeyLimits{RequestsPerMinute: int64Ptr(10), Concurrency: int64Ptr(2)},
			AllowedModels: []string{"claude-sonnet-*"}, DeniedModels: []string{"claude-opus-*"},
			AllowedClients: []string{"claude_code"}, AllowedCIDRs: []string{"10.0.0.0/8", "192.168.1.7/32"},
			Binding: &adminapi.KeyBinding{AccountID: acct.ID},
		},
	}
	if diff := cmp.Diff(want, got.Key); diff != "" {
		t.Errorf("created key (-want +got):\n%s", diff)
	}
	k, err := h.st.LookupKey(context.Background(), got.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if k.Rules.Binding.AccountID != acct.ID || k.ExpiresAt == nil {
		t.Errorf("lookup: got binding %+v expires %v, want the account and an expiry set on first use", k.Rules.Binding, k.ExpiresAt)
	}
}

func TestKeyCreateNamesInvalidFields(t *testing.T) {
	h, token := loggedIn(t)
	past := h.clock.Now().Add(-time.Hour).Format(time.RFC3339)
	tests := []struct {
		name string
		req  adminapi.CreateKeyRequest
		want []string
	}{
		{"no name", adminapi.CreateKeyRequest{}, []string{"name"}},
		{"both expiries", adminapi.CreateKeyRequest{Name: "k", ExpiresAt: "2099-01-01T00:00:00Z", ExpiresAfter: "1d"}, []string{"expires_at"}},
		{"past expiry", adminapi.CreateKeyRequest{Name: "k", ExpiresAt: past}, []string{"expires_at"}},
		{"bad lifetime", adminapi.CreateKeyRequest{Name: "k", ExpiresAfter: "soon"}, []string{"expires_after"}},
		{"tiny lifetime", adminapi.CreateKeyRequest{Name: "k", ExpiresAfter: "5s"}, []string{"expires_after"}},
		{"bad tag", adminapi.CreateKeyRequest{Name: "k", Tags: []string{"ok", "has space"}}, []string{"tags[1]"}},
		{"bad policy", adminapi.CreateKeyRequest{Name: "k", Policy: "a,b"}, []string{"policy"}},
		{"bad cidr", adminapi.CreateKeyRequest{Name: "k", KeyRules: adminapi.KeyRules{AllowedCIDRs: []string{"10.0.0.0/8", "office"}}}, []string{"allowed_cidrs[1]"}},
		{"negative limit", adminapi.CreateKeyRequest{Name: "k", KeyRules: adminapi.KeyRules{Limits: &adminapi.KeyLimits{TokensPerDay: int64Ptr(-1)}}}, []string{"limits.tokens_per_day"}},
		{"empty model pattern", adminapi.CreateKeyRequest{Name: "k", KeyRules: adminapi.KeyRules{AllowedModels: []string{""}}}, []string{"allowed_models[0]"}},
		{"unknown account", adminapi.CreateKeyRequest{Name: "k", KeyRules: adminapi.KeyRules{Binding: &adminapi.KeyBinding{AccountID: "nope"}}}, []string{"binding.account_id"}},
		{"account and group", adminapi.CreateKeyRequest{Name: "k", KeyRules: adminapi.KeyRules{Binding: &adminapi.KeyBinding{AccountID: "a", Group: "g"}}}, []string{"binding"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFields(t, h.do("POST", "/admin/keys", token, tt.req), tt.want...)
		})
	}
	t.Run("unknown field", func(t *testing.T) {
		r := h.do("POST", "/admin/keys", token, `{"name":"k","colour":"red"}`)
		wantStatus(t, r, http.StatusBadRequest)
	})
}

func TestKeyListPagesAndFilters(t *testing.T) {
	h, token := loggedIn(t)
	var ids []string
	for i := range 5 {
		tags := []string{"even"}
		if i%2 == 1 {
			tags = []string{"odd"}
		}
		ids = append(ids, h.createKey(token, adminapi.CreateKeyRequest{Name: fmt.Sprintf("key %d", i), Tags: tags}).Key.ID)
		h.clock.Advance(time.Millisecond)
	}
	list := func(q url.Values) adminapi.KeyList {
		t.Helper()
		r := h.do("GET", "/admin/keys?"+q.Encode(), token, nil)
		out := wantDecoded[adminapi.KeyList](t, r, http.StatusOK)
		return out
	}
	var got []string
	q := url.Values{"limit": {"2"}}
	for range 10 {
		page := list(q)
		for _, k := range page.Keys {
			got = append(got, k.ID)
		}
		if page.NextCursor == "" {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	if diff := cmp.Diff(ids, got); diff != "" {
		t.Errorf("paged ids (-want +got):\n%s", diff)
	}
	odd := list(url.Values{"tag": {"odd"}})
	if n := len(odd.Keys); n != 2 {
		t.Errorf("tag odd: got %d keys, want 2", n)
	}
	if r := h.do("POST", "/admin/keys/"+ids[0]+"/disable", token, nil); r.status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.status, r.body)
	}
	if d := list(url.Values{"status": {"disabled"}}); len(d.Keys) != 1 || d.Keys[0].ID != ids[0] {
		t.Errorf("status disabled: got %v, want [%s]", d.Keys, ids[0])
	}
	if n := list(url.Values{"name": {"KEY 3"}}); len(n.Keys) != 1 || n.Keys[0].ID != ids[3] {
		t.Errorf("name filter: got %v, want [%s]", n.Keys, ids[3])
	}

	for _, tc := range []struct{ q, field string }{
		{"limit=0", "limit"}, {"limit=x", "limit"}, {"status=sleepy", "status"}, {"cursor=bogus", "cursor"}, {"tag=a%20b", "tag"},
	} {
		t.Run(tc.q, func(t *testing.T) {
			wantFields(t, h.do("GET", "/admin/keys?"+tc.q, token, nil), tc.field)
		})
	}
}

func TestKeyUpdateEnableDisableRegenerateDeleteRestore(t *testing.T) {
	h, token := loggedIn(t)
	created := h.createKey(token, adminapi.CreateKeyRequest{Name: "k", Tags: []string{"a"}})
	id := created.Key.ID
	path := "/admin/keys/" + id
	ctx := context.Background()

	t.Run("update", func(t *testing.T) {
		r := h.do("PATCH", path, token, adminapi.UpdateKeyRequest{
			Name: strPtr("renamed"), Tags: &[]string{"b"}, Policy: strPtr("gold"),
			ExpiresAt:     strPtr(h.clock.Now().Add(time.Hour).Format(time.RFC3339)),
			AllowedModels: &[]string{"claude-haiku-*"}, Binding: &adminapi.KeyBinding{Group: "eu"},
		})
		got := wantDecoded[adminapi.KeyResponse](t, r, http.StatusOK)
		if got.Key.Name != "renamed" || !slices.Equal(got.Key.Tags, []string{"b"}) || got.Key.Policy != "gold" ||
			got.Key.ExpiresAt == nil || !slices.Equal(got.Key.AllowedModels, []string{"claude-haiku-*"}) || got.Key.Binding == nil || got.Key.Binding.Group != "eu" {
			t.Errorf("got %+v, want every updated field", got.Key)
		}
		wantFields(t, h.do("PATCH", path, token, adminapi.UpdateKeyRequest{Name: strPtr(""), AllowedCIDRs: &[]string{"x"}}), "name", "allowed_cidrs[0]")
		wantStatus(t, h.do("PATCH", "/admin/keys/nokey", token, adminapi.UpdateKeyRequest{Name: strPtr("x")}), http.StatusNotFound)
	})
	t.Run("disable and enable", func(t *testing.T) {
		wantStatus(t, h.do("POST", path+"/disable", token, nil), http.StatusOK)
		if _, err := h.st.LookupKey(ctx, created.Secret); !errors.Is(err, store.ErrKeyDisabled) {
			t.Errorf("disabled key: got %v, want ErrKeyDisabled", err)
		}
		wantStatus(t, h.do("POST", path+"/enable", token, nil), http.StatusOK)
		if _, err := h.st.LookupKey(ctx, created.Secret); err != nil {
			t.Errorf("enabled key: got %v, want usable", err)
		}
		wantStatus(t, h.do("POST", "/admin/keys/nokey/disable", token, nil), http.StatusNotFound)
	})
	var secret string
	t.Run("regenerate", func(t *testing.T) {
		r := h.do("POST", path+"/regenerate", token, nil)
		got := wantDecoded[adminapi.CreateKeyResponse](t, r, http.StatusOK)
		secret = got.Secret
		if secret == created.Secret || got.Key.Hint == created.Key.Hint {
			t.Errorf("got the old secret or hint back")
		}
		if _, err := h.st.LookupKey(ctx, created.Secret); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("old secret: got %v, want ErrNotFound", err)
		}
	})
	t.Run("delete and restore", func(t *testing.T) {
		r := h.do("DELETE", path, token, nil)
		got := wantDecoded[adminapi.KeyResponse](t, r, http.StatusOK)
		if got.Key.Status != adminapi.KeyDeleted || got.Key.DeletedAt == nil {
			t.Errorf("got status %q deleted_at %v, want deleted", got.Key.Status, got.Key.DeletedAt)
		}
		wantStatus(t, h.do("DELETE", path, token, nil), http.StatusConflict)
		wantStatus(t, h.do("PATCH", path, token, adminapi.UpdateKeyRequest{Name: strPtr("x")}), http.StatusConflict)
		wantStatus(t, h.do("POST", path+"/regenerate", token, nil), http.StatusConflict)
		wantStatus(t, h.do("POST", path+"/restore", token, nil), http.StatusOK)
		wantStatus(t, h.do("POST", path+"/restore", token, nil), http.StatusConflict)
		if _, err := h.st.LookupKey(ctx, secret); err != nil {
			t.Errorf("restored key: got %v, want usable", err)
		}
		wantStatus(t, h.do("DELETE", "/admin/keys/nokey", token, nil), http.StatusNotFound)
		wantStatus(t, h.do("POST", "/admin/keys/nokey/restore", token, nil), http.StatusNotFound)
	})
	t.Run("revoked keys cannot be enabled or regenerated", func(t *testing.T) {
		wantStatus(t, h.do("POST", path+"/revoke", token, nil), http.StatusOK)
		wantStatus(t, h.do("POST", path+"/enable", token, nil), http.StatusConflict)
		wantStatus(t, h.do("POST", path+"/regenerate", token, nil), http.StatusConflict)
		wantStatus(t, h.do("POST", "/admin/keys/nokey/revoke", token, nil), http.StatusNotFound)
		wantStatus(t, h.do("POST", "/admin/keys/nokey/regenerate", token, nil), http.StatusNotFound)
	})
}

func TestKeyBulkCreateIsAllOrNothing(t *testing.T) {
	h, token := loggedIn(t)
	r := h.do("POST", "/admin/keys/bulk", token, adminapi.BulkCreateKeysRequest{Keys: []adminapi.CreateKeyRequest{{Name: "a"}, {Name: "b", Tags: []string{"x"}}}})
	got := wantDecoded[adminapi.BulkCreateKeysResponse](t, r, http.StatusCreated)
	if len(got.Keys) != 2 || got.Keys[0].Key.Name != "a" || got.Keys[1].Secret == "" {
		t.Fatalf("got %+v, want two keys in order with secrets", got)
	}
	for _, k := range got.Keys {
		if _, err := h.st.LookupKey(context.Background(), k.Secret); err != nil {
			t.Errorf("bulk key %s: got %v, want usable", k.Key.ID, err)
		}
	}
	wantFields(t, h.do("POST", "/admin/keys/bulk", token, adminapi.BulkCreateKeysRequest{Keys: []adminapi.CreateKeyRequest{{Name: "ok"}, {Name: ""}}}), "keys[1].name")
	wantFields(t, h.do("POST", "/admin/keys/bulk", token, adminapi.BulkCreateKeysRequest{}), "keys")
	page, _ := h.st.PageKeys(context.Background(), store.KeyFilter{}, "", 100)
	if len(page.Keys) != 2 {
		t.Errorf("got %d keys after a refused bulk create, want the 2 from before", len(page.Keys))
	}
}
