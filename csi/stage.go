package csi

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"

	"github.com/srvlab/rds-csi/daemon"
)

// stageRequest is a validated NodeStageVolume request.
type stageRequest struct {
	volumeID    string
	stagingPath string
	cap         volumeCap
	spec        daemon.Spec
	fsType      string
	options     []string // mount options (mount volumes)
}

// NodeStageVolume connects the volume's controller (through the daemon),
// waits for its block device, and then formats (if blank) and mounts it on
// the staging path, or for a block volume bind-mounts the device onto
// BlockDeviceFile in the staging directory. It is idempotent: a volume
// already staged there with the same device succeeds. A volume staged at
// another path is refused (FailedPrecondition, see stagedElsewhere) before
// anything is attached.
func (n *Node) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	r, err := n.checkStage(req)
	if err != nil {
		return nil, err
	}
	release, err := n.claim(r.volumeID)
	if err != nil {
		return nil, err
	}
	defer release()

	if err := n.checkStagingPath(r); err != nil {
		return nil, err
	}
	clk := newStageClock()
	log := n.log.With("volume", r.volumeID, "staging_path", r.stagingPath)
	att, err := n.vols.Attach(ctx, r.spec)
	if err != nil {
		log.Warn("attach failed", "options", r.spec.Options, errorAttr(err))
		return nil, Status("attach volume "+r.volumeID, err)
	}
	clk.attach = att.Timing
	logAttach(log, att)

	staged, err := n.stageDevice(r, att.Device, timedMounter(n.cfg.Mounter, n.cfg.Exec, clk))
	if err != nil {
		if att.NewVolume && !staged {
			n.rollbackAttach(log, r.volumeID)
		}
		return nil, err
	}
	recordStart := time.Now()
	err = n.vols.MarkStaged(r.volumeID, r.stagingPath, r.cap.block)
	clk.since("record", recordStart)
	if err != nil {
		return nil, Status("record staged volume "+r.volumeID, err)
	}
	log.Info("volume staged", "device", att.Device, "block", r.cap.block, "controller", att.Controller, clk.attr())
	return &csi.NodeStageVolumeResponse{}, nil
}

// checkStage validates the request and parses its parameters and secrets.
// Nothing reaches the daemon when it fails.
func (n *Node) checkStage(req *csi.NodeStageVolumeRequest) (stageRequest, error) {
	if err := requireVolumeID(req.GetVolumeId()); err != nil {
		return stageRequest{}, err
	}
	if err := requirePath("staging_target_path", req.GetStagingTargetPath()); err != nil {
		return stageRequest{}, err
	}
	vc, err := checkCapability(req.GetVolumeCapability())
	if err != nil {
		return stageRequest{}, err
	}
	p, err := ParseParams(req.GetVolumeContext())
	if err != nil {
		return stageRequest{}, Status("volume_context", err)
	}
	if len(p.UnknownKeys) > 0 {
		n.log.Warn("volume context written by a controller carries keys this node does not know (a newer controller?); they are ignored",
			"volume", req.GetVolumeId(), "keys", p.UnknownKeys)
	}
	spec := p.Spec(req.GetVolumeId(), n.cfg.Host, ParseSecrets(req.GetSecrets()))
	if err := validateSpec(spec); err != nil {
		return stageRequest{}, Status("node-stage secrets", err)
	}
	r := stageRequest{
		volumeID:    req.GetVolumeId(),
		stagingPath: filepath.Clean(req.GetStagingTargetPath()),
		cap:         vc,
		spec:        spec,
	}
	if !vc.block {
		r.fsType = vc.fsType
		if r.fsType == "" {
			r.fsType = p.FSType
		}
		if r.fsType == "" {
			r.fsType = DefaultFSType
		}
		r.options = mergeOptions(vc.mountFlags, p.MountOptions...)
		if vc.readOnly {
			r.options = mergeOptions(r.options, "ro")
		}
	}
	return r, nil
}

// checkStagingPath refuses, before anything is attached, a symlink at the
// staging path and a volume staged there already with the other access type:
// staging a filesystem volume as block would bind the device inside its own
// filesystem (and the volume could never be unstaged), and back.
func (n *Node) checkStagingPath(r stageRequest) error {
	if _, _, err := lstatPath("staging_target_path", r.stagingPath); err != nil {
		return err
	}
	vi, ok := n.vols.Volume(r.volumeID)
	if at, elsewhere := stagedElsewhere(vi, ok, r.stagingPath); elsewhere {
		return status.Errorf(codes.FailedPrecondition, "volume %s is staged at %s; a volume has one staging path (two PersistentVolumes with the same volumeHandle?): unstage it there first", r.volumeID, at)
	}
	if ok && vi.State == daemon.VolumeStaged && vi.StagingPath == r.stagingPath && vi.Block != r.cap.block {
		return status.Errorf(codes.AlreadyExists, "volume %s is staged at %s with block=%t; the request asks block=%t", r.volumeID, r.stagingPath, vi.Block, r.cap.block)
	}
	return nil
}

// stagedElsewhere reports whether the daemon's record vi (known: it has
// one) has the volume staged at another path than path, and which. A volume
// has one staging path (the CSI spec makes the CO ensure it; two static
// PersistentVolumes with the same volumeHandle break it): a stage at a
// second path is refused, and an unstage at a path other than the recorded
// one unmounts only what of the volume is there, leaving the volume staged
// and attached, so neither a second mount nor a leaked controller results.
func stagedElsewhere(vi daemon.VolumeInfo, known bool, path string) (string, bool) {
	if !known || vi.State != daemon.VolumeStaged || vi.StagingPath == path {
		return "", false
	}
	return vi.StagingPath, true
}

func logAttach(log *slog.Logger, att daemon.Attachment) {
	attrs := []any{"controller", att.Controller, "device", att.Device, "adopted", att.Adopted}
	if att.MultipathOff {
		log.Warn("volume names several target addresses but native NVMe multipath is off on this node (nvme_core.multipath=N): staged on its first path only", attrs...)
	}
	if att.PathsPending > 0 {
		log.Info("volume attached on some of its paths; the others are being connected in the background", append(attrs, "paths_pending", att.PathsPending)...)
	}
	if att.TimeoutsUpdated {
		log.Info("controller resilience parameters changed to those of this volume", attrs...)
		return
	}
	log.Debug("volume attached", attrs...)
}

// stageDevice mounts or records the device. staged reports that the staging
// path already served the volume before this call (so a failure must not
// undo the attachment).
// m is the mounter for the format and the mount (timed into the stage's
// clock).
func (n *Node) stageDevice(r stageRequest, device string, m *mount.SafeFormatAndMount) (staged bool, err error) {
	if r.cap.block {
		return n.stageBlock(r, device, m)
	}
	return n.stageMount(r, device, m)
}

// stageMount formats a blank device and mounts it on the staging path.
func (n *Node) stageMount(r stageRequest, device string, m *mount.SafeFormatAndMount) (bool, error) {
	if err := ensureDir(r.stagingPath); err != nil {
		return false, err
	}
	mounted, err := n.isMountPoint(r.stagingPath)
	if err != nil {
		return false, internal("check staging path %s: %v", r.stagingPath, err)
	}
	if mounted {
		same, err := n.mountedDevice(r.stagingPath, device)
		if err != nil {
			return true, internal("read mount table: %v", err)
		}
		if !same {
			return false, status.Errorf(codes.AlreadyExists, "staging path %s already holds another device than %s", r.stagingPath, device)
		}
		return true, nil
	}
	file := filepath.Join(r.stagingPath, BlockDeviceFile)
	if mounted, err := n.isMountPoint(file); err != nil || mounted {
		if err != nil {
			return false, internal("check %s: %v", file, err)
		}
		return false, status.Errorf(codes.AlreadyExists, "staging path %s holds a block volume's device file", r.stagingPath)
	}
	if err := m.FormatAndMount(device, r.stagingPath, r.fsType, r.options); err != nil {
		return false, mountError(device, r.stagingPath, err)
	}
	return false, nil
}

// mountError classifies a FormatAndMount failure.
func mountError(device, target string, err error) error {
	var me mount.MountError
	if errors.As(err, &me) {
		switch me.Type {
		case mount.FilesystemMismatch, mount.HasFilesystemErrors, mount.UnformattedReadOnly:
			return status.Errorf(codes.FailedPrecondition, "mount %s on %s: %v", device, target, err)
		}
	}
	return internal("mount %s on %s: %v", device, target, err)
}

// stageBlock bind-mounts the device node onto BlockDeviceFile.
func (n *Node) stageBlock(r stageRequest, device string, m *mount.SafeFormatAndMount) (bool, error) {
	if err := ensureDir(r.stagingPath); err != nil {
		return false, err
	}
	if mounted, err := n.isMountPoint(r.stagingPath); err != nil || mounted {
		if err != nil {
			return false, internal("check staging path %s: %v", r.stagingPath, err)
		}
		return false, status.Errorf(codes.AlreadyExists, "staging path %s holds a mounted filesystem; a block volume is staged in a plain directory", r.stagingPath)
	}
	file := filepath.Join(r.stagingPath, BlockDeviceFile)
	if _, _, err := lstatPath("device file", file); err != nil {
		return false, err
	}
	mounted, err := n.isMountPoint(file)
	if err != nil {
		return false, internal("check %s: %v", file, err)
	}
	if mounted {
		same, err := n.mountedDevice(file, device)
		if err != nil {
			return true, internal("read mount table: %v", err)
		}
		if !same {
			return false, status.Errorf(codes.AlreadyExists, "staging path %s already holds another device than %s", r.stagingPath, device)
		}
		return true, nil
	}
	if err := ensureFile(file); err != nil {
		return false, err
	}
	if err := m.Mount(device, file, "", []string{"bind"}); err != nil {
		return false, internal("bind %s on %s: %v", device, file, err)
	}
	return false, nil
}

// rollbackAttach releases the daemon's attachment after a failed stage
// whose Attach entered the volume in the daemon (Attachment.NewVolume) and
// which found nothing of the volume on the staging path: the rollback
// undoes only what the call did. It uses a fresh context: the request's may
// be done.
func (n *Node) rollbackAttach(log *slog.Logger, volumeID string) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.DetachTimeout)
	defer cancel()
	if err := n.vols.Detach(ctx, volumeID); err != nil {
		log.Warn("releasing the attachment after a failed stage failed; the volume stays attached until its next stage or unstage", errorAttr(err))
	}
}

// NodeUnstageVolume unmounts the staging path (or the block device file)
// and then releases the volume in the daemon, which disconnects the
// controller when no other staged volume uses it. Only the volume's own
// mounts are unmounted (ownMount): a staging path that holds another mount
// (another volume's, or one the plugin never made), or a symlink, is
// FailedPrecondition and left alone, and the volume stays attached. A
// volume that is already gone, or a path that holds no mount, is success.
// When the daemon records the volume staged at another path, the volume is
// not released: only what of it was at this path is unmounted.
func (n *Node) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	if err := requireVolumeID(req.GetVolumeId()); err != nil {
		return nil, err
	}
	if err := requirePath("staging_target_path", req.GetStagingTargetPath()); err != nil {
		return nil, err
	}
	volumeID, stagingPath := req.GetVolumeId(), filepath.Clean(req.GetStagingTargetPath())
	release, err := n.claim(volumeID)
	if err != nil {
		return nil, err
	}
	defer release()

	log := n.log.With("volume", volumeID, "staging_path", stagingPath)
	if err := n.unmountStaging(log, volumeID, stagingPath); err != nil {
		return nil, err
	}
	vi, known := n.vols.Volume(volumeID)
	if at, elsewhere := stagedElsewhere(vi, known, stagingPath); elsewhere {
		log.Info("volume unstaged from this path; it stays staged at its own", "staged_at", at)
		return &csi.NodeUnstageVolumeResponse{}, nil
	}
	if err := n.vols.Detach(ctx, volumeID); err != nil {
		return nil, Status("detach volume "+volumeID, err)
	}
	log.Info("volume unstaged")
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// unmountStaging undoes either kind of staging, unmounting only the
// volume's own mounts. The staging path itself is checked first: a
// filesystem volume may well hold a file named like BlockDeviceFile. The
// staging directory is removed when empty after its mount is gone (it
// belongs to the CO, which tolerates either); BlockDeviceFile, the
// plugin's own, is removed when it is an empty regular file.
func (n *Node) unmountStaging(log *slog.Logger, volumeID, stagingPath string) error {
	if _, exists, err := lstatPath("staging_target_path", stagingPath); err != nil || !exists {
		return err
	}
	unmounted, err := n.unmountOwn(volumeID, "staging_target_path", stagingPath)
	if err != nil {
		return err
	}
	if unmounted {
		if err := os.Remove(stagingPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Debug("staging directory kept", errorAttr(err))
		}
		return nil
	}
	file := filepath.Join(stagingPath, BlockDeviceFile)
	if _, exists, err := lstatPath("device file", file); err != nil || !exists {
		return err
	}
	if _, err := n.unmountOwn(volumeID, "device file", file); err != nil {
		return err
	}
	if fi, err := os.Lstat(file); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
		if err := os.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return internal("remove %s: %v", file, err)
		}
	}
	return nil
}
