package console

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// oauthData is the page between starting a Claude login and pasting its code.
type oauthData struct {
	Name         string
	AuthorizeURL string
	State        string
	ExpiresAt    time.Time
}

// handleOAuthStart begins adding a Claude subscription account: the admin API makes the PKCE
// login URL the operator opens.
func (c *Console) handleOAuthStart(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	req := adminapi.OAuthStartRequest{Name: strings.TrimSpace(r.PostFormValue("name")), Group: strings.TrimSpace(r.PostFormValue("group"))}
	if p := strings.TrimSpace(r.PostFormValue("priority")); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			n = -1 // refused by the API with its own message
		}
		req.Priority = &n
	}
	res, err := s.api.OAuthStart(r.Context(), req)
	if err != nil {
		v := s.view("Accounts", "accounts")
		v.Error = "The Claude login was not started: " + fieldMessage(err)
		c.renderAccounts(w, r, s, statusOf(err), v, accountsData{Priority: "50"})
		return
	}
	v := s.view("Add a Claude account", "accounts")
	v.Data = oauthData{Name: req.Name, AuthorizeURL: res.AuthorizeURL, State: res.State, ExpiresAt: res.ExpiresAt}
	c.render(w, r, http.StatusOK, "oauth", v)
}

// handleOAuthFinish exchanges the pasted code (or callback URL) for the account's tokens.
func (c *Console) handleOAuthFinish(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	code := strings.TrimSpace(r.PostFormValue("code"))
	req := adminapi.OAuthFinishRequest{State: r.PostFormValue("state")}
	if strings.HasPrefix(code, "http://") || strings.HasPrefix(code, "https://") {
		req.CallbackURL = code
	} else {
		req.Code = code
	}
	if _, err := s.api.OAuthFinish(r.Context(), req); err != nil {
		v := s.view("Add a Claude account", "accounts")
		v.Error = "The account was not added: " + fieldMessage(err)
		exp, _ := time.Parse(time.RFC3339, r.PostFormValue("expires_at"))
		v.Data = oauthData{Name: r.PostFormValue("name"), AuthorizeURL: r.PostFormValue("authorize_url"), State: req.State, ExpiresAt: exp}
		c.render(w, r, statusOf(err), "oauth", v)
		return
	}
	http.Redirect(w, r, Prefix+"accounts?done=added", http.StatusSeeOther)
}
