package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// keyAt reads one key and checks that its ETag is its revision.
func (h *harness) keyAt(token, id string) adminapi.Key {
	h.t.Helper()
	r := h.do("GET", "/admin/keys/"+id, token, nil)
	out := wantDecoded[adminapi.KeyResponse](h.t, r, http.StatusOK)
	if got, want := r.header.Get("ETag"), adminapi.ETag(out.Key.Revision); got != want {
		h.t.Errorf("GET key: got ETag %q, want %q (the revision in the body)", got, want)
	}
	return out.Key
}

func TestKeyRevisionIsReturnedAsFieldAndETag(t *testing.T) {
	h, token := loggedIn(t)
	k := h.createKey(token, adminapi.CreateKeyRequest{Name: "etag"})
	if k.Key.Revision != 1 {
		t.Errorf("created key: got revision %d, want 1", k.Key.Revision)
	}
	if got := h.keyAt(token, k.Key.ID); got.Revision != 1 {
		t.Errorf("GET: got revision %d, want 1", got.Revision)
	}
	if !strings.Contains(string(h.do("GET", "/admin/keys/"+k.Key.ID, token, nil).body), `"revision":1`) {
		t.Error(`GET body lacks "revision":1`)
	}

	r := h.do("PATCH", "/admin/keys/"+k.Key.ID, token, adminapi.UpdateKeyRequest{Owner: strPtr("ops")})
	wantStatus(t, r, http.StatusOK)
	if got := r.header.Get("ETag"); got != `"2"` {
		t.Errorf("PATCH: got ETag %q, want \"2\"", got)
	}
	var list adminapi.KeyList
	h.do("GET", "/admin/keys", token, nil).decode(t, &list)
	if len(list.Keys) != 1 || list.Keys[0].Revision != 2 {
		t.Errorf("list: got %+v, want one key at revision 2", list.Keys)
	}

	path := "/admin/keys/" + k.Key.ID
	for i, step := range []struct{ method, path string }{
		{"POST", path + "/disable"}, {"POST", path + "/enable"}, {"POST", path + "/regenerate"},
		{"DELETE", path}, {"POST", path + "/restore"}, {"POST", path + "/revoke"},
	} {
		r := h.do(step.method, step.path, token, nil)
		wantStatus(t, r, http.StatusOK)
		want := int64(3 + i)
		if got := r.header.Get("ETag"); got != adminapi.ETag(want) {
			t.Errorf("%s %s: got ETag %q, want %q", step.method, step.path, got, adminapi.ETag(want))
		}
		if got := h.keyAt(token, k.Key.ID).Revision; got != want {
			t.Errorf("after %s %s: got revision %d, want %d", step.method, step.path, got, want)
		}
	}
}

func TestStaleIfMatchAnswers412NamingTheCurrentRevision(t *testing.T) {
	h, token := loggedIn(t)
	k := h.createKey(token, adminapi.CreateKeyRequest{Name: "stale", KeyRules: adminapi.KeyRules{AllowedModels: []string{"a"}}})
	path := "/admin/keys/" + k.Key.ID
	// Someone else changes the key after we read revision 1.
	wantStatus(t, h.do("PATCH", path, token, adminapi.UpdateKeyRequest{Description: strPtr("theirs")}), http.StatusOK)

	for _, tc := range []struct{ method, path string }{
		{"PATCH", path}, {"POST", path + "/disable"}, {"POST", path + "/revoke"},
		{"POST", path + "/regenerate"}, {"DELETE", path},
	} {
		r := h.doHeader(tc.method, tc.path, token, map[string]string{"If-Match": `"1"`},
			adminapi.UpdateKeyRequest{AllowedModels: &[]string{"a", "b"}})
		wantStatus(t, r, http.StatusPreconditionFailed)
		e := r.errorBody(t)
		if e.Type != adminapi.ErrPreconditionFailed || !strings.Contains(e.Message, "changed since it was read") ||
			!strings.Contains(e.Message, "current revision is 2") || !strings.Contains(e.Message, "read it again") {
			t.Errorf("%s %s: got %+v, want a precondition_failed_error naming revision 2 and telling to re-read", tc.method, tc.path, e)
		}
		if got := r.header.Get("ETag"); got != `"2"` {
			t.Errorf("%s %s: got ETag %q on the 412, want \"2\"", tc.method, tc.path, got)
		}
	}
	got := h.keyAt(token, k.Key.ID)
	if got.Revision != 2 || !slices.Equal(got.AllowedModels, []string{"a"}) || got.Status != adminapi.KeyActive {
		t.Errorf("after refused changes: got %+v, want revision 2, models [a], active", got)
	}

	// The current revision goes through; "*" and no header are unconditional.
	r := h.doHeader("PATCH", path, token, map[string]string{"If-Match": `"2"`}, adminapi.UpdateKeyRequest{AllowedModels: &[]string{"a", "b"}})
	wantStatus(t, r, http.StatusOK)
	if r.header.Get("ETag") != `"3"` {
		t.Errorf("conditional PATCH: got ETag %q, want \"3\"", r.header.Get("ETag"))
	}
	wantStatus(t, h.doHeader("PATCH", path, token, map[string]string{"If-Match": "*"}, adminapi.UpdateKeyRequest{Owner: strPtr("x")}), http.StatusOK)
	wantStatus(t, h.do("PATCH", path, token, adminapi.UpdateKeyRequest{Owner: strPtr("y")}), http.StatusOK)
	if got := h.keyAt(token, k.Key.ID); got.Owner != "y" || got.Revision != 5 {
		t.Errorf("after unconditional PATCHes: got owner %q revision %d, want y at 5", got.Owner, got.Revision)
	}

	for _, bad := range []string{`W/"5"`, `"5", "6"`, `"x"`, `"0"`} {
		wantFields(t, h.doHeader("PATCH", path, token, map[string]string{"If-Match": bad}, adminapi.UpdateKeyRequest{Owner: strPtr("z")}), "If-Match")
	}
	wantStatus(t, h.doHeader("POST", "/admin/keys/nokey/disable", token, map[string]string{"If-Match": `"1"`}, nil), http.StatusNotFound)
}

func TestConcurrentReadModifyWritesWithIfMatchLoseNoModel(t *testing.T) {
	h, token := loggedIn(t)
	k := h.createKey(token, adminapi.CreateKeyRequest{Name: "shared"})
	client, err := adminclient.New(h.http.URL, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	conflicts := make([]int, n)
	for i := range n {
		wg.Go(func() {
			model := fmt.Sprintf("model-%d", i)
			// Every 412 means another writer got through, so n attempts always suffice.
			_, errs[i] = client.ModifyKey(context.Background(), k.Key.ID, n, func(cur adminapi.Key) (adminapi.UpdateKeyRequest, error) {
				conflicts[i]++
				models := append(slices.Clone(cur.AllowedModels), model)
				return adminapi.UpdateKeyRequest{AllowedModels: &models}, nil
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	got := h.keyAt(token, k.Key.ID)
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("model-%d", i))
	}
	if models := slices.Sorted(slices.Values(got.AllowedModels)); !slices.Equal(models, want) {
		t.Errorf("allowed models: got %v, want every writer's: %v", models, want)
	}
	if got.Revision != 1+n {
		t.Errorf("revision: got %d, want %d", got.Revision, 1+n)
	}
	t.Logf("read-modify-write attempts per writer: %v", conflicts)
}

func TestConcurrentPatchesOfDifferentFieldsWithoutIfMatchKeepBoth(t *testing.T) {
	h, token := loggedIn(t)
	const n = 10
	for round := range 50 {
		k := h.createKey(token, adminapi.CreateKeyRequest{Name: fmt.Sprintf("k%d", round)})
		path := "/admin/keys/" + k.Key.ID
		var wg sync.WaitGroup
		status := make([]int, 2*n)
		for i := range n {
			// Limits and models are both stored in the rules: a server-side merge that wrote
			// back a stale copy of the rules would drop one of them.
			wg.Go(func() {
				status[2*i] = h.do("PATCH", path, token, adminapi.UpdateKeyRequest{Limits: &adminapi.KeyLimits{RequestsPerMinute: int64Ptr(int64(10 + i))}}).status
			})
			wg.Go(func() {
				status[2*i+1] = h.do("PATCH", path, token, adminapi.UpdateKeyRequest{AllowedModels: &[]string{fmt.Sprintf("m%d", i)}}).status
			})
		}
		wg.Wait()
		for i, s := range status {
			if s != http.StatusOK {
				t.Errorf("round %d PATCH %d: got %d, want 200", round, i, s)
			}
		}
		got := h.keyAt(token, k.Key.ID)
		if got.Limits == nil || got.Limits.RequestsPerMinute == nil || len(got.AllowedModels) != 1 {
			t.Fatalf("round %d: got limits %+v models %v, want both a limit and a model", round, got.Limits, got.AllowedModels)
		}
		if got.Revision != 1+2*n {
			t.Errorf("round %d: got revision %d, want %d", round, got.Revision, 1+2*n)
		}
	}
}
