//go:build !linux

package netwatch

import (
	"context"
	"errors"
	"fmt"
)

// Watch fails with an error that wraps errors.ErrUnsupported: rtnetlink is
// a Linux interface.
func Watch(context.Context, func()) error {
	return fmt.Errorf("netwatch: rtnetlink is a Linux interface: %w", errors.ErrUnsupported)
}
