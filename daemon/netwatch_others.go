//go:build !linux

package daemon

import "context"

// watchNetlink fails: rtnetlink is a Linux interface.
func watchNetlink(context.Context, func()) error { return errUnsupported }
