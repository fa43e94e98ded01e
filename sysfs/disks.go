package sysfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Block devices by number and by name: /sys/dev/block/MAJ:MIN and
// /sys/block/<disk> are symlinks to the disk's device directory, which sits
// under its subsystem (devices/virtual/nvme-subsystem/nvme-subsysK/nvmeKn1,
// native multipath) or under its controller
// (devices/virtual/nvme-fabrics/ctl/nvmeN/nvmeNn1, nvme_core.multipath=N).
const (
	devBlock = "dev/block"
	blockDir = "block"
)

// DiskName returns the kernel name of the block device with number dev
// ("nvme3n1" for 259:1), from the dev/block/MAJ:MIN link: one look-up, for
// callers that hold a device node (a mount's source or a device file) and
// need the disk. A number no block device has gives an error matching
// ErrNotExist.
func (fs FS) DiskName(dev DevNum) (string, error) {
	target, err := os.Readlink(fs.path(devBlock, dev.String()))
	if err != nil {
		if gone(err) {
			return "", notExist(err)
		}
		return "", ioError(err)
	}
	return filepath.Base(target), nil
}

// DiskControllers returns the controllers that serve the visible NVMe disk
// ("nvme3n1"), sorted by instance: with native multipath the disk is its
// subsystem's head and every controller the subsystem links to serves it;
// without, it is the one controller the disk sits under. One look-up: the
// disk's block/ link names its parent, whose directory lists the
// controllers. A disk that does not exist (or a subsystem with no
// controller left) gives an error matching ErrNotExist; a name that is not a
// visible NVMe disk, or a block device that is not under an NVMe controller
// or subsystem, an error.
func (fs FS) DiskControllers(disk string) ([]string, error) {
	if !isHead([]byte(disk)) {
		return nil, fmt.Errorf("sysfs: invalid disk name %q, want nvme<K>n<N>", disk)
	}
	target, err := os.Readlink(fs.path(blockDir, disk))
	if err != nil {
		if gone(err) {
			return nil, notExist(err)
		}
		return nil, ioError(err)
	}
	parentDir := filepath.Dir(target)
	parent := filepath.Base(parentDir)
	if isControllerName([]byte(parent)) {
		return []string{parent}, nil
	}
	if _, ok := instanceOf(parent, "nvme-subsys"); !ok {
		return nil, fmt.Errorf("sysfs: %s is not an NVMe disk (its device is %s)", disk, strings.TrimPrefix(target, "../"))
	}
	dir := parentDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(fs.path(blockDir), dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if gone(err) {
			return nil, notExist(err)
		}
		return nil, ioError(err)
	}
	var ctrls []string
	for _, e := range entries {
		if isControllerName([]byte(e.Name())) {
			ctrls = append(ctrls, e.Name())
		}
	}
	if len(ctrls) == 0 {
		return nil, notExistPath("controller of", fs.path(blockDir, disk))
	}
	sortByInstance(ctrls)
	return ctrls, nil
}
