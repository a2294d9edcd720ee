package admincli

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// runFile runs "claude-relay admin ARGS" with stdin as a file.
func (e *cliEnv) runFile(stdin *os.File, args ...string) (int, string, string) {
	e.t.Helper()
	var stdout, stderr bytes.Buffer
	code := runAdminIO(context.Background(), args, func(k string) string { return e.vars[k] }, stdin, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestAdminLoginReadsPipedStdinWithoutPrompt(t *testing.T) {
	e := newCLIEnv(t)
	// stdin is a pipe (an *os.File that is not a terminal): the first line is the password.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.WriteString(cliPassword + "\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	code, out, errOut := e.runFile(r, "login", "--addr", e.addr)
	if code != 0 || !strings.Contains(out, "Logged in") {
		t.Fatalf("login from a pipe: got exit %d stdout %q stderr %q, want 0 and logged in", code, out, errOut)
	}
	if errOut != "" {
		t.Errorf("login from a pipe: got stderr %q, want no prompt", errOut)
	}

	// Any other reader is not a terminal either.
	code, _, errOut = e.run(cliPassword+"\n", "login", "--addr", e.addr)
	if code != 0 || errOut != "" {
		t.Errorf("login from a reader: got exit %d stderr %q, want 0 and no prompt", code, errOut)
	}
	code, _, errOut = e.run("", "login", "--addr", e.addr)
	if code != 1 || !strings.Contains(errOut, "stdin is empty") {
		t.Errorf("login with empty stdin: got exit %d stderr %q, want 1 and stdin is empty", code, errOut)
	}
}

func TestAdminKeysUpdateAddModelsLosesNoConcurrentEdit(t *testing.T) {
	e := loggedInCLI(t)
	k := decodeJSON[adminapi.CreateKeyResponse](t, e.must("", "keys", "create", "--json", "--name", "shared", "--models", "base", "--clients", "claude_code")).Key

	// With 1+listEditRetries writers, each 412 one sees means another got through, so every
	// writer succeeds within its attempts.
	const n = 1 + listEditRetries
	var wg sync.WaitGroup
	results := make([]string, n)
	for i := range n {
		wg.Go(func() {
			code, _, errOut := e.run("", "keys", "update", k.ID, "--add-models", fmt.Sprintf("m%d", i))
			if code != 0 {
				results[i] = fmt.Sprintf("exit %d: %s", code, errOut)
			}
		})
	}
	wg.Wait()
	for i, r := range results {
		if r != "" {
			t.Errorf("writer %d: %s", i, r)
		}
	}
	got := decodeJSON[adminapi.KeyResponse](t, e.must("", "keys", "get", k.ID, "--json")).Key
	want := []string{"base", "m0", "m1", "m2", "m3"}
	if models := slices.Sorted(slices.Values(got.AllowedModels)); !slices.Equal(models, want) {
		t.Errorf("allowed models after %d concurrent --add-models: got %v, want %v", n, models, want)
	}
	if got.Revision != 1+n {
		t.Errorf("revision: got %d, want %d", got.Revision, 1+n)
	}

	up := decodeJSON[adminapi.KeyResponse](t, e.must("", "keys", "update", k.ID, "--json", "--remove-models", "base,m0",
		"--add-clients", "anthropic_sdk", "--remove-clients", "claude_code", "--owner", "ops")).Key
	if models := slices.Sorted(slices.Values(up.AllowedModels)); !slices.Equal(models, []string{"m1", "m2", "m3"}) ||
		!slices.Equal(up.AllowedClients, []string{"anthropic_sdk"}) || up.Owner != "ops" {
		t.Errorf("remove/add: got models %v clients %v owner %q, want m1-m3, anthropic_sdk, ops", up.AllowedModels, up.AllowedClients, up.Owner)
	}
	if detail := e.must("", "keys", "get", k.ID); !regexp.MustCompile(fmt.Sprintf(`(?m)^revision\s+%d$`, up.Revision)).MatchString(detail) {
		t.Errorf("keys get: got\n%s\nwant a revision %d row", detail, up.Revision)
	}
	for _, args := range [][]string{
		{"--models", "a", "--add-models", "b"},
		{"--clients", "a", "--remove-clients", "b"},
	} {
		code, _, errOut := e.run("", append([]string{"keys", "update", k.ID}, args...)...)
		if code != 2 || !strings.Contains(errOut, "not both") {
			t.Errorf("keys update %v: got exit %d stderr %q, want 2 and not both", args, code, errOut)
		}
	}
}

func TestAdminKeysUpdateGivesUpAfterThreeRetriesOnAKeyThatKeepsChanging(t *testing.T) {
	// A control plane where someone else changes the key between every read and write.
	var patches atomic.Int32
	var ifMatch sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodGet:
			fmt.Fprint(w, `{"key":{"id":"k1","name":"busy","hint":"cr_…","enabled":true,"status":"active","revision":7,"created_at":"2026-01-01T00:00:00Z"}}`)
		case http.MethodPatch:
			n := patches.Add(1)
			ifMatch.Store(n, r.Header.Get("If-Match"))
			w.Header().Set("ETag", `"8"`)
			w.WriteHeader(http.StatusPreconditionFailed)
			fmt.Fprint(w, `{"error":{"type":"precondition_failed_error","message":"key \"k1\" changed since it was read"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	e := &cliEnv{t: t, addr: srv.URL, vars: map[string]string{envAdminAddr: srv.URL, envAdminToken: "t"}}
	code, _, errOut := e.run("", "keys", "update", "k1", "--add-models", "x")
	if code != 1 || !strings.Contains(errOut, "changed under each of 4 read-modify-write attempts") || !strings.Contains(errOut, "revision 8") {
		t.Errorf("got exit %d stderr %q, want 1 and a message naming 4 attempts and revision 8", code, errOut)
	}
	if got := patches.Load(); got != 1+listEditRetries {
		t.Errorf("got %d PATCHes, want %d (one try and %d retries)", got, 1+listEditRetries, listEditRetries)
	}
	ifMatch.Range(func(k, v any) bool {
		if v != `"7"` {
			t.Errorf("PATCH %v: got If-Match %q, want \"7\" (the revision read)", k, v)
		}
		return true
	})
}
