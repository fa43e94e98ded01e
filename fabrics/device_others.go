//go:build !linux

package fabrics

import "syscall"

// openDevice fails: /dev/nvme-fabrics exists on Linux only.
func openDevice(string) (deviceFile, error) { return nil, ErrUnsupportedPlatform }

func kernelRelease() string { return "" }

func openErrorKind(syscall.Errno) error { return nil }

func writeErrorKind(syscall.Errno) error { return nil }
