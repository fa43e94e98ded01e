//go:build !linux

package csi

import (
	"errors"

	"github.com/srvlab/rds-csi/sysfs"
)

var errUnsupported = errors.New("csi: volume statistics need Linux")

// OSStats reads usage with statfs(2) and device sizes with the
// BLKGETSIZE64 ioctl; on this system it only returns errors.
type OSStats struct{}

// Filesystem implements Stats.
func (OSStats) Filesystem(string) (FSStats, error) { return FSStats{}, errUnsupported }

// DeviceSize implements Stats.
func (OSStats) DeviceSize(string) (int64, error) { return 0, errUnsupported }

func sameDeviceNode(a, b string) bool { return false }

func blockDeviceNumber(string) (sysfs.DevNum, error) { return sysfs.DevNum{}, errUnsupported }
