//go:build !linux

package procs

import "syscall"

// SysProcAttr: outside Linux the children stay in this program's process
// group, and are still stopped by pid on the way out.
func SysProcAttr() *syscall.SysProcAttr { return nil }
