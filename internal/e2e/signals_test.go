package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testutil"
)

// TestSIGHUPOnTheControlPlaneLogsWhatItReloaded sends SIGHUP to a control plane with an
// unchanged directory, then with a broken edit: each logs what was re-read and the result.
func TestSIGHUPOnTheControlPlaneLogsWhatItReloaded(t *testing.T) {
	in := newInstall(t)
	p := in.start("control", "control")
	p.signal(syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, "the SIGHUP reload being logged", func() bool {
		return strings.Contains(p.out.String(), "SIGHUP: configuration re-read: dir="+in.config+" result=unchanged version=1")
	})
	in.writeConfig("route \"messages\" {\n  paths = [\n")
	p.signal(syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, "the refused SIGHUP reload being logged", func() bool {
		return strings.Contains(p.out.String(), "SIGHUP: configuration re-read and refused; still serving the last good one: dir="+in.config+" version=1")
	})
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
}

// TestSIGINTWhileASidecarWaitsForItsControlPlaneExitsCleanly interrupts a sidecar during its
// start-up poll of a control plane that accepts and never answers: it exits 0 without an
// ERROR line.
func TestSIGINTWhileASidecarWaitsForItsControlPlaneExitsCleanly(t *testing.T) {
	in := newInstall(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	polled := make(chan net.Conn, 1)
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			select {
			case polled <- c:
			default:
			}
		}
	}()
	dir := t.TempDir()
	cmd := exec.Command(relayBin, "sidecar", "-listen", "127.0.0.1:0", "-data-dir", filepath.Join(dir, "data"),
		"-control-plane", "http://"+silent.Addr().String())
	cmd.Dir = dir
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"CRS_SECURITY__JWT_SECRET=" + testJWTSecret,
		"CRS_SECURITY__ENCRYPTION_KEY=" + testEncryptionKey,
		"LOG_DIR=",
	}, in.env...)
	var out testutil.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-polled:
	case err := <-exited:
		t.Fatalf("sidecar exited before polling its control plane (%v):\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("sidecar did not poll its control plane within 30s:\n%s", out.String())
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGINT during start-up: %v, want 0", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("sidecar did not exit within 20s of SIGINT")
	}
	if strings.Contains(out.String(), "[ERROR]") {
		t.Errorf("SIGINT during start-up logged an error:\n%s", out.String())
	}
}
