package csi

import (
	"fmt"

	"github.com/srvlab/rds-csi/sysfs"
)

// DiskNamer names the block disk with a device number; sysfs.FS is one.
type DiskNamer interface {
	DiskName(dev sysfs.DevNum) (string, error)
}

// DiskRescanner rescans the controllers serving a disk; *fabrics.Client is
// one.
type DiskRescanner interface {
	Rescan(disk string) error
}

// KernelRescanner is the Rescanner of a node: it takes the device number of
// the device node (a mount's source or the device file kubelet's path
// holds), has sysfs name the disk and fabrics rescan the controllers that
// serve it. csi itself reads no /sys path.
type KernelRescanner struct {
	Disks   DiskNamer
	Fabrics DiskRescanner
}

// Rescan implements Rescanner.
func (r KernelRescanner) Rescan(devicePath string) error {
	dev, err := blockDeviceNumber(devicePath)
	if err != nil {
		return err
	}
	disk, err := r.Disks.DiskName(dev)
	if err != nil {
		return fmt.Errorf("block device %s (%s): %w", devicePath, dev, err)
	}
	return r.Fabrics.Rescan(disk)
}
