package sidecar_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDataPlaneNeverLinksTheControlPlane keeps the split the design draws: the sidecar and
// every package under it speak to the control plane only through the neutral wire contract
// (config/configapi), never by importing controlplane code.
func TestDataPlaneNeverLinksTheControlPlane(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./...: %v\n%s", err, out)
	}
	const cp = "github.com/claude-relay/claude-relay/controlplane"
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == cp || strings.HasPrefix(pkg, cp+"/") {
			t.Errorf("a sidecar package depends on %s; move what it needs to a neutral package (config/configapi holds the distribution protocol)", pkg)
		}
	}
}
