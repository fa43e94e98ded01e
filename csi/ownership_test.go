package csi

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

// The node acts only on what it can prove is its own: these tests make
// hostile or mistaken calls and check that nothing foreign is mounted over,
// unmounted or deleted.

// stageAt stages id as a filesystem volume at staging.
func (e *testEnv) stageAt(t *testing.T, id, staging string, c *csi.VolumeCapability) {
	t.Helper()
	_, err := e.node.NodeStageVolume(context.Background(), stageReq(staging, id, c, validContext()))
	mustOK(t, err)
}

// foreignMount mounts a device that no volume uses on path (a directory it
// creates).
func (e *testEnv) foreignMount(t *testing.T, path string) {
	t.Helper()
	mustOK(t, os.MkdirAll(path, 0o750))
	mustOK(t, e.mounter.Mount("/dev/sdz1", path, "ext4", nil))
}

func (e *testEnv) mounted(path string) bool { return slices.Contains(e.mountPaths(), path) }

// A publish of a volume that was never staged must not bind whatever is
// mounted at the given staging path into the pod.
func TestPublishNeverStagedVolume(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	foreign, target := filepath.Join(dir, "foreign"), filepath.Join(dir, "target")
	e.foreignMount(t, foreign)
	_, err := e.node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: "vol-x", StagingTargetPath: foreign, TargetPath: target, VolumeCapability: mountCap(),
	})
	wantCode(t, err, codes.FailedPrecondition)
	if e.mounted(target) {
		t.Error("the foreign mount was bound onto the target")
	}
}

// A publish names a staging path other than the one the volume was staged
// at (another volume's): refused, the other volume is not exposed.
func TestPublishOtherStagingPath(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	s1, s2, target := filepath.Join(dir, "s1"), filepath.Join(dir, "s2"), filepath.Join(dir, "target")
	e.stageAt(t, "vol-1", s1, mountCap())
	e.stageAt(t, "vol-2", s2, mountCap())
	_, err := e.node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: "vol-1", StagingTargetPath: s2, TargetPath: target, VolumeCapability: mountCap(),
	})
	wantCode(t, err, codes.FailedPrecondition)
	if e.mounted(target) {
		t.Error("vol-2's staging mount was bound onto vol-1's target")
	}
	// The access type must match the staging too.
	_, err = e.node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: "vol-1", StagingTargetPath: s1, TargetPath: target, VolumeCapability: blockCap(),
	})
	wantCode(t, err, codes.FailedPrecondition)
}

// A symlink at the target is not followed: publish refuses it and mounts
// nothing where it points.
func TestPublishSymlinkTarget(t *testing.T) {
	for _, c := range []struct {
		name string
		cap  *csi.VolumeCapability
	}{{"mount", mountCap()}, {"block", blockCap()}} {
		t.Run(c.name, func(t *testing.T) {
			e := newTestEnv(t)
			dir := t.TempDir()
			staging, victim, target := filepath.Join(dir, "s"), filepath.Join(dir, "victim"), filepath.Join(dir, "target")
			e.stageAt(t, "vol-1", staging, c.cap)
			mustOK(t, os.Mkdir(victim, 0o750))
			writeFile(t, filepath.Join(victim, "data"), "x")
			if c.name == "block" {
				victim = filepath.Join(victim, "data")
			}
			mustOK(t, os.Symlink(victim, target))
			_, err := e.node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
				VolumeId: "vol-1", StagingTargetPath: staging, TargetPath: target, VolumeCapability: c.cap,
			})
			wantCode(t, err, codes.FailedPrecondition)
			if e.mounted(victim) || e.mounted(target) {
				t.Errorf("mounted through the symlink: %v", e.mountPaths())
			}
		})
	}
}

// A target that already holds data (a non-empty directory, a non-empty
// file) is not mounted over: unpublish would later remove it.
func TestPublishOccupiedTarget(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	staging, sb := filepath.Join(dir, "s"), filepath.Join(dir, "sb")
	e.stageAt(t, "vol-1", staging, mountCap())
	e.stageAt(t, "vol-b", sb, blockCap())
	full := filepath.Join(dir, "full")
	writeFile(t, filepath.Join(full, "data"), "x")
	_, err := e.node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: "vol-1", StagingTargetPath: staging, TargetPath: full, VolumeCapability: mountCap(),
	})
	wantCode(t, err, codes.FailedPrecondition)
	file := filepath.Join(dir, "file")
	writeFile(t, file, "precious")
	_, err = e.node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: "vol-b", StagingTargetPath: sb, TargetPath: file, VolumeCapability: blockCap(),
	})
	wantCode(t, err, codes.FailedPrecondition)
	if e.mounted(full) || e.mounted(file) {
		t.Errorf("mounted over occupied targets: %v", e.mountPaths())
	}
}

// Unpublish leaves a mount that is not the volume's alone and says so; a
// target that holds no mount is success and is not deleted unless the
// plugin made it.
func TestUnpublishForeign(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	staging, foreign := filepath.Join(dir, "s"), filepath.Join(dir, "foreign")
	e.stageAt(t, "vol-1", staging, mountCap())
	e.foreignMount(t, foreign)

	for _, id := range []string{"vol-1", "vol-unknown"} {
		_, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: foreign})
		wantCode(t, err, codes.FailedPrecondition)
		if !e.mounted(foreign) {
			t.Fatalf("%s: the foreign mount was unmounted", id)
		}
	}
	// Another volume's staging mount is not this volume's either.
	e.stageAt(t, "vol-2", filepath.Join(dir, "s2"), mountCap())
	_, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: filepath.Join(dir, "s2")})
	wantCode(t, err, codes.FailedPrecondition)
	if !e.mounted(filepath.Join(dir, "s2")) {
		t.Fatal("vol-2's staging mount was unmounted by vol-1's unpublish")
	}

	file := filepath.Join(dir, "file")
	writeFile(t, file, "precious")
	_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: file})
	mustOK(t, err)
	if b, err := os.ReadFile(file); err != nil || string(b) != "precious" {
		t.Errorf("a regular file passed as target: %q, %v", b, err)
	}
	link := filepath.Join(dir, "link")
	mustOK(t, os.Symlink(staging, link))
	_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: link})
	wantCode(t, err, codes.FailedPrecondition)
	if !e.mounted(staging) {
		t.Error("unpublish followed a symlink to the staging mount")
	}
	if _, err := os.Lstat(link); err != nil {
		t.Errorf("symlink removed: %v", err)
	}
}

// Unstage leaves a mount that is not the volume's alone: a foreign one, or
// another volume's staging mount (known or unknown volume id).
func TestUnstageForeign(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	s1, s2, foreign := filepath.Join(dir, "s1"), filepath.Join(dir, "s2"), filepath.Join(dir, "foreign")
	e.stageAt(t, "vol-1", s1, mountCap())
	e.stageAt(t, "vol-2", s2, blockCap())
	e.foreignMount(t, foreign)

	for _, c := range []struct{ id, path string }{
		{"vol-unknown", s1}, {"vol-2", s1}, {"vol-1", foreign}, {"vol-unknown", foreign},
		{"vol-1", s2}, {"vol-unknown", s2},
	} {
		_, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: c.id, StagingTargetPath: c.path})
		wantCode(t, err, codes.FailedPrecondition)
	}
	for _, p := range []string{s1, filepath.Join(s2, BlockDeviceFile), foreign} {
		if !e.mounted(p) {
			t.Errorf("%s unmounted", p)
		}
	}
	if v := e.vols.snapshot(); len(v) != 2 {
		t.Errorf("volumes %v, want vol-1 and vol-2 kept", v)
	}
	link := filepath.Join(dir, "link")
	mustOK(t, os.Symlink(s1, link))
	_, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: link})
	wantCode(t, err, codes.FailedPrecondition)
	if !e.mounted(s1) {
		t.Error("unstage followed a symlink")
	}
	// An unknown volume at a path that holds nothing is success.
	_, err = e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-unknown", StagingTargetPath: filepath.Join(dir, "nothing")})
	mustOK(t, err)
}

// A symlink at the staging path is not followed.
func TestStageSymlinkStagingPath(t *testing.T) {
	for _, c := range []struct {
		name string
		cap  *csi.VolumeCapability
	}{{"mount", mountCap()}, {"block", blockCap()}} {
		t.Run(c.name, func(t *testing.T) {
			e := newTestEnv(t)
			dir := t.TempDir()
			victim, link := filepath.Join(dir, "victim"), filepath.Join(dir, "link")
			mustOK(t, os.Mkdir(victim, 0o750))
			mustOK(t, os.Symlink(victim, link))
			_, err := e.node.NodeStageVolume(context.Background(), stageReq(link, "vol-1", c.cap, validContext()))
			wantCode(t, err, codes.FailedPrecondition)
			if len(e.mountPaths()) != 0 {
				t.Errorf("mounted through the symlink: %v", e.mountPaths())
			}
			if len(e.vols.snapshot()) != 0 {
				t.Errorf("attached for a refused stage: %v", e.vols.snapshot())
			}
		})
	}
}

// A volume staged as a filesystem is not re-staged as block at the same
// path (that would bind the device inside its own filesystem), nor back.
func TestStageOtherAccessTypeSamePath(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	sm, sb := filepath.Join(dir, "sm"), filepath.Join(dir, "sb")
	e.stageAt(t, "vol-m", sm, mountCap())
	e.stageAt(t, "vol-b", sb, blockCap())
	_, err := e.node.NodeStageVolume(ctx, stageReq(sm, "vol-m", blockCap(), validContext()))
	wantCode(t, err, codes.AlreadyExists)
	_, err = e.node.NodeStageVolume(ctx, stageReq(sb, "vol-b", mountCap(), validContext()))
	wantCode(t, err, codes.AlreadyExists)
	want := []string{filepath.Join(sb, BlockDeviceFile), sm}
	if got := e.mountPaths(); !slices.Equal(got, want) {
		t.Errorf("mounts %v, want %v", got, want)
	}
	for _, id := range []string{"vol-m", "vol-b"} {
		if v, ok := e.vols.snapshot()[id]; !ok || !v.staged || v.block != (id == "vol-b") {
			t.Errorf("%s: %+v, want still staged as before", id, v)
		}
	}
	// And both still unstage.
	for id, p := range map[string]string{"vol-m": sm, "vol-b": sb} {
		_, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: p})
		mustOK(t, err)
	}
	if len(e.mountPaths()) != 0 {
		t.Errorf("left mounted: %v", e.mountPaths())
	}
}

// stuckMounter's Unmount succeeds but leaves the mount in place.
type stuckMounter struct{ *kernelMounter }

func (stuckMounter) Unmount(string) error { return nil }

// A mount that does not go away ends unpublish with an error instead of an
// endless loop.
func TestUnpublishMountThatStays(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "s"), filepath.Join(dir, "t")
	e.stageAt(t, "vol-1", staging, mountCap())
	_, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging, TargetPath: target, VolumeCapability: mountCap()})
	mustOK(t, err)
	n, err := NewNode(NodeConfig{NodeID: "node-1", Host: testHost, Volumes: e.vols, Mounter: stuckMounter{e.mounter}, Exec: e.exec, Logger: discardLogger()})
	mustOK(t, err)
	n.mountTable = e.mounter.table
	_, err = n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: target})
	wantCode(t, err, codes.Internal)
	if _, err := os.Stat(target); err != nil {
		t.Errorf("target removed while still mounted: %v", err)
	}
}
