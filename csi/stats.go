package csi

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FSStats is the usage of a mounted filesystem.
type FSStats struct {
	TotalBytes, AvailableBytes, UsedBytes int64
	TotalInodes, FreeInodes, UsedInodes   int64
}

// Stats reads volume usage; OSStats is the real one, tests use a fake.
type Stats interface {
	// Filesystem returns the usage of the filesystem mounted at path.
	Filesystem(path string) (FSStats, error)
	// DeviceSize returns the size in bytes of the block device node at path
	// (a bind-mounted device file works too).
	DeviceSize(path string) (int64, error)
}

// NodeGetVolumeStats reports bytes and inodes of a mounted filesystem
// volume, or the size of a block volume. A path that does not exist or
// where the volume is not mounted is NotFound.
func (n *Node) NodeGetVolumeStats(_ context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	if err := requireVolumeID(req.GetVolumeId()); err != nil {
		return nil, err
	}
	if req.GetVolumePath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_path is required")
	}
	path := req.GetVolumePath()
	block, err := n.mountedVolumeKind(req.GetVolumeId(), path)
	if err != nil {
		return nil, err
	}
	if block {
		size, err := n.stats.DeviceSize(path)
		if err != nil {
			return nil, internal("size of %s: %v", path, err)
		}
		return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
			{Unit: csi.VolumeUsage_BYTES, Total: size},
		}}, nil
	}
	st, err := n.stats.Filesystem(path)
	if err != nil {
		return nil, internal("statfs %s: %v", path, err)
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: st.TotalBytes, Available: st.AvailableBytes, Used: st.UsedBytes},
		{Unit: csi.VolumeUsage_INODES, Total: st.TotalInodes, Available: st.FreeInodes, Used: st.UsedInodes},
	}}, nil
}

// mountedVolumeKind checks that a volume is mounted at path (a staging or
// publish path) and says whether it is a block volume: a mounted
// non-directory (a device file), or a staging directory holding
// BlockDeviceFile. Missing or unmounted is NotFound.
func (n *Node) mountedVolumeKind(volumeID, path string) (block bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, status.Errorf(codes.NotFound, "volume %s: %s does not exist", volumeID, path)
	}
	if err != nil {
		return false, internal("stat %s: %v", path, err)
	}
	mounted, err := n.isMountPoint(path)
	if err != nil {
		return false, internal("check %s: %v", path, err)
	}
	if mounted {
		return !fi.IsDir(), nil
	}
	if fi.IsDir() {
		if ok, _ := n.isMountPoint(filepath.Join(path, BlockDeviceFile)); ok {
			return true, nil
		}
	}
	return false, status.Errorf(codes.NotFound, "volume %s is not mounted at %s", volumeID, path)
}

// Rescanner makes the kernel re-read the size of the namespace behind a
// block device (path of the device node or of a bind-mounted device file).
type Rescanner interface {
	Rescan(devicePath string) error
}

// NodeExpandVolume makes the kernel re-read the namespace size (rescan of
// its controllers), waits until the device reaches the requested size, and
// grows the filesystem (resize2fs, xfs_growfs) of a filesystem volume. It
// returns the device size.
func (n *Node) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	if err := requireVolumeID(req.GetVolumeId()); err != nil {
		return nil, err
	}
	if req.GetVolumePath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_path is required")
	}
	if c := req.GetVolumeCapability(); c != nil {
		if _, err := checkCapability(c); err != nil {
			return nil, err
		}
	}
	volumeID, path := req.GetVolumeId(), req.GetVolumePath()
	block, err := n.mountedVolumeKind(volumeID, path)
	if err != nil {
		return nil, err
	}
	if n.cfg.Rescanner == nil {
		return nil, status.Error(codes.Unimplemented, "volume expansion is not configured on this node")
	}
	release, err := n.claim(volumeID)
	if err != nil {
		return nil, err
	}
	defer release()

	device, err := n.expandDevice(path, block)
	if err != nil {
		return nil, err
	}
	if err := n.cfg.Rescanner.Rescan(device); err != nil {
		return nil, internal("rescan the controller of %s: %v", device, err)
	}
	size, err := n.waitForSize(ctx, device, req.GetCapacityRange().GetRequiredBytes())
	if err != nil {
		return nil, err
	}
	if !block {
		if _, err := n.resizer.Resize(device, path); err != nil {
			return nil, internal("grow the filesystem on %s: %v", device, err)
		}
	}
	n.log.Info("volume expanded", "volume", volumeID, "device", device, "bytes", size, "block", block)
	return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
}

// expandDevice returns the device to rescan and resize: the mounted device
// of a filesystem volume, or the device file of a block volume.
func (n *Node) expandDevice(path string, block bool) (string, error) {
	if block {
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			return filepath.Join(path, BlockDeviceFile), nil
		}
		return path, nil
	}
	mp, ok, err := n.mountEntry(path)
	if err != nil {
		return "", internal("read mount table: %v", err)
	}
	if !ok || mp.Source == "" {
		return "", status.Errorf(codes.NotFound, "no device is mounted at %s", path)
	}
	return mp.Source, nil
}

// waitForSize polls the device size until it reaches want (0: no wait),
// for at most ExpandWait. The kernel applies a rescan asynchronously.
func (n *Node) waitForSize(ctx context.Context, device string, want int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ExpandWait)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		size, err := n.stats.DeviceSize(device)
		if err != nil {
			return 0, internal("size of %s: %v", device, err)
		}
		if size >= want {
			return size, nil
		}
		select {
		case <-ctx.Done():
			return 0, status.Errorf(codes.Unavailable, "%s is %d bytes after a rescan, want %d: has the target grown the namespace?", device, size, want)
		case <-tick.C:
		}
	}
}
