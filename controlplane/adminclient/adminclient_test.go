package adminclient

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSessionRoundTripIsPrivateAndReplaceable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "claude-relay")
	path := filepath.Join(dir, "admin.json")
	if err := SaveSession(path, "http://a:1", "tok-1"); err != nil {
		t.Fatalf("SaveSession: %v", err)
	}
	if err := SaveSession(path, "http://b:2", "tok-2"); err != nil {
		t.Fatalf("SaveSession over an existing file: %v", err)
	}
	got, err := LoadSession(path)
	if err != nil {
		t.Fatalf("LoadSession: %v", err)
	}
	if diff := cmp.Diff(Session{Addr: "http://b:2", Token: "tok-2"}, got); diff != "" {
		t.Errorf("session (-want +got):\n%s", diff)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: got mode %v, want %v", p, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("got %d files in %s, want 1 (no temp files left)", len(entries), dir)
	}
	if err := RemoveSession(path); err != nil {
		t.Fatalf("RemoveSession: %v", err)
	}
	if err := RemoveSession(path); err != nil {
		t.Errorf("RemoveSession of a missing file: got %v, want nil", err)
	}
	if _, err := LoadSession(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadSession after remove: got %v, want fs.ErrNotExist", err)
	}
}

func TestNewRefusesAddressesThatAreNotHTTPURLs(t *testing.T) {
	for _, addr := range []string{"", "127.0.0.1:3100", "ftp://x", "http://", "::"} {
		t.Run(addr, func(t *testing.T) {
			if _, err := New(addr, "", nil); err == nil {
				t.Errorf("New(%q): got nil error, want one", addr)
			}
		})
	}
	c, err := New(" http://127.0.0.1:3100/ ", "", nil)
	if err != nil || c.Addr() != "http://127.0.0.1:3100" {
		t.Errorf("got (%v, %v), want address http://127.0.0.1:3100", c, err)
	}
}

func TestErrorResponsesBecomeAPIErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header map[string]string
		body   string
		want   APIError
	}{
		{
			name: "throttled", status: 429, header: map[string]string{"Retry-After": "42"},
			body: `{"error":{"type":"rate_limit_error","message":"too many failed logins; retry in 42s"}}`,
			want: APIError{StatusCode: 429, Type: "rate_limit_error", Message: "too many failed logins; retry in 42s", RetryAfter: 42 * time.Second},
		},
		{
			name: "invalid fields", status: 400,
			body: `{"error":{"type":"invalid_request_error","message":"invalid request: name: required","fields":{"name":"required"}}}`,
			want: APIError{StatusCode: 400, Type: "invalid_request_error", Message: "invalid request: name: required", Fields: map[string]string{"name": "required"}},
		},
		{
			name: "proxy error page", status: 502, body: "<html>bad gateway</html>",
			want: APIError{StatusCode: 502, Message: "<html>bad gateway</html>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := r.Header.Get("Authorization"); got != "Bearer tok" {
					t.Errorf("got Authorization %q, want Bearer tok", got)
				}
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := New(srv.URL, "tok", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.ListKeys(context.Background())
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("got %v, want an *APIError", err)
			}
			if diff := cmp.Diff(tt.want, *ae); diff != "" {
				t.Errorf("APIError (-want +got):\n%s", diff)
			}
		})
	}
}
