package configdisttest

import (
	"net/http"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/fakeupstream"
)

// secondUpstream is another fake upstream with its own key, to tell its requests apart.
func secondUpstream(t *testing.T) (*fakeupstream.Server, string) {
	const key = "sk-ant-api03-configdist-second-key"
	return fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{key}}), key
}

func TestAccountAddedThroughTheAdminAPIServesTheNextRequest(t *testing.T) {
	c := newCluster(t, baseHCL())
	c.startControl()
	s := c.startSidecar("sidecar", "", "")
	s.waitVersion(t, c.status().Version)
	res, err := c.admin.CreateKey(t.Context(), adminapi.CreateKeyRequest{Name: "tester", Policy: "team"})
	if err != nil {
		t.Fatal(err)
	}
	send := func() (int, string) {
		return s.do(t, http.MethodPost, "/v1/messages", http.Header{"X-Api-Key": {res.Secret}, "Anthropic-Version": {"2023-06-01"}},
			`{"model":"claude-sonnet-4-5-20250929","max_tokens":16,"messages":[{"role":"user","content":"hi `+time.Now().String()+`"}]}`)
	}
	if code, body := send(); code == http.StatusOK {
		t.Fatalf("without an account: got %d %s, want a refusal", code, body)
	}

	t.Run("the first account", func(t *testing.T) {
		c.runCLI("accounts", "add", "--name", "first", "--base-url", c.up.URL(), "--api-key", upstreamKey)
		if code, body := send(); code != http.StatusOK {
			t.Fatalf("the request right after `admin accounts add` returned: got %d %s, want 200", code, body)
		}
	})

	t.Run("another account that runs first", func(t *testing.T) {
		up2, key2 := secondUpstream(t)
		first := 1
		if _, err := c.admin.AddAccount(t.Context(), adminapi.AddAccountRequest{Name: "second", BaseURL: up2.URL(), APIKey: key2, Priority: &first}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for len(up2.Requests()) == 0 {
			if code, body := send(); code != http.StatusOK {
				t.Fatalf("got %d %s, want 200", code, body)
			}
			if time.Since(start) > time.Second {
				t.Fatal("the new account got no request within 1 s of the admin call returning")
			}
		}
		t.Logf("the new account served %s after the admin call returned", time.Since(start).Round(100*time.Microsecond))
	})
}
