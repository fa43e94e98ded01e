//go:build !linux

package daemon

import "errors"

var errUnsupported = errors.New("daemon: not supported on this platform")

// openNetlinkUEvents fails: kernel uevents are a Linux interface.
func openNetlinkUEvents() (ueventSource, error) { return nil, errUnsupported }
