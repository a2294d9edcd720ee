package deploytest

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerInstruction is one Dockerfile instruction with continuation lines
// joined.
type dockerInstruction struct {
	cmd  string // upper case: FROM, RUN, …
	args string
}

// dockerStage is the instructions from one FROM to the next.
type dockerStage struct {
	from         string // image
	name         string // AS name
	instructions []dockerInstruction
}

func parseDockerfile(t *testing.T) []dockerStage {
	t.Helper()
	var stages []dockerStage
	var cur strings.Builder
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := dockerInstruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := dockerStage{}
			for _, w := range f {
				if !strings.HasPrefix(w, "--") {
					st.from = w
					break
				}
			}
			if i := slices.IndexFunc(f, func(s string) bool { return strings.EqualFold(s, "AS") }); i >= 0 && i+1 < len(f) {
				st.name = f[i+1]
			}
			stages = append(stages, st)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Errorf("%s: %s before the first FROM", dockerfilePath, in.cmd)
			}
			return
		}
		stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, in)
	}
	for line := range strings.SplitSeq(readRepoFile(t, dockerfilePath), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments, parser directives, and comments inside continuations
		}
		if body, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

func (s dockerStage) all(cmd string) []string {
	var out []string
	for _, in := range s.instructions {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

func (s dockerStage) last(cmd string) string {
	all := s.all(cmd)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1]
}

func TestDockerfileBuildsStaticNonRootImage(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("stages: got %d, want a multi-stage build", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(build.from, "golang:") {
		t.Errorf("build stage: got FROM %s, want golang:…", build.from)
	}
	if strings.HasPrefix(final.from, "golang:") {
		t.Errorf("runtime stage: got FROM %s, want a slim runtime image", final.from)
	}
	buildText := strings.Join(append(build.all("ENV"), build.all("RUN")...), "\n")
	if !regexp.MustCompile(`\bCGO_ENABLED=0\b`).MatchString(buildText) {
		t.Errorf("build stage: got no CGO_ENABLED=0 in ENV or RUN, want a static binary")
	}
	if !strings.Contains(buildText, "make build") && !strings.Contains(buildText, "-trimpath") {
		t.Errorf("build stage: got neither make build nor go build -trimpath")
	}

	user := final.last("USER")
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		t.Errorf("runtime USER: got %q, want a non-root user", user)
	}
	if got := strings.Fields(strings.Join(final.all("EXPOSE"), " ")); !slices.Contains(got, "3000") && !slices.Contains(got, "3000/tcp") {
		t.Errorf("EXPOSE: got %v, want 3000", got)
	}
	hc := final.last("HEALTHCHECK")
	if !regexp.MustCompile(`\bCMD\b.*/health\b`).MatchString(hc) {
		t.Errorf("HEALTHCHECK: got %q, want a CMD that fetches /health", hc)
	}
	runs := strings.Join(final.all("RUN"), "\n")
	if !strings.Contains(runs, "ca-certificates") {
		t.Errorf("runtime stage: got no ca-certificates installed, want them for HTTPS upstreams")
	}
	for _, tool := range []string{"curl", "wget"} {
		if regexp.MustCompile(`\b`+tool+`\b`).MatchString(hc) && !regexp.MustCompile(`install[^\n]*\b`+tool+`\b`).MatchString(runs) {
			t.Errorf("HEALTHCHECK uses %s but the runtime stage does not install it", tool)
		}
	}
	jsonArgs := func(cmd string) []string {
		var v []string
		if err := json.Unmarshal([]byte(final.last(cmd)), &v); err != nil {
			t.Errorf("%s %q: want exec (JSON) form: %v", cmd, final.last(cmd), err)
		}
		return v
	}
	if got := jsonArgs("ENTRYPOINT"); !slices.Equal(got, []string{"claude-relay"}) {
		t.Errorf("ENTRYPOINT: got %q, want [\"claude-relay\"]", got)
	}
	if got := jsonArgs("CMD"); !slices.Equal(got, []string{"sidecar"}) {
		t.Errorf("CMD: got %q, want [\"sidecar\"]", got)
	}

	// The binary copied from the build stage lands in a directory on PATH.
	var binDir string
	for _, c := range final.all("COPY") {
		f := strings.Fields(c)
		if len(f) >= 3 && strings.HasPrefix(f[0], "--from=") && filepath.Base(f[len(f)-1]) == "claude-relay" {
			binDir = filepath.Dir(f[len(f)-1])
		}
	}
	if binDir == "" {
		t.Fatalf("runtime stage: got no COPY --from=… …/claude-relay")
	}
	// The provider plugins travel with the binary, where CLAUDE_RELAY_PLUGIN_DIR says.
	var pluginDir string
	for _, c := range final.all("COPY") {
		if f := strings.Fields(c); len(f) >= 3 && strings.HasPrefix(f[0], "--from=") && strings.HasSuffix(strings.TrimSuffix(f[1], "/"), "/plugins") {
			pluginDir = strings.TrimSuffix(f[len(f)-1], "/")
		}
	}
	if env := strings.Join(final.all("ENV"), " "); pluginDir == "" || !strings.Contains(env, "CLAUDE_RELAY_PLUGIN_DIR="+pluginDir) {
		t.Errorf("runtime stage: plugins copied to %q, want them copied and CLAUDE_RELAY_PLUGIN_DIR pointing there (ENV %s)", pluginDir, env)
	}
	path := regexp.MustCompile(`\bPATH=(\S+)`).FindStringSubmatch(strings.Join(final.all("ENV"), " "))
	onPath := binDir == "/usr/local/bin" || binDir == "/usr/bin"
	if path != nil {
		onPath = onPath || slices.Contains(strings.Split(path[1], ":"), binDir)
	}
	if !onPath {
		t.Errorf("binary copied to %s: got PATH %v, want the directory on PATH for ENTRYPOINT [\"claude-relay\"]", binDir, path)
	}
}

// dockerignore is the root .dockerignore, matched with Docker's rules: the
// last matching pattern wins, "!" re-includes, "**" spans directories, and a
// directory's exclusion covers what is inside.
type dockerignore []struct {
	re      *regexp.Regexp
	include bool
}

func parseDockerignore(t *testing.T) dockerignore {
	t.Helper()
	var d dockerignore
	for line := range strings.SplitSeq(readRepoFile(t, dockerignorePath), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		include := strings.HasPrefix(line, "!")
		pat := strings.TrimPrefix(filepath.ToSlash(filepath.Clean(strings.TrimPrefix(line, "!"))), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(pat); i++ {
			switch {
			case strings.HasPrefix(pat[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(pat[i:], "**"):
				re.WriteString(".*")
				i++
			case pat[i] == '*':
				re.WriteString("[^/]*")
			case pat[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(pat[i : i+1]))
			}
		}
		re.WriteString("$")
		d = append(d, struct {
			re      *regexp.Regexp
			include bool
		}{regexp.MustCompile(re.String()), include})
	}
	return d
}

// excluded reports whether the slash-separated path rel is left out of the
// build context.
func (d dockerignore) excluded(rel string) bool {
	parts := strings.Split(rel, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		out := false
		for _, p := range d {
			if p.re.MatchString(prefix) {
				out = !p.include
			}
		}
		if out {
			return true
		}
	}
	return false
}

// TestDockerignoreKeepsBuildInputs checks that the build context keeps
// everything "make build" compiles or embeds and leaves out secrets and VCS
// data.
func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	d := parseDockerignore(t)
	root := repoRoot(t)
	for _, rel := range []string{".git/config", ".env", "config/.env", "bin/claude-relay"} {
		if !d.excluded(rel) {
			t.Errorf("%s: got %s in the build context, want it left out", dockerignorePath, rel)
		}
	}
	for _, rel := range []string{"go.mod", "go.sum", "Makefile", "cmd/claude-relay/main.go", "docker/Dockerfile"} {
		if d.excluded(rel) {
			t.Errorf("%s: got %s left out, want it in the build context", dockerignorePath, rel)
		}
	}
	embed := regexp.MustCompile(`(?m)^//go:embed\s+(.+)$`)
	checked := 0
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(path, root+string(filepath.Separator)))
		if e.IsDir() {
			if e.Name() == ".git" || e.Name() == "testdata" || (strings.HasPrefix(e.Name(), ".") && path != root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		checked++
		if d.excluded(rel) {
			t.Errorf("%s: got %s left out, want every non-test Go file in the build context", dockerignorePath, rel)
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range embed.FindAllStringSubmatch(string(src), -1) {
			for _, pat := range strings.Fields(m[1]) {
				if emb := filepath.ToSlash(filepath.Join(filepath.Dir(rel), pat)); d.excluded(emb) {
					t.Errorf("%s: got %s (embedded by %s) left out, want it in the build context", dockerignorePath, emb, rel)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	if checked == 0 {
		t.Fatalf("walk %s: got no Go files", root)
	}
}
