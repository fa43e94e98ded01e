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
// already staged there with the same device succeeds.
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
		if !staged {
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

func logAttach(log *slog.Logger, att daemon.Attachment) {
	attrs := []any{"controller", att.Controller, "device", att.Device, "adopted", att.Adopted}
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
	file := filepath.Join(r.stagingPath, BlockDeviceFile)
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

// rollbackAttach releases the daemon's attachment after a failed first
// stage, with a fresh context: the request's may be done.
func (n *Node) rollbackAttach(log *slog.Logger, volumeID string) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.DetachTimeout)
	defer cancel()
	if err := n.vols.Detach(ctx, volumeID); err != nil && !errors.Is(err, daemon.ErrUnknownVolume) {
		log.Warn("releasing the attachment after a failed stage failed; cleanup will retry", errorAttr(err))
	}
}

// NodeUnstageVolume unmounts the staging path (or the block device file)
// and then releases the volume in the daemon, which disconnects the
// controller when no other staged volume uses it. A volume that is already
// gone is success.
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
	if err := n.unmountStaging(stagingPath); err != nil {
		return nil, err
	}
	if err := n.vols.Detach(ctx, volumeID); err != nil {
		if !errors.Is(err, daemon.ErrUnknownVolume) {
			return nil, Status("detach volume "+volumeID, err)
		}
		log.Debug("volume unknown to the daemon: nothing to detach")
	}
	log.Info("volume unstaged")
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// unmountStaging undoes either kind of staging. The staging path itself is
// checked first: a filesystem volume may well hold a file named like
// BlockDeviceFile.
func (n *Node) unmountStaging(stagingPath string) error {
	mounted, err := n.isMountPoint(stagingPath)
	if err != nil {
		return internal("check staging path %s: %v", stagingPath, err)
	}
	if !mounted {
		file := filepath.Join(stagingPath, BlockDeviceFile)
		if _, err := os.Lstat(file); err == nil {
			if err := mount.CleanupMountPoint(file, n.mounter, true); err != nil {
				return internal("unmount %s: %v", file, err)
			}
			return nil // the directory belongs to the CO
		} else if !errors.Is(err, fs.ErrNotExist) {
			return internal("check %s: %v", file, err)
		}
	}
	if err := mount.CleanupMountPoint(stagingPath, n.mounter, true); err != nil {
		return internal("unmount %s: %v", stagingPath, err)
	}
	return nil
}
