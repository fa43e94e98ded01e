//go:build linux

package nvmet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Loop is a sparse file attached to a loop device: a namespace backing that
// can grow (Target.Grow), as a file-backed disk on an RDS does.
type Loop struct {
	Device string // /dev/loopN
	File   string
}

// LoopFile makes a sparse file of sizeMB in dir and attaches it to a free
// loop device.
func (t *Target) LoopFile(dir string, sizeMB int) (Loop, error) {
	f, err := os.CreateTemp(dir, "nvmet-*.img")
	if err != nil {
		return Loop{}, err
	}
	defer f.Close()
	t.pushUndo(func() error { return os.Remove(f.Name()) })
	if err := f.Truncate(int64(sizeMB) << 20); err != nil {
		return Loop{}, err
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return Loop{}, err
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return Loop{}, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
	}
	dev := "/dev/loop" + strconv.Itoa(n)
	ld, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return Loop{}, err
	}
	defer ld.Close()
	if err := unix.IoctlSetInt(int(ld.Fd()), unix.LOOP_SET_FD, int(f.Fd())); err != nil {
		return Loop{}, fmt.Errorf("LOOP_SET_FD %s: %w", dev, err)
	}
	t.pushUndo(func() error {
		d, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer d.Close()
		return unix.IoctlSetInt(int(d.Fd()), unix.LOOP_CLR_FD, 0)
	})
	return Loop{Device: dev, File: f.Name()}, nil
}

// Grow enlarges a loop-backed namespace to sizeMB: the file, then the loop
// device's capacity, then the target's idea of the namespace size
// (revalidate_size), which tells connected hosts with an AEN.
func (t *Target) Grow(nqn string, nsid int, l Loop, sizeMB int) error {
	if err := os.Truncate(l.File, int64(sizeMB)<<20); err != nil {
		return err
	}
	d, err := os.OpenFile(l.Device, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = unix.IoctlSetInt(int(d.Fd()), unix.LOOP_SET_CAPACITY, 0)
	d.Close()
	if err != nil {
		return fmt.Errorf("LOOP_SET_CAPACITY %s: %w", l.Device, err)
	}
	return write(filepath.Join(t.root, "subsystems", nqn, "namespaces", strconv.Itoa(nsid), "revalidate_size"), "1")
}
