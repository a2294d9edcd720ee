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
	h, token := loggedIn(t, func(o *Options) { o.Config = newTestConfig(t, o.Store, dir) })

	r := h.do("POST", "/admin/keys", token, adminapi.CreateKeyRequest{Name: "ok", Policy: "team"})
	wantStatus(t, r, http.StatusCreated)

	r = h.do("POST", "/admin/keys", token, adminapi.CreateKeyRequest{Name: "typo", Policy: "taem"})
	wantFields(t, r, "policy")
	if msg := r.errorBody(t).Fields["policy"]; !strings.Contains(msg, `no policy "taem"`) || !strings.Contains(msg, "team") {
		t.Errorf("policy message: got %q, want it to name the unknown policy and the defined ones", msg)
	}
}

func TestUnknownPolicySaysWherePoliciesComeFromWhenNoneIsDefined(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/messages"))
	for _, tt := range []struct {
		name, dir string
		want      []string
	}{
		{"a configuration directory", dir, []string{`no policy "team"`, "defines no policies", `policy "team" { … }`, dir}},
		{"the embedded default", "", []string{`no policy "team"`, "defines no policies", "CLAUDE_RELAY_CONFIG_DIR is unset"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.Config = newTestConfig(t, o.Store, tt.dir) })
			r := h.do("POST", "/admin/keys", h.login(), adminapi.CreateKeyRequest{Name: "k", Policy: "team"})
			wantFields(t, r, "policy")
			msg := r.errorBody(t).Fields["policy"]
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("got %q, want it to contain %q", msg, w)
				}
			}
			if strings.HasSuffix(msg, "defined: ") {
				t.Errorf("got %q, an empty list of defined policies", msg)
			}
		})
	}
}
