package controlplane

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/fakeupstream"
)

// TestAccountWhoseBaseURLChangedInRedisShowsTampered: the admin API shows the account as
// tampered (get and list), refuses to test it (nothing is sent), and a base URL change
// through the API needs the credential given again, after which the account is active.
func TestAccountWhoseBaseURLChangedInRedisShowsTampered(t *testing.T) {
	up := fakeupstream.Start(t, fakeupstream.Options{APIKeys: []string{testAPIKey, "sk-ant-api03-GIVEN-AGAIN-0123456789abcdef"}})
	other := newCatcher(t)
	h, token := loggedIn(t)
	a := h.addAccount(token, adminapi.AddAccountRequest{Name: "key", BaseURL: up.URL(), APIKey: testAPIKey})
	fine := h.addAccount(token, adminapi.AddAccountRequest{Name: "fine", BaseURL: up.URL(), APIKey: testAPIKey})
	ctx := context.Background()
	if err := h.st.Client().HSet(ctx, h.st.Schema().Account(a.ID), "base_url", other.srv.URL).Err(); err != nil {
		t.Fatal(err)
	}

	var got adminapi.AccountResponse
	r := h.do("GET", "/admin/accounts/"+a.ID, token, nil)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &got)
	if st := got.Account.Status; st.State != adminapi.AccountTampered || !strings.Contains(st.Reason, "give the credential again") {
		t.Errorf("get: got status %+v, want tampered with what to do", st)
	}
	var list adminapi.AccountList
	h.do("GET", "/admin/accounts", token, nil).decode(t, &list)
	states := map[string]string{}
	for _, acc := range list.Accounts {
		states[acc.ID] = acc.Status.State
	}
	if states[a.ID] != adminapi.AccountTampered || states[fine.ID] != adminapi.AccountActive {
		t.Errorf("list: got states %v, want %s tampered and %s active", states, a.ID, fine.ID)
	}
	r = h.do("POST", "/admin/accounts/"+a.ID+"/test", token, nil)
	wantStatus(t, r, http.StatusConflict)
	if got := other.requests(); len(got) != 0 {
		t.Errorf("the test action sent %d requests to the base URL written in Redis, want none", len(got))
	}

	base := up.URL()
	r = h.do("PATCH", "/admin/accounts/"+a.ID, token, adminapi.UpdateAccountRequest{BaseURL: &base})
	wantStatus(t, r, http.StatusConflict)
	if e := r.errorBody(t); !strings.Contains(e.Message, "give the credential again") {
		t.Errorf("update without the credential: got %q, want it to say to give the credential again", e.Message)
	}
	key := "sk-ant-api03-GIVEN-AGAIN-0123456789abcdef"
	r = h.do("PATCH", "/admin/accounts/"+a.ID, token, adminapi.UpdateAccountRequest{BaseURL: &base, APIKey: &key})
	wantStatus(t, r, http.StatusOK)
	got = adminapi.AccountResponse{}
	r.decode(t, &got)
	if got.Account.Status.State != adminapi.AccountActive || got.Account.BaseURL != base {
		t.Errorf("after giving the credential again: got %+v, want active on %s", got.Account, base)
	}
	var res adminapi.TestAccountResult
	h.do("POST", "/admin/accounts/"+a.ID+"/test", token, nil).decode(t, &res)
	if !res.OK {
		t.Errorf("test after the fix: got %+v, want ok", res)
	}
}
