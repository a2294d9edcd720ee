package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/app"
	"github.com/claude-relay/claude-relay/store"
)

const doctorUsage = `usage: claude-relay doctor [flags]

Checks a running installation against the deployment checklist and prints, for each
check, ok, WARN or FAIL with what to fix. Exits 1 when any check fails. Run it as the
service user from the installation directory (e.g. cd /opt/claude-relay && sudo -u
claude-relay bin/claude-relay doctor -health http://127.0.0.1:3000) so that the .env
file, permissions and Redis are the ones the services see.

Flags:
`

// doctorStatus is the outcome of one check.
type doctorStatus string

const (
	statusOK   doctorStatus = "ok"
	statusWarn doctorStatus = "WARN"
	statusFail doctorStatus = "FAIL"
)

// doctorResult is one line of the report: what was checked, what was found, what to do.
type doctorResult struct {
	Name   string
	Status doctorStatus
	Detail string
	Fix    string
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// doctorOptions are the inputs of the checks.
type doctorOptions struct {
	env       *config.Env
	envFile   string // the .env file whose permissions are checked
	configDir string
	health    []string // base URLs of sidecars / control planes
	timeout   time.Duration
}

// runDoctor is `claude-relay doctor`: it checks the installation and prints the report.
func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return doctor(ctx, os.LookupEnv, args, stdout, stderr)
}

func doctor(ctx context.Context, lookup func(string) (string, bool), args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, doctorUsage)
		fs.PrintDefaults()
	}
	var o doctorOptions
	var health stringList
	fs.StringVar(&o.envFile, "env-file", ".env", "the env file the services read (checked for permissions, and read like the binary does)")
	fs.StringVar(&o.configDir, "config-dir", "", "HCL configuration directory (default CLAUDE_RELAY_CONFIG_DIR)")
	fs.Var(&health, "health", "base URL of a sidecar or control plane whose /health to check (repeatable)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "time limit of each network check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "claude-relay doctor: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	o.health = health
	dotenv, err := config.ReadDotEnv(o.envFile)
	if err != nil {
		fmt.Fprintf(stderr, "claude-relay doctor: %v\n", err)
		return 1
	}
	env, err := config.LoadEnv(lookup, dotenv)
	if err != nil {
		fmt.Fprintf(stdout, "%-4s  environment: %v\n      fix: correct the variables named above in %s or the unit's environment\n", statusFail, indent(err.Error()), o.envFile)
		return 1
	}
	o.env = env
	if o.configDir == "" {
		o.configDir = env.ConfigDir
	}
	results := runChecks(ctx, o)
	failed := 0
	for _, r := range results {
		fmt.Fprintf(stdout, "%-4s  %s: %s\n", r.Status, r.Name, indent(r.Detail))
		if r.Fix != "" && r.Status != statusOK {
			fmt.Fprintf(stdout, "      fix: %s\n", indent(r.Fix))
		}
		if r.Status == statusFail {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "\n%d check(s) failed.\n", failed)
		return 1
	}
	fmt.Fprintln(stdout, "\nAll checks passed.")
	return 0
}

// indent keeps multi-line details under their check.
func indent(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n      ") }

// runChecks runs every check in a fixed order.
func runChecks(ctx context.Context, o doctorOptions) []doctorResult {
	var rs []doctorResult
	rs = append(rs, checkSecrets(o.env)...)
	rs = append(rs, checkRedis(ctx, o.env, o.timeout)...)
	rs = append(rs, checkConfigDir(o.configDir))
	rs = append(rs, checkEnvFile(o.envFile))
	rs = append(rs, checkWritableDir("data dir ("+config.EnvDataDir+")", o.env.DataDir))
	if o.env.LogDir == "" {
		rs = append(rs, doctorResult{Name: "log dir (" + config.EnvLogDir + ")", Status: statusOK, Detail: "empty: file logging disabled, logs go to stderr (the journal) only"})
	} else {
		rs = append(rs, checkWritableDir("log dir ("+config.EnvLogDir+")", o.env.LogDir))
	}
	for _, u := range o.health {
		rs = append(rs, checkHealth(ctx, u, o.timeout))
	}
	return rs
}

// checkSecrets checks the lengths the processes require at start.
func checkSecrets(env *config.Env) []doctorResult {
	jwt := doctorResult{Name: "secret " + config.EnvJWTSecret, Status: statusOK,
		Detail: fmt.Sprintf("%d characters", len(env.JWTSecret))}
	if n := len(env.JWTSecret); n < config.MinJWTSecretLen {
		jwt.Status = statusFail
		jwt.Detail = fmt.Sprintf("%d characters, need at least %d", n, config.MinJWTSecretLen)
		jwt.Fix = "set it to the output of: openssl rand -base64 64 | tr -d '\\n'"
	} else if n < 64 {
		jwt.Status = statusWarn
		jwt.Detail = fmt.Sprintf("%d characters; 64 or more recommended", n)
		jwt.Fix = "openssl rand -base64 64 | tr -d '\\n' (admins log in again after the change)"
	}
	key := doctorResult{Name: "secret " + config.EnvEncryptionKey, Status: statusOK,
		Detail: fmt.Sprintf("%d characters", len(env.EncryptionKey))}
	if n := len(env.EncryptionKey); n != config.EncryptionKeyLen {
		key.Status = statusFail
		key.Detail = fmt.Sprintf("%d characters, need exactly %d", n, config.EncryptionKeyLen)
		key.Fix = "set it to the output of: openssl rand -hex 16 (on an installation with stored accounts, keep the old key: credentials are encrypted with it)"
	}
	return []doctorResult{jwt, key}
}

// checkRedis checks that Redis answers, refuses clients without a password, and persists.
func checkRedis(ctx context.Context, env *config.Env, timeout time.Duration) []doctorResult {
	where := env.RedisAddr()
	if where == "" {
		where = "127.0.0.1:6379 (default)"
	}
	cfg := app.RedisConfig(env)
	cfg.DialTimeout = timeout
	cfg.PoolSize = 2
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rdb, err := store.Connect(cctx, cfg)
	if err != nil {
		return []doctorResult{{Name: "redis", Status: statusFail, Detail: err.Error(),
			Fix: "start Redis or correct REDIS_URL / REDIS_HOST / REDIS_PORT / REDIS_PASSWORD (or REDIS_CLUSTER_NODES, REDIS_SENTINEL_*); redis-cli -h HOST -p PORT ping"}}
	}
	defer rdb.Close()
	rs := []doctorResult{{Name: "redis", Status: statusOK, Detail: "reachable at " + where}}
	rs = append(rs, checkRedisPassword(ctx, env, cfg, timeout))
	rs = append(rs, checkRedisPersistence(ctx, rdb, timeout))
	return rs
}

// checkRedisPassword fails when Redis lets a client in without a password.
func checkRedisPassword(ctx context.Context, env *config.Env, cfg store.RedisConfig, timeout time.Duration) doctorResult {
	r := doctorResult{Name: "redis password"}
	anon := cfg
	anon.Password = ""
	configured := cfg.Password != ""
	if cfg.URL != "" {
		u, err := url.Parse(cfg.URL)
		if err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				configured = true
			}
			u.User = nil
		}
		if err == nil {
			anon.URL = u.String()
		}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	open, err := store.Connect(cctx, anon)
	if err == nil {
		open.Close()
		r.Status = statusFail
		r.Detail = "Redis accepts clients without a password: anyone who reaches it can read keys and usage and change accounts"
		r.Fix = "set requirepass in redis.conf (openssl rand -hex 32) and the same value as " + config.EnvRedisPassword
		return r
	}
	if !configured {
		// Redis refused us without a password yet we connected above without one: only
		// possible with ACL users in a URL; say what we saw.
		r.Status = statusWarn
		r.Detail = "no password configured here, but Redis refused an anonymous client: " + err.Error()
		return r
	}
	r.Status = statusOK
	r.Detail = "set, and Redis refuses clients without it"
	return r
}

// checkRedisPersistence reads appendonly/save (every master of a cluster); when CONFIG is
// disabled (renamed in redis.conf, as some hardening guides do) it falls back to INFO.
func checkRedisPersistence(ctx context.Context, rdb redis.UniversalClient, timeout time.Duration) doctorResult {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := doctorResult{Name: "redis persistence", Status: statusOK}
	fix := "set appendonly yes (and appendfsync everysec) in redis.conf, or CONFIG SET appendonly yes then CONFIG REWRITE"
	check := func(ctx context.Context, c *redis.Client) doctorResult {
		res := doctorResult{Name: "redis persistence"}
		aof, err := c.ConfigGet(ctx, "appendonly").Result()
		if err != nil {
			info, ierr := c.Info(ctx, "persistence").Result()
			if ierr != nil {
				res.Status, res.Detail = statusWarn, fmt.Sprintf("could not read the settings (CONFIG: %v; INFO: %v)", err, ierr)
				return res
			}
			if strings.Contains(info, "aof_enabled:1") {
				res.Status, res.Detail = statusOK, "AOF enabled (CONFIG is disabled; read from INFO persistence)"
				return res
			}
			res.Status, res.Detail, res.Fix = statusWarn, "CONFIG is disabled and INFO shows AOF off; could not read the RDB save schedule", fix
			return res
		}
		if aof["appendonly"] == "yes" {
			res.Status, res.Detail = statusOK, "AOF enabled (appendonly yes)"
			return res
		}
		save, err := c.ConfigGet(ctx, "save").Result()
		if err == nil && strings.TrimSpace(save["save"]) != "" {
			res.Status, res.Detail, res.Fix = statusWarn, fmt.Sprintf("RDB snapshots only (save %q): a crash loses the usage since the last snapshot", save["save"]), fix
			return res
		}
		res.Status, res.Detail, res.Fix = statusFail, "no persistence (appendonly no, save \"\"): a Redis restart loses relay keys, accounts and usage", fix
		return res
	}
	var results []doctorResult
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err := cc.ForEachMaster(cctx, func(ctx context.Context, c *redis.Client) error {
			res := check(ctx, c)
			res.Detail = c.Options().Addr + ": " + res.Detail
			mu.Lock()
			results = append(results, res)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return doctorResult{Name: r.Name, Status: statusWarn, Detail: "could not reach every master: " + err.Error()}
		}
	} else if c, ok := rdb.(*redis.Client); ok {
		results = append(results, check(cctx, c))
	} else {
		return doctorResult{Name: r.Name, Status: statusWarn, Detail: fmt.Sprintf("not checked for a %T client", rdb)}
	}
	var details, fixes []string
	for _, res := range results {
		details = append(details, res.Detail)
		if worse(res.Status, r.Status) {
			r.Status = res.Status
		}
		if res.Fix != "" && len(fixes) == 0 {
			fixes = append(fixes, res.Fix)
		}
	}
	r.Detail = strings.Join(details, "\n")
	r.Fix = strings.Join(fixes, "")
	return r
}

func worse(a, b doctorStatus) bool {
	rank := map[doctorStatus]int{statusOK: 0, statusWarn: 1, statusFail: 2}
	return rank[a] > rank[b]
}

// checkConfigDir validates the HCL configuration like `claude-relay config check`.
func checkConfigDir(dir string) doctorResult {
	r := doctorResult{Name: "configuration (" + config.EnvConfigDir + ")"}
	if dir == "" {
		r.Status, r.Detail = statusOK, "not set: the built-in default configuration is used"
		return r
	}
	snap, src, diags := config.Load(dir)
	if diags.HasErrors() {
		var b bytes.Buffer
		src.WriteDiagnostics(&b, diags)
		r.Status = statusFail
		r.Detail = fmt.Sprintf("%s has %d error(s):\n%s", dir, len(diags.Errs()), b.String())
		r.Fix = "correct the files, then: claude-relay config check " + dir
		return r
	}
	if _, err := config.Compile(snap); err != nil {
		r.Status, r.Detail, r.Fix = statusFail, fmt.Sprintf("%s: %v", dir, err), "claude-relay config check "+dir
		return r
	}
	r.Status = statusOK
	r.Detail = fmt.Sprintf("%s is valid (%d routes, %d pools, %d policies)", dir, len(snap.Routes), len(snap.Pools), len(snap.Policies))
	return r
}

// checkEnvFile fails when the env file, which holds the secrets, is readable by everyone.
func checkEnvFile(path string) doctorResult {
	r := doctorResult{Name: "env file " + path}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		r.Status, r.Detail = statusOK, "absent: the environment comes from the process (systemd EnvironmentFile or docker)"
		return r
	}
	if err != nil {
		r.Status, r.Detail, r.Fix = statusFail, err.Error(), "make it readable by the service user (root:claude-relay, mode 0640)"
		return r
	}
	if mode := fi.Mode().Perm(); mode&0o007 != 0 {
		r.Status = statusFail
		r.Detail = fmt.Sprintf("mode %04o: other users can read the secrets in it", mode)
		r.Fix = fmt.Sprintf("chown root:claude-relay %s && chmod 0640 %s", path, path)
		return r
	}
	r.Status, r.Detail = statusOK, fmt.Sprintf("mode %04o, not readable by other users", fi.Mode().Perm())
	return r
}

// checkWritableDir proves dir is a directory this user can create files in.
func checkWritableDir(name, dir string) doctorResult {
	r := doctorResult{Name: name}
	fix := fmt.Sprintf("install -d -o claude-relay -g claude-relay -m 0750 %s (and run the services as that user)", dir)
	fi, err := os.Stat(dir)
	if err != nil {
		r.Status, r.Detail, r.Fix = statusFail, fmt.Sprintf("%s: %v", dir, err), fix
		return r
	}
	if !fi.IsDir() {
		r.Status, r.Detail, r.Fix = statusFail, dir+" is not a directory", fix
		return r
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		r.Status, r.Detail, r.Fix = statusFail, fmt.Sprintf("%s is not writable: %v", dir, err), fix
		return r
	}
	f.Close()
	os.Remove(f.Name())
	abs, _ := filepath.Abs(dir)
	r.Status, r.Detail = statusOK, abs+" is writable"
	return r
}

// checkHealth GETs base/health and expects 200 with "status":"ok".
func checkHealth(ctx context.Context, base string, timeout time.Duration) doctorResult {
	r := doctorResult{Name: "health " + base}
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		r.Status, r.Detail, r.Fix = statusFail, fmt.Sprintf("%q is not a URL", base), "pass the base URL, e.g. -health http://127.0.0.1:3000"
		return r
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/health"
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, u.String(), nil)
	if err != nil {
		r.Status, r.Detail = statusFail, err.Error()
		return r
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.Status, r.Detail, r.Fix = statusFail, err.Error(), "is the service running? systemctl status 'claude-relay*'; journalctl -u 'claude-relay*' -e"
		return r
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var hb struct {
		Status     string            `json:"status"`
		Version    string            `json:"version"`
		Components map[string]string `json:"components"`
	}
	_ = json.Unmarshal(body, &hb)
	if resp.StatusCode != http.StatusOK || hb.Status != "ok" {
		var bad []string
		for name, state := range hb.Components {
			if state != "ok" {
				bad = append(bad, name+": "+state)
			}
		}
		r.Status = statusFail
		r.Detail = fmt.Sprintf("%s answered %d %q", u, resp.StatusCode, hb.Status)
		if len(bad) > 0 {
			r.Detail += "\n" + strings.Join(bad, "\n")
		}
		r.Fix = "fix the failing components above; the service's log says more (journalctl -u 'claude-relay*' -e), and `claude-relay admin health` / `admin sidecars` show each component's error"
		return r
	}
	r.Status, r.Detail = statusOK, fmt.Sprintf("status ok, version %s", hb.Version)
	var warn []string
	for name, state := range hb.Components {
		if state != "ok" {
			warn = append(warn, name+": "+state)
		}
	}
	if len(warn) > 0 {
		slices.Sort(warn)
		r.Status, r.Detail = statusWarn, r.Detail+"\n"+strings.Join(warn, "\n")
		r.Fix = "the service works, but a component warns (a sidecar serving its saved configuration while the control plane is unreachable): `claude-relay admin sidecars` shows why"
	}
	return r
}
