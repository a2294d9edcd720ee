package console

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// accountsData is the accounts page's data.
type accountsData struct {
	Accounts []adminapi.Account
	// Form holds a refused add form's values (never its API key).
	Form     adminapi.AddAccountRequest
	Priority string
}

// handleAccounts lists the upstream accounts.
func (c *Console) handleAccounts(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	v := s.view("Accounts", "accounts")
	v.Notice = notices[r.URL.Query().Get("done")]
	c.renderAccounts(w, r, s, http.StatusOK, v, accountsData{Priority: "50"})
}

func (c *Console) renderAccounts(w http.ResponseWriter, r *http.Request, s session, status int, v view, d accountsData) {
	accts, err := s.api.ListAccounts(r.Context())
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	d.Accounts = accts
	v.Data = d
	c.render(w, r, status, "accounts", v)
}

// handleAddAccount adds an API-key or Anthropic-compatible account.
func (c *Console) handleAddAccount(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	req := adminapi.AddAccountRequest{
		Name: strings.TrimSpace(r.PostFormValue("name")), Type: r.PostFormValue("type"),
		BaseURL: strings.TrimSpace(r.PostFormValue("base_url")), APIKey: strings.TrimSpace(r.PostFormValue("api_key")),
		Group: strings.TrimSpace(r.PostFormValue("group")),
	}
	prio := strings.TrimSpace(r.PostFormValue("priority"))
	if prio != "" {
		p, err := strconv.Atoi(prio)
		if err != nil {
			p = -1 // refused by the API with its own message
		}
		req.Priority = &p
	}
	if _, err := s.api.AddAccount(r.Context(), req); err != nil {
		v := s.view("Accounts", "accounts")
		v.Error = "The account was not added: " + fieldMessage(err)
		req.APIKey = ""
		c.renderAccounts(w, r, s, statusOf(err), v, accountsData{Form: req, Priority: prio})
		return
	}
	http.Redirect(w, r, Prefix+"accounts?done=added", http.StatusSeeOther)
}

// handleAccountAction tests an account, clears its park, turns its scheduling on or off, or
// deletes it.
func (c *Console) handleAccountAction(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	id, action := r.PathValue("id"), r.PathValue("action")
	v := s.view("Accounts", "accounts")
	var err error
	done := ""
	switch action {
	case "test":
		res, terr := s.api.TestAccount(r.Context(), id, strings.TrimSpace(r.PostFormValue("model")))
		if err = terr; err == nil {
			v.Notice, v.Error = testOutcome(res)
			c.renderAccounts(w, r, s, http.StatusOK, v, accountsData{Priority: "50"})
			return
		}
	case "unpark":
		_, err = s.api.UnparkAccount(r.Context(), id)
		done = "unparked"
	case "schedulable":
		on := r.PostFormValue("schedulable") == "true"
		_, err = s.api.UpdateAccount(r.Context(), id, adminapi.UpdateAccountRequest{Schedulable: &on})
		done = "schedulable"
	case "delete":
		err, done = s.api.DeleteAccount(r.Context(), id), "acc-deleted"
	default:
		c.render(w, r, http.StatusNotFound, "error", view{Title: "Not found", User: s.user, CSRF: s.csrf(), Error: "There is no account action " + action + "."})
		return
	}
	if err != nil {
		v.Error = "The account was not changed: " + fieldMessage(err)
		c.renderAccounts(w, r, s, statusOf(err), v, accountsData{Priority: "50"})
		return
	}
	http.Redirect(w, r, Prefix+"accounts?done="+done, http.StatusSeeOther)
}

// testOutcome says what an account test found: a notice when it worked, an error when not.
func testOutcome(res adminapi.TestAccountResult) (notice, failure string) {
	if res.OK {
		return fmt.Sprintf("Test passed: %s answered in %s ms.", res.Model, formatInt(res.LatencyMS)), ""
	}
	msg := fmt.Sprintf("Test failed: %s", res.Model)
	if res.HTTPStatus != 0 {
		msg += fmt.Sprintf(" answered HTTP %d", res.HTTPStatus)
	}
	if res.Error != "" {
		msg += ": " + res.Error
	}
	return "", msg + "."
}
