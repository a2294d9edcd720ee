package adminclient

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestLoginIsNotRepostedToARedirectTarget: a 307 from the control plane address would make Go
// re-post the password (and send the token) to the Location; the client reports the
// redirect instead.
func TestLoginIsNotRepostedToARedirectTarget(t *testing.T) {
	var got atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	t.Cleanup(other.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	c, err := New(redirector.URL, "session-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Login(context.Background(), "admin", "the-password")
	if err == nil || !strings.Contains(err.Error(), "redirect to "+other.URL) || !strings.Contains(err.Error(), "HTTP 307") {
		t.Errorf("got %v, want an error naming the 307 redirect to %s", err, other.URL)
	}
	if _, err := c.ListAccounts(context.Background()); err == nil {
		t.Error("got no error from a redirected call, want one")
	}
	if n := got.Load(); n != 0 {
		t.Errorf("the redirect target received %d requests, want none", n)
	}
}
