package csi

import "syscall"

// dieWithParent makes the kernel SIGKILL the child when its parent thread ends.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
