package controlplane

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

func TestKeyCreateGetListRevoke(t *testing.T) {
	h, token := loggedIn(t)
	exp := h.clock.Now().Add(48 * time.Hour).UTC()

	r := h.do("POST", "/admin/keys", token, adminapi.CreateKeyRequest{Name: "ci runner", Policy: "team", ExpiresAt: exp.Format(time.RFC3339)})
	created := wantDecoded[adminapi.CreateKeyResponse](t, r, http.StatusCreated)
	if !strings.HasPrefix(created.Secret, "cr_") {
		t.Errorf("got secret %q, want a cr_ prefix", created.Secret)
	}
	want := adminapi.Key{
		ID: created.Key.ID, Name: "ci runner", Hint: created.Key.Hint, Policy: "team", Enabled: true,
		Status: adminapi.KeyActive, CreatedAt: h.clock.Now(), ExpiresAt: &exp, Revision: 1,
	}
	if diff := cmp.Diff(want, created.Key); diff != "" {
		t.Errorf("created key (-want +got):\n%s", diff)
	}
	if created.Key.ID == "" || created.Key.Hint == "" {
		t.Errorf("got id %q hint %q, want both set", created.Key.ID, created.Key.Hint)
	}
	if _, err := h.st.LookupKey(context.Background(), created.Secret); err != nil {
		t.Errorf("LookupKey(secret): got %v, want the new key usable", err)
	}

	r = h.do("GET", "/admin/keys/"+created.Key.ID, token, nil)
	got := wantDecoded[adminapi.KeyResponse](t, r, http.StatusOK)
	if diff := cmp.Diff(created.Key, got.Key); diff != "" {
		t.Errorf("get key (-created +got):\n%s", diff)
	}

	r = h.do("GET", "/admin/keys", token, nil)
	list := wantDecoded[adminapi.KeyList](t, r, http.StatusOK)
	if diff := cmp.Diff([]adminapi.Key{created.Key}, list.Keys); diff != "" {
		t.Errorf("list keys (-want +got):\n%s", diff)
	}

	h.clock.Advance(time.Minute)
	r = h.do("POST", "/admin/keys/"+created.Key.ID+"/revoke", token, nil)
	revoked := wantDecoded[adminapi.KeyResponse](t, r, http.StatusOK)
	if revoked.Key.Status != adminapi.KeyRevoked || revoked.Key.RevokedAt == nil || !revoked.Key.RevokedAt.Equal(h.clock.Now()) {
		t.Errorf("got status %q revoked_at %v, want revoked at %v", revoked.Key.Status, revoked.Key.RevokedAt, h.clock.Now())
	}
	if _, err := h.st.LookupKey(context.Background(), created.Secret); err == nil {
		t.Errorf("LookupKey(secret) after revoke: got nil error, want the key refused")
	}
	// Revoking again is idempotent and keeps the first time.
	h.clock.Advance(time.Minute)
	r = h.do("POST", "/admin/keys/"+created.Key.ID+"/revoke", token, nil)
	again := wantDecoded[adminapi.KeyResponse](t, r, http.StatusOK)
	if !again.Key.RevokedAt.Equal(*revoked.Key.RevokedAt) {
		t.Errorf("second revoke: got revoked_at %v, want %v", again.Key.RevokedAt, revoked.Key.RevokedAt)
	}

	logs := h.logs.String()
	for _, action := range []string{"action=key.create", "action=key.revoke"} {
		if !strings.Contains(logs, action) || !strings.Contains(logs, "id="+created.Key.ID) || !strings.Contains(logs, "who="+testUser) {
			t.Errorf("got logs %q, want an audit line with %s, the key id and the admin", logs, action)
		}
	}
}

func TestKeyStatusReportsExpiry(t *testing.T) {
	h, token := loggedIn(t)
	r := h.do("POST", "/admin/keys", token, adminapi.CreateKeyRequest{Name: "short", ExpiresAt: h.clock.Now().Add(time.Hour).Format(time.RFC3339)})
	created := wantDecoded[adminapi.CreateKeyResponse](t, r, http.StatusCreated)
	h.clock.Advance(time.Hour)
	var got adminapi.KeyResponse
	h.do("GET", "/admin/keys/"+created.Key.ID, token, nil).decode(t, &got)
	if got.Key.Status != adminapi.KeyExpired {
		t.Errorf("got status %q, want %q", got.Key.Status, adminapi.KeyExpired)
	}
}

func TestListKeysIsEmptyArrayWhenNone(t *testing.T) {
	h := newHarness(t)
	r := h.do("GET", "/admin/keys", h.login(), nil)
	wantStatus(t, r, http.StatusOK)
	if got := strings.TrimSpace(string(r.body)); got != `{"keys":[]}` {
		t.Errorf("got %s, want {\"keys\":[]}", got)
	}
}

func TestCreateKeyNamesInvalidFields(t *testing.T) {
	h, token := loggedIn(t)
	now := h.clock.Now()
	tests := []struct {
		name string
		body any
		want []string
	}{
		{"missing name", adminapi.CreateKeyRequest{}, []string{"name"}},
		{"blank name", adminapi.CreateKeyRequest{Name: "   "}, []string{"name"}},
		{"name of 101 characters", adminapi.CreateKeyRequest{Name: strings.Repeat("n", 101)}, []string{"name"}},
		{"name with a newline", adminapi.CreateKeyRequest{Name: "a\nb"}, []string{"name"}},
		{"expiry not RFC 3339", adminapi.CreateKeyRequest{Name: "k", ExpiresAt: "tomorrow"}, []string{"expires_at"}},
		{"expiry in the past", adminapi.CreateKeyRequest{Name: "k", ExpiresAt: now.Add(-time.Hour).Format(time.RFC3339)}, []string{"expires_at"}},
		{"policy too long", adminapi.CreateKeyRequest{Name: "k", Policy: strings.Repeat("p", 101)}, []string{"policy"}},
		{"everything wrong", adminapi.CreateKeyRequest{ExpiresAt: "x"}, []string{"name", "expires_at"}},
		{"name of wrong JSON type", `{"name": 5}`, []string{"name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFields(t, h.do("POST", "/admin/keys", token, tt.body), tt.want...)
		})
	}
	// A name of exactly 100 characters is fine.
	wantStatus(t, h.do("POST", "/admin/keys", token, adminapi.CreateKeyRequest{Name: strings.Repeat("é", 100)}), http.StatusCreated)
}

func TestUnknownKeyIs404(t *testing.T) {
	h, token := loggedIn(t)
	for _, ep := range []struct{ method, path string }{
		{"GET", "/admin/keys/0123456789abcdef"},
		{"POST", "/admin/keys/0123456789abcdef/revoke"},
		{"GET", "/admin/keys/0123456789abcdef/usage"},
	} {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			r := h.do(ep.method, ep.path, token, nil)
			wantStatus(t, r, http.StatusNotFound)
			if e := r.errorBody(t); e.Type != adminapi.ErrNotFound || !strings.Contains(e.Message, "0123456789abcdef") {
				t.Errorf("got error %+v, want not_found_error naming the id", e)
			}
		})
	}
}

func TestKeyUsageByModelWithDayAndAllTimeTotals(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	token := h.login()
	var created adminapi.CreateKeyResponse
	h.do("POST", "/admin/keys", token, adminapi.CreateKeyRequest{Name: "u"}).decode(t, &created)
	id := created.Key.ID

	today := h.clock.Now().UTC()
	yesterday := today.Add(-24 * time.Hour)
	err := h.st.RecordUsage(ctx,
		store.UsageRecord{KeyID: id, AccountID: "a1", Model: "claude-sonnet-4-5", At: today, Usage: store.Usage{Requests: 2, InputTokens: 100, OutputTokens: 50, CacheWrite5m: 7, CacheWrite1h: 3, CacheRead: 400, CostMicroUSD: 1_500_000}},
		store.UsageRecord{KeyID: id, AccountID: "a1", Model: "claude-haiku-4-5", At: today, Usage: store.Usage{Requests: 1, InputTokens: 10, OutputTokens: 5, CostMicroUSD: 250_000}},
		store.UsageRecord{KeyID: id, AccountID: "a1", Model: "claude-haiku-4-5", At: yesterday, Usage: store.Usage{Requests: 4, InputTokens: 1, OutputTokens: 1, CostMicroUSD: 1}},
	)
	if err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}

	r := h.do("GET", "/admin/keys/"+id+"/usage", token, nil)
	got := wantDecoded[adminapi.KeyUsage](t, r, http.StatusOK)
	want := adminapi.KeyUsage{
		Day: today.Format(time.DateOnly),
		Models: map[string]adminapi.Usage{
			"claude-sonnet-4-5": {Requests: 2, InputTokens: 100, OutputTokens: 50, CacheWrite5m: 7, CacheWrite1h: 3, CacheRead: 400, CostUSD: 1.5},
			"claude-haiku-4-5":  {Requests: 1, InputTokens: 10, OutputTokens: 5, CostUSD: 0.25},
		},
		DayTotal: adminapi.Usage{Requests: 3, InputTokens: 110, OutputTokens: 55, CacheWrite5m: 7, CacheWrite1h: 3, CacheRead: 400, CostUSD: 1.75},
		Totals:   adminapi.Usage{Requests: 7, InputTokens: 111, OutputTokens: 56, CacheWrite5m: 7, CacheWrite1h: 3, CacheRead: 400, CostUSD: 1.750001},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("today's usage (-want +got):\n%s", diff)
	}

	r = h.do("GET", "/admin/keys/"+id+"/usage?day="+yesterday.Format(time.DateOnly), token, nil)
	wantStatus(t, r, http.StatusOK)
	got = adminapi.KeyUsage{}
	r.decode(t, &got)
	if diff := cmp.Diff(map[string]adminapi.Usage{"claude-haiku-4-5": {Requests: 4, InputTokens: 1, OutputTokens: 1, CostUSD: 0.000001}}, got.Models); diff != "" {
		t.Errorf("yesterday's usage (-want +got):\n%s", diff)
	}

	r = h.do("GET", "/admin/keys/"+id+"/usage?day=2025-02-30", token, nil)
	wantFields(t, r, "day")

	r = h.do("GET", "/admin/keys/"+id+"/usage?day=1999-01-01", token, nil)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `"models":{}`) {
		t.Errorf("got %s, want an empty models object for a day without usage", r.body)
	}
}
