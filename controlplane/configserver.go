package controlplane

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/config/configdist"
)

// ConfigServer serves a SnapshotCache's snapshots to sidecars by long-poll, over HTTP
// (Handler) or in-process (Poll), and records each poll's report in the registry.
type ConfigServer struct {
	cache    *configdist.SnapshotCache
	registry *SidecarRegistry
	secrets  [][]byte
	now      func() time.Time
	log      hclog.Logger
}

// NewConfigServer returns the long-poll server of cache. secrets verify sidecar tokens:
// the current JWT secret first, then any previous one still accepted during a rotation.
func NewConfigServer(cache *configdist.SnapshotCache, registry *SidecarRegistry, secrets [][]byte, now func() time.Time, log hclog.Logger) *ConfigServer {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &ConfigServer{cache: cache, registry: registry, secrets: secrets, now: now, log: log.Named("config")}
}

// Poll serves one long-poll: it records what the sidecar reports (its applied version and
// its last NACK), then answers as configdist.SnapshotCache.Poll does.
func (c *ConfigServer) Poll(ctx context.Context, req configapi.PollRequest) (*configapi.Envelope, error) {
	if err := c.registry.Record(ctx, req); err != nil {
		c.log.Warn("cannot record the sidecar's report", "sidecar", req.SidecarID, "error", err)
	}
	return c.cache.Poll(ctx, req)
}

// Handler serves the long-poll at configapi.Path to sidecars that present a valid sidecar
// token (Authorization: Bearer). It answers 200 with a configapi.Envelope, or 304 with no
// body when nothing newer appeared in time.
func (c *ConfigServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+configapi.Path, c.handlePoll)
	return mux
}

func (c *ConfigServer) handlePoll(w http.ResponseWriter, r *http.Request) {
	req, ok := c.pollRequest(w, r)
	if !ok {
		return
	}
	env, err := c.Poll(r.Context(), req)
	if errors.Is(err, configdist.ErrShuttingDown) {
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
	c.log.Debug("snapshot sent to sidecar", "sidecar", req.SidecarID, "from", req.Version, "to", env.Version)
	writeJSON(w, http.StatusOK, env)
}

// pollRequest authenticates a poll and reads it; on failure it has answered.
func (c *ConfigServer) pollRequest(w http.ResponseWriter, r *http.Request) (configapi.PollRequest, bool) {
	raw, ok := bearerToken(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, errAuthentication, "missing sidecar token: send Authorization: Bearer <token signed with CRS_SECURITY__JWT_SECRET>", nil)
		return configapi.PollRequest{}, false
	}
	id, err := configapi.VerifyToken(c.secrets, raw, c.now())
	if err != nil {
		c.log.Warn("sidecar token refused", "remote", r.RemoteAddr, "error", err)
		writeError(w, http.StatusUnauthorized, errAuthentication, "sidecar token is invalid or expired: check that the sidecar and the control plane share CRS_SECURITY__JWT_SECRET and that their clocks agree", nil)
		return configapi.PollRequest{}, false
	}
	req := configapi.PollRequest{
		SidecarID: id,
		Addr:      configapi.CleanError(r.Header.Get(configapi.HeaderAddr)),
		NackEpoch: r.Header.Get(configapi.HeaderNackEpoch),
		NackError: r.Header.Get(configapi.HeaderNackError),
	}
	if err := configapi.ParseQuery(r.URL.Query(), &req); err != nil {
		writeError(w, http.StatusBadRequest, errInvalidRequest, err.Error(), nil)
		return req, false
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
			return req, false
		}
		req.NackVersion = n
	}
	return req, true
}
