package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/store"
)

// sidecarForget is how long a sidecar may stay silent before the registry drops it.
const sidecarForget = 24 * time.Hour

// SidecarRegistry records what each sidecar reports with its polls (its applied version,
// its last NACK, its health) and lists the sidecars seen lately (GET /admin/sidecars, the
// sidecar alerts). It keeps the records in the store, shared by the control planes.
type SidecarRegistry struct {
	st  *store.Store
	now func() time.Time
	log hclog.Logger
}

// NewSidecarRegistry returns the registry kept in st; now nil means time.Now.
func NewSidecarRegistry(st *store.Store, now func() time.Time, log hclog.Logger) *SidecarRegistry {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &SidecarRegistry{st: st, now: now, log: log.Named("config")}
}

// Record saves the sidecar's report; a request without a sidecar id records nothing.
func (r *SidecarRegistry) Record(ctx context.Context, req configapi.PollRequest) error {
	if req.SidecarID == "" {
		return nil
	}
	rec := configapi.Sidecar{
		ID:       req.SidecarID,
		Addr:     req.Addr,
		Epoch:    req.Epoch,
		Version:  req.Version,
		LastSeen: r.now().UTC(),
	}
	if req.NackVersion != 0 || req.NackError != "" {
		rec.NackVersion = req.NackVersion
		rec.LastError = configapi.CleanError(req.NackError)
	}
	rec.Health = req.Health
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode sidecar record: %w", err)
	}
	return r.st.RecordSidecar(ctx, req.SidecarID, b)
}

// List returns the sidecars seen in the last day, by id; older entries are dropped.
func (r *SidecarRegistry) List(ctx context.Context) ([]configapi.Sidecar, error) {
	m, err := r.st.SidecarReports(ctx)
	if err != nil {
		return nil, err
	}
	now := r.now()
	var out []configapi.Sidecar
	var stale []string
	for id, raw := range m {
		var s configapi.Sidecar
		if err := json.Unmarshal([]byte(raw), &s); err != nil || now.Sub(s.LastSeen) > sidecarForget {
			stale = append(stale, id)
			continue
		}
		out = append(out, s)
	}
	if err := r.st.ForgetSidecars(ctx, stale...); err != nil {
		r.log.Warn("cannot drop stale sidecars from the registry", "error", err)
	}
	slices.SortFunc(out, func(a, b configapi.Sidecar) int { return strings.Compare(a.ID, b.ID) })
	r.addLoads(ctx, out, now)
	return out, nil
}

// addLoads fills each sidecar's Load from what the sidecars wrote to Redis; when the loads
// cannot be read the sidecars keep none (the registry still answers).
func (r *SidecarRegistry) addLoads(ctx context.Context, list []configapi.Sidecar, now time.Time) {
	loads, err := r.st.SidecarLoads(ctx)
	if err != nil {
		r.log.Warn("cannot read the sidecars' load", "error", err)
	}
	for i := range list {
		if l, ok := loads[list[i].ID]; ok {
			list[i].Load = &configapi.Load{InFlight: l.InFlight, Streams: l.Streams, At: l.At, Stale: now.Sub(l.At) > store.LoadStale}
		}
	}
}

// handleHealth serves GET /admin/health: this control plane's own health with the errors
// and details (plugin binaries, PIDs, checksums) that the public /health leaves out.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.health == nil {
		writeError(w, http.StatusNotFound, errNotFound, "this control plane reports no health details", nil)
		return
	}
	writeJSON(w, http.StatusOK, s.health(r.Context()))
}

func (s *Server) handleConfigStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.config.Source.Status())
}

func (s *Server) handleListSidecars(w http.ResponseWriter, r *http.Request) {
	list, err := s.config.Registry.List(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err, "sidecar registry")
		return
	}
	out := configapi.SidecarList{Sidecars: list}
	if out.Sidecars == nil {
		out.Sidecars = []configapi.Sidecar{}
	}
	if cur := s.config.Cache.Current(); cur != nil {
		out.Epoch, out.Version = cur.Epoch, cur.Version
	}
	writeJSON(w, http.StatusOK, out)
}
