//go:build !linux

package daemon

import "io"

// openKmsg fails: /dev/kmsg is a Linux interface.
func openKmsg(string) (io.ReadCloser, error) { return nil, errUnsupported }
