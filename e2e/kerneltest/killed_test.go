//go:build linux

package kerneltest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/e2e/guestenv"
	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/sysfs"
)

// TestBinaryKilledMidStage: the real binary is killed with SIGKILL once its
// NodeStageVolume has created the controller (while it waits for the disk,
// formats or mounts); a new instance on the same state directory adopts the
// controller, the retried stage succeeds on it, and unstage removes it.
func TestBinaryKilledMidStage(t *testing.T) { killedMidStage(t, false) }

// TestBinaryKilledMidStageMultipath: the same with a volume on two
// addresses (issue #17), killed once both paths' controllers and the disk
// are there: the new instance adopts both (the retried stage makes no new
// controller), and unstage removes both.
func TestBinaryKilledMidStageMultipath(t *testing.T) {
	if !nativeMultipath() {
		t.Skip("native multipath is off in this boot")
	}
	killedMidStage(t, true)
}

func killedMidStage(t *testing.T, multipath bool) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "killed")
	paths := 1
	vc := map[string]string{"nvmeAddress": "127.0.0.1", "nvmePort": strconv.Itoa(port), "nqn": nqn}
	if multipath {
		id2 := nextPort()
		must(t, tg.AddPort(nvmet.Port{ID: id2, Traddr: secondAddr, Trsvcid: port}))
		must(t, tg.Link(id2, nqn))
		vc["nvmeAddresses"] = "127.0.0.1," + secondAddr
		paths = 2
	}
	name := "killed"
	if multipath {
		name = "killed-mp"
	}
	staging := "/run/" + name + "/staging/globalmount"
	must(t, guestenv.Prepare())
	must(t, os.MkdirAll(guestenv.Path(staging), 0o750))
	// Whatever happens, no file system stays mounted on the target's disk
	// once the target goes (the guest's final sync would wait for it).
	t.Cleanup(func() { _ = syscall.Unmount(guestenv.Path(staging), syscall.MNT_DETACH) })
	req := &csipb.NodeStageVolumeRequest{
		VolumeId:          "vol-" + name,
		StagingTargetPath: staging,
		VolumeCapability: &csipb.VolumeCapability{
			AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{FsType: "ext4"}},
			AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		},
		VolumeContext: vc,
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

	first, ep := startRDSCSI(t, name)
	done := make(chan error, 1)
	go func() {
		_, err := node(ep).NodeStageVolume(ctx, req)
		done <- err
	}()
	// Kill once every connect write has returned and the namespace's disk
	// is there: the stage is then formatting or mounting. (A kill during a
	// write makes the kernel abandon that connect. A controller shows in
	// sysfs while its write is still running, so wait for it to be live:
	// with two paths the second connects in the background, and the CI run
	// of 2026-12-02 killed it mid-write on 6.12.)
	eventually(t, 20*time.Second, "the stage's controllers live and its disk", func() (bool, string) {
		cs, err := fs.Controllers()
		must(t, err)
		live := 0
		for _, c := range cs {
			if c.SubsysNQN == nqn && c.State == sysfs.StateLive {
				live++
			}
		}
		_, err = fs.FindNamespace(nqn, 1)
		return live == paths && err == nil, fmt.Sprintf("%d of %d controllers live, disk: %v", live, paths, err)
	})
	must(t, first.Stop(syscall.SIGKILL, 5*time.Second))
	if err := <-done; err == nil {
		t.Log("the stage finished before the kill landed: the retry below is then a repeat stage")
	} else {
		t.Logf("stage interrupted by SIGKILL: %v", err)
	}
	before := ours()
	if len(before) != paths {
		t.Fatalf("after the kill the kernel has controllers %v for the volume, want the %d the stage made", before, paths)
	}

	_, ep = startRDSCSI(t, name)
	if _, err := node(ep).NodeStageVolume(ctx, req); err != nil {
		t.Fatalf("stage retried after the restart: %v", err)
	}
	if after := ours(); !slices.Equal(after, before) {
		t.Fatalf("controllers after the retried stage %v, want the adopted %v", after, before)
	}
	if _, err := node(ep).NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: "vol-" + name, StagingTargetPath: staging}); err != nil {
		t.Fatalf("unstage: %v", err)
	}
	if left := ours(); len(left) != 0 {
		t.Errorf("controllers left after unstage: %v", left)
	}
}
