package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// keyView reads GET /v1/relay/usage from the site with secret as x-api-key, as /ui/me's script
// does.
func keyView(t *testing.T, s *site, secret string) (int, map[string]any, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.http.URL+"/v1/relay/usage", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, string(raw)
}

func TestKeyHolderPageShowsOnlyTheirOwnKeyFromTheControlPlane(t *testing.T) {
	s := newSite(t, 0)
	ctx := context.Background()
	mine, err := s.admin.CreateKey(ctx, adminapi.CreateKeyRequest{Name: "holder-own", Owner: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.admin.CreateKey(ctx, adminapi.CreateKeyRequest{Name: "someone-else", Owner: "bo"})
	if err != nil {
		t.Fatal(err)
	}
	s.recordUsage(t, mine.Key.ID, "claude-haiku", s.clock.Now(), 4, 20_000)
	s.recordUsage(t, other.Key.ID, "claude-opus-secret-model", s.clock.Now(), 9, 9_000_000)

	page := s.browser().get("/ui/me")
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="me-form"`) ||
		page.header.Get("Content-Security-Policy") == "" || !strings.Contains(page.header.Get("Content-Security-Policy"), "connect-src 'self'") {
		t.Fatalf("GET /ui/me without a session: got %d, CSP %q, want 200 with the form\n%s", page.status, page.header.Get("Content-Security-Policy"), page.body)
	}
	if strings.Contains(page.body, "holder-own") || strings.Contains(page.body, "<script>") {
		t.Error("the key holder's page carries key data or inline script")
	}
	if !strings.Contains(page.body, `<input id="me-key" type="password"`) || strings.Contains(page.body, `name="key"`) {
		t.Error("the key field has a name: a submit without the script would put the key in the address")
	}

	status, v, raw := keyView(t, s, mine.Secret)
	if status != http.StatusOK {
		t.Fatalf("own view: got %d, want 200: %s", status, raw)
	}
	if key := v["key"].(map[string]any); key["name"] != "holder-own" || key["id"] != mine.Key.ID {
		t.Errorf("own view names %v, want holder-own %s", key, mine.Key.ID)
	}
	if !strings.Contains(raw, `"requests":4`) {
		t.Errorf("own view lacks its 4 requests today: %s", raw)
	}
	for _, leak := range []string{other.Key.ID, "someone-else", "bo", "claude-opus-secret-model", mine.Secret, "ana"} {
		if strings.Contains(raw, `"`+leak+`"`) {
			t.Errorf("the key's view reveals %q: %s", leak, raw)
		}
	}
	for _, bad := range []string{"", "cr_" + strings.Repeat("0", 64), "admin-session-token"} {
		if status, _, raw := keyView(t, s, bad); status != http.StatusUnauthorized {
			t.Errorf("key %q: got %d, want 401: %s", bad, status, raw)
		}
	}
	if _, err := s.admin.RevokeKey(ctx, mine.Key.ID); err != nil {
		t.Fatal(err)
	}
	if status, _, raw := keyView(t, s, mine.Secret); status != http.StatusUnauthorized || !strings.Contains(raw, "revoked") {
		t.Errorf("a revoked key: got %d %s, want 401 saying it is revoked", status, raw)
	}
}
