package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// TestDevModeKeepsTheCLIsSessionForAnotherLiveRelay: starting dev mode must not log the
// operator's CLI out of the control plane it was logged in to; a session that no longer
// works there, or one for this dev instance, is replaced.
func TestDevModeKeepsTheCLIsSessionForAnotherLiveRelay(t *testing.T) {
	const live = "live-token"
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/admin/whoami" || r.Header.Get("Authorization") != "Bearer "+live {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"type":"authentication_error","message":"session expired"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"username":"ops","expires_at":"2099-01-01T00:00:00Z"}`))
	}))
	defer other.Close()
	const base = "http://127.0.0.1:3000"
	ctx := context.Background()
	tests := []struct {
		name        string
		addr, token string
		write       bool
		want        bool
	}{
		{"no session file", "", "", false, false},
		{"a live session elsewhere is kept", other.URL, live, true, true},
		{"an expired session elsewhere is replaced", other.URL, "stale-token", true, false},
		{"a session for this dev instance is replaced", base, live, true, false},
		{"an unreachable relay's session is replaced", "http://127.0.0.1:1", live, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "admin.json")
			if tt.write {
				if err := adminclient.SaveSession(path, tt.addr, tt.token); err != nil {
					t.Fatal(err)
				}
			}
			if got := otherLiveSession(ctx, path, base); got != tt.want {
				t.Errorf("otherLiveSession: got %v, want %v", got, tt.want)
			}
		})
	}
}
