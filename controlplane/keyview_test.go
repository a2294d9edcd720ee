package controlplane

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/sidecar/keyview"
	"github.com/claude-relay/claude-relay/store"
)

func (h *harness) keyView(hdr map[string]string) response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.http.URL+"/v1/relay/usage", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// The route is mounted beside /admin/ by the process; here the handler answers alone.
	rec := httptest.NewRecorder()
	h.srv.KeyUsageHandler().ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func TestControlPlaneKeyViewAnswersTheKeysOwnLimitsAndSpend(t *testing.T) {
	h, token := loggedIn(t)
	perDay := int64(5)
	created := h.createKey(token, adminapi.CreateKeyRequest{Name: "me", KeyRules: adminapi.KeyRules{Limits: &adminapi.KeyLimits{RequestsPerDay: &perDay}}})
	ctx := context.Background()
	now := h.clock.Now()
	if err := h.st.RecordUsage(ctx, store.UsageRecord{KeyID: created.Key.ID, AccountID: "acc", Model: "claude-haiku-4-5", At: now,
		Usage: store.Usage{Requests: 3, InputTokens: 30, OutputTokens: 9, CostMicroUSD: 4200}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.st.SeedKeyLimitCounter(ctx, created.Key.ID, "requests_per_day", now.UTC().Truncate(24*time.Hour), 3); err != nil {
		t.Fatal(err)
	}
	r := h.keyView(map[string]string{"X-Api-Key": created.Secret})
	v := wantDecoded[keyview.View](t, r, http.StatusOK)
	if v.Key.ID != created.Key.ID || v.Key.Name != "me" || v.Key.Status != "active" {
		t.Errorf("key: got %+v, want the caller's, active", v.Key)
	}
	if len(v.Limits) != 1 || v.Limits[0].Name != "requests_per_day" || v.Limits[0].Used != 3 || v.Limits[0].Remaining != 2 {
		t.Errorf("limits: got %+v, want requests_per_day 3 used of 5", v.Limits)
	}
	if v.Spend.Today.Requests != 3 || v.Spend.Today.CostUSD != 0.0042 || v.Spend.Today.ByModel["claude-haiku-4-5"].InputTokens != 30 {
		t.Errorf("spend today: got %+v, want 3 requests, $0.0042, 30 input tokens of claude-haiku-4-5", v.Spend.Today)
	}
	if strings.Contains(string(r.body), "acc") {
		t.Errorf("the view names an account: %s", r.body)
	}
	bearer := h.keyView(map[string]string{"Authorization": "Bearer " + created.Secret})
	wantStatus(t, bearer, http.StatusOK)

	for name, hdr := range map[string]map[string]string{
		"no key":         nil,
		"unknown key":    {"X-Api-Key": "cr_" + strings.Repeat("a", 64)},
		"an admin token": {"Authorization": "Bearer " + token},
		"a revoked key":  {"X-Api-Key": created.Secret},
	} {
		if name == "a revoked key" {
			wantStatus(t, h.do("POST", "/admin/keys/"+created.Key.ID+"/revoke", token, nil), http.StatusOK)
		}
		r := h.keyView(hdr)
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: got %d %s, want 401", name, r.status, r.body)
		}
	}
}
