package controlplane

import (
	"net/http"

	"golang.org/x/crypto/bcrypt"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// minPasswordLen is the shortest new admin password accepted.
const minPasswordLen = 12

// handleChangePassword changes the caller's password after checking the current one (under
// the same guessing bounds as the login), refuses every session token issued before the
// change (other sessions included) and answers with a fresh token.
func (s *Server) handleChangePassword(w http.ResponseWriter, r *http.Request) {
	var req adminapi.ChangePasswordRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	fields := fieldErrors{}
	if req.CurrentPassword == "" {
		fields.add("current_password", "required")
	}
	switch {
	case len(req.NewPassword) < minPasswordLen:
		fields.add("new_password", "must be at least 12 bytes")
	case len(req.NewPassword) > maxPasswordLen:
		fields.add("new_password", "must be at most 72 bytes (bcrypt ignores the rest)")
	case req.NewPassword == req.CurrentPassword:
		fields.add("new_password", "must differ from the current password")
	}
	if len(fields) > 0 {
		writeInvalid(w, fields)
		return
	}
	sess, _ := sessionFrom(r.Context())
	// The current password is guessed no faster than at the login: a stolen session must
	// not become a way around its bounds.
	remote := s.clientIP(r)
	addr := guardKey(remote)
	if !s.guardBegin(w, addr, remote, "password checks") {
		return
	}
	hash, err := s.st.AdminPasswordHash(r.Context(), sess.username)
	if err != nil {
		s.guard.abandoned(addr)
		s.writeStoreError(w, r, err, "admin user")
		return
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(req.CurrentPassword)) != nil {
		wait := s.guard.failed(s.now(), addr)
		s.audit.Warn("admin password change refused: wrong current password", "who", sess.username, "remote", remote)
		writeGuessFailure(w, http.StatusBadRequest, wait, "invalid request: current_password: is wrong", fieldErrors{"current_password": "is wrong"})
		return
	}
	s.guard.succeeded(addr)
	newHash, err := bcrypt.GenerateFromPassword([]byte(req.NewPassword), s.cost)
	if err != nil {
		s.log.Error("hash new admin password", "error", err)
		writeError(w, http.StatusInternalServerError, errAPI, "internal error; see the control plane log", nil)
		return
	}
	if _, err := s.st.ChangeAdminPassword(r.Context(), sess.username, newHash); err != nil {
		s.writeStoreError(w, r, err, "admin user")
		return
	}
	s.auditLog(r, "admin.password_change", sess.username)
	token, exp, err := s.issueToken(r.Context(), sess.username)
	if err != nil && clientGone(r) {
		s.log.Debug("login ended before its token was issued: the client went away")
		return
	}
	if err != nil {
		s.log.Error("issue session token", "error", err)
		writeError(w, http.StatusInternalServerError, errAPI, "password changed; log in again", nil)
		return
	}
	writeJSON(w, http.StatusOK, adminapi.LoginResponse{Token: token, ExpiresAt: exp})
}
