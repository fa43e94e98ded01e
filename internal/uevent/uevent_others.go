//go:build !linux

package uevent

import (
	"errors"
	"fmt"
)

// Open fails with an error that wraps errors.ErrUnsupported: kernel uevents
// are a Linux interface.
func Open() (Source, error) {
	return nil, fmt.Errorf("uevent: kernel uevents are a Linux interface: %w", errors.ErrUnsupported)
}
