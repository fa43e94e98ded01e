//go:build linux

package kerneltest

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/e2e/guestenv"
	"github.com/srvlab/rds-csi/sysfs"
)

// guestMounted reports whether the guest path p (the daemon's view: /run/...)
// is a mount point, from the guest's own mount table (not the code under
// test).
func guestMounted(t *testing.T, p string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	must(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == guestenv.Path(p) {
			return true
		}
	}
	must(t, sc.Err())
	return false
}

// TestNodeOwnership makes hostile and mistaken calls against the real
// binary with real ext4 and block staging on nvmet: the node must not mount
// through symlinks, bind a volume it never staged (or from another volume's
// staging path), unmount or delete what it did not make, or re-stage a
// volume with the other access type at the same path. Afterwards the
// ordinary publish/unpublish/unstage still works and the controllers go.
func TestNodeOwnership(t *testing.T) {
	tg := target(t)
	nqnM, portM := simpleTarget(t, tg, "own-m")
	nqnB, portB := simpleTarget(t, tg, "own-b")
	must(t, guestenv.Prepare())
	const root = "/run/own"
	var (
		sm, sb    = root + "/staging/m", root + "/staging/b"
		devFile   = sb + "/rds-csi-device"
		foreign   = root + "/foreign"
		victim    = root + "/victim"
		tm, tb    = root + "/pods/m/mount", root + "/pods/b/dev"
		link      = root + "/pods/link"
		stageLink = root + "/staging/link"
		precious  = root + "/precious"
	)
	for _, d := range []string{sm, sb, foreign, victim, filepath.Dir(tm), filepath.Dir(tb)} {
		must(t, os.MkdirAll(guestenv.Path(d), 0o750))
	}
	// No file system stays mounted on the targets' disks once they go.
	t.Cleanup(func() {
		for _, p := range []string{tm, tb, sm, devFile, foreign} {
			for guestMounted(t, p) {
				if err := syscall.Unmount(guestenv.Path(p), syscall.MNT_DETACH); err != nil {
					t.Errorf("cleanup unmount %s: %v", p, err)
					break
				}
			}
		}
	})
	must(t, syscall.Mount("tmpfs", guestenv.Path(foreign), "tmpfs", 0, "size=1m"))
	must(t, os.WriteFile(guestenv.Path(foreign+"/keep"), []byte("foreign"), 0o640))
	must(t, os.WriteFile(guestenv.Path(victim+"/keep"), []byte("victim"), 0o640))
	must(t, os.WriteFile(guestenv.Path(precious), []byte("precious"), 0o640))

	_, ep := startRDSCSI(t, "own")
	conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	node := csipb.NewNodeClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	mode := &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}
	fsCap := &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{FsType: "ext4"}}, AccessMode: mode}
	blockCap := &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}}, AccessMode: mode}
	stage := func(id, path string, c *csipb.VolumeCapability, nqn string, port int) error {
		_, err := node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{
			VolumeId: id, StagingTargetPath: path, VolumeCapability: c,
			VolumeContext: map[string]string{"nvmeAddress": "127.0.0.1", "nvmePort": strconv.Itoa(port), "nqn": nqn},
		})
		return err
	}
	publish := func(id, staging, target string, c *csipb.VolumeCapability) error {
		_, err := node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: c})
		return err
	}
	unpublish := func(id, target string) error {
		_, err := node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
		return err
	}
	unstage := func(id, path string) error {
		_, err := node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: path})
		return err
	}
	want := func(what string, err error, code codes.Code) {
		t.Helper()
		if got := status.Code(err); got != code {
			t.Errorf("%s: code %v (%v), want %v", what, got, err, code)
		}
	}
	stillMounted := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			if !guestMounted(t, p) {
				t.Fatalf("%s is no longer mounted", p)
			}
		}
	}
	notMounted := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			if guestMounted(t, p) {
				t.Errorf("%s was mounted", p)
			}
		}
	}

	must(t, stage("vol-m", sm, fsCap, nqnM, portM))
	must(t, stage("vol-b", sb, blockCap, nqnB, portB))
	stillMounted(sm, devFile)

	// Publish: never staged (staging "/"), another volume's staging path,
	// the other access type, a symlinked target, occupied targets.
	want("publish never-staged volume from /", publish("vol-never", "/", tm, fsCap), codes.FailedPrecondition)
	want("publish vol-m from vol-b's staging path", publish("vol-m", sb, tb, blockCap), codes.FailedPrecondition)
	want("publish vol-m as block", publish("vol-m", sm, tb, blockCap), codes.FailedPrecondition)
	must(t, os.Symlink(victim, guestenv.Path(link)))
	want("publish onto a symlink", publish("vol-m", sm, link, fsCap), codes.FailedPrecondition)
	want("publish block onto a non-empty file", publish("vol-b", sb, precious, blockCap), codes.FailedPrecondition)
	want("publish onto a non-empty directory", publish("vol-m", sm, victim, fsCap), codes.FailedPrecondition)
	notMounted(tm, tb, victim, precious, "/")

	// Unpublish and unstage leave foreign mounts, other volumes' mounts,
	// symlinks and regular files alone.
	want("unpublish a foreign mount", unpublish("vol-m", foreign), codes.FailedPrecondition)
	want("unpublish vol-b's staging mount as vol-m", unpublish("vol-m", devFile), codes.FailedPrecondition)
	must(t, os.Symlink(sm, guestenv.Path(stageLink)))
	want("unpublish through a symlink", unpublish("vol-m", stageLink), codes.FailedPrecondition)
	want("unpublish a regular file", unpublish("vol-m", precious), codes.OK)
	want("unstage an unknown volume at vol-m's staging path", unstage("vol-unknown", sm), codes.FailedPrecondition)
	want("unstage vol-b at vol-m's staging path", unstage("vol-b", sm), codes.FailedPrecondition)
	want("unstage vol-m at vol-b's staging path", unstage("vol-m", sb), codes.FailedPrecondition)
	want("unstage a foreign mount", unstage("vol-m", foreign), codes.FailedPrecondition)
	want("unstage through a symlink", unstage("vol-m", stageLink), codes.FailedPrecondition)
	stillMounted(sm, devFile, foreign)
	for p, content := range map[string]string{precious: "precious", foreign + "/keep": "foreign", victim + "/keep": "victim"} {
		if b, err := os.ReadFile(guestenv.Path(p)); err != nil || string(b) != content {
			t.Errorf("%s: %q, %v; want it untouched", p, b, err)
		}
	}

	// The other access type at the same staging path, either way.
	want("re-stage vol-m as block", stage("vol-m", sm, blockCap, nqnM, portM), codes.AlreadyExists)
	want("re-stage vol-b as a filesystem", stage("vol-b", sb, fsCap, nqnB, portB), codes.AlreadyExists)
	notMounted(sm + "/rds-csi-device")
	if guestMounted(t, sb) {
		t.Errorf("%s was mounted", sb)
	}

	// The ordinary path still works, and everything goes.
	must(t, publish("vol-m", sm, tm, fsCap))
	must(t, publish("vol-b", sb, tb, blockCap))
	stillMounted(tm, tb)
	must(t, unpublish("vol-m", tm))
	must(t, unpublish("vol-b", tb))
	notMounted(tm, tb)
	for _, p := range []string{tm, tb} {
		if _, err := os.Lstat(guestenv.Path(p)); !os.IsNotExist(err) {
			t.Errorf("target %s left behind: %v", p, err)
		}
	}
	must(t, unstage("vol-m", sm))
	must(t, unstage("vol-b", sb))
	notMounted(sm, devFile)
	fs := sysfs.NewFS("/sys")
	cs, err := fs.Controllers()
	must(t, err)
	for _, c := range cs {
		if c.SubsysNQN == nqnM || c.SubsysNQN == nqnB {
			t.Errorf("controller %s (%s) left after unstage", c.Name, c.SubsysNQN)
		}
	}
}
