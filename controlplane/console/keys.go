package console

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// keysPageSize is how many keys one page of the list shows.
const keysPageSize = 50

// keyStatuses are the status filter's choices.
var keyStatuses = []string{adminapi.KeyActive, adminapi.KeyDisabled, adminapi.KeyExpired, adminapi.KeyRevoked, adminapi.KeyDeleted}

// keysData is the keys page's data.
type keysData struct {
	Keys     []adminapi.Key
	Filter   adminclient.KeyQuery
	Statuses []string
	// Next is the address of the next page ("" on the last).
	Next template.URL
	// First says this is the first page (no cursor).
	First bool
	// Form holds a refused create form's values.
	Form adminapi.CreateKeyRequest
	Tags string
}

// handleKeys lists keys with the filters of the query string, one page at a time.
func (c *Console) handleKeys(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	c.renderKeys(w, r, s, http.StatusOK, s.view("Keys", "keys"), keysData{})
}

func (c *Console) renderKeys(w http.ResponseWriter, r *http.Request, s session, status int, v view, d keysData) {
	q := r.URL.Query()
	d.Filter = adminclient.KeyQuery{Name: q.Get("name"), Tag: q.Get("tag"), Status: q.Get("status"), Cursor: q.Get("cursor"), Limit: keysPageSize}
	page, err := s.api.ListKeysPage(r.Context(), d.Filter)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	d.Keys, d.Statuses, d.First = page.Keys, keyStatuses, d.Filter.Cursor == ""
	if page.NextCursor != "" {
		next := url.Values{"cursor": {page.NextCursor}}
		for _, k := range []string{"name", "tag", "status"} {
			if q.Get(k) != "" {
				next.Set(k, q.Get(k))
			}
		}
		d.Next = template.URL(Prefix + "keys?" + next.Encode()) // every part is query-escaped
	}
	if v.Notice == "" {
		v.Notice = notices[q.Get("done")]
	}
	v.Data = d
	c.render(w, r, status, "keys", v)
}

// handleCreateKey creates a key and shows its secret, once.
func (c *Console) handleCreateKey(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	req := adminapi.CreateKeyRequest{
		Name: strings.TrimSpace(r.PostFormValue("name")), Owner: strings.TrimSpace(r.PostFormValue("owner")),
		Description: strings.TrimSpace(r.PostFormValue("description")), Tags: splitList(r.PostFormValue("tags")),
		Policy: strings.TrimSpace(r.PostFormValue("policy")), ExpiresAt: expiryTime(r.PostFormValue("expires_at")),
		ExpiresAfter: strings.TrimSpace(r.PostFormValue("expires_after")),
	}
	res, err := s.api.CreateKey(r.Context(), req)
	if err != nil {
		v := s.view("Keys", "keys")
		v.Error = "The key was not created: " + fieldMessage(err)
		c.renderKeys(w, r, s, statusOf(err), v, keysData{Form: req, Tags: r.PostFormValue("tags")})
		return
	}
	c.showSecret(w, r, s, res)
}

// showSecret renders the one page that shows a key's secret.
func (c *Console) showSecret(w http.ResponseWriter, r *http.Request, s session, res adminapi.CreateKeyResponse) {
	v := s.view("Key created", "keys")
	v.Data = res
	c.render(w, r, http.StatusOK, "key_created", v)
}

// keyData is one key's page.
type keyData struct {
	Key    adminapi.Key
	Usage  *adminapi.KeyUsage
	Models []modelUsage
	// LimitInputs are the edit form's limit overrides; Accounts the binding's choices.
	LimitInputs []limitInput
	Accounts    []adminapi.Account
	// Form is the edit form's values: the key's, or a refused edit's.
	Form keyForm
	// Charts are the key's usage over Span by model, with their Totals; nil when the
	// report failed.
	Charts []chart
	Span   span
	Totals adminapi.UsageCounters
}

// modelUsage is one model's row of a key's usage today.
type modelUsage struct {
	Model string
	adminapi.Usage
}

// keyForm is the edit form as text fields.
type keyForm struct {
	Name, Description, Owner, Tags, Policy, ExpiresAt, ExpiresAfter string
	AllowedModels, DeniedModels, AllowedCIDRs, AllowedClients       string
	BindAccount, BindGroup                                          string
	// Limits are the overrides by limit name ("": the policy's value).
	Limits map[string]string
}

func formOf(k adminapi.Key) keyForm {
	f := keyForm{
		Name: k.Name, Description: k.Description, Owner: k.Owner, Tags: strings.Join(k.Tags, ", "), Policy: k.Policy,
		ExpiresAfter:  k.ExpiresAfter,
		AllowedModels: strings.Join(k.AllowedModels, ", "), DeniedModels: strings.Join(k.DeniedModels, ", "),
		AllowedCIDRs: strings.Join(k.AllowedCIDRs, ", "), AllowedClients: strings.Join(k.AllowedClients, ", "),
	}
	f.Limits = limitValues(k.Limits)
	if k.Binding != nil {
		f.BindAccount, f.BindGroup = k.Binding.AccountID, k.Binding.Group
	}
	if k.ExpiresAfter == "" { // a lifetime from first use sets expires_at itself
		f.ExpiresAt = isoPtr(k.ExpiresAt)
	}
	return f
}

// handleKey shows one key: its settings, today's usage and what can be done with it.
func (c *Console) handleKey(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	c.renderKey(w, r, s, http.StatusOK, s.view("Key", "keys"), nil)
}

// renderKey renders a key's page; form, when set, is a refused edit to show again.
func (c *Console) renderKey(w http.ResponseWriter, r *http.Request, s session, status int, v view, form *keyForm) {
	id := r.PathValue("id")
	k, err := s.api.GetKey(r.Context(), id)
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	d := keyData{Key: k, Form: formOf(k)}
	if form != nil {
		d.Form = *form
	}
	d.LimitInputs = limitInputs(d.Form.Limits)
	if accts, err := s.api.ListAccounts(r.Context()); err == nil {
		d.Accounts = accts
	}
	if u, err := s.api.KeyUsage(r.Context(), id, ""); err == nil {
		d.Usage = &u
		for m, mu := range u.Models {
			d.Models = append(d.Models, modelUsage{Model: m, Usage: mu})
		}
		sort.Slice(d.Models, func(i, j int) bool { return d.Models[i].CostUSD > d.Models[j].CostUSD })
	} else {
		c.log.Warn("key usage", "key", id, "error", err)
	}
	d.Span = dashboardSpan(r.URL.Query().Get("range"), c.now())
	if charts, totals, err := keyCharts(r.Context(), s.api, id, d.Span); err == nil {
		d.Charts, d.Totals = charts, totals
	} else {
		c.log.Warn("key usage chart", "key", id, "error", err)
	}
	v.Title = "Key " + k.Name
	if v.Notice == "" {
		v.Notice = notices[r.URL.Query().Get("done")]
	}
	v.Data = d
	c.render(w, r, status, "key", v)
}

// handleUpdateKey saves the edit form, conditional on the revision the form was read at.
func (c *Console) handleUpdateKey(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	f := keyForm{
		Name: r.PostFormValue("name"), Description: r.PostFormValue("description"), Owner: r.PostFormValue("owner"),
		Tags: r.PostFormValue("tags"), Policy: r.PostFormValue("policy"), ExpiresAt: r.PostFormValue("expires_at"),
		ExpiresAfter: r.PostFormValue("expires_after"), AllowedModels: r.PostFormValue("allowed_models"),
		DeniedModels: r.PostFormValue("denied_models"), AllowedCIDRs: r.PostFormValue("allowed_cidrs"),
		AllowedClients: r.PostFormValue("allowed_clients"),
		BindAccount:    strings.TrimSpace(r.PostFormValue("bind_account")), BindGroup: strings.TrimSpace(r.PostFormValue("bind_group")),
	}
	var limits *adminapi.KeyLimits
	var bad []string
	f.Limits, limits, bad = limitsFromForm(r)
	if len(bad) > 0 {
		v := s.view("Key", "keys")
		v.Error = "Your changes were not saved: " + strings.Join(bad, "; ") + "."
		c.renderKey(w, r, s, http.StatusBadRequest, v, &f)
		return
	}
	req := f.request()
	req.Limits = limits
	req.Binding = &adminapi.KeyBinding{AccountID: f.BindAccount, Group: f.BindGroup}
	_, err := s.api.UpdateKey(r.Context(), r.PathValue("id"), req, ifMatch(r)...)
	if err != nil {
		v := s.view("Key", "keys")
		v.Error = changeError(err, "Your changes were not saved")
		c.renderKey(w, r, s, statusOf(err), v, &f)
		return
	}
	http.Redirect(w, r, Prefix+"keys/"+url.PathEscape(r.PathValue("id"))+"?done=updated", http.StatusSeeOther)
}

// request is the PATCH the form makes: every field, as the form shows them all.
func (f keyForm) request() adminapi.UpdateKeyRequest {
	at, after := expiryTime(f.ExpiresAt), strings.TrimSpace(f.ExpiresAfter)
	if after != "" {
		at = ""
	}
	str := func(s string) *string { s = strings.TrimSpace(s); return &s }
	list := func(s string) *[]string {
		l := splitList(s)
		if l == nil {
			l = []string{} // present and empty: clears the list
		}
		return &l
	}
	return adminapi.UpdateKeyRequest{
		Name: str(f.Name), Description: str(f.Description), Owner: str(f.Owner), Tags: list(f.Tags),
		Policy: str(f.Policy), ExpiresAt: &at, ExpiresAfter: &after,
		AllowedModels: list(f.AllowedModels), DeniedModels: list(f.DeniedModels),
		AllowedCIDRs: list(f.AllowedCIDRs), AllowedClients: list(f.AllowedClients),
	}
}

// handleKeyAction enables, disables, revokes, deletes, restores or regenerates a key, at the
// revision the page showed.
func (c *Console) handleKeyAction(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	id, action := r.PathValue("id"), r.PathValue("action")
	opts := ifMatch(r)
	var err error
	switch action {
	case "enable":
		_, err = s.api.EnableKey(r.Context(), id, opts...)
	case "disable":
		_, err = s.api.DisableKey(r.Context(), id, opts...)
	case "revoke":
		_, err = s.api.RevokeKey(r.Context(), id, opts...)
	case "delete":
		_, err = s.api.DeleteKey(r.Context(), id, opts...)
	case "restore":
		_, err = s.api.RestoreKey(r.Context(), id, opts...)
	case "regenerate":
		var res adminapi.CreateKeyResponse
		if res, err = s.api.RegenerateKey(r.Context(), id, opts...); err == nil {
			c.showSecret(w, r, s, res)
			return
		}
	default:
		c.render(w, r, http.StatusNotFound, "error", view{Title: "Not found", User: s.user, CSRF: s.csrf(), Error: "There is no key action " + action + "."})
		return
	}
	if err != nil {
		v := s.view("Key", "keys")
		v.Error = changeError(err, "The key was not "+pastTense(action))
		c.renderKey(w, r, s, statusOf(err), v, nil)
		return
	}
	http.Redirect(w, r, Prefix+"keys/"+url.PathEscape(id)+"?done="+pastTense(action), http.StatusSeeOther)
}

func pastTense(action string) string {
	switch action {
	case "enable", "disable", "revoke", "delete", "restore":
		return strings.TrimSuffix(action, "e") + "ed"
	}
	return action + "d"
}

// ifMatch makes a change conditional on the revision the form was rendered at.
func ifMatch(r *http.Request) []adminclient.Option {
	rev, err := strconv.ParseInt(r.PostFormValue("revision"), 10, 64)
	if err != nil || rev <= 0 {
		return nil
	}
	return []adminclient.Option{adminclient.IfMatch(rev)}
}

// changeError says why a change was refused; a revision conflict says what to do.
func changeError(err error, what string) string {
	if adminclient.IsPreconditionFailed(err) {
		return fmt.Sprintf("%s: someone else changed this key since you opened the page. "+
			"It is shown below as it is now; check it and make your change again.", what)
	}
	return what + ": " + fieldMessage(err)
}

// fieldMessage is the admin API's message, naming each refused field.
func fieldMessage(err error) string {
	var ae *adminclient.APIError
	if !asAPIError(err, &ae) || len(ae.Fields) == 0 {
		return apiMessage(err) + "."
	}
	names := make([]string, 0, len(ae.Fields))
	for f := range ae.Fields {
		names = append(names, f)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, f := range names {
		parts[i] = strings.ReplaceAll(f, "_", " ") + ": " + ae.Fields[f]
	}
	return strings.Join(parts, "; ") + "."
}

// splitList reads a comma- or newline-separated list; nil when empty.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// expiryTime accepts RFC 3339 or a date (YYYY-MM-DD, the start of that day in UTC).
func expiryTime(s string) string {
	s = strings.TrimSpace(s)
	if len(s) == len("2006-01-02") && strings.Count(s, "-") == 2 {
		return s + "T00:00:00Z"
	}
	return s
}
