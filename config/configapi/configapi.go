// Package configapi is the distribution protocol between the control plane and its sidecars, a neutral package both planes import: the versioned snapshot envelope, the long-poll request, the ACK/NACK and health headers, the sidecar tokens and the admin views of both.
package configapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/config"
)

// Path is where the control plane serves the long-poll. It is deliberately outside /admin/:
// sidecars authenticate with their own short-lived tokens, never with an admin session.
const Path = "/v1/relay/config"

// Query parameters and headers of a poll.
const (
	// QueryVersion and QueryEpoch name the snapshot the sidecar runs (0 and "" for none).
	QueryVersion = "version"
	QueryEpoch   = "epoch"
	// QueryWait is how long the control plane may hold the request, as a Go duration.
	QueryWait = "wait"

	// HeaderAddr is the address the sidecar serves on, for the registry.
	HeaderAddr = "X-Relay-Sidecar-Addr"
	// HeaderNackEpoch and HeaderNackVersion name a snapshot the sidecar refused; HeaderNackError
	// says why. Absent when the last snapshot received was applied (an ACK).
	HeaderNackEpoch   = "X-Relay-Nack-Epoch"
	HeaderNackVersion = "X-Relay-Nack-Version"
	HeaderNackError   = "X-Relay-Nack-Error"
	// HeaderHealth carries the sidecar's Health (EncodeHealth) with its ACK or NACK, so
	// that operators see through the admin API what the public /health leaves out.
	HeaderHealth = "X-Relay-Sidecar-Health"
)

// Poll limits.
const (
	DefaultWait = 30 * time.Second
	MaxWait     = 5 * time.Minute
	// MaxErrorLen caps a NACK's error text.
	MaxErrorLen = 1024
	// MaxHealthLen caps a health report's JSON; a larger one is sent without details.
	MaxHealthLen = 8 << 10
)

// Envelope is one versioned snapshot as it travels: Config holds the exact JSON bytes whose
// SHA-256 is SHA256, so a receiver can check what it got (and what it saved to disk) before
// applying it.
type Envelope struct {
	// Epoch identifies the store that numbers versions; a new epoch restarts the numbering.
	Epoch string `json:"epoch"`
	// Version increases strictly within an epoch.
	Version int64 `json:"version"`
	// SHA256 is the hex SHA-256 of Config.
	SHA256 string `json:"sha256"`
	// CreatedAt is when this version was published.
	CreatedAt time.Time `json:"created_at"`
	// Config is the config.Snapshot as JSON.
	Config json.RawMessage `json:"config"`
}

// NewEnvelope encodes snap and hashes it. Epoch, Version and CreatedAt are left for the
// publisher to fill.
func NewEnvelope(snap *config.Snapshot) (*Envelope, error) {
	if snap == nil {
		return nil, errors.New("new envelope: no snapshot")
	}
	raw, err := json.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	return &Envelope{SHA256: Hash(raw), Config: raw}, nil
}

// Hash returns the hex SHA-256 of b.
func Hash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Snapshot checks the envelope's hash and decodes its configuration.
func (e *Envelope) Snapshot() (*config.Snapshot, error) {
	if e == nil {
		return nil, errors.New("no envelope")
	}
	if got := Hash(e.Config); got != e.SHA256 {
		return nil, fmt.Errorf("snapshot %s/%d is corrupt: sha256 %s, want %s", e.Epoch, e.Version, got, e.SHA256)
	}
	var snap config.Snapshot
	if err := json.Unmarshal(e.Config, &snap); err != nil {
		return nil, fmt.Errorf("decode snapshot %s/%d: %w", e.Epoch, e.Version, err)
	}
	return &snap, nil
}

// Newer reports whether e should replace what a sidecar runs (epoch, version): it comes
// from another epoch, or it is a later version of the same one.
func (e *Envelope) Newer(epoch string, version int64) bool {
	return e.Epoch != epoch || e.Version > version
}

// PollRequest is one long-poll from a sidecar: who it is, what it runs (the ACK) and what
// it refused (the NACK).
type PollRequest struct {
	SidecarID string
	Addr      string
	// Epoch and Version name the applied snapshot; "" and 0 when there is none.
	Epoch   string
	Version int64
	// NackEpoch and NackVersion name the last snapshot the sidecar could not apply, with
	// NackError saying why; zero when it applied the last one it received.
	NackEpoch   string
	NackVersion int64
	NackError   string
	// Wait is how long the control plane may hold the request.
	Wait time.Duration
	// Health is the sidecar's health when it polled; nil when it sent none.
	Health *Health
}

// Query encodes the request's query string (headers carry the rest).
func (p PollRequest) Query() url.Values {
	q := url.Values{}
	q.Set(QueryVersion, strconv.FormatInt(p.Version, 10))
	q.Set(QueryEpoch, p.Epoch)
	q.Set(QueryWait, p.Wait.String())
	return q
}

// ParseQuery reads the version, epoch and wait of a poll; a missing wait is DefaultWait and
// a longer one than MaxWait is capped.
func ParseQuery(q url.Values, p *PollRequest) error {
	if v := q.Get(QueryVersion); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%s must be a version number, got %q", QueryVersion, v)
		}
		p.Version = n
	}
	p.Epoch = q.Get(QueryEpoch)
	p.Wait = DefaultWait
	if v := q.Get(QueryWait); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%s must be a duration such as 30s, got %q", QueryWait, v)
		}
		p.Wait = min(d, MaxWait)
	}
	return nil
}

// CleanError makes an error text safe for a header and the registry: one line, printable,
// at most MaxErrorLen bytes.
func CleanError(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f || r > 0x7e {
			return '?'
		}
		return r
	}, s)
	if len(s) > MaxErrorLen {
		s = s[:MaxErrorLen]
	}
	return s
}

// Sidecar is what the control plane knows about one sidecar (GET /admin/sidecars).
type Sidecar struct {
	ID   string `json:"id"`
	Addr string `json:"addr,omitempty"`
	// Epoch and Version name the snapshot the sidecar last reported running.
	Epoch   string `json:"epoch,omitempty"`
	Version int64  `json:"version"`
	// NackVersion and LastError describe the last snapshot it refused, if any.
	NackVersion int64     `json:"nack_version,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastSeen    time.Time `json:"last_seen"`
	// Health is what the sidecar reported with its last poll: every component's status,
	// error and details (plugin binaries, the control plane it follows). Nil for a sidecar
	// that reports none.
	Health *Health `json:"health,omitempty"`
	// Load is what the sidecar said it was doing last (it writes its load to Redis within
	// seconds of a change); nil for a sidecar that reported none.
	Load *Load `json:"load,omitempty"`
}

// Load is a sidecar's requests in flight and event streams being relayed, as of At.
type Load struct {
	InFlight int64     `json:"in_flight"`
	Streams  int64     `json:"streams"`
	At       time.Time `json:"at"`
	// Stale says the sidecar has not confirmed these numbers for longer than it should
	// have (it may be gone): they are not what it does now.
	Stale bool `json:"stale"`
}

// SidecarList is the body of GET /admin/sidecars.
type SidecarList struct {
	// Epoch and Version name the control plane's current snapshot, to compare against.
	Epoch    string    `json:"epoch"`
	Version  int64     `json:"version"`
	Sidecars []Sidecar `json:"sidecars"`
}

// Diagnostic is one configuration problem, located at File:Line:Column.
type Diagnostic struct {
	Severity string `json:"severity"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
	Summary  string `json:"summary"`
	Detail   string `json:"detail,omitempty"`
}

// Location is "file:line:col", or "" when the diagnostic has no position.
func (d Diagnostic) Location() string {
	if d.File == "" {
		return ""
	}
	return fmt.Sprintf("%s:%d:%d", d.File, d.Line, d.Column)
}

// ConfigStatus is the body of GET /admin/config/status.
type ConfigStatus struct {
	// Dir is the watched directory; "" means the embedded default.
	Dir string `json:"dir"`
	// Epoch, Version, SHA256 and PublishedAt describe the snapshot being served.
	Epoch       string    `json:"epoch"`
	Version     int64     `json:"version"`
	SHA256      string    `json:"sha256"`
	PublishedAt time.Time `json:"published_at"`
	// LastReload is when the directory was last read; LastReloadResult is "published",
	// "unchanged" or "refused".
	LastReload       time.Time `json:"last_reload"`
	LastReloadResult string    `json:"last_reload_result"`
	// Refused counts refused reloads since the control plane started.
	Refused int64 `json:"refused"`
	// Diagnostics are the errors of the last refused reload, cleared by the next good one;
	// Text is the same, formatted with source lines as `claude-relay config check` prints it.
	Diagnostics []Diagnostic `json:"diagnostics,omitempty"`
	Text        string       `json:"diagnostics_text,omitempty"`
}

// Health is a process's health as operators see it: each component's status, as the public
// GET /health shows it, with the error and details the public answer leaves out (plugin paths,
// PIDs and checksums, the control plane's URL, error texts). The admin API serves the control
// plane's own (GET /admin/health) and each sidecar's (GET /admin/sidecars), which sidecars
// send with every poll.
type Health struct {
	// Status is "ok" or "degraded", as on the public /health.
	Status    string    `json:"status"`
	Version   string    `json:"version"`
	Uptime    int64     `json:"uptime"`
	CheckedAt time.Time `json:"checked_at"`
	// Components are by name: redis, logger, config, control_plane, plugin.auth, ….
	Components map[string]Component `json:"components"`
}

// Component is one component of a Health.
type Component struct {
	// Status is what the public /health shows: "ok", "error" (with a short reason that
	// names nothing internal, such as "error: no configuration applied"), or a warning
	// that does not fail the service, such as "unreachable".
	Status string `json:"status"`
	// Error is the full error, for operators.
	Error string `json:"error,omitempty"`
	// Details are the component's own report (a plugin's binary, PID and checksum; the
	// configuration channel's state).
	Details json.RawMessage `json:"details,omitempty"`
}

// Statuses returns each component's public status, to tell whether two reports differ in a
// way an operator would care about (details such as uptime always move).
func (h *Health) Statuses() map[string]string {
	if h == nil {
		return nil
	}
	out := make(map[string]string, len(h.Components))
	for name, c := range h.Components {
		out[name] = c.Status
	}
	return out
}

// EncodeHealth encodes h for HeaderHealth: JSON in unpadded base64url, so that any text in it
// is safe in a header. A report over MaxHealthLen is sent without its details and with its
// errors cut to MaxErrorLen, rather than not at all.
func EncodeHealth(h *Health) (string, error) {
	if h == nil {
		return "", nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("encode health: %w", err)
	}
	if len(b) > MaxHealthLen {
		small := *h
		small.Components = make(map[string]Component, len(h.Components))
		for name, c := range h.Components {
			c.Details, c.Error = nil, CleanError(c.Error)
			small.Components[name] = c
		}
		if b, err = json.Marshal(&small); err != nil {
			return "", fmt.Errorf("encode health: %w", err)
		}
		if len(b) > MaxHealthLen {
			return "", fmt.Errorf("encode health: %d bytes without details, over %d", len(b), MaxHealthLen)
		}
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// DecodeHealth decodes a HeaderHealth value; "" is no report.
func DecodeHealth(s string) (*Health, error) {
	if s == "" {
		return nil, nil
	}
	if base64.RawURLEncoding.DecodedLen(len(s)) > MaxHealthLen {
		return nil, fmt.Errorf("%s is over %d bytes", HeaderHealth, MaxHealthLen)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s is not base64url: %w", HeaderHealth, err)
	}
	var h Health
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%s is not a health report: %w", HeaderHealth, err)
	}
	return &h, nil
}
