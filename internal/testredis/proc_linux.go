package testredis

import "syscall"

// dieWithParent makes the kernel SIGKILL redis-server when the test binary exits.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
