package host

import (
	"os/exec"
	"syscall"
)

// dieWithHost makes the kernel kill the plugin if the host process dies without stopping
// it (a SIGKILLed relay must not leave plugins running).
func dieWithHost(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
