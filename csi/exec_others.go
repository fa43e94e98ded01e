//go:build !linux

package csi

import "syscall"

// dieWithParent has no equivalent outside Linux.
func dieWithParent() *syscall.SysProcAttr { return nil }
