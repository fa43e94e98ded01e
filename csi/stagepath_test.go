package csi

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/srvlab/rds-csi/daemon"
)

// One volume, a second staging path (two static PVs that share a
// volumeHandle): the CO must use one staging path per volume (CSI spec,
// NodeStageVolumeRequest.staging_target_path), so the second stage is
// refused with FailedPrecondition before anything is attached or mounted.
// An unstage at the path that never held the volume leaves the staged
// volume alone, and the unstage at its own path releases the controller:
// nothing is mounted twice, nothing stays connected.
func TestStageSecondStagingPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		cap  func() *csi.VolumeCapability
	}{
		{"filesystem", mountCap},
		{"block", blockCap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRealEnv(t)
			ctx := context.Background()
			first := filepath.Join(r.staging, "pv-a", "globalmount")
			second := filepath.Join(r.staging, "pv-b", "globalmount")
			_, err := r.node.NodeStageVolume(ctx, stageReq(first, "vol-1", tc.cap(), validContext()))
			mustOK(t, err)
			mountsBefore := r.mountPaths()

			_, err = r.node.NodeStageVolume(ctx, stageReq(second, "vol-1", tc.cap(), validContext()))
			wantCode(t, err, codes.FailedPrecondition)
			if got := r.mountPaths(); !slices.Equal(got, mountsBefore) {
				t.Errorf("mounts after the refused stage %q, want %q", got, mountsBefore)
			}
			if v, ok := r.d.Volume("vol-1"); !ok || v.State != daemon.VolumeStaged || v.StagingPath != first {
				t.Fatalf("after the refused stage: %+v (known %v), want staged at %s", v, ok, first)
			}

			_, err = r.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: second})
			mustOK(t, err)
			if v, ok := r.d.Volume("vol-1"); !ok || v.State != daemon.VolumeStaged || v.StagingPath != first {
				t.Fatalf("after an unstage at the other path: %+v (known %v), want staged at %s", v, ok, first)
			}
			if got := r.conn.connected(t); len(got) != 1 {
				t.Errorf("controllers %v after an unstage at the other path, want the volume's one", got)
			}

			_, err = r.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: first})
			mustOK(t, err)
			if _, ok := r.d.Volume("vol-1"); ok {
				t.Error("vol-1 still known after its unstage")
			}
			if got := r.conn.connected(t); len(got) != 0 {
				t.Errorf("controllers %v still connected after the unstage, want none", got)
			}
			if got := r.mountPaths(); len(got) != 0 {
				t.Errorf("mounts %q left after the unstage, want none", got)
			}
		})
	}
}

// A volume mounted at two staging paths (left by a plugin that allowed it)
// is released by unstaging both, in either order: the first unstage
// unmounts only its own path and keeps the volume, the last one detaches
// it and its controller goes.
func TestUnstageTwiceMountedVolume(t *testing.T) {
	r := newRealEnv(t)
	ctx := context.Background()
	first := filepath.Join(r.staging, "pv-a", "globalmount")
	second := filepath.Join(r.staging, "pv-b", "globalmount")
	_, err := r.node.NodeStageVolume(ctx, stageReq(first, "vol-1", mountCap(), validContext()))
	mustOK(t, err)
	v, _ := r.d.Volume("vol-1")
	// What the old plugin did for the second stage: mount again, record the
	// second path.
	mustOK(t, os.MkdirAll(second, 0o750))
	mustOK(t, r.mounter.Mount(v.Device, second, "ext4", nil))
	mustOK(t, r.d.MarkStaged("vol-1", second, false))

	_, err = r.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: first})
	mustOK(t, err)
	if got := r.mountPaths(); !slices.Equal(got, []string{second}) {
		t.Errorf("mounts %q after the first unstage, want only %s", got, second)
	}
	if got, ok := r.d.Volume("vol-1"); !ok || got.StagingPath != second {
		t.Fatalf("after the first unstage: %+v (known %v), want staged at %s", got, ok, second)
	}
	_, err = r.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: second})
	mustOK(t, err)
	if got := r.mountPaths(); len(got) != 0 {
		t.Errorf("mounts %q after both unstages, want none", got)
	}
	if got := r.conn.connected(t); len(got) != 0 {
		t.Errorf("controllers %v still connected after both unstages, want none", got)
	}
}
