package csi

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// publishRequest is a validated NodePublishVolume request.
type publishRequest struct {
	volumeID    string
	stagingPath string
	targetPath  string
	cap         volumeCap
	readOnly    bool
}

// NodePublishVolume bind-mounts the staged volume onto the target: the
// staging directory onto a target directory for a filesystem volume, the
// staged device file onto a target file for a block volume. readonly (or a
// reader-only access mode) makes the bind mount read-only. Idempotent: a
// target already holding the volume with the same read-only setting
// succeeds; with another one it is AlreadyExists.
//
// The volume must be staged, as the daemon records it, at the request's
// staging path with the same access type, and that staging mount must still
// serve the volume's device; otherwise FailedPrecondition. The target must
// be missing (it is created), or an empty directory (filesystem) or empty
// file (block), or hold this volume already; a symlink or anything else is
// FailedPrecondition.
func (n *Node) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	r, err := checkPublish(req)
	if err != nil {
		return nil, err
	}
	release, err := n.claim(r.volumeID)
	if err != nil {
		return nil, err
	}
	defer release()

	vi, err := n.stagedVolume(r.volumeID, r.stagingPath, r.cap.block)
	if err != nil {
		return nil, err
	}
	source := r.stagingPath
	if r.cap.block {
		source = filepath.Join(r.stagingPath, BlockDeviceFile)
	}
	if err := n.checkStaged(r.volumeID, source, vi.Device); err != nil {
		return nil, err
	}
	fi, exists, err := lstatPath("target_path", r.targetPath)
	if err != nil {
		return nil, err
	}
	if exists {
		done, err := n.alreadyPublished(r)
		if err != nil {
			return nil, err
		}
		if done {
			return &csi.NodePublishVolumeResponse{}, nil
		}
		if err := checkTarget(r.targetPath, fi, r.cap.block); err != nil {
			return nil, err
		}
	} else if err := makeTarget(r.targetPath, r.cap.block); err != nil {
		return nil, err
	}
	opts := []string{"bind"}
	if r.readOnly {
		opts = append(opts, "ro")
	}
	if !r.cap.block {
		opts = mergeOptions(opts, r.cap.mountFlags...)
	}
	if err := n.mounter.Mount(source, r.targetPath, "", opts); err != nil {
		if !exists { // the target is the plugin's: do not leave it behind
			_ = os.Remove(r.targetPath)
		}
		return nil, internal("bind %s on %s: %v", source, r.targetPath, err)
	}
	n.log.Info("volume published", "volume", r.volumeID, "target_path", r.targetPath, "readonly", r.readOnly, "block", r.cap.block)
	return &csi.NodePublishVolumeResponse{}, nil
}

func checkPublish(req *csi.NodePublishVolumeRequest) (publishRequest, error) {
	if err := requireVolumeID(req.GetVolumeId()); err != nil {
		return publishRequest{}, err
	}
	if err := requirePath("target_path", req.GetTargetPath()); err != nil {
		return publishRequest{}, err
	}
	vc, err := checkCapability(req.GetVolumeCapability())
	if err != nil {
		return publishRequest{}, err
	}
	if req.GetStagingTargetPath() == "" {
		return publishRequest{}, status.Error(codes.FailedPrecondition, "staging_target_path is required: the plugin has STAGE_UNSTAGE_VOLUME, call NodeStageVolume first")
	}
	if err := requirePath("staging_target_path", req.GetStagingTargetPath()); err != nil {
		return publishRequest{}, err
	}
	return publishRequest{
		volumeID:    req.GetVolumeId(),
		stagingPath: filepath.Clean(req.GetStagingTargetPath()),
		targetPath:  filepath.Clean(req.GetTargetPath()),
		cap:         vc,
		readOnly:    req.GetReadonly() || vc.readOnly,
	}, nil
}

// checkStaged requires the staging mount (or block device file) to exist
// and to serve the volume's device.
func (n *Node) checkStaged(volumeID, source, device string) error {
	mounted, err := n.isMountPoint(source)
	if err != nil {
		return internal("check %s: %v", source, err)
	}
	same := false
	if mounted {
		if same, err = n.mountedDevice(source, device); err != nil {
			return internal("read mount table: %v", err)
		}
	}
	if !same {
		return status.Errorf(codes.FailedPrecondition, "volume %s is recorded as staged, but %s does not hold its device %s: call NodeStageVolume again", volumeID, source, device)
	}
	return nil
}

// alreadyPublished reports whether the target holds this volume already,
// and whether compatibly. A target that holds another mount is
// FailedPrecondition.
func (n *Node) alreadyPublished(r publishRequest) (bool, error) {
	mounted, err := n.isMountPoint(r.targetPath)
	if err != nil {
		return false, internal("check target path %s: %v", r.targetPath, err)
	}
	if !mounted {
		return false, nil
	}
	own, err := n.ownMount(r.volumeID, r.targetPath)
	if err != nil {
		return false, err
	}
	if !own {
		return false, errNotOurs("target_path %s holds another mount than volume %s", r.targetPath, r.volumeID)
	}
	mp, ok, err := n.mountEntry(r.targetPath)
	if err != nil {
		return false, internal("read mount table: %v", err)
	}
	if ok && hasOption(mp.Options, "ro") != r.readOnly {
		return true, status.Errorf(codes.AlreadyExists, "volume %s is published at %s with readonly=%t", r.volumeID, r.targetPath, !r.readOnly)
	}
	return true, nil
}

// NodeUnpublishVolume unmounts the volume from the target and removes the
// target (the file or directory publish made). Only this volume's mounts are
// unmounted (ownMount); a target holding another mount, or a symlink, is
// FailedPrecondition and left alone. A target that is missing or holds no
// mount is success and is left as it is: the plugin cannot tell it made it.
func (n *Node) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if err := requireVolumeID(req.GetVolumeId()); err != nil {
		return nil, err
	}
	if err := requirePath("target_path", req.GetTargetPath()); err != nil {
		return nil, err
	}
	release, err := n.claim(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	defer release()

	target := filepath.Clean(req.GetTargetPath())
	if _, exists, err := lstatPath("target_path", target); err != nil || !exists {
		return &csi.NodeUnpublishVolumeResponse{}, err
	}
	unmounted, err := n.unmountOwn(req.GetVolumeId(), "target_path", target)
	if err != nil {
		return nil, err
	}
	if unmounted {
		// Under the volume's mount: publish made it, or found it empty.
		if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, internal("remove %s: %v", target, err)
		}
	}
	n.log.Info("volume unpublished", "volume", req.GetVolumeId(), "target_path", target, "unmounted", unmounted)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}
