package procs

import "syscall"

// SysProcAttr puts a child in its own process group, so that a Ctrl-C in
// the terminal reaches only this program (which then stops the children by
// pid, in order), and has the kernel kill it should this program die
// without cleaning up.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
