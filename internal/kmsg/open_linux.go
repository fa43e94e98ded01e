//go:build linux

package kmsg

import (
	"fmt"
	"io"
	"os"
)

// Open opens the kernel log for reading at its end: history is not
// replayed, the first read returns the next record logged. Each open has
// its own position. The descriptor is in the runtime's poller, so Close
// wakes a blocked Read (with os.ErrClosed). Reads need a buffer of BufSize
// bytes. Reading needs CAP_SYSLOG (or kernel.dmesg_restrict=0); errors wrap
// the errno (fs.ErrPermission, fs.ErrNotExist).
func Open(path string) (io.ReadCloser, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("kmsg: open kernel log: %w", err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("kmsg: seek to the end of the kernel log: %w", err)
	}
	return f, nil
}
