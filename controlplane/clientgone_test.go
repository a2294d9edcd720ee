package controlplane

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAClientLeavingMidRequestIsNotLoggedAsAnError serves requests whose client is gone by
// the time the store is asked (as when dev mode is interrupted while it logs its admin in,
// or a CLI login is interrupted): nothing is logged at ERROR.
func TestAClientLeavingMidRequestIsNotLoggedAsAnError(t *testing.T) {
	h, token := loggedIn(t)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct{ method, path, token, body string }{
		{"POST", "/admin/login", "", `{"username":"admin","password":"correct horse battery staple"}`},
		{"GET", "/admin/keys", token, ""},
	} {
		req := httptest.NewRequestWithContext(gone, tc.method, tc.path, strings.NewReader(tc.body))
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		req.Header.Set("Content-Type", "application/json")
		h.srv.Handler().ServeHTTP(httptest.NewRecorder(), req)
	}
	if logs := h.logs.String(); strings.Contains(logs, "[ERROR]") {
		t.Errorf("a client leaving was logged as an error:\n%s", logs)
	}
}

func TestJobsStoppedDuringStartUpLogNoError(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.srv.RefreshTokens(ctx)
	if logs := h.logs.String(); strings.Contains(logs, "[ERROR]") {
		t.Errorf("jobs stopped at start-up logged an error:\n%s", logs)
	}
}
