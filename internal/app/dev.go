package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
	"github.com/claude-relay/claude-relay/store"
)

// RunDev runs the control plane and a sidecar in one process on one listener, with
// generated secrets kept under the data dir, the in-memory store when no Redis is
// configured, an admin login, a relay key and the lines that point Claude Code at it.
func RunDev(ctx context.Context, env *config.Env, opts Options) error {
	if opts.Listen == "" && !env.HostSet {
		// Dev mode serves the admin API on the same port: it stays on this machine unless
		// HOST says otherwise.
		opts.Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(env.Port))
	}
	opts.defaults(env)
	if err := devSecrets(env, opts.DataDir); err != nil {
		return err
	}
	b, storeLabel, err := newBase(ctx, env, &opts, true)
	if err != nil {
		return err
	}
	defer b.Close()
	admin, err := devAdmin(env, opts.DataDir)
	if err != nil {
		return err
	}
	upstreamRefusal, err := devUpstream(ctx, b)
	if err != nil {
		return err
	}
	relayKey, err := devRelayKey(ctx, b.Store, opts.DataDir, !env.RedisConfigured())
	if err != nil {
		return err
	}
	dist, err := newDistribution(ctx, b, opts.ConfigDir)
	if err != nil {
		return err
	}
	go dist.Run(ctx)
	// The in-process sidecar follows the in-process control plane through the same config
	// client a remote sidecar uses, polling it directly instead of over HTTP.
	f := inProcessFeed(b, dist)
	dp, err := b.startSidecar(ctx, opts, f)
	if err != nil {
		return err
	}
	mux, _, err := b.startControlPlane(ctx, opts, dist, dp.srv.Health, admin)
	if err != nil {
		return err
	}
	mux.Handle("/", dp.srv)
	ready := opts.Ready
	opts.Ready = func(addr net.Addr) {
		base := "http://" + displayAddr(addr)
		go devLogin(ctx, b, base, admin.Username, admin.Password)
		if !loopback(addr) {
			b.Log.Warn("dev mode listens beyond this machine (HOST): its admin API too; unset HOST to keep it on 127.0.0.1", "addr", addr.String())
		}
		printDevBanner(opts, addr, base, storeLabel, admin.Username, relayKey, upstreamRefusal)
		if ready != nil {
			ready(addr)
		}
	}
	return runDataPlane(ctx, b, dp, opts, mux, f.hup)
}

// displayAddr turns a wildcard listen address into one a client can dial.
func displayAddr(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// loopback reports whether addr is reachable only from this machine.
func loopback(addr net.Addr) bool {
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// printDevBanner says where dev mode listens (and whether beyond this machine), which store
// it uses, and the lines that point Claude Code at it. The admin password is not printed:
// the CLI is logged in already, and a banner ends up in scrollback, screen shares and logs.
func printDevBanner(opts Options, addr net.Addr, base, storeLabel, user, relayKey, upstreamRefusal string) {
	w := opts.Stdout
	fmt.Fprintf(w, "\nclaude-relay %s — dev mode (control plane + sidecar in one process; not for production)\n\n", Version)
	if loopback(addr) {
		fmt.Fprintf(w, "  listening   %s   (this machine only; set HOST to listen beyond it)\n", base)
	} else {
		fmt.Fprintf(w, "  listening   %s   REACHABLE FROM THE NETWORK (HOST), THE ADMIN API TOO; from this machine: %s\n", addr, base)
	}
	fmt.Fprintf(w, "  store       %s\n", storeLabel)
	pwFrom := "its password is in " + filepath.Join(opts.DataDir, "admin-password")
	if os.Getenv(config.EnvAdminPassword) != "" {
		pwFrom = "its password is ADMIN_PASSWORD"
	}
	fmt.Fprintf(w, "  admin       %s   (%s; claude-relay admin … is logged in on this machine)\n", user, pwFrom)
	fmt.Fprintf(w, "  console     %s/ui/   (log in as %s)\n", base, user)
	fmt.Fprintf(w, "  data dir    %s\n", opts.DataDir)
	switch {
	case upstreamRefusal != "":
		fmt.Fprintf(w, "  upstream    NONE: %s\n", upstreamRefusal)
	case os.Getenv("ANTHROPIC_API_KEY") == "":
		fmt.Fprintf(w, "  upstream    none yet: restart with ANTHROPIC_API_KEY=sk-ant-… set, or run\n              claude-relay admin accounts add --name main --api-key-stdin\n")
	}
	fmt.Fprintf(w, "\nPoint Claude Code at the relay:\n\n  export ANTHROPIC_BASE_URL=%s\n  export ANTHROPIC_API_KEY=%s\n\n", base, relayKey)
}

// devSecrets fills missing secrets from DATA_DIR/secrets.env, generating them once.
func devSecrets(env *config.Env, dataDir string) error {
	if env.JWTSecret != "" && env.EncryptionKey != "" {
		return nil
	}
	path, err := dataPath(dataDir, "secrets.env")
	if err != nil {
		return err
	}
	saved, err := config.ReadDotEnv(path)
	if err != nil {
		return err
	}
	jwt, enc := saved["CRS_SECURITY__JWT_SECRET"], saved["CRS_SECURITY__ENCRYPTION_KEY"]
	if jwt == "" || enc == "" {
		jwt, enc = randomBase64(48), randomHex(16)
		content := fmt.Sprintf("# generated by claude-relay dev; do not use in production\nCRS_SECURITY__JWT_SECRET=%s\nCRS_SECURITY__ENCRYPTION_KEY=%s\n", jwt, enc)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if env.JWTSecret == "" {
		env.JWTSecret = jwt
	}
	if env.EncryptionKey == "" {
		env.EncryptionKey = enc
	}
	return nil
}

// devAdmin is dev mode's admin: ADMIN_USERNAME with ADMIN_PASSWORD, or a password
// generated once and kept in the data dir.
func devAdmin(env *config.Env, dataDir string) (controlplane.AdminBootstrap, error) {
	pw, err := devAdminPassword(env, dataDir)
	return controlplane.AdminBootstrap{Username: env.AdminUsername, Password: pw}, err
}

// devAdminPassword is ADMIN_PASSWORD, or one generated once and kept in the data dir.
func devAdminPassword(env *config.Env, dataDir string) (string, error) {
	if env.AdminPassword != "" {
		return env.AdminPassword, nil
	}
	path, err := dataPath(dataDir, "admin-password")
	if err != nil {
		return "", err
	}
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	pw := randomBase64(18)
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return pw, nil
}

// devUpstream adds ANTHROPIC_API_KEY as the first upstream account, once. A claude-relay key
// (cr_…) meant for Anthropic's own API is refused: it is not added, and the returned text
// says what happened (for the banner; it is logged too).
func devUpstream(ctx context.Context, b *Base) (refusal string, err error) {
	key := os.Getenv("ANTHROPIC_API_KEY")
	if key == "" {
		return "", nil
	}
	baseURL := os.Getenv("CLAUDE_RELAY_UPSTREAM_URL")
	if baseURL == "" {
		baseURL = "https://api.anthropic.com"
	}
	if controlplane.CheckUpstreamCredential(baseURL, key) != nil {
		b.Log.Warn("ANTHROPIC_API_KEY is a claude-relay key (cr_…), which Anthropic's API can never accept: not added as an upstream account; unset it, or set CLAUDE_RELAY_UPSTREAM_URL to the relay it belongs to", "base_url", baseURL)
		return fmt.Sprintf("ANTHROPIC_API_KEY in this shell is a claude-relay key (cr_…), not an Anthropic key,\n"+
			"              so it was not added or sent to %s (it is probably a pasted\n"+
			"              `export ANTHROPIC_API_KEY=cr_…` line, like the one below). Run `unset ANTHROPIC_API_KEY`\n"+
			"              and restart with a Console key (sk-ant-…), or set CLAUDE_RELAY_UPSTREAM_URL to the\n"+
			"              relay the key belongs to.", baseURL), nil
	}
	accts, err := b.Store.ListAccounts(ctx)
	if err != nil {
		return "", fmt.Errorf("list accounts: %w", err)
	}
	if len(accts) > 0 {
		return "", nil
	}
	acc, err := b.Store.AddAccount(ctx, store.AccountSpec{Name: "ANTHROPIC_API_KEY", Type: "anthropic_api_key", BaseURL: baseURL, Credential: key, Priority: 50})
	if err != nil {
		return "", fmt.Errorf("add upstream account from ANTHROPIC_API_KEY: %w", err)
	}
	b.Log.Info("upstream account added from ANTHROPIC_API_KEY", "account", acc.ID, "base_url", baseURL)
	return "", nil
}

// devRelayKey reuses the dev relay key kept in the data dir while the store still knows
// it, else creates one. With the in-memory store (recreate), which starts empty, the kept
// key is created again with the same secret, so the exported key keeps working across
// restarts; a real Redis keeps the key itself, and one it revoked, disabled or forgot is
// replaced by a new one.
func devRelayKey(ctx context.Context, st *store.Store, dataDir string, recreate bool) (string, error) {
	path, err := dataPath(dataDir, "dev-relay-key")
	if err != nil {
		return "", err
	}
	spec := store.KeySpec{Name: "dev"}
	if b, err := os.ReadFile(path); err == nil {
		secret := strings.TrimSpace(string(b))
		_, err := st.LookupKey(ctx, secret)
		switch {
		case err == nil:
			return secret, nil
		case errors.Is(err, store.ErrNotFound):
			if recreate && store.ParseSecret(secret) {
				spec.Secret = secret
			}
		case !errors.Is(err, store.ErrKeyRevoked) && !errors.Is(err, store.ErrKeyDisabled) && !errors.Is(err, store.ErrKeyExpired):
			return "", fmt.Errorf("check dev relay key: %w", err)
		}
	}
	_, secret, err := st.CreateKey(ctx, spec)
	if err != nil {
		return "", fmt.Errorf("create dev relay key: %w", err)
	}
	if secret == spec.Secret {
		return secret, nil
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return secret, nil
}

// devLogin logs the admin in over HTTP and saves the session for the CLI.
func devLogin(ctx context.Context, b *Base, base, user, password string) {
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	var token string
	for attempt := 0; attempt < 20 && token == ""; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/admin/login", bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			select {
			case <-ctx.Done():
				return // stopped while starting: nothing to save
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		var out struct {
			Token string `json:"token"`
		}
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Log.Warn("dev admin login failed; the stored admin has another password (set ADMIN_PASSWORD)", "status", resp.StatusCode)
			return
		}
		token = out.Token
	}
	if token == "" {
		if ctx.Err() == nil {
			b.Log.Warn("dev admin login did not answer; run claude-relay admin login", "addr", base)
		}
		return
	}
	path, err := os.Getenv("CLAUDE_RELAY_ADMIN_FILE"), error(nil)
	if path == "" {
		path, err = adminclient.DefaultSessionPath()
	}
	if err == nil && otherLiveSession(ctx, path, base) {
		b.Log.Info("kept the CLI's admin session for another relay; for this one run claude-relay admin login --addr "+base+" or set CLAUDE_RELAY_ADMIN_FILE", "path", path)
		return
	}
	if err == nil {
		err = adminclient.SaveSession(path, base, token)
	}
	if err != nil {
		b.Log.Warn("cannot save the admin session for the CLI", "error", err)
		return
	}
	b.Log.Info("admin session saved for the CLI", "path", path)
}

// otherLiveSession reports whether the session file at path belongs to another relay and
// still works there: dev mode must not log the operator's CLI out of a control plane it
// uses. A missing, unreadable or expired session, or one for base itself, may be replaced.
func otherLiveSession(ctx context.Context, path, base string) bool {
	old, err := adminclient.LoadSession(path)
	if err != nil || old.Addr == "" || old.Token == "" || old.Addr == base {
		return false
	}
	c, err := adminclient.New(old.Addr, old.Token, &http.Client{Timeout: 2 * time.Second})
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = c.WhoAmI(ctx)
	return err == nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomBase64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
