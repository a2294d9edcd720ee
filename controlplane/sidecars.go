package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/store"
)

// ErrShuttingDown is returned by Poll once the control plane has stopped watching; the
// sidecar should retry later (with backoff), possibly against another control plane.
var ErrShuttingDown = errors.New("control plane is shutting down")

// sidecarForget is how long a sidecar may stay silent before the registry drops it.
const sidecarForget = 24 * time.Hour

// Poll serves one long-poll. It records what the sidecar reports (its applied version and
// its last NACK), then returns at once a snapshot the sidecar does not run yet — a newer
// version, or any version of another epoch — or waits for one until req.Wait (plus up to
// a tenth of it as jitter, so a fleet does not reconnect in step) or ctx ends, and then
// returns nil. Once Run has ended (the control plane is shutting down) it returns
// ErrShuttingDown instead of waiting. A snapshot the sidecar refused is not sent to it again.
func (c *Config) Poll(ctx context.Context, req configapi.PollRequest) (*configapi.Envelope, error) {
	if err := c.record(ctx, req); err != nil {
		c.log.Warn("cannot record the sidecar's report", "sidecar", req.SidecarID, "error", err)
	}
	var timeout <-chan time.Time
	if req.Wait > 0 {
		jitter := time.Duration(rand.Int64N(int64(req.Wait)/10 + 1))
		t := time.NewTimer(req.Wait + jitter)
		defer t.Stop()
		timeout = t.C
	}
	for {
		changed := c.changed()
		if cur := c.cur.Load(); cur != nil && cur.Newer(req.Epoch, req.Version) &&
			!(cur.Epoch == req.NackEpoch && cur.Version == req.NackVersion) {
			return cur, nil
		}
		if timeout == nil {
			return nil, nil
		}
		select {
		case <-changed:
		case <-timeout:
			return nil, nil
		case <-ctx.Done():
			return nil, nil
		case <-c.stopping:
			return nil, ErrShuttingDown
		}
	}
}

// record saves the sidecar's report in the registry.
func (c *Config) record(ctx context.Context, req configapi.PollRequest) error {
	if req.SidecarID == "" {
		return nil
	}
	rec := configapi.Sidecar{
		ID:       req.SidecarID,
		Addr:     req.Addr,
		Epoch:    req.Epoch,
		Version:  req.Version,
		LastSeen: c.opts.Now().UTC(),
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
	if err := c.rdb.HSet(ctx, c.keys.Sidecars(), req.SidecarID, b).Err(); err != nil {
		return fmt.Errorf("write sidecar registry: %w", err)
	}
	return nil
}

// Sidecars lists the sidecars seen in the last day, by id; older entries are dropped.
func (c *Config) Sidecars(ctx context.Context) ([]configapi.Sidecar, error) {
	m, err := c.rdb.HGetAll(ctx, c.keys.Sidecars()).Result()
	if err != nil {
		return nil, fmt.Errorf("read sidecar registry: %w", err)
	}
	now := c.opts.Now()
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
	if len(stale) > 0 {
		if err := c.rdb.HDel(ctx, c.keys.Sidecars(), stale...).Err(); err != nil {
			c.log.Warn("cannot drop stale sidecars from the registry", "error", err)
		}
	}
	slices.SortFunc(out, func(a, b configapi.Sidecar) int { return strings.Compare(a.ID, b.ID) })
	c.addLoads(ctx, out, now)
	return out, nil
}

// addLoads fills each sidecar's Load from what the sidecars wrote to Redis; a sidecar that
// cannot be read keeps none (the registry still answers).
func (c *Config) addLoads(ctx context.Context, list []configapi.Sidecar, now time.Time) {
	loads, err := c.opts.Store.SidecarLoads(ctx)
	if err != nil {
		c.log.Warn("cannot read the sidecars' load", "error", err)
	}
	for i := range list {
		if l, ok := loads[list[i].ID]; ok {
			list[i].Load = &configapi.Load{InFlight: l.InFlight, Streams: l.Streams, At: l.At, Stale: now.Sub(l.At) > store.LoadStale}
		}
	}
}

// SidecarHandler serves the long-poll at configapi.Path to sidecars that present a valid
// sidecar token (Authorization: Bearer). It answers 200 with a configapi.Envelope, or 304
// with no body when nothing newer appeared in time.
func (c *Config) SidecarHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+configapi.Path, c.handlePoll)
	return mux
}

func (c *Config) handlePoll(w http.ResponseWriter, r *http.Request) {
	raw, ok := bearerToken(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, errAuthentication, "missing sidecar token: send Authorization: Bearer <token signed with CRS_SECURITY__JWT_SECRET>", nil)
		return
	}
	id, err := configapi.VerifyToken(c.opts.SidecarSecrets, raw, c.opts.Now())
	if err != nil {
		c.log.Warn("sidecar token refused", "remote", r.RemoteAddr, "error", err)
		writeError(w, http.StatusUnauthorized, errAuthentication, "sidecar token is invalid or expired: check that the sidecar and the control plane share CRS_SECURITY__JWT_SECRET and that their clocks agree", nil)
		return
	}
	req := configapi.PollRequest{
		SidecarID: id,
		Addr:      configapi.CleanError(r.Header.Get(configapi.HeaderAddr)),
		NackEpoch: r.Header.Get(configapi.HeaderNackEpoch),
		NackError: r.Header.Get(configapi.HeaderNackError),
	}
	if err := configapi.ParseQuery(r.URL.Query(), &req); err != nil {
		writeError(w, http.StatusBadRequest, errInvalidRequest, err.Error(), nil)
		return
	}
	if h, err := configapi.DecodeHealth(r.Header.Get(configapi.HeaderHealth)); err != nil {
		c.log.Warn("sidecar health report ignored", "sidecar", id, "error", err)
	} else {
		req.Health = h
	}
	if v := r.Header.Get(configapi.HeaderNackVersion); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, errInvalidRequest, configapi.HeaderNackVersion+" must be a version number", nil)
			return
		}
		req.NackVersion = n
	}
	env, err := c.Poll(r.Context(), req)
	if errors.Is(err, ErrShuttingDown) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, errAPI, err.Error(), nil)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, errAPI, "internal error; see the control plane log", nil)
		return
	}
	if env == nil {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	c.log.Debug("snapshot sent to sidecar", "sidecar", id, "from", req.Version, "to", env.Version)
	writeJSON(w, http.StatusOK, env)
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
	writeJSON(w, http.StatusOK, s.config.Status())
}

func (s *Server) handleListSidecars(w http.ResponseWriter, r *http.Request) {
	list, err := s.config.Sidecars(r.Context())
	if err != nil {
		s.writeStoreError(w, r, err, "sidecar registry")
		return
	}
	out := configapi.SidecarList{Sidecars: list}
	if out.Sidecars == nil {
		out.Sidecars = []configapi.Sidecar{}
	}
	if cur := s.config.Current(); cur != nil {
		out.Epoch, out.Version = cur.Epoch, cur.Version
	}
	writeJSON(w, http.StatusOK, out)
}
