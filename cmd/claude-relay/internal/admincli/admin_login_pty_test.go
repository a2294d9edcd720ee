//go:build linux

package admincli

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair, or skips the test when the machine has none.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	// Control rather than Fd keeps the master non-blocking, so reads of it honour deadlines.
	var n int
	rc, err := master.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			if err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); err == nil {
				n, err = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
			}
		})
		err = errors.Join(err, cerr)
	}
	if err != nil {
		t.Skipf("unlock pseudo-terminal: %v", err)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

func echoOn(t *testing.T, tty *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatalf("read terminal settings: %v", err)
	}
	return tio.Lflag&unix.ECHO != 0
}

func TestAdminLoginFromATerminalDoesNotEchoThePassword(t *testing.T) {
	master, slave := openPTY(t)
	if !echoOn(t, slave) {
		t.Fatal("a new terminal has echo off; the test cannot tell")
	}
	e := newCLIEnv(t)
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := e.runFile(slave, "login", "--addr", e.addr)
		done <- result{code, out, errOut}
	}()
	// Type the password only once the CLI has turned echo off, as a person would after the prompt.
	deadline := time.Now().Add(10 * time.Second)
	for echoOn(t, slave) {
		if time.Now().After(deadline) {
			t.Fatal("login never turned terminal echo off")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := master.WriteString(cliPassword + "\n"); err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("login did not finish")
	}
	if res.code != 0 || !strings.Contains(res.out, "Logged in") {
		t.Fatalf("got exit %d stdout %q stderr %q, want 0 and logged in", res.code, res.out, res.errOut)
	}
	if want := "Password for admin at " + e.addr + ": \n"; res.errOut != want {
		t.Errorf("got stderr %q, want the prompt and a newline %q", res.errOut, want)
	}
	if !echoOn(t, slave) {
		t.Error("terminal echo stays off after login")
	}
	// Whatever the terminal printed back is readable on the master side.
	if err := master.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Skipf("cannot bound a read of the terminal: %v", err)
	}
	buf := make([]byte, 256)
	n, err := master.Read(buf)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read terminal output: %v", err)
	}
	if strings.Contains(string(buf[:n]), cliPassword) {
		t.Errorf("the terminal echoed the password: %q", buf[:n])
	}
}
