package csi

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/daemon"
)

// The node runs as root on every node, so it acts only on what it can prove
// is its own: a mount whose source is the volume's device (as the daemon
// records it) or a bind of the volume's staging mount, and files it made.
// A caller's mistaken or hostile path gets FailedPrecondition and is left
// alone. The rules:
//
//   - a symbolic link at a staging or target path is never followed
//     (lstatPath);
//   - publish binds only from the staging path the daemon recorded for the
//     volume (stagedVolume), onto a target that is missing (the plugin
//     makes it) or empty of the right kind;
//   - unpublish and unstage unmount only the volume's own mounts (ownMount)
//     and remove only the target or device file under one of them, or the
//     plugin's own BlockDeviceFile.
//
// What remains: the checks read the path and then act on it by name
// (mount(8) and umount(2) take paths), so a process that can write the
// parent directory can swap in a symlink between the check and the mount.
// Closing that needs mounting on an O_PATH|O_NOFOLLOW descriptor
// (move_mount(2)), which mount-utils does not do. kubelet's directories are
// writable only by root, so only root can win that race.

// errNotOurs is the FailedPrecondition for a path that holds something this
// plugin did not make.
func errNotOurs(format string, args ...any) error {
	return status.Errorf(codes.FailedPrecondition, format+": the plugin acts only on its own mounts and files; left alone", args...)
}

// lstatPath reads what is at p without following a final symlink: ok is
// false when nothing is there; a symlink is FailedPrecondition.
func lstatPath(field, p string) (fi fs.FileInfo, ok bool, err error) {
	fi, err = os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, nil
	case err != nil:
		return nil, false, internal("check %s %s: %v", field, p, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, false, status.Errorf(codes.FailedPrecondition, "%s %s is a symbolic link: the plugin does not follow links", field, p)
	}
	return fi, true, nil
}

// stagedVolume returns the daemon's record of a volume staged at
// stagingPath with the access type block; anything else is
// FailedPrecondition.
func (n *Node) stagedVolume(volumeID, stagingPath string, block bool) (daemon.VolumeInfo, error) {
	vi, ok := n.vols.Volume(volumeID)
	switch {
	case !ok || vi.State != daemon.VolumeStaged:
		return vi, status.Errorf(codes.FailedPrecondition, "volume %s is not staged on this node: call NodeStageVolume first", volumeID)
	case vi.StagingPath != stagingPath:
		return vi, status.Errorf(codes.FailedPrecondition, "volume %s is staged at %s, not at %s", volumeID, vi.StagingPath, stagingPath)
	case vi.Block != block:
		return vi, status.Errorf(codes.FailedPrecondition, "volume %s is staged with block=%t, the request asks block=%t", volumeID, vi.Block, block)
	}
	return vi, nil
}

// ownMount reports whether the mount at path (a mount point) is volumeID's:
// its source is the device the daemon records for the volume, which a bind
// of the volume's staging mount shares. An unknown volume owns nothing.
func (n *Node) ownMount(volumeID, path string) (bool, error) {
	vi, ok := n.vols.Volume(volumeID)
	if !ok || vi.Device == "" {
		return false, nil
	}
	same, err := n.mountedDevice(path, vi.Device)
	if err != nil {
		return false, internal("read mount table: %v", err)
	}
	return same, nil
}

// maxStacked bounds the mounts unmountOwn takes off one path (a retried
// publish that raced could stack a few; more is not the plugin's doing).
const maxStacked = 8

// unmountOwn unmounts path while the top mount on it is volumeID's. A mount
// that is not the volume's is FailedPrecondition (field names the path in
// the message). unmounted reports whether anything was unmounted.
func (n *Node) unmountOwn(volumeID, field, path string) (unmounted bool, err error) {
	for range maxStacked {
		mounted, err := n.isMountPoint(path)
		if err != nil {
			return unmounted, internal("check %s %s: %v", field, path, err)
		}
		if !mounted {
			return unmounted, nil
		}
		own, err := n.ownMount(volumeID, path)
		if err != nil {
			return unmounted, err
		}
		if !own {
			src := "another device"
			if mp, ok, _ := n.mountEntry(path); ok {
				src = mp.Source
			}
			return unmounted, errNotOurs("%s %s holds a mount of %s, not of volume %s", field, path, src, volumeID)
		}
		if err := n.mounter.Unmount(path); err != nil {
			return unmounted, internal("unmount %s: %v", path, err)
		}
		unmounted = true
	}
	return unmounted, internal("%s %s still holds a mount of volume %s after %d unmounts", field, path, volumeID, maxStacked)
}

// checkTarget checks an existing publish target: a directory (filesystem
// volume) or regular file (block volume), and empty, so that the mount
// hides nothing and unpublish, which removes it, deletes nothing but what
// publish could have made.
func checkTarget(target string, fi fs.FileInfo, block bool) error {
	if block {
		if !fi.Mode().IsRegular() || fi.Size() != 0 {
			return errNotOurs("target_path %s exists and is not an empty regular file", target)
		}
		return nil
	}
	if !fi.IsDir() {
		return errNotOurs("target_path %s exists and is not a directory", target)
	}
	empty, err := emptyDir(target)
	if err != nil {
		return internal("read target_path %s: %v", target, err)
	}
	if !empty {
		return errNotOurs("target_path %s is a directory that is not empty", target)
	}
	return nil
}

// emptyDir reports whether the directory p has no entries.
func emptyDir(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// makeTarget creates the missing publish target (and its parents): a
// directory, or an empty file for a block volume. It fails if something
// appeared there meanwhile (O_EXCL, Mkdir), so what it made is the
// plugin's.
func makeTarget(target string, block bool) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return internal("create %s: %v", filepath.Dir(target), err)
	}
	if !block {
		if err := os.Mkdir(target, 0o750); err != nil {
			return internal("create %s: %v", target, err)
		}
		return nil
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o640)
	if err != nil {
		return internal("create %s: %v", target, err)
	}
	return f.Close()
}
