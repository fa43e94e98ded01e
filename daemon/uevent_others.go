//go:build !linux

package daemon

// openNetlinkUEvents fails: kernel uevents are a Linux interface.
func openNetlinkUEvents() (ueventSource, error) { return nil, errUnsupported }
