package csi

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/srvlab/rds-csi/sysfs"
	"golang.org/x/sys/unix"
)

// OSStats reads usage with statfs(2) and device sizes with the
// BLKGETSIZE64 ioctl.
type OSStats struct{}

// Filesystem implements Stats.
func (OSStats) Filesystem(path string) (FSStats, error) {
	var s unix.Statfs_t
	if err := unix.Statfs(path, &s); err != nil {
		return FSStats{}, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	bs := int64(s.Bsize)
	total, free, avail := int64(s.Blocks)*bs, int64(s.Bfree)*bs, int64(s.Bavail)*bs
	return FSStats{
		TotalBytes:     total,
		AvailableBytes: avail,
		UsedBytes:      total - free,
		TotalInodes:    int64(s.Files),
		FreeInodes:     int64(s.Ffree),
		UsedInodes:     int64(s.Files) - int64(s.Ffree),
	}, nil
}

// DeviceSize implements Stats.
func (OSStats) DeviceSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var size uint64
	conn, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var ioctlErr error
	err = conn.Control(func(fd uintptr) {
		ioctlErr = ioctlGetSize(fd, &size)
	})
	if err == nil {
		err = ioctlErr
	}
	if err != nil {
		return 0, &os.PathError{Op: "ioctl BLKGETSIZE64", Path: path, Err: err}
	}
	return int64(size), nil
}

func ioctlGetSize(fd uintptr, size *uint64) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.BLKGETSIZE64, uintptr(unsafe.Pointer(size)))
	if errno != 0 {
		return errno
	}
	return nil
}

// deviceNumber returns the device number of a block device node.
func deviceNumber(path string) (uint64, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, false
	}
	return uint64(st.Rdev), true
}

// sameDeviceNode reports whether a and b are block device nodes of the same
// device (a bind-mounted device file counts as its device).
func sameDeviceNode(a, b string) bool {
	x, ok1 := deviceNumber(a)
	y, ok2 := deviceNumber(b)
	return ok1 && ok2 && x == y
}

// blockDeviceNumber returns the device number of the block device node at
// path.
func blockDeviceNumber(path string) (sysfs.DevNum, error) {
	rdev, ok := deviceNumber(path)
	if !ok {
		return sysfs.DevNum{}, fmt.Errorf("%s is not a block device", path)
	}
	return sysfs.DevNum{Major: unix.Major(rdev), Minor: unix.Minor(rdev)}, nil
}
