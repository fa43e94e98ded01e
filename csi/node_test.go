package csi

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/srvlab/rds-csi/daemon"
)

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code %v (%v), want %v", got, err, want)
	}
}

func TestMountLifecycle(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "pods", "target")
	vc := validContext()
	vc[KeyMountOptions] = "noatime"

	for range 2 { // idempotent
		_, err := e.node.NodeStageVolume(ctx, stageReq(staging, "vol-1", mountCap(), vc))
		mustOK(t, err)
	}
	cmds := e.exec.commands()
	if n := countPrefix(cmds, "mkfs.ext4"); n != 1 {
		t.Errorf("mkfs.ext4 ran %d times, want 1: %q", n, cmds)
	}
	v := e.vols.snapshot()["vol-1"]
	if !v.staged || v.stagingPath != staging || v.block {
		t.Errorf("daemon state %+v, want staged at %s", v, staging)
	}
	if got := v.spec.Options; got.HostNQN != testHost.NQN || got.HostID != testHost.ID {
		t.Errorf("spec host identity %q %q, want the node's", got.HostNQN, got.HostID)
	}
	mp, ok, _ := e.node.mountEntry(staging)
	if !ok || mp.Source != "/dev/nvme0n1" || mp.FSType != "ext4" || !slices.Contains(mp.Options, "noatime") {
		t.Errorf("staging mount %+v, want /dev/nvme0n1 ext4 with noatime", mp)
	}

	pub := &csi.NodePublishVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging, TargetPath: target, VolumeCapability: mountCap()}
	for range 2 {
		_, err := e.node.NodePublishVolume(ctx, pub)
		mustOK(t, err)
	}
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
		t.Fatalf("target not a directory: %v", err)
	}
	// Same target, other readonly flag: AlreadyExists.
	ro := proto.Clone(pub).(*csi.NodePublishVolumeRequest)
	ro.Readonly = true
	_, err := e.node.NodePublishVolume(ctx, ro)
	wantCode(t, err, codes.AlreadyExists)

	stats, err := e.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "vol-1", VolumePath: target})
	mustOK(t, err)
	if len(stats.GetUsage()) != 2 || stats.GetUsage()[1].GetUnit() != csi.VolumeUsage_INODES {
		t.Errorf("usage %v, want bytes and inodes", stats.GetUsage())
	}

	exp, err := e.node.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "vol-1", VolumePath: target,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 15 << 30}})
	mustOK(t, err)
	if exp.GetCapacityBytes() != 20<<30 {
		t.Errorf("capacity %d, want %d", exp.GetCapacityBytes(), int64(20<<30))
	}
	if !slices.Contains(e.rescan.devices, "/dev/nvme0n1") || countPrefix(e.exec.commands(), "resize2fs /dev/nvme0n1") != 1 {
		t.Errorf("rescans %q, commands %q: want a rescan and resize2fs of /dev/nvme0n1", e.rescan.devices, e.exec.commands())
	}

	for range 2 {
		_, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: target})
		mustOK(t, err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("target still exists: %v", err)
	}
	for range 2 {
		_, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging})
		mustOK(t, err)
	}
	if len(e.mountPaths()) != 0 || len(e.vols.snapshot()) != 0 {
		t.Errorf("left behind: mounts %v, volumes %v", e.mountPaths(), e.vols.snapshot())
	}
}

func TestBlockLifecycle(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "publish", "pod-1")

	for range 2 {
		_, err := e.node.NodeStageVolume(ctx, stageReq(staging, "vol-b", blockCap(), validContext()))
		mustOK(t, err)
	}
	if n := countPrefix(e.exec.commands(), "mkfs"); n != 0 {
		t.Errorf("a block volume was formatted: %q", e.exec.commands())
	}
	devFile := filepath.Join(staging, BlockDeviceFile)
	mp, ok, _ := e.node.mountEntry(devFile)
	if !ok || mp.Source != "/dev/nvme0n1" {
		t.Fatalf("device file mount %+v, want /dev/nvme0n1 bound on %s", mp, devFile)
	}
	if v := e.vols.snapshot()["vol-b"]; !v.staged || !v.block {
		t.Errorf("daemon state %+v, want staged block", v)
	}

	pub := &csi.NodePublishVolumeRequest{VolumeId: "vol-b", StagingTargetPath: staging, TargetPath: target, VolumeCapability: blockCap(), Readonly: true}
	for range 2 {
		_, err := e.node.NodePublishVolume(ctx, pub)
		mustOK(t, err)
	}
	if fi, err := os.Stat(target); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("block target is not a file: %v", err)
	}
	mp, _, _ = e.node.mountEntry(target)
	if mp.Source != "/dev/nvme0n1" || !slices.Contains(mp.Options, "ro") {
		t.Errorf("target mount %+v, want /dev/nvme0n1 read-only", mp)
	}
	stats, err := e.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "vol-b", VolumePath: target})
	mustOK(t, err)
	if len(stats.GetUsage()) != 1 || stats.GetUsage()[0].GetTotal() != 20<<30 {
		t.Errorf("usage %v, want one bytes entry of the device size", stats.GetUsage())
	}
	_, err = e.node.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "vol-b", VolumePath: target, VolumeCapability: blockCap()})
	mustOK(t, err)
	if countPrefix(e.exec.commands(), "resize2fs") != 0 {
		t.Error("resize2fs ran for a block volume")
	}

	_, err = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-b", TargetPath: target})
	mustOK(t, err)
	for range 2 {
		_, err = e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-b", StagingTargetPath: staging})
		mustOK(t, err)
	}
	if len(e.mountPaths()) != 0 || len(e.vols.snapshot()) != 0 {
		t.Errorf("left behind: mounts %v, volumes %v", e.mountPaths(), e.vols.snapshot())
	}
	if _, err := os.Stat(devFile); !os.IsNotExist(err) {
		t.Errorf("device file still exists: %v", err)
	}
}

// A filesystem may hold a file named like BlockDeviceFile: unstage must
// unmount the filesystem, not delete the user's file.
func TestUnstageMountWithDeviceNamedFile(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	staging := filepath.Join(t.TempDir(), "staging")
	_, err := e.node.NodeStageVolume(ctx, stageReq(staging, "vol-1", mountCap(), validContext()))
	mustOK(t, err)
	userFile := filepath.Join(staging, BlockDeviceFile)
	writeFile(t, userFile, "user data")
	_, err = e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging})
	// The fake mounter does not really mount, so the directory is not
	// empty after the unmount and cannot be removed; what matters is that
	// the file survived and the staging mount is gone.
	_ = err
	if _, err := os.Stat(userFile); err != nil {
		t.Errorf("user file removed: %v", err)
	}
	if slices.Contains(e.mountPaths(), staging) {
		t.Error("staging path still mounted")
	}
}

func TestPublishNotStaged(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	_, err := e.node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: "vol-1", StagingTargetPath: filepath.Join(dir, "staging"), TargetPath: filepath.Join(dir, "t"), VolumeCapability: mountCap(),
	})
	wantCode(t, err, codes.FailedPrecondition)
	_, err = e.node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: "vol-1", TargetPath: filepath.Join(dir, "t"), VolumeCapability: mountCap(),
	})
	wantCode(t, err, codes.FailedPrecondition)
}

func TestStageRequestValidation(t *testing.T) {
	staging := t.TempDir()
	multi := mountCap()
	multi.AccessMode.Mode = csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	badFS := mountCap()
	badFS.GetMount().FsType = "ntfs"
	noMode := mountCap()
	noMode.AccessMode = nil
	noType := &csi.VolumeCapability{AccessMode: mountCap().AccessMode}
	tests := []struct {
		name string
		req  *csi.NodeStageVolumeRequest
		want codes.Code
	}{
		{"no volume id", stageReq(staging, "", mountCap(), validContext()), codes.InvalidArgument},
		{"no staging path", stageReq("", "vol-1", mountCap(), validContext()), codes.InvalidArgument},
		{"relative staging path", stageReq("rel/path", "vol-1", mountCap(), validContext()), codes.InvalidArgument},
		{"no capability", stageReq(staging, "vol-1", nil, validContext()), codes.InvalidArgument},
		{"no access mode", stageReq(staging, "vol-1", noMode, validContext()), codes.InvalidArgument},
		{"no access type", stageReq(staging, "vol-1", noType, validContext()), codes.InvalidArgument},
		{"unsupported fs", stageReq(staging, "vol-1", badFS, validContext()), codes.InvalidArgument},
		{"multi-node writer filesystem", stageReq(staging, "vol-1", multi, validContext()), codes.FailedPrecondition},
		{"no context", stageReq(staging, "vol-1", mountCap(), nil), codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			_, err := e.node.NodeStageVolume(context.Background(), tc.req)
			wantCode(t, err, tc.want)
			if e.vols.attachCount() != 0 {
				t.Error("Attach called for an invalid request")
			}
		})
	}
}

func TestStageCapabilityFSTypeWins(t *testing.T) {
	e := newTestEnv(t)
	c := mountCap()
	c.GetMount().FsType = "xfs"
	vc := validContext()
	vc[KeyFSType] = "ext4"
	staging := filepath.Join(t.TempDir(), "s")
	_, err := e.node.NodeStageVolume(context.Background(), stageReq(staging, "vol-1", c, vc))
	mustOK(t, err)
	if countPrefix(e.exec.commands(), "mkfs.xfs") != 1 {
		t.Errorf("commands %q, want mkfs.xfs", e.exec.commands())
	}
}

func TestStageAnotherDeviceOnStagingPath(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	staging := filepath.Join(t.TempDir(), "s")
	_, err := e.node.NodeStageVolume(ctx, stageReq(staging, "vol-1", mountCap(), validContext()))
	mustOK(t, err)
	_, err = e.node.NodeStageVolume(ctx, stageReq(staging, "vol-2", mountCap(), validContext()))
	wantCode(t, err, codes.AlreadyExists)
	if _, ok := e.vols.snapshot()["vol-2"]; ok {
		t.Error("vol-2 still attached after the failed stage (no rollback)")
	}
	if _, ok := e.vols.snapshot()["vol-1"]; !ok {
		t.Error("vol-1 lost")
	}
}

func TestInflightAborted(t *testing.T) {
	e := newTestEnv(t)
	release, err := e.node.claim("vol-1")
	mustOK(t, err)
	_, err = e.node.NodeStageVolume(context.Background(), stageReq(t.TempDir(), "vol-1", mountCap(), validContext()))
	wantCode(t, err, codes.Aborted)
	_, err = e.node.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: t.TempDir()})
	wantCode(t, err, codes.Aborted)
	release()
	_, err = e.node.NodeStageVolume(context.Background(), stageReq(filepath.Join(t.TempDir(), "s"), "vol-1", mountCap(), validContext()))
	mustOK(t, err)
}

func TestVolumeHealth(t *testing.T) {
	e := newTestEnv(t)
	e.vols.health["ok"] = daemon.VolumeHealth{Condition: daemon.Healthy}
	e.vols.health["deg"] = daemon.VolumeHealth{Condition: daemon.Degraded, Reason: "PathDown", Message: "1 of 2 paths down"}
	e.vols.health["down"] = daemon.VolumeHealth{Condition: daemon.Inaccessible, Reason: "ControllerConnecting", Message: "nvme3 connecting for 42s"}
	tests := []struct {
		id   string
		want *csi.VolumeHealth
		code codes.Code
	}{
		{"ok", &csi.VolumeHealth{VolumeId: "ok"}, codes.OK},
		{"deg", &csi.VolumeHealth{VolumeId: "deg", HealthStatuses: []*csi.VolumeHealth_VolumeHealthEntry{
			{Status: csi.VolumeHealthErrorType_DEGRADED, Reason: "PathDown", Message: "1 of 2 paths down"}}}, codes.OK},
		{"down", &csi.VolumeHealth{VolumeId: "down", HealthStatuses: []*csi.VolumeHealth_VolumeHealthEntry{
			{Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: "ControllerConnecting", Message: "nvme3 connecting for 42s"}}}, codes.OK},
		{"unknown", nil, codes.NotFound},
		{"", nil, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			resp, err := e.node.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: tc.id})
			wantCode(t, err, tc.code)
			if diff := cmp.Diff(tc.want, resp.GetVolumeHealth(), protocmp.Transform()); diff != "" {
				t.Errorf("health (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStorageHealth(t *testing.T) {
	e := newTestEnv(t)
	e.vols.targets = []daemon.TargetHealth{
		{Traddr: "10.0.0.1", Trsvcid: "4420", Condition: daemon.Healthy},
		{Traddr: "10.0.0.2", Trsvcid: "4420", Condition: daemon.Inaccessible, Reason: "TargetUnreachable", Message: "connection refused", Controllers: []string{"nvme1", "nvme2"}},
		{Traddr: "fd00::3", Trsvcid: "4420", Condition: daemon.Inaccessible, Reason: "TargetUnreachable", Message: "connection refused"},
		{Traddr: "10.0.0.4", Trsvcid: "4420", Condition: daemon.Degraded, Reason: "PathsDown"},
	}
	resp, err := e.node.NodeGetStorageHealth(context.Background(), &csi.NodeGetStorageHealthRequest{})
	mustOK(t, err)
	want := []*csi.NodeGetStorageHealthResponse_StorageBackendHealth{
		{Status: csi.StorageHealthErrorType_STORAGE_UNREACHABLE, Reason: "TargetUnreachable",
			Message: "10.0.0.2:4420: connection refused (controllers nvme1, nvme2); [fd00::3]:4420: connection refused"},
		{Status: csi.StorageHealthErrorType_STORAGE_DEGRADED, Reason: "PathsDown", Message: "10.0.0.4:4420"},
	}
	if diff := cmp.Diff(want, resp.GetBackendHealth(), protocmp.Transform()); diff != "" {
		t.Errorf("backend health (-want +got):\n%s", diff)
	}
}

func TestNodeGetCapabilities(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.node.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	mustOK(t, err)
	var got []string
	for _, c := range resp.GetCapabilities() {
		got = append(got, c.GetRpc().GetType().String())
	}
	slices.Sort(got)
	want := []string{"EXPAND_VOLUME", "GET_STORAGE_HEALTH", "GET_VOLUME_HEALTH", "GET_VOLUME_STATS", "STAGE_UNSTAGE_VOLUME"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("capabilities (-want +got):\n%s", diff)
	}
}

func TestStatsNotFound(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	for _, p := range []string{"some/path", filepath.Join(dir, "missing"), dir} {
		_, err := e.node.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: p})
		wantCode(t, err, codes.NotFound)
	}
}

// TestConcurrentStageUnstage: 50 goroutines stage and unstage 10 volumes;
// busy volumes answer Aborted. At the end the mount table and the daemon
// agree for every volume, and unstaging everything leaves nothing behind.
func TestConcurrentStageUnstage(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	const volumes, workers, rounds = 10, 50, 20
	staging := func(v int) string { return filepath.Join(dir, fmt.Sprintf("staging-%d", v)) }
	id := func(v int) string { return fmt.Sprintf("vol-%d", v) }

	var wg sync.WaitGroup
	var mu sync.Mutex
	unexpected := map[codes.Code]int{}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				v := (w + r) % volumes
				var err error
				if (w/volumes+r)%2 == 0 {
					_, err = e.node.NodeStageVolume(ctx, stageReq(staging(v), id(v), mountCap(), validContext()))
				} else {
					_, err = e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id(v), StagingTargetPath: staging(v)})
				}
				if c := status.Code(err); c != codes.OK && c != codes.Aborted {
					mu.Lock()
					unexpected[c]++
					mu.Unlock()
					t.Errorf("volume %s: %v", id(v), err)
				}
			}
		}()
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatalf("unexpected codes: %v", unexpected)
	}

	vols := e.vols.snapshot()
	mps, _ := e.mounter.List()
	for v := range volumes {
		n := 0
		for _, mp := range mps {
			if mp.Path == staging(v) {
				n++
			}
		}
		st, attached := vols[id(v)]
		if n > 1 {
			t.Errorf("%s mounted %d times", staging(v), n)
		}
		if (n == 1) != (attached && st.staged) {
			t.Errorf("%s: mounted=%t but daemon attached=%t staged=%t", id(v), n == 1, attached, st.staged)
		}
	}
	for v := range volumes {
		_, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id(v), StagingTargetPath: staging(v)})
		mustOK(t, err)
	}
	if len(e.mountPaths()) != 0 || len(e.vols.snapshot()) != 0 {
		t.Errorf("left behind: mounts %v, volumes %v", e.mountPaths(), e.vols.snapshot())
	}
}

func countPrefix(cmds []string, prefix string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}
