//go:build linux

package kerneltest

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/e2e/guestenv"
	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/routeros/rdstest"
	"github.com/srvlab/rds-csi/sysfs"
)

var _ rdstest.Backend = (*nvmet.FileBackend)(nil)

// emulatorVolumeDir is the RouterOS directory of the lab's backing files.
const emulatorVolumeDir = "/storage-pool/rds-csi"

// startEmulator starts the RDS emulator on 127.0.0.1 with the nvmet
// backend: real sparse files under a guest tmpfs directory, one nvmet
// subsystem per exported disk, on 127.0.0.1 and the extra addresses given.
// It returns the server, the backend and the directory that holds the
// RouterOS filesystem.
func startEmulator(t *testing.T, tg *nvmet.Target, extraAddrs ...string) (*rdstest.Server, *nvmet.FileBackend, string) {
	t.Helper()
	dir := t.TempDir()
	be := tg.FileBackend(dir, append([]string{"127.0.0.1"}, extraAddrs...)...)
	t.Cleanup(func() {
		if err := be.Close(); err != nil {
			t.Errorf("emulator backend cleanup: %v", err)
		}
	})
	srv, err := rdstest.Start(rdstest.Options{Backend: be})
	must(t, err)
	t.Cleanup(func() { srv.Close() })
	return srv, be, dir
}

// startControllerBinary runs the real rds-csi binary with --mode=controller
// against the emulator (startControllerDaemon) and returns a Controller
// client.
func startControllerBinary(t *testing.T, name string, srv *rdstest.Server) csipb.ControllerClient {
	t.Helper()
	conn, err := grpc.NewClient(startControllerDaemon(t, name, srv), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	return csipb.NewControllerClient(conn)
}

// startControllerDaemon runs the real rds-csi binary with --mode=controller
// against the emulator (chrooted like the node daemon; its key and
// known_hosts on the guest's /run) and returns its endpoint as the guest
// sees it.
func startControllerDaemon(t *testing.T, name string, srv *rdstest.Server) string {
	t.Helper()
	bin := rdsCSIBinary(t)
	must(t, guestenv.Prepare())
	dir := "/run/" + name
	must(t, os.MkdirAll(guestenv.Path(dir), 0o700))
	must(t, os.WriteFile(guestenv.Path(dir+"/key"), srv.ClientKeyPEM(), 0o600))
	must(t, os.WriteFile(guestenv.Path(dir+"/known_hosts"), srv.KnownHosts(), 0o600))
	sock := dir + "/csi.sock"
	_ = os.Remove(guestenv.Path(sock))
	d, err := guestenv.Start(bin, "--mode", "controller", "--endpoint", "unix://"+sock,
		"--rds-address", srv.Addr(), "--rds-user", srv.User(), "--rds-key-file", dir+"/key",
		"--rds-known-hosts-file", dir+"/known_hosts", "--volume-dir", emulatorVolumeDir,
		"--log-format", "text", "--log-level", "debug")
	must(t, err)
	t.Cleanup(func() {
		if err := d.Stop(syscall.SIGTERM, 15*time.Second); err != nil {
			t.Errorf("rds-csi controller stop: %v", err)
		}
		if t.Failed() {
			t.Logf("rds-csi controller log:\n%s", d.Logs())
		}
	})
	eventually(t, 20*time.Second, "rds-csi controller socket", func() (bool, string) {
		if d.Exited() {
			t.Fatalf("rds-csi controller exited:\n%s", d.Logs())
		}
		return guestenv.Exists(sock), sock
	})
	return "unix://" + guestenv.Path(sock)
}

// TestEmulatorSeedFlow is the seed's flow end to end on the real binaries
// (controller and node) and the nvmet-backed emulator: CreateVolume with
// StorageClass parameters -> NodeStageVolume with exactly the returned
// VolumeContext -> the kernel controller's ctrl_loss_tmo and
// reconnect_delay are the StorageClass's -> data written -> published to
// the node, DeleteVolume refused while it is (the data and the export
// stay) -> snapshot (a real
// file copy) -> restore into a new volume, staged: the data identical ->
// expand (the file grows, nvmet tells the host, the node grows ext4) -> data
// intact -> unstage and delete: no disk, no file, no nvmet subsystem left.
func TestEmulatorSeedFlow(t *testing.T) {
	tg := target(t)
	srv, be, dir := startEmulator(t, tg)
	ctrl := startControllerBinary(t, "seedctl", srv)
	_, ep := startRDSCSI(t, "seed")
	node := nodeClient(t, ep)
	fs := sysfs.NewFS("/sys")
	port := nextPort()

	const size, grown = 64 << 20, 96 << 20
	// reconnectSpread 0: the node writes reconnectDelay exactly (by default
	// it spreads each controller's delay above it).
	params := map[string]string{"nvmePort": strconv.Itoa(port), "ctrlLossTmo": "600", "reconnectDelay": "3", "reconnectSpread": "0"}
	created, err := ctrl.CreateVolume(withTimeout(t, time.Minute), &csipb.CreateVolumeRequest{
		Name:               "pvc-5eed0000-1111-2222-3333-444455556666",
		CapacityRange:      &csipb.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csipb.VolumeCapability{mountCap("ext4")},
		Parameters:         params,
	})
	if err != nil {
		t.Fatalf("CreateVolume: %v", err)
	}
	vol := created.GetVolume()
	nqn := vol.GetVolumeContext()["nqn"]
	t.Logf("CreateVolume: id %s, %d bytes, context %v", vol.GetVolumeId(), vol.GetCapacityBytes(), vol.GetVolumeContext())
	var file string
	for _, d := range srv.Disks() {
		if d.NVMeNQN == nqn {
			file = filepath.Join(dir, d.FilePath)
		}
	}
	if file == "" {
		t.Fatalf("no disk of the emulator exports %s: %+v", nqn, srv.Disks())
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() != size {
		t.Fatalf("backing file %s: %v (size %v), want %d bytes", file, err, fi, size)
	}
	if subs, err := tg.Subsystems(); err != nil || !slices.Contains(subs, nqn) {
		t.Fatalf("nvmet subsystems %v (%v): %s not exported", subs, err, nqn)
	}

	staging := "/run/seed/staging/globalmount"
	must(t, mkdirGuest(staging))
	t.Cleanup(func() { _ = syscall.Unmount(guestenv.Path(staging), syscall.MNT_DETACH) })
	if _, err := node.NodeStageVolume(withTimeout(t, time.Minute), &csipb.NodeStageVolumeRequest{
		VolumeId: vol.GetVolumeId(), StagingTargetPath: staging, VolumeCapability: mountCap("ext4"),
		VolumeContext: vol.GetVolumeContext(),
	}); err != nil {
		t.Fatalf("NodeStageVolume with the returned VolumeContext: %v", err)
	}
	cs, err := fs.Controllers()
	must(t, err)
	var ours []sysfs.Controller
	for _, c := range cs {
		if c.SubsysNQN == nqn {
			ours = append(ours, c)
		}
	}
	if len(ours) != 1 {
		t.Fatalf("controllers of %s: %d, want 1", nqn, len(ours))
	}
	if c := ours[0]; c.CtrlLossTmo != 600 || c.ReconnectDelay != 3 || c.Address.Trsvcid != strconv.Itoa(port) {
		t.Errorf("controller %s: ctrl_loss_tmo %d reconnect_delay %d trsvcid %s, want 600 3 %d (the StorageClass's)",
			c.Name, c.CtrlLossTmo, c.ReconnectDelay, c.Address.Trsvcid, port)
	}

	data := make([]byte, 4<<20)
	_, _ = rand.Read(data)
	dataFile := guestenv.Path(staging + "/data.bin")
	must(t, writeFileSynced(dataFile, data))
	before := statfsBlocks(t, guestenv.Path(staging))

	// Published to this node and staged on it: DeleteVolume is refused
	// (the publish record on the RDS), and the host keeps its volume.
	info, err := node.NodeGetInfo(withTimeout(t, time.Minute), &csipb.NodeGetInfoRequest{})
	must(t, err)
	if _, err := ctrl.ControllerPublishVolume(withTimeout(t, time.Minute), &csipb.ControllerPublishVolumeRequest{
		VolumeId: vol.GetVolumeId(), NodeId: info.GetNodeId(), VolumeCapability: mountCap("ext4"), VolumeContext: vol.GetVolumeContext()}); err != nil {
		t.Fatalf("ControllerPublishVolume to %s: %v", info.GetNodeId(), err)
	}
	if _, err := ctrl.DeleteVolume(withTimeout(t, time.Minute), &csipb.DeleteVolumeRequest{VolumeId: vol.GetVolumeId()}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("DeleteVolume of the published, staged volume: %v, want FailedPrecondition", err)
	}
	if got, err := os.ReadFile(dataFile); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data after the refused delete: %v, equal %v", err, bytes.Equal(got, data))
	}
	if subs, err := tg.Subsystems(); err != nil || !slices.Contains(subs, nqn) {
		t.Fatalf("nvmet subsystems after the refused delete %v (%v): %s gone", subs, err, nqn)
	}

	// Snapshot (a copy of the file), restore it into a new volume (a copy
	// of the snapshot, exported): its filesystem holds the same data.
	snap, err := ctrl.CreateSnapshot(withTimeout(t, time.Minute), &csipb.CreateSnapshotRequest{
		SourceVolumeId: vol.GetVolumeId(), Name: "snapshot-5eed0000-1111-2222-3333-444455556666"})
	if err != nil || !snap.GetSnapshot().GetReadyToUse() {
		t.Fatalf("CreateSnapshot: %v, %v", snap, err)
	}
	restored, err := ctrl.CreateVolume(withTimeout(t, time.Minute), &csipb.CreateVolumeRequest{
		Name: "pvc-5eed0000-1111-2222-3333-777777777777", CapacityRange: &csipb.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csipb.VolumeCapability{mountCap("ext4")}, Parameters: params,
		VolumeContentSource: &csipb.VolumeContentSource{Type: &csipb.VolumeContentSource_Snapshot{
			Snapshot: &csipb.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshot().GetSnapshotId()}}},
	})
	if err != nil {
		t.Fatalf("CreateVolume from the snapshot: %v", err)
	}
	rvol := restored.GetVolume()
	rstaging := "/run/seed/staging/restored"
	must(t, mkdirGuest(rstaging))
	t.Cleanup(func() { _ = syscall.Unmount(guestenv.Path(rstaging), syscall.MNT_DETACH) })
	if _, err := node.NodeStageVolume(withTimeout(t, time.Minute), &csipb.NodeStageVolumeRequest{
		VolumeId: rvol.GetVolumeId(), StagingTargetPath: rstaging, VolumeCapability: mountCap("ext4"),
		VolumeContext: rvol.GetVolumeContext(),
	}); err != nil {
		t.Fatalf("NodeStageVolume of the restored volume: %v", err)
	}
	if got, err := os.ReadFile(guestenv.Path(rstaging + "/data.bin")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("restored volume's data: %v, identical %v", err, bytes.Equal(got, data))
	} else {
		t.Logf("restored volume %s (nqn %s) holds the snapshot's %d bytes, identical", rvol.GetVolumeId(), rvol.GetVolumeContext()["nqn"], len(data))
	}
	if _, err := node.NodeUnstageVolume(withTimeout(t, time.Minute), &csipb.NodeUnstageVolumeRequest{
		VolumeId: rvol.GetVolumeId(), StagingTargetPath: rstaging}); err != nil {
		t.Fatalf("NodeUnstageVolume of the restored volume: %v", err)
	}
	if _, err := ctrl.DeleteVolume(withTimeout(t, time.Minute), &csipb.DeleteVolumeRequest{VolumeId: rvol.GetVolumeId()}); err != nil {
		t.Fatalf("DeleteVolume of the restored volume: %v", err)
	}
	if _, err := ctrl.DeleteSnapshot(withTimeout(t, time.Minute), &csipb.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshot().GetSnapshotId()}); err != nil {
		t.Fatalf("DeleteSnapshot: %v", err)
	}

	exp, err := ctrl.ControllerExpandVolume(withTimeout(t, time.Minute), &csipb.ControllerExpandVolumeRequest{
		VolumeId: vol.GetVolumeId(), CapacityRange: &csipb.CapacityRange{RequiredBytes: grown}, VolumeCapability: mountCap("ext4"),
	})
	if err != nil || exp.GetCapacityBytes() != grown || !exp.GetNodeExpansionRequired() {
		t.Fatalf("ControllerExpandVolume: %v, %v", exp, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() != grown {
		t.Fatalf("backing file after expand: %v (%v), want %d bytes", fi, err, grown)
	}
	if _, err := node.NodeExpandVolume(withTimeout(t, time.Minute), &csipb.NodeExpandVolumeRequest{
		VolumeId: vol.GetVolumeId(), VolumePath: staging, StagingTargetPath: staging,
		CapacityRange: &csipb.CapacityRange{RequiredBytes: grown}, VolumeCapability: mountCap("ext4"),
	}); err != nil {
		t.Fatalf("NodeExpandVolume: %v", err)
	}
	if after := statfsBlocks(t, guestenv.Path(staging)); after < before+(grown-size)/2 {
		t.Errorf("ext4 size %d bytes after expanding %d -> %d, was %d", after, size, grown, before)
	} else {
		t.Logf("ext4 grew from %d to %d bytes", before, after)
	}
	if got, err := os.ReadFile(dataFile); err != nil || !bytes.Equal(got, data) {
		t.Errorf("data after expand: %v, equal %v", err, bytes.Equal(got, data))
	}

	if _, err := node.NodeUnstageVolume(withTimeout(t, time.Minute), &csipb.NodeUnstageVolumeRequest{
		VolumeId: vol.GetVolumeId(), StagingTargetPath: staging}); err != nil {
		t.Fatalf("NodeUnstageVolume: %v", err)
	}
	if _, err := ctrl.ControllerUnpublishVolume(withTimeout(t, time.Minute), &csipb.ControllerUnpublishVolumeRequest{
		VolumeId: vol.GetVolumeId(), NodeId: info.GetNodeId()}); err != nil {
		t.Fatalf("ControllerUnpublishVolume: %v", err)
	}
	if _, err := ctrl.DeleteVolume(withTimeout(t, time.Minute), &csipb.DeleteVolumeRequest{VolumeId: vol.GetVolumeId()}); err != nil {
		t.Fatalf("DeleteVolume: %v", err)
	}
	if d := srv.Disks(); len(d) != 0 {
		t.Errorf("disks left: %+v", d)
	}
	if f := srv.Files(); len(f) != 0 {
		t.Errorf("files left in the emulator: %v", f)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("backing file %s: %v, want it gone", file, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, emulatorVolumeDir, "*")); len(left) != 0 {
		t.Errorf("real files left in the volume directory: %v", left)
	}
	if subs, err := tg.Subsystems(); err != nil || slices.Contains(subs, nqn) || len(be.Exported()) != 0 {
		t.Errorf("nvmet subsystems after delete: %v (%v), backend exports %v", subs, err, be.Exported())
	}
}

// statfsBlocks is the size in bytes of the filesystem mounted at p.
func statfsBlocks(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	must(t, syscall.Statfs(p, &st))
	return int64(st.Blocks) * st.Bsize
}

func writeFileSynced(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
