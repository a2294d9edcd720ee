package controlplane

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// Account defaults and limits.
const (
	accountTypeAPIKey   = store.AccountTypeAnthropicAPIKey
	defaultBaseURL      = store.DefaultBaseURL
	defaultPriority     = 50
	minPriority         = 1
	maxPriority         = 100
	maxCredentialLength = 4096
)

func toAPIAccount(a store.Account) adminapi.Account {
	return adminapi.Account{
		ID:             a.ID,
		Name:           a.Name,
		Type:           a.Type,
		BaseURL:        a.BaseURL,
		Priority:       a.Priority,
		Schedulable:    a.Schedulable,
		CreatedAt:      a.CreatedAt,
		CredentialHint: a.CredentialHint,
	}
}

// checkBaseURL reports what is wrong with an upstream base URL, or "".
func checkBaseURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "must be a URL such as https://api.anthropic.com"
	case u.Scheme != "https" && u.Scheme != "http":
		return "must start with https:// (or http://)"
	case u.Host == "":
		return "must name a host"
	case u.User != nil:
		return "must not carry credentials; send them as api_key"
	case u.RawQuery != "" || u.Fragment != "":
		return "must not have a query or fragment"
	}
	return ""
}

func (s *Server) handleListAccounts(w http.ResponseWriter, r *http.Request) {
	accts, err := s.st.ListAccounts(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err, "accounts")
		return
	}
	out := adminapi.AccountList{Accounts: make([]adminapi.Account, 0, len(accts))}
	for _, a := range accts {
		out.Accounts = append(out.Accounts, toAPIAccount(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleAddAccount(w http.ResponseWriter, r *http.Request) {
	var req adminapi.AddAccountRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	spec := store.AccountSpec{
		Name:       strings.TrimSpace(req.Name),
		Type:       req.Type,
		BaseURL:    strings.TrimRight(req.BaseURL, "/"),
		Credential: strings.TrimSpace(req.APIKey),
		Priority:   defaultPriority,
	}
	if spec.Type == "" {
		spec.Type = accountTypeAPIKey
	}
	if spec.BaseURL == "" {
		spec.BaseURL = defaultBaseURL
	}
	if req.Priority != nil {
		spec.Priority = *req.Priority
	}

	fields := fieldErrors{}
	checkName(fields, "name", req.Name)
	if spec.Type != accountTypeAPIKey {
		fields.add("type", "must be "+accountTypeAPIKey)
	}
	if problem := checkBaseURL(spec.BaseURL); problem != "" {
		fields.add("base_url", problem)
	}
	switch {
	case spec.Credential == "":
		fields.add("api_key", "required")
	case len(spec.Credential) > maxCredentialLength:
		fields.add("api_key", fmt.Sprintf("must be at most %d bytes", maxCredentialLength))
	case strings.ContainsFunc(spec.Credential, func(r rune) bool { return r <= 0x20 || r == 0x7f }):
		fields.add("api_key", "must not contain spaces or control characters")
	}
	if spec.Priority < minPriority || spec.Priority > maxPriority {
		fields.add("priority", fmt.Sprintf("must be between %d and %d", minPriority, maxPriority))
	}
	if len(fields) > 0 {
		writeInvalid(w, fields)
		return
	}

	acct, err := s.st.AddAccount(r.Context(), spec)
	if err != nil {
		s.writeStoreError(w, r, err, "account")
		return
	}
	s.auditLog(r, "account.add", acct.ID, "name", acct.Name, "type", acct.Type, "base_url", acct.BaseURL, "priority", acct.Priority)
	writeJSON(w, http.StatusCreated, adminapi.AccountResponse{Account: toAPIAccount(acct)})
}

func (s *Server) handleGetAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	acct, err := s.st.GetAccount(r.Context(), id)
	if err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	writeJSON(w, http.StatusOK, adminapi.AccountResponse{Account: toAPIAccount(acct)})
}

func (s *Server) handleDeleteAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.st.DeleteAccount(r.Context(), id); err != nil {
		s.writeStoreError(w, r, err, fmt.Sprintf("account %q", id))
		return
	}
	s.auditLog(r, "account.delete", id)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
