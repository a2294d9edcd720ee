package e2e

import (
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testutil"
)

// routeAnswers reports whether the sidecar has a route for path: without a key it answers
// 401 on a route it knows and 404 on one it does not.
func routeAnswers(p *proc, path string) bool {
	resp, err := http.Post(p.url()+path, "application/json", strings.NewReader("{}"))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusUnauthorized
}

// TestTwoControlPlanesAndTwoSidecarsConvergeOnOneRedis runs the deployment the scale-out
// section describes — two control planes watching the same HCL, each followed by a
// sidecar, all on one Redis (a three-master Cluster in CI's second pass) — and shows an
// edit reaching both sidecars, and a sidecar whose control plane dies keeping its routes.
func TestTwoControlPlanesAndTwoSidecarsConvergeOnOneRedis(t *testing.T) {
	in := newInstall(t)
	cp1 := in.start("control-1", "control")
	cp2 := in.start("control-2", "control")
	s1 := in.startSidecar("sidecar-1", "-control-plane", cp1.url())
	s2 := in.startSidecar("sidecar-2", "-control-plane", cp2.url())

	for _, s := range []*proc{s1, s2} {
		if routeAnswers(s, "/v1/e2e-probe") {
			t.Fatalf("%s: the probe route exists before the edit", s.name)
		}
	}
	def, err := readDefaultHCL()
	if err != nil {
		t.Fatal(err)
	}
	in.writeConfig(def + "\nroute \"probe\" {\n  paths = [\"/v1/e2e-probe\"]\n  pool  = \"default\"\n}\n")
	for _, s := range []*proc{s1, s2} {
		testutil.Eventually(t, 15*time.Second, s.name+" applies the edit", func() bool { return routeAnswers(s, "/v1/e2e-probe") })
	}

	// Control plane 1 dies: its sidecar keeps serving what it applied.
	cp1.signal(syscall.SIGKILL)
	cp1.wait(10 * time.Second)
	if !routeAnswers(s1, "/v1/e2e-probe") {
		t.Error("sidecar-1 lost its routes when its control plane died")
	}
	// The surviving control plane still distributes: a second edit reaches sidecar-2.
	in.writeConfig(def + "\nroute \"probe2\" {\n  paths = [\"/v1/e2e-probe-2\"]\n  pool  = \"default\"\n}\n")
	testutil.Eventually(t, 15*time.Second, "sidecar-2 applies the second edit", func() bool { return routeAnswers(s2, "/v1/e2e-probe-2") })
}

func readDefaultHCL() (string, error) {
	b, err := os.ReadFile("../../config/default.hcl")
	return string(b), err
}
