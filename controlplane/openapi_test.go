package controlplane

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// openAPIOperations returns "METHOD /path" for every operation of the served document.
func openAPIOperations(t *testing.T, body []byte) []string {
	t.Helper()
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("got openapi %q, want 3.x", doc.OpenAPI)
	}
	var ops []string
	for path, methods := range doc.Paths {
		for m := range methods {
			switch m {
			case "get", "post", "put", "patch", "delete":
				ops = append(ops, strings.ToUpper(m)+" "+path)
			}
		}
	}
	slices.Sort(ops)
	return ops
}

func TestOpenAPIDocumentListsExactlyTheRegisteredRoutes(t *testing.T) {
	h := newHarness(t)
	r := h.do("GET", "/admin/openapi.json", "", nil)
	wantStatus(t, r, http.StatusOK)
	documented := openAPIOperations(t, r.body)

	var registered []string
	for _, rt := range adminRoutes {
		registered = append(registered, rt.method+" "+rt.path)
	}
	slices.Sort(registered)
	for _, op := range registered {
		if _, found := slices.BinarySearch(documented, op); !found {
			t.Errorf("route %s is registered but not in openapi.json", op)
		}
	}
	for _, op := range documented {
		if _, found := slices.BinarySearch(registered, op); !found {
			t.Errorf("openapi.json documents %s, which is not a registered route", op)
		}
	}

	// Every documented route reaches a handler, not the catch-all 404 ("no admin endpoint").
	token := h.login()
	for _, rt := range adminRoutes {
		if rt.config || rt.alerts || rt.path == "/admin/logout" {
			continue // config routes need a Config; logout would end the session
		}
		path := strings.ReplaceAll(rt.path, "{id}", "doesnotexist")
		resp := h.do(rt.method, path, token, "{}")
		if resp.status == http.StatusNotFound && strings.Contains(string(resp.body), "no admin endpoint") {
			t.Errorf("%s %s: reached the catch-all, want its handler", rt.method, path)
		}
	}
}

func TestEveryProtectedRouteRefusesMissingAndExpiredTokens(t *testing.T) {
	h := newHarness(t)
	expired := h.login()
	h.clock.Advance(DefaultTokenTTL + time.Minute)
	for _, rt := range adminRoutes {
		if rt.public || rt.config || rt.alerts {
			continue
		}
		path := strings.ReplaceAll(rt.path, "{id}", "x")
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			for name, token := range map[string]string{"no token": "", "expired token": expired, "garbage": "not.a.jwt"} {
				r := h.do(rt.method, path, token, "{}")
				if r.status != http.StatusUnauthorized {
					t.Errorf("%s: got %d, want 401", name, r.status)
					continue
				}
				if e := r.errorBody(t); e.Type != adminapi.ErrAuthentication {
					t.Errorf("%s: got error type %q, want %q", name, e.Type, adminapi.ErrAuthentication)
				}
			}
		})
	}
}

func TestPasswordChangeSignsOutOlderSessions(t *testing.T) {
	h := newHarness(t)
	old1, old2 := h.login(), h.login()
	const newPassword = "a much better passphrase"

	wantFields(t, h.do("POST", "/admin/password", old1, adminapi.ChangePasswordRequest{CurrentPassword: "wrong", NewPassword: newPassword}), "current_password")
	wantFields(t, h.do("POST", "/admin/password", old1, adminapi.ChangePasswordRequest{CurrentPassword: testPassword, NewPassword: "short"}), "new_password")

	r := h.do("POST", "/admin/password", old1, adminapi.ChangePasswordRequest{CurrentPassword: testPassword, NewPassword: newPassword})
	fresh := wantDecoded[adminapi.LoginResponse](t, r, http.StatusOK)

	for name, tok := range map[string]string{"the changing session": old1, "another session": old2} {
		if r := h.do("GET", "/admin/whoami", tok, nil); r.status != http.StatusUnauthorized {
			t.Errorf("%s after the change: got %d, want 401", name, r.status)
		}
	}
	wantStatus(t, h.do("GET", "/admin/whoami", fresh.Token, nil), http.StatusOK)
	wantStatus(t, h.do("POST", "/admin/login", "", adminapi.LoginRequest{Username: testUser, Password: testPassword}), http.StatusUnauthorized)
	wantStatus(t, h.do("POST", "/admin/login", "", adminapi.LoginRequest{Username: testUser, Password: newPassword}), http.StatusOK)
}

func TestAuditLogRecordsAdminActionsWithWhoAndWhere(t *testing.T) {
	h, token := loggedIn(t)
	k := h.createKey(token, adminapi.CreateKeyRequest{Name: "audited"})
	wantStatus(t, h.do("POST", "/admin/keys/"+k.Key.ID+"/disable", token, nil), http.StatusOK)

	r := h.do("GET", "/admin/audit?limit=1", token, nil)
	page := wantDecoded[adminapi.AuditList](t, r, http.StatusOK)
	if len(page.Entries) != 1 || page.NextCursor == "" {
		t.Fatalf("first page: got %+v, want one entry and a cursor", page)
	}
	e := page.Entries[0]
	if e.Action != "key.disable" || e.Who != testUser || e.Target != k.Key.ID || e.Remote != "127.0.0.1" || !e.At.Equal(h.clock.Now()) {
		t.Errorf("newest entry: got %+v, want key.disable by %s on %s from 127.0.0.1", e, testUser, k.Key.ID)
	}
	r = h.do("GET", "/admin/audit?limit=1&before="+page.NextCursor, token, nil)
	var next adminapi.AuditList
	r.decode(t, &next)
	if len(next.Entries) != 1 || next.Entries[0].Action != "key.create" || next.Entries[0].Detail["name"] != "audited" {
		t.Errorf("second page: got %+v, want key.create with the name", next.Entries)
	}
	if strings.Contains(string(r.body), k.Secret) {
		t.Error("the audit log holds a key secret")
	}
	wantFields(t, h.do("GET", "/admin/audit?limit=0", token, nil), "limit")
	wantFields(t, h.do("GET", "/admin/audit?before=xyz", token, nil), "before")
}
