package deploytest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeLayoutListsEveryPackage keeps README's "## Layout" map in step with the tree:
// the directory of every package `go list ./...` prints starts a line of the map.
func TestReadmeLayoutListsEveryPackage(t *testing.T) {
	root := repoRoot(t)
	cmd := exec.Command("go", "list", "-f", "{{.Dir}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	listed := layoutDirs(t, readRepoFile(t, readmePath))
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		if rel = filepath.ToSlash(rel) + "/"; !listed[rel] {
			t.Errorf("README.md's Layout does not list %s; add a line for it", rel)
		}
	}
}

// layoutDirs returns the directories that start a line of README's Layout block.
func layoutDirs(t *testing.T, readme string) map[string]bool {
	t.Helper()
	_, after, ok := strings.Cut(readme, "\n## Layout\n")
	if !ok {
		t.Fatal(`README.md has no "## Layout" section`)
	}
	_, block, ok := strings.Cut(after, "```\n")
	if block, _, ok = strings.Cut(block, "\n```"); !ok {
		t.Fatal("README.md's Layout has no code block")
	}
	dirs := map[string]bool{}
	for _, line := range strings.Split(block, "\n") {
		if f := strings.Fields(line); len(f) > 0 && line[0] != ' ' && strings.HasSuffix(f[0], "/") {
			dirs[f[0]] = true
		}
	}
	if len(dirs) == 0 {
		t.Fatal("README.md's Layout lists no directory")
	}
	return dirs
}
