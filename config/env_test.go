package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mapLookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// loadEnv loads env (no .env file). With wantErr it checks that loading fails with an error
// containing wantErr and returns nil; without, loading must succeed.
func loadEnv(t *testing.T, env map[string]string, wantErr string) *Env {
	t.Helper()
	e, err := LoadEnv(mapLookup(env), nil)
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("got %v, want an error containing %q", err, wantErr)
		}
		return nil
	}
	if err != nil {
		t.Fatalf("got %v, want no error", err)
	}
	return e
}

func TestLoadEnvDefaults(t *testing.T) {
	got, err := LoadEnv(mapLookup(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Env{
		Host: "0.0.0.0", Port: 3000, RedisPort: 6379, LogDir: "./logs", LogLevel: "info",
		MaxConnections: 10000, RequestTimeout: 10 * time.Minute, DataDir: "./data", LogRetentionDays: 30,
		ClientHeaderTimeout: 10 * time.Second, ClientBodyTimeout: 30 * time.Second,
		ControlAddr: "127.0.0.1:3100", ControlMaxConnections: 1024, AdminUsername: "admin",
		AlertBudgetInterval: 10 * time.Second,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if got.RedisConfigured() {
		t.Error("RedisConfigured: got true, want false")
	}
}

func TestLoadEnvReadsEveryVariable(t *testing.T) {
	env := map[string]string{
		"HOST": "127.0.0.1", "PORT": "8080",
		"REDIS_URL": "redis://:pw@redis.internal:6380/2", "REDIS_HOST": "ignored-host", "REDIS_PORT": "6390",
		"REDIS_PASSWORD": "s3cret", "REDIS_DB": "3",
		"CRS_SECURITY__JWT_SECRET": strings.Repeat("j", 64), "CRS_SECURITY__ENCRYPTION_KEY": strings.Repeat("k", 32),
		"LOG_DIR": "/var/log/claude-relay", "LOG_LEVEL": "DEBUG", "MAX_CONNECTIONS": "500",
		"REQUEST_TIMEOUT": "30000", "CLAUDE_RELAY_CONFIG_DIR": "/etc/claude-relay", "CLAUDE_RELAY_DATA_DIR": "/var/lib/claude-relay",
		"LOG_RETENTION_DAYS": "7", "CLAUDE_RELAY_CONTROL_ADDR": "10.0.0.2:3100", "ADMIN_USERNAME": "ops", "ADMIN_PASSWORD": "hunter2-but-longer",
		"CLAUDE_RELAY_CLIENT_HEADER_TIMEOUT": "5s", "CLAUDE_RELAY_CLIENT_BODY_TIMEOUT": "20000",
		"CLAUDE_RELAY_CONTROL_MAX_CONNECTIONS": "64", "CLAUDE_RELAY_ALERT_BUDGET_INTERVAL": "1m",
	}
	got, err := LoadEnv(mapLookup(env), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Env{
		Host: "127.0.0.1", HostSet: true, Port: 8080,
		RedisURL: "redis://:pw@redis.internal:6380/2", RedisHost: "ignored-host", RedisPort: 6390, RedisPassword: "s3cret", RedisDB: 3,
		JWTSecret: strings.Repeat("j", 64), EncryptionKey: strings.Repeat("k", 32),
		LogDir: "/var/log/claude-relay", LogLevel: "debug", MaxConnections: 500, RequestTimeout: 30 * time.Second,
		ConfigDir: "/etc/claude-relay", DataDir: "/var/lib/claude-relay", LogRetentionDays: 7,
		ClientHeaderTimeout: 5 * time.Second, ClientBodyTimeout: 20 * time.Second,
		ControlAddr: "10.0.0.2:3100", ControlMaxConnections: 64, AdminUsername: "ops", AdminPassword: "hunter2-but-longer",
		AlertBudgetInterval: time.Minute,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	if err := got.CheckSecrets(); err != nil {
		t.Errorf("CheckSecrets: got %v, want nil", err)
	}
}

func TestLoadEnvReportsEveryProblem(t *testing.T) {
	env := map[string]string{
		"PORT": "x", "REDIS_PORT": "70000", "REDIS_DB": "-1", "MAX_CONNECTIONS": "0",
		"REQUEST_TIMEOUT": "soon", "LOG_LEVEL": "loud", "LOG_RETENTION_DAYS": "a week",
		"REDIS_URL": "http://redis:6379", "CLAUDE_RELAY_CLIENT_BODY_TIMEOUT": "-1",
		"CLAUDE_RELAY_CONTROL_MAX_CONNECTIONS": "none",
	}
	_, err := LoadEnv(mapLookup(env), nil)
	if err == nil {
		t.Fatal("got nil error, want one")
	}
	for _, want := range []string{
		`PORT: must be a number between 1 and 65535, got "x"`,
		`REDIS_PORT: must be a number between 1 and 65535, got "70000"`,
		`REDIS_DB: must be a whole number of at least 0, got "-1"`,
		`MAX_CONNECTIONS: must be a whole number of at least 1, got "0"`,
		`REQUEST_TIMEOUT: must be a positive number of milliseconds (such as 600000) or a duration (such as "10m"), got "soon"`,
		`LOG_LEVEL: must be one of trace, debug, info, warn, error or off, got "loud"`,
		`LOG_RETENTION_DAYS: must be a whole number of at least 0, got "a week"`,
		`REDIS_URL: scheme must be redis, rediss or unix, got "http"`,
		`CLAUDE_RELAY_CLIENT_BODY_TIMEOUT: must be a positive number of milliseconds (such as 30000) or a duration (such as "30s"), got "-1"`,
		`CLAUDE_RELAY_CONTROL_MAX_CONNECTIONS: must be a whole number of at least 1, got "none"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to contain %q", err, want)
		}
	}
}

func TestRequestTimeoutForms(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"600000", 10 * time.Minute},
		{"1500", 1500 * time.Millisecond},
		{"10m", 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			e, err := LoadEnv(mapLookup(map[string]string{"REQUEST_TIMEOUT": tt.in}), nil)
			if err != nil {
				t.Fatal(err)
			}
			if e.RequestTimeout != tt.want {
				t.Errorf("got %v, want %v", e.RequestTimeout, tt.want)
			}
		})
	}
}

func TestLogLevelSources(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"default", nil, "info", ""},
		{"LOG_LEVEL", map[string]string{"LOG_LEVEL": "warn"}, "warn", ""},
		{"warning is warn", map[string]string{"LOG_LEVEL": "warning"}, "warn", ""},
		{"LOG_LEVEL wins over RUST_LOG", map[string]string{"LOG_LEVEL": "error", "RUST_LOG": "trace"}, "error", ""},
		{"bare RUST_LOG", map[string]string{"RUST_LOG": "debug"}, "debug", ""},
		{"RUST_LOG directive for us", map[string]string{"RUST_LOG": "claude_relay=debug,tower=info"}, "debug", ""},
		{"our directive beats the bare level", map[string]string{"RUST_LOG": "warn,claude_relay=trace"}, "trace", ""},
		{"bare level beside other targets", map[string]string{"RUST_LOG": "tower=trace,error"}, "error", ""},
		{"only other targets", map[string]string{"RUST_LOG": "tower=trace,hyper=debug"}, "info", ""},
		{"upper-case level", map[string]string{"RUST_LOG": "claude_relay=DEBUG"}, "debug", ""},
		{"bad level for us", map[string]string{"RUST_LOG": "claude_relay=chatty"}, "", `RUST_LOG: level "chatty" for claude_relay`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := loadEnv(t, tt.env, tt.wantErr)
			if e == nil {
				return
			}
			if e.LogLevel != tt.want {
				t.Errorf("got %q, want %q", e.LogLevel, tt.want)
			}
		})
	}
}

func TestProcessEnvWinsOverDotEnv(t *testing.T) {
	dotenv := map[string]string{"PORT": "4000", "LOG_DIR": "/from/dotenv", "HOST": "10.0.0.1"}
	process := map[string]string{"PORT": "5000", "HOST": ""} // empty counts as unset
	e, err := LoadEnv(mapLookup(process), dotenv)
	if err != nil {
		t.Fatal(err)
	}
	if e.Port != 5000 {
		t.Errorf("Port: got %v, want %v", e.Port, 5000)
	}
	if e.LogDir != "/from/dotenv" {
		t.Errorf("LogDir: got %q, want %q", e.LogDir, "/from/dotenv")
	}
	if e.Host != "10.0.0.1" {
		t.Errorf("Host: got %q, want %q", e.Host, "10.0.0.1")
	}
}

func TestReadDotEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	content := "\ufeff# production settings\n" +
		"PORT=3000\n" +
		"\n" +
		"export NODE_ENV=production\n" +
		"REDIS_PASSWORD=\"p@ss word\" # quoted\n" +
		"CRS_SECURITY__JWT_SECRET='literal $HOME \\n'\n" +
		"ESCAPED=\"line1\\nline2 \\\"q\\\" \\\\\"\n" +
		"LOG_LEVEL=info # trailing comment\n" +
		"HASH=abc#def\n" +
		"EMPTY=\n" +
		"  SPACED  =  value with spaces  \n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDotEnv(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"PORT": "3000", "NODE_ENV": "production", "REDIS_PASSWORD": "p@ss word",
		"CRS_SECURITY__JWT_SECRET": `literal $HOME \n`, "ESCAPED": "line1\nline2 \"q\" \\",
		"LOG_LEVEL": "info", "HASH": "abc#def", "EMPTY": "", "SPACED": "value with spaces",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dotenv (-want +got):\n%s", diff)
	}
}

func TestReadDotEnvMissingFileIsEmpty(t *testing.T) {
	got, err := ReadDotEnv(filepath.Join(t.TempDir(), "nope.env"))
	if err != nil || len(got) != 0 {
		t.Errorf("got %v, %v, want an empty map and nil", got, err)
	}
}

func TestReadDotEnvErrorsNameFileAndLine(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"no equals sign", "PORT=1\nsecretvalue\n", ".env:2: expected KEY=VALUE"},
		{"bad key", "1PORT=1\n", `.env:1: "1PORT" is not a valid variable name`},
		{"unterminated double quote", "A=1\n\nB=\"open\n", `.env:3: B: unterminated double-quoted value`},
		{"unterminated single quote", "B='open\n", `.env:1: B: unterminated single-quoted value`},
		{"junk after quote", "B=\"x\" y\n", `.env:1: B: unexpected "y" after the closing quote`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".env")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadDotEnv(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("got %v, want an error naming %s and containing %q", err, path, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "secretvalue") {
				t.Errorf("got %q, which echoes the line's content", err)
			}
		})
	}
}

func TestCheckSecretsRefusals(t *testing.T) {
	good := strings.Repeat("a", 32)
	tests := []struct {
		name     string
		jwt, key string
		want     []string
		notWant  []string
	}{
		{"both fine", strings.Repeat("j", 64), good, nil, nil},
		{"short JWT secret", strings.Repeat("j", 31), good,
			[]string{"CRS_SECURITY__JWT_SECRET", "got 31", "generate one with: openssl rand -base64 64"}, []string{"ENCRYPTION_KEY"}},
		{"missing JWT secret", "", good, []string{"CRS_SECURITY__JWT_SECRET", "got 0 (not set)"}, nil},
		{"short encryption key", strings.Repeat("j", 32), strings.Repeat("k", 31),
			[]string{"CRS_SECURITY__ENCRYPTION_KEY", "exactly 32", "got 31", "generate one with: openssl rand -hex 16"}, []string{"JWT_SECRET"}},
		{"long encryption key", strings.Repeat("j", 32), strings.Repeat("k", 44), []string{"CRS_SECURITY__ENCRYPTION_KEY", "got 44"}, nil},
		{"both wrong are reported together", "short", "", []string{"CRS_SECURITY__JWT_SECRET", "got 5", "CRS_SECURITY__ENCRYPTION_KEY", "got 0 (not set)"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&Env{JWTSecret: tt.jwt, EncryptionKey: tt.key}).CheckSecrets()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("got nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
			for _, nw := range tt.notWant {
				if strings.Contains(err.Error(), nw) {
					t.Errorf("got %q, want it not to mention %q", err, nw)
				}
			}
			if tt.jwt != "" && strings.Contains(err.Error(), tt.jwt) {
				t.Errorf("got %q, which leaks the secret", err)
			}
		})
	}
}

func TestRedisAddrNeverShowsPassword(t *testing.T) {
	tests := []struct {
		name string
		env  Env
		want string
	}{
		{"url with password", Env{RedisURL: "redis://user:hunter2@redis.internal:6380/1"}, "redis.internal:6380"},
		{"url without port", Env{RedisURL: "rediss://:hunter2@redis.internal"}, "redis.internal:6379"},
		{"unix socket", Env{RedisURL: "unix:///run/redis.sock"}, "/run/redis.sock"},
		{"host and port", Env{RedisHost: "localhost", RedisPort: 6379, RedisPassword: "hunter2"}, "localhost:6379"},
		{"IPv6 host", Env{RedisHost: "::1", RedisPort: 6379}, "[::1]:6379"},
		{"nothing", Env{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.env.RedisAddr()
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if strings.Contains(got, "hunter2") {
				t.Errorf("got %q, which shows the password", got)
			}
			if configured := tt.env.RedisConfigured(); configured != (tt.want != "") {
				t.Errorf("RedisConfigured: got %v, want %v", configured, tt.want != "")
			}
		})
	}
}

func TestBadRedisURLErrorHidesPassword(t *testing.T) {
	_, err := LoadEnv(mapLookup(map[string]string{"REDIS_URL": "redis://user:hunter2@bad host:6379"}), nil)
	if err == nil {
		t.Fatal("got nil, want an error")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("got %q, which shows the password", err)
	}
}

func TestLookupFeedsHCLFromDotEnv(t *testing.T) {
	lookup := Lookup(mapLookup(map[string]string{"A": "process"}), map[string]string{"A": "dotenv", "B": "dotenv"})
	for name, want := range map[string]string{"A": "process", "B": "dotenv"} {
		if got, ok := lookup(name); !ok || got != want {
			t.Errorf("lookup(%q): got %q, %v, want %q", name, got, ok, want)
		}
	}
	if _, ok := lookup("C"); ok {
		t.Error("lookup(C): got ok, want unset")
	}
}
