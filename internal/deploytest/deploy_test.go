package deploytest

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
)

// Paths of the deployment files, relative to the repository root.
const (
	controlUnitPath   = "systemd/claude-relay-control.service"
	sidecarUnitPath   = "systemd/claude-relay-sidecar@.service"
	targetUnitPath    = "systemd/claude-relay.target"
	envExamplePath    = "systemd/claude-relay.env.example"
	logrotatePath     = "systemd/logrotate.conf"
	dockerfilePath    = "docker/Dockerfile"
	composePath       = "docker/compose.yaml"
	nginxConfPath     = "docker/nginx.conf"
	dockerignorePath  = ".dockerignore"
	readmePath        = "README.md"
	envSourcePath     = "config/env.go"
	installedBinary   = "/opt/claude-relay/bin/claude-relay"
	installedEnvFile  = "/opt/claude-relay/.env"
	installedWorkDir  = "/opt/claude-relay"
	contractDrainTime = 30 * time.Second
)

// extraEnvVars are variables the binary reads that config/env.go does not
// (yet) declare as Env* constants.
func extraEnvVars() []string {
	return []string{"ADMIN_USERNAME", "ADMIN_PASSWORD", "CLAUDE_RELAY_CONTROL_ADDR"}
}

// repoRoot returns the repository root: this package lives in internal/deploytest.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatalf("repository root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("repository root %s has no go.mod: %v", dir, err)
	}
	return dir
}

// readRepoFile returns the contents of a file of the repository.
func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return string(b)
}

// binaryEnvVars returns every environment variable the binary reads: the
// exported Env* string constants of config/env.go (parsed from source, so a
// new variable is picked up without touching this test) plus extraEnvVars.
func binaryEnvVars(t *testing.T) map[string]bool {
	t.Helper()
	path := filepath.Join(repoRoot(t), envSourcePath)
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", envSourcePath, err)
	}
	vars := make(map[string]bool)
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs, ok := spec.(*ast.ValueSpec)
			if !ok {
				continue
			}
			for i, name := range vs.Names {
				if !name.IsExported() || !strings.HasPrefix(name.Name, "Env") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("%s: constant %s: %v", envSourcePath, name.Name, err)
				}
				vars[v] = true
			}
		}
	}
	// A parse that finds nothing would make every check below pass vacuously.
	for _, must := range []string{config.EnvPort, config.EnvJWTSecret, config.EnvEncryptionKey, config.EnvLogDir} {
		if !vars[must] {
			t.Fatalf("%s: found no Env* constant for %s; got %v", envSourcePath, must, slices.Sorted(maps.Keys(vars)))
		}
	}
	for _, v := range extraEnvVars() {
		vars[v] = true
	}
	return vars
}

// envExample is systemd/claude-relay.env.example: variables set, and
// variables documented as a commented-out "#NAME=default" line (no space
// after '#', which is how it differs from prose comments).
type envExample struct {
	set       map[string]string
	commented map[string]bool
	problems  []string
}

var (
	envSetLine       = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)
	envCommentedLine = regexp.MustCompile(`^#([A-Z][A-Z0-9_]*)=`)
)

func parseEnvExample(t *testing.T) envExample {
	t.Helper()
	ex := envExample{set: map[string]string{}, commented: map[string]bool{}}
	sc := bufio.NewScanner(strings.NewReader(readRepoFile(t, envExamplePath)))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch trimmed := strings.TrimSpace(line); {
		case trimmed == "":
		case strings.HasPrefix(trimmed, "#"):
			if m := envCommentedLine.FindStringSubmatch(trimmed); m != nil {
				ex.commented[m[1]] = true
			}
		default:
			m := envSetLine.FindStringSubmatch(trimmed)
			if m == nil {
				ex.problems = append(ex.problems, envExamplePath+":"+strconv.Itoa(n)+": not a NAME=value line: "+line)
				continue
			}
			if _, dup := ex.set[m[1]]; dup {
				ex.problems = append(ex.problems, envExamplePath+":"+strconv.Itoa(n)+": "+m[1]+" is set twice")
			}
			// systemd's EnvironmentFile= keeps a trailing "# comment" as
			// part of the value, unlike the binary's .env reader.
			if strings.Contains(m[2], " #") || strings.Contains(m[2], "\t#") {
				ex.problems = append(ex.problems, envExamplePath+":"+strconv.Itoa(n)+": "+m[1]+" has a trailing comment, which systemd would read as part of the value")
			}
			ex.set[m[1]] = m[2]
		}
	}
	return ex
}

func (ex envExample) names() map[string]bool {
	all := make(map[string]bool, len(ex.set)+len(ex.commented))
	for k := range ex.set {
		all[k] = true
	}
	for k := range ex.commented {
		all[k] = true
	}
	return all
}

// readmeEnvVars returns the variables named in the first column of the
// README's "## Environment" table.
func readmeEnvVars(t *testing.T) map[string]bool {
	t.Helper()
	readme := readRepoFile(t, readmePath)
	_, section, ok := strings.Cut(readme, "\n## Environment\n")
	if !ok {
		t.Fatalf("%s has no \"## Environment\" section", readmePath)
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
	vars := make(map[string]bool)
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			vars[m[1]] = true
		}
	}
	return vars
}

func TestEnvExampleListsExactlyTheVariablesTheBinaryReads(t *testing.T) {
	known := binaryEnvVars(t)
	ex := parseEnvExample(t)
	for _, p := range ex.problems {
		t.Error(p)
	}
	listed := ex.names()
	for _, name := range slices.Sorted(maps.Keys(listed)) {
		if !known[name] {
			t.Errorf("%s sets %s, which the binary does not read (config/env.go)", envExamplePath, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(known)) {
		if !listed[name] {
			t.Errorf("%s does not mention %s, which the binary reads; got %v", envExamplePath, name, slices.Sorted(maps.Keys(listed)))
		}
	}
}

func TestReadmeTableListsEveryVariableTheBinaryReads(t *testing.T) {
	table := readmeEnvVars(t)
	for _, name := range slices.Sorted(maps.Keys(binaryEnvVars(t))) {
		if !table[name] {
			t.Errorf("README.md's environment table does not list %s; got %v", name, slices.Sorted(maps.Keys(table)))
		}
	}
}

// TestEnvExamplePlaceholdersAreRefusedAtStart proves that an unedited copy of
// the example cannot run with a published secret: the binary's own .env
// reader accepts every value, and only the secret placeholders are refused.
func TestEnvExamplePlaceholdersAreRefusedAtStart(t *testing.T) {
	dotenv, err := config.ReadDotEnv(filepath.Join(repoRoot(t), envExamplePath))
	if err != nil {
		t.Fatalf("the binary's .env reader refuses %s: %v", envExamplePath, err)
	}
	noEnv := func(string) (string, bool) { return "", false }
	env, err := config.LoadEnv(noEnv, dotenv)
	if err != nil {
		t.Fatalf("LoadEnv(%s): got %v, want no error", envExamplePath, err)
	}
	err = env.CheckSecrets()
	if err == nil {
		t.Fatalf("CheckSecrets with the example's placeholders: got nil, want an error naming both secrets")
	}
	for _, name := range []string{config.EnvJWTSecret, config.EnvEncryptionKey} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("CheckSecrets error: got %q, want it to name %s", err, name)
		}
	}

	// With real secrets in place, the same file starts.
	dotenv[config.EnvJWTSecret] = strings.Repeat("j", 64)
	dotenv[config.EnvEncryptionKey] = strings.Repeat("k", config.EncryptionKeyLen)
	env, err = config.LoadEnv(noEnv, dotenv)
	if err != nil {
		t.Fatalf("LoadEnv with secrets filled in: got %v, want no error", err)
	}
	if err := env.CheckSecrets(); err != nil {
		t.Errorf("CheckSecrets with secrets filled in: got %v, want nil", err)
	}
	// Commands that make good values are written beside each secret.
	src := readRepoFile(t, envExamplePath)
	for _, cmd := range []string{"openssl rand -base64 64", "openssl rand -hex 16"} {
		if !strings.Contains(src, cmd) {
			t.Errorf("%s: got no %q, want the command that makes the secret", envExamplePath, cmd)
		}
	}
}

// lookTool finds an external tool on PATH or in the sbin directories, which
// PATH often lacks for non-root users.
func lookTool(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}
