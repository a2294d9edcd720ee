package deploytest

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/claude-relay/claude-relay/config"
)

// composeFile is the part of docker/compose.yaml the tests look at. YAML
// anchors and merge keys (<<) are resolved by the decoder, as Compose does.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string                       `yaml:"image"`
	Command     []string                     `yaml:"command"`
	Environment map[string]string            `yaml:"environment"`
	Volumes     []string                     `yaml:"volumes"`
	Ports       []string                     `yaml:"ports"`
	Restart     string                       `yaml:"restart"`
	DependsOn   map[string]composeDependency `yaml:"depends_on"`
	Healthcheck *composeHealthcheck          `yaml:"healthcheck"`
	ReadOnly    bool                         `yaml:"read_only"`
}

type composeDependency struct {
	Condition string `yaml:"condition"`
}

type composeHealthcheck struct {
	Test     []string `yaml:"test"`
	Interval string   `yaml:"interval"`
}

func parseCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal([]byte(readRepoFile(t, composePath)), &c); err != nil {
		t.Fatalf("parse %s: %v", composePath, err)
	}
	if len(c.Services) == 0 {
		t.Fatalf("%s: got no services", composePath)
	}
	return c
}

// relayServices returns the services that run the claude-relay image, by
// their subcommand.
func relayServices(t *testing.T, c composeFile) map[string]composeService {
	t.Helper()
	out := make(map[string]composeService)
	for name, s := range c.Services {
		if !strings.HasPrefix(s.Image, "claude-relay") {
			continue
		}
		if len(s.Command) == 0 {
			t.Fatalf("service %s: got no command, want control or sidecar", name)
		}
		out[s.Command[0]] = s
	}
	for _, want := range []string{"control", "sidecar"} {
		if _, ok := out[want]; !ok {
			t.Fatalf("%s: got claude-relay services %v, want one running %q", composePath, slices.Sorted(maps.Keys(out)), want)
		}
	}
	return out
}

// requiredVar matches a Compose interpolation that refuses to start without
// the variable: ${NAME:?message}.
func requiredVar(name string) *regexp.Regexp {
	return regexp.MustCompile(`^\$\{` + regexp.QuoteMeta(name) + `:\?[^}]+\}$`)
}

// secretVars are the variables compose must refuse to start without.
func secretVars() []string {
	return []string{config.EnvRedisPassword, config.EnvJWTSecret, config.EnvEncryptionKey}
}

func TestComposeSetsOnlyVariablesTheBinaryReads(t *testing.T) {
	known := binaryEnvVars(t)
	c := parseCompose(t)
	for cmd, s := range relayServices(t, c) {
		t.Run(cmd, func(t *testing.T) {
			for _, name := range slices.Sorted(maps.Keys(s.Environment)) {
				if !known[name] {
					t.Errorf("environment sets %s, which the binary does not read (config/env.go)", name)
				}
			}
			for _, name := range []string{config.EnvRedisHost, config.EnvRedisPassword, config.EnvJWTSecret, config.EnvEncryptionKey, config.EnvLogDir, config.EnvConfigDir, config.EnvDataDir} {
				if _, ok := s.Environment[name]; !ok {
					t.Errorf("environment: got %v, want %s set", slices.Sorted(maps.Keys(s.Environment)), name)
				}
			}
			for _, name := range secretVars() {
				if v := s.Environment[name]; !requiredVar(name).MatchString(v) {
					t.Errorf("%s: got %q, want ${%s:?message} so that compose refuses to start without it", name, v, name)
				}
			}
			if host := s.Environment[config.EnvRedisHost]; c.Services[host].Image == "" {
				t.Errorf("%s: got %q, want the name of the redis service", config.EnvRedisHost, host)
			}
			if s.Restart != "unless-stopped" {
				t.Errorf("restart: got %q, want unless-stopped", s.Restart)
			}
			if dep := s.DependsOn[s.Environment[config.EnvRedisHost]]; dep.Condition != "service_healthy" {
				t.Errorf("depends_on redis: got %+v, want condition service_healthy", s.DependsOn)
			}
		})
	}
}

func TestComposeRedisHasPasswordAndAppendOnly(t *testing.T) {
	c := parseCompose(t)
	relay := relayServices(t, c)
	name := relay["sidecar"].Environment[config.EnvRedisHost]
	redis, ok := c.Services[name]
	if !ok {
		t.Fatalf("got no service %q (the sidecar's REDIS_HOST)", name)
	}
	if !strings.HasPrefix(redis.Image, "redis:7") {
		t.Errorf("redis image: got %q, want redis:7-…", redis.Image)
	}
	arg := func(flag string) string {
		i := slices.Index(redis.Command, flag)
		if i < 0 || i+1 >= len(redis.Command) {
			return ""
		}
		return redis.Command[i+1]
	}
	if got := arg("--requirepass"); !requiredVar(config.EnvRedisPassword).MatchString(got) {
		t.Errorf("--requirepass: got %q in %v, want ${REDIS_PASSWORD:?…}", got, redis.Command)
	}
	if got := arg("--appendonly"); got != "yes" {
		t.Errorf("--appendonly: got %q in %v, want yes", got, redis.Command)
	}
	if len(redis.Ports) > 0 {
		t.Errorf("redis ports: got %v, want none (never publish 6379)", redis.Ports)
	}
	hasVolume := false
	for _, v := range redis.Volumes {
		if src, dst, _ := strings.Cut(v, ":"); strings.HasPrefix(dst, "/data") {
			_, named := c.Volumes[src]
			hasVolume = named
		}
	}
	if !hasVolume {
		t.Errorf("redis volumes: got %v (top-level %v), want a named volume on /data", redis.Volumes, slices.Sorted(maps.Keys(c.Volumes)))
	}
	if redis.Healthcheck == nil || len(redis.Healthcheck.Test) == 0 {
		t.Errorf("redis healthcheck: got none, want one (the relay services wait for it)")
	}
	if redis.Restart != "unless-stopped" {
		t.Errorf("redis restart: got %q, want unless-stopped", redis.Restart)
	}
}

func TestComposeHealthchecksHitHealth(t *testing.T) {
	relay := relayServices(t, parseCompose(t))
	ports := map[string]string{"sidecar": relay["sidecar"].Environment[config.EnvPort]}
	if addr := relay["control"].Environment["CLAUDE_RELAY_CONTROL_ADDR"]; addr != "" {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("control CLAUDE_RELAY_CONTROL_ADDR %q: %v", addr, err)
		}
		ports["control"] = port
	}
	for cmd, port := range ports {
		t.Run(cmd, func(t *testing.T) {
			if port == "" {
				t.Fatalf("got no listen port in the environment, want one the healthcheck can use")
			}
			hc := relay[cmd].Healthcheck
			if hc == nil {
				t.Fatalf("got no healthcheck, want one on /health")
			}
			test := strings.Join(hc.Test, " ")
			want := regexp.MustCompile(`http://(127\.0\.0\.1|localhost):` + port + `/health\b`)
			if !want.MatchString(test) {
				t.Errorf("healthcheck test: got %q, want it to fetch http://127.0.0.1:%s/health", test, port)
			}
			if !strings.Contains(test, "-f") {
				t.Errorf("healthcheck test: got %q, want curl -f so that a 503 counts as unhealthy", test)
			}
			if hc.Interval != "30s" {
				t.Errorf("healthcheck interval: got %q, want 30s", hc.Interval)
			}
		})
	}
}

// TestComposeMountsWhatTheRelayWrites checks the volumes behind the
// directories the relay uses: with read_only containers, data and logs must be
// volumes, and the configuration a read-only mount of a valid HCL directory
// that trusts nginx's hop through the Docker bridge.
func TestComposeMountsWhatTheRelayWrites(t *testing.T) {
	c := parseCompose(t)
	for cmd, s := range relayServices(t, c) {
		t.Run(cmd, func(t *testing.T) {
			mounts := map[string]string{} // container path → source:options
			for _, v := range s.Volumes {
				parts := strings.Split(v, ":")
				if len(parts) < 2 {
					t.Fatalf("volume %q: want source:target[:options]", v)
				}
				mounts[parts[1]] = v
			}
			for _, name := range []string{config.EnvLogDir, config.EnvDataDir} {
				dir := s.Environment[name]
				m, ok := mounts[dir]
				if !ok {
					t.Errorf("%s=%s: got mounts %v, want a volume there (the container is read_only: %v)", name, dir, s.Volumes, s.ReadOnly)
					continue
				}
				src, _, _ := strings.Cut(m, ":")
				if _, declared := c.Volumes[src]; !declared && !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
					t.Errorf("%s mount %q: named volume %s is not declared under volumes", name, m, src)
				}
			}
			dir := s.Environment[config.EnvConfigDir]
			m, ok := mounts[dir]
			if !ok || !strings.HasSuffix(m, ":ro") {
				t.Fatalf("%s=%s: got mount %q, want a read-only (:ro) mount", config.EnvConfigDir, dir, m)
			}
			src, _, _ := strings.Cut(m, ":")
			hostDir := filepath.Join(repoRoot(t), filepath.Dir(composePath), src)
			snap, srcs, diags := config.Load(hostDir)
			if diags.HasErrors() {
				t.Fatalf("config check %s:\n%s", hostDir, srcs.FormatDiagnostics(diags))
			}
			rt, err := config.Compile(snap)
			if err != nil {
				t.Fatalf("compile %s: %v", hostDir, err)
			}
			for _, ip := range []string{"127.0.0.1", "172.17.0.1", "172.18.0.1"} {
				if !rt.TrustedProxy(netip.MustParseAddr(ip)) {
					t.Errorf("%s: %s is not a trusted proxy, want nginx's hop through the Docker bridge trusted", hostDir, ip)
				}
			}
			if got := snap.Server.MaxBodyBytes; got != config.DefaultMaxBodyBytes {
				t.Errorf("%s max_body_bytes: got %d, want %d (nginx client_max_body_size 10M)", hostDir, got, config.DefaultMaxBodyBytes)
			}
		})
	}
}

// TestComposeRefusesToStartWithoutSecrets runs "docker compose config", which
// needs no Docker engine, when the compose plugin is installed.
func TestComposeRefusesToStartWithoutSecrets(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("docker CLI not installed")
	}
	run := func(env ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, docker, "compose", "-f", filepath.Join(repoRoot(t), composePath), "config", "--quiet")
		cmd.Env = append(filteredEnviron(secretVars()), env...)
		cmd.Dir = t.TempDir() // no stray .env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, docker, "compose", "version").CombinedOutput(); err != nil {
		t.Skipf("docker compose plugin not installed: %s", strings.TrimSpace(string(out)))
	}
	good := []string{
		config.EnvRedisPassword + "=" + strings.Repeat("r", 64),
		config.EnvJWTSecret + "=" + strings.Repeat("j", 64),
		config.EnvEncryptionKey + "=" + strings.Repeat("k", 32),
	}
	if out, err := run(good...); err != nil {
		t.Fatalf("docker compose config with every secret: got %v\n%s\nwant success", err, out)
	}
	for i, name := range secretVars() {
		env := slices.Delete(slices.Clone(good), i, i+1)
		out, err := run(env...)
		if err == nil || !strings.Contains(out, name) {
			t.Errorf("docker compose config without %s: got err %v, output %q; want a refusal naming %s", name, err, out, name)
		}
	}
}

// filteredEnviron is os.Environ without the named variables.
func filteredEnviron(drop []string) []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(drop, name) {
			out = append(out, kv)
		}
	}
	return out
}
