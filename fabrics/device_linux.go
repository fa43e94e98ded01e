//go:build linux

package fabrics

import (
	"os"
	"syscall"
)

// openDevice opens the fabrics device read-write. The kernel does not
// support poll on it, so the descriptor stays blocking and a write returns
// only when the connect has finished (or failed).
func openDevice(path string) (deviceFile, error) {
	return os.OpenFile(path, os.O_RDWR, 0)
}

// kernelRelease returns uname -r, or "".
func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return ""
	}
	b := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// openErrorKind maps an errno from opening the fabrics device: a missing
// node, or one whose driver is gone, means the module is not loaded.
func openErrorKind(errno syscall.Errno) error {
	switch errno {
	case syscall.ENOENT, syscall.ENODEV, syscall.ENXIO:
		return ErrFabricsUnavailable
	}
	return nil
}

// writeErrorKind maps an errno from the connect write to its sentinel, or
// nil. The lab pins each row on real kernels (e2e/kerneltest/fabrics_test.go,
// TestErrno* and TestKernelEINVAL).
func writeErrorKind(errno syscall.Errno) error {
	switch errno {
	case syscall.EALREADY:
		return ErrAlreadyConnected
	case syscall.EINVAL:
		return ErrInvalidOption
	case syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EAGAIN, syscall.ETIMEDOUT,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH,
		syscall.EHOSTDOWN, syscall.ENETDOWN:
		return ErrUnreachable
	case syscall.EIO:
		return ErrRejected
	case syscall.ENOKEY, syscall.EKEYREJECTED, syscall.EKEYEXPIRED,
		syscall.EKEYREVOKED, syscall.EPERM:
		return ErrAuth
	case syscall.ENODEV:
		return ErrNoDevice
	}
	return nil
}
