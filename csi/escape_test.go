package csi

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// TestLifecycleAtEscapedPaths: stage, publish, expand, unpublish and
// unstage at staging and target paths that the kernel's mount table escapes
// (space, backslash, newline, tab) find their mounts: the mount table is
// read through the one decoding parser (package mountinfo).
func TestLifecycleAtEscapedPaths(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "sp ace", `back\slash`, "new\nline", "t\tab")
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "pods", "tar get")

	for range 2 { // the repeat finds the first one's mount
		_, err := e.node.NodeStageVolume(ctx, stageReq(staging, "vol-1", mountCap(), validContext()))
		mustOK(t, err)
	}
	pub := &csi.NodePublishVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging, TargetPath: target, VolumeCapability: mountCap()}
	for range 2 {
		_, err := e.node.NodePublishVolume(ctx, pub)
		mustOK(t, err)
	}
	_, err := e.node.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "vol-1", VolumePath: target,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 15 << 30}})
	mustOK(t, err)
	if !slices.Contains(e.rescan.devices, "/dev/nvme0n1") {
		t.Errorf("rescans %q, want /dev/nvme0n1", e.rescan.devices)
	}
	_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: target})
	mustOK(t, err)
	_, err = e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging})
	mustOK(t, err)
	if len(e.mountPaths()) != 0 || len(e.vols.snapshot()) != 0 {
		t.Errorf("left behind: mounts %q, volumes %v", e.mountPaths(), e.vols.snapshot())
	}
}

// TestRepeatStageAtEscapedPathWithoutOpenat2: where mount-utils decides
// "is it a mount point" from its own (undecoded) reading of the mount table,
// a repeat stage at an escaped path still finds the first one's mount and
// does not mount the device a second time.
func TestRepeatStageAtEscapedPathWithoutOpenat2(t *testing.T) {
	e := newTestEnv(t)
	e.mounter.noOpenat2 = true
	ctx := context.Background()
	staging := filepath.Join(t.TempDir(), "sp ace", `back\slash`, "new\nline", "staging")
	for range 2 {
		_, err := e.node.NodeStageVolume(ctx, stageReq(staging, "vol-1", mountCap(), validContext()))
		mustOK(t, err)
	}
	mps, _ := e.mounter.FakeMounter.List()
	if n := len(mps); n != 1 {
		t.Errorf("%d mounts, want the first stage's only: %+v", n, mps)
	}
}
