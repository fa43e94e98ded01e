//go:build !linux

package kmsg

import (
	"errors"
	"fmt"
	"io"
)

// Open fails with an error that wraps errors.ErrUnsupported: /dev/kmsg is
// a Linux interface.
func Open(string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("kmsg: the kernel log is a Linux interface: %w", errors.ErrUnsupported)
}
