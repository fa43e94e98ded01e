//go:build linux

package kerneltest

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/e2e/guestenv"
	"github.com/srvlab/rds-csi/sysfs"
)

// TestBinaryKilledMidStage: the real binary is killed with SIGKILL once its
// NodeStageVolume has created the controller (while it waits for the disk,
// formats or mounts); a new instance on the same state directory adopts the
// controller, the retried stage succeeds on it, and unstage removes it.
func TestBinaryKilledMidStage(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "killed")
	staging := "/run/killed/staging/globalmount"
	must(t, guestenv.Prepare())
	must(t, os.MkdirAll(guestenv.Path(staging), 0o750))
	// Whatever happens, no file system stays mounted on the target's disk
	// once the target goes (the guest's final sync would wait for it).
	t.Cleanup(func() { _ = syscall.Unmount(guestenv.Path(staging), syscall.MNT_DETACH) })
	req := &csipb.NodeStageVolumeRequest{
		VolumeId:          "vol-killed",
		StagingTargetPath: staging,
		VolumeCapability: &csipb.VolumeCapability{
			AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{FsType: "ext4"}},
			AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		},
		VolumeContext: map[string]string{"nvmeAddress": "127.0.0.1", "nvmePort": strconv.Itoa(port), "nqn": nqn},
	}
	fs := sysfs.NewFS("/sys")
	ours := func() []string {
		cs, err := fs.Controllers()
		must(t, err)
		var names []string
		for _, c := range cs {
			if c.SubsysNQN == nqn {
				names = append(names, c.Name)
			}
		}
		return names
	}
	node := func(endpoint string) csipb.NodeClient {
		conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
		must(t, err)
		t.Cleanup(func() { conn.Close() })
		return csipb.NewNodeClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	first, ep := startRDSCSI(t, "killed")
	done := make(chan error, 1)
	go func() {
		_, err := node(ep).NodeStageVolume(ctx, req)
		done <- err
	}()
	// Kill once the connect write has returned and the namespace's disk is
	// there: the stage is then formatting or mounting. (A kill during the
	// write itself makes the kernel abandon the connect.)
	eventually(t, 20*time.Second, "the stage's controller and disk", func() (bool, string) {
		_, err := fs.FindNamespace(nqn, 1)
		return len(ours()) == 1 && err == nil, "not yet"
	})
	must(t, first.Stop(syscall.SIGKILL, 5*time.Second))
	if err := <-done; err == nil {
		t.Log("the stage finished before the kill landed: the retry below is then a repeat stage")
	} else {
		t.Logf("stage interrupted by SIGKILL: %v", err)
	}
	before := ours()
	if len(before) != 1 {
		t.Fatalf("after the kill the kernel has controllers %v for the volume, want the one the stage made", before)
	}

	_, ep = startRDSCSI(t, "killed")
	if _, err := node(ep).NodeStageVolume(ctx, req); err != nil {
		t.Fatalf("stage retried after the restart: %v", err)
	}
	if after := ours(); len(after) != 1 || after[0] != before[0] {
		t.Fatalf("controllers after the retried stage %v, want the adopted %v", ours(), before)
	}
	if _, err := node(ep).NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: "vol-killed", StagingTargetPath: staging}); err != nil {
		t.Fatalf("unstage: %v", err)
	}
	if left := ours(); len(left) != 0 {
		t.Errorf("controllers left after unstage: %v", left)
	}
}
