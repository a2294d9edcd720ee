package controlplane

import (
	"net/http"
	"strings"
	"testing"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

func TestKeyPolicyMustExistInTheRunningConfiguration(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/messages")+"policy \"team\" {\n  requests_per_minute = 60\n}\n")
	h := newHarness(t, func(o *Options) { o.Config = newTestConfig(t, o.Store, dir) })
	token := h.login()

	r := h.do("POST", "/admin/keys", token, adminapi.CreateKeyRequest{Name: "ok", Policy: "team"})
	wantStatus(t, r, http.StatusCreated)

	r = h.do("POST", "/admin/keys", token, adminapi.CreateKeyRequest{Name: "typo", Policy: "taem"})
	wantFields(t, r, "policy")
	if msg := r.errorBody(t).Fields["policy"]; !strings.Contains(msg, `no policy "taem"`) || !strings.Contains(msg, "team") {
		t.Errorf("policy message: got %q, want it to name the unknown policy and the defined ones", msg)
	}
}
