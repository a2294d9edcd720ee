package configclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/config/configapi"
)

// maxEnvelopeBytes caps a snapshot response.
const maxEnvelopeBytes = 32 << 20

// HTTPFetcher long-polls a control plane over HTTP, authenticating each poll with a fresh
// short-lived token signed with the shared secret.
type HTTPFetcher struct {
	base   string
	secret []byte
	hc     *http.Client
	now    func() time.Time
}

// NewHTTPFetcher returns a fetcher for the control plane at baseURL (http or https). A nil
// hc means a client without an overall timeout (each poll has its own deadline) whose
// connections are probed with TCP keepalives: after 5 s of silence, every second, three
// times, so that a control plane that vanished without closing the long-poll's connection
// (host down, network cut) is noticed within about 8 s, not when the poll's deadline ends.
func NewHTTPFetcher(baseURL string, secret []byte, hc *http.Client) (*HTTPFetcher, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("control plane URL %q must be an http(s) URL such as http://127.0.0.1:3100", baseURL)
	}
	if len(secret) == 0 {
		return nil, errors.New("control plane client: a JWT secret is required")
	}
	if hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: 5 * time.Second, Interval: time.Second, Count: 3}}).DialContext
		// No redirects: the poll carries a signed token, which Go would send on to the
		// Location; a redirect is reported as an error instead.
		hc = &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &HTTPFetcher{base: strings.TrimRight(u.String(), "/"), secret: secret, hc: hc, now: time.Now}, nil
}

// Fetch implements Fetcher.
func (f *HTTPFetcher) Fetch(ctx context.Context, req configapi.PollRequest) (*configapi.Envelope, error) {
	ctx, cancel := context.WithTimeout(ctx, req.Wait+req.Wait/10+15*time.Second)
	defer cancel()
	token, err := configapi.MintToken(f.secret, req.SidecarID, configapi.DefaultTokenTTL, f.now())
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+configapi.Path+"?"+req.Query().Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("poll control plane: %w", err)
	}
	h := hreq.Header
	h.Set("Authorization", "Bearer "+token)
	h.Set("Accept", "application/json")
	if req.Addr != "" {
		h.Set(configapi.HeaderAddr, req.Addr)
	}
	if req.NackVersion != 0 || req.NackError != "" {
		h.Set(configapi.HeaderNackEpoch, req.NackEpoch)
		h.Set(configapi.HeaderNackVersion, strconv.FormatInt(req.NackVersion, 10))
		h.Set(configapi.HeaderNackError, configapi.CleanError(req.NackError))
	}
	// A report that cannot be encoded (over MaxHealthLen even without details) is left
	// out: the control plane then shows no health for this sidecar, and the poll still
	// works.
	if hv, err := configapi.EncodeHealth(req.Health); err == nil && hv != "" {
		h.Set(configapi.HeaderHealth, hv)
	}
	resp, err := f.hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("poll control plane: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, nil
	case http.StatusOK:
		var env configapi.Envelope
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxEnvelopeBytes)).Decode(&env); err != nil {
			return nil, fmt.Errorf("poll control plane: decode snapshot: %w", err)
		}
		return &env, nil
	}
	if loc, err := resp.Location(); err == nil && resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		return nil, fmt.Errorf("poll control plane: HTTP %d redirect to %s://%s, not followed (it would carry the sidecar's token): set the control plane URL to the address it serves on", resp.StatusCode, loc.Scheme, loc.Host)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(body))
	var eb struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
		msg = eb.Error.Message
	}
	return nil, fmt.Errorf("poll control plane: HTTP %d: %s", resp.StatusCode, msg)
}

var _ Fetcher = (*HTTPFetcher)(nil)
