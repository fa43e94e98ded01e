package csi

import (
	"context"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
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
// target already mounted with the same read-only setting succeeds; with
// another one it is AlreadyExists.
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

	source := r.stagingPath
	if r.cap.block {
		source = filepath.Join(r.stagingPath, BlockDeviceFile)
	}
	if err := n.checkStaged(r.volumeID, source); err != nil {
		return nil, err
	}
	done, err := n.alreadyPublished(r)
	if err != nil {
		return nil, err
	}
	if done {
		return &csi.NodePublishVolumeResponse{}, nil
	}
	if r.cap.block {
		err = ensureFile(r.targetPath)
	} else {
		err = ensureDir(r.targetPath)
	}
	if err != nil {
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

// checkStaged requires the staging mount (or block device file) to exist.
func (n *Node) checkStaged(volumeID, source string) error {
	mounted, err := n.isMountPoint(source)
	if err != nil {
		return internal("check %s: %v", source, err)
	}
	if !mounted {
		return status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s: call NodeStageVolume first", volumeID, source)
	}
	return nil
}

// alreadyPublished reports whether the target is mounted already, and
// whether compatibly.
func (n *Node) alreadyPublished(r publishRequest) (bool, error) {
	mounted, err := n.isMountPoint(r.targetPath)
	if err != nil {
		return false, internal("check target path %s: %v", r.targetPath, err)
	}
	if !mounted {
		return false, nil
	}
	mp, ok, err := n.mountEntry(r.targetPath)
	if err != nil {
		return false, internal("read mount table: %v", err)
	}
	if ok && hasOption(mp.Opts, "ro") != r.readOnly {
		return true, status.Errorf(codes.AlreadyExists, "volume %s is published at %s with readonly=%t", r.volumeID, r.targetPath, !r.readOnly)
	}
	return true, nil
}

// NodeUnpublishVolume unmounts the target and removes it (file or
// directory). A target that does not exist is success.
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
	if err := mount.CleanupMountPoint(target, n.mounter, true); err != nil {
		return nil, internal("unmount %s: %v", target, err)
	}
	n.log.Info("volume unpublished", "volume", req.GetVolumeId(), "target_path", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}
