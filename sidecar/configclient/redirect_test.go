package configclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config/configapi"
)

// TestPollDoesNotFollowARedirectWithItsToken: the poll carries a token signed with the shared
// secret; a redirect from the control plane address is reported, not followed.
func TestPollDoesNotFollowARedirectWithItsToken(t *testing.T) {
	var got atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
	t.Cleanup(other.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	f, err := NewHTTPFetcher(redirector.URL, []byte("0123456789abcdef0123456789abcdef-secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Fetch(context.Background(), configapi.PollRequest{SidecarID: "s1", Wait: time.Second})
	if err == nil || !strings.Contains(err.Error(), "redirect to "+other.URL) {
		t.Errorf("got %v, want an error naming the redirect to %s", err, other.URL)
	}
	if n := got.Load(); n != 0 {
		t.Errorf("the redirect target received %d polls, want none", n)
	}
}
