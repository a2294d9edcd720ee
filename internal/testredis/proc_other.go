//go:build !linux

package testredis

import "syscall"

// dieWithParent has no portable equivalent outside Linux; servers are stopped by Cleanup.
func dieWithParent() *syscall.SysProcAttr { return nil }
