package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Binary is a program a TestMain builds for its package's tests.
type Binary struct {
	// Path receives the built file's path.
	Path *string
	// Name is the file's name in the build directory (default: the package's last element).
	Name string
	// Package is the import path, e.g. github.com/claude-relay/claude-relay/cmd/claude-relay.
	Package string
	// Tags and LDFlags are passed to go build when set.
	Tags, LDFlags string
}

// RunWithBinaries is the body of a TestMain whose tests run real processes: it builds every
// binary (CGO_ENABLED=0) into a temporary directory, runs the tests, removes the directory
// and returns the exit code for os.Exit. A failed build prints go build's output and fails
// the run before any test starts.
func RunWithBinaries(m *testing.M, bins ...Binary) int {
	dir, err := os.MkdirTemp("", "claude-relay-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, b := range bins {
		name := b.Name
		if name == "" {
			name = filepath.Base(b.Package)
		}
		*b.Path = filepath.Join(dir, name)
		args := []string{"build", "-o", *b.Path}
		if b.Tags != "" {
			args = append(args, "-tags", b.Tags)
		}
		if b.LDFlags != "" {
			args = append(args, "-ldflags", b.LDFlags)
		}
		cmd := exec.Command("go", append(args, b.Package)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", b.Package, err, out)
			return 1
		}
	}
	return m.Run()
}
