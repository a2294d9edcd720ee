//go:build !linux

package host

import "os/exec"

// dieWithHost has no portable equivalent outside Linux; service managers stop the process
// group instead.
func dieWithHost(*exec.Cmd) {}
