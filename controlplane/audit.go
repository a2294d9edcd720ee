package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

// recordAudit stores an admin action in the Redis audit stream. kv are key/value pairs of
// details (never secrets). A failure is logged, not returned: the action already happened.
func (s *Server) recordAudit(r *http.Request, who, action, target string, kv []any) {
	detail := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		detail[fmt.Sprint(kv[i])] = fmt.Sprint(kv[i+1])
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	err := s.st.AppendAudit(ctx, store.AuditEntry{
		At: s.now(), Who: who, Action: action, Target: target, Remote: s.clientIP(r), Detail: detail,
	})
	if err != nil {
		s.log.Error("cannot write the audit log", "action", action, "target", target, "error", err)
	}
}

func (s *Server) handleListAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := adminapi.DefaultPageLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > adminapi.MaxPageLimit {
			writeInvalid(w, fieldErrors{"limit": fmt.Sprintf("must be an integer from 1 to %d", adminapi.MaxPageLimit)})
			return
		}
		limit = n
	}
	entries, next, err := s.st.ListAudit(r.Context(), q.Get("before"), limit)
	if errors.Is(err, store.ErrInvalid) {
		writeInvalid(w, fieldErrors{"before": "is not a cursor this API returned"})
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err, "audit log")
		return
	}
	out := adminapi.AuditList{Entries: make([]adminapi.AuditEntry, 0, len(entries)), NextCursor: next}
	for _, e := range entries {
		out.Entries = append(out.Entries, adminapi.AuditEntry(e))
	}
	writeJSON(w, http.StatusOK, out)
}
