//go:build !linux

package main

import "syscall"

// sysProcAttr: outside Linux the children stay in this program's process
// group, and are still stopped by pid on the way out.
func sysProcAttr() *syscall.SysProcAttr { return nil }
