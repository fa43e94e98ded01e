//go:build linux

package kerneltest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/csi"
	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/e2e/guestenv"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
	"github.com/srvlab/rds-csi/sysfs"
)

// Two host identities of this guest: nodes A and B to the target.
const (
	fenceHostA = "0a0a0a0a-0000-4000-8000-00000000000a"
	fenceHostB = "0b0b0b0b-0000-4000-8000-00000000000b"
)

func fenceNode(name, hostID string) (string, fabrics.Options) {
	nqn := "nqn.2014-08.org.nvmexpress:uuid:" + hostID
	id, _ := csi.FormatNodeID(name, nqn)
	return id, fabrics.Options{HostNQN: nqn, HostID: hostID}
}

// TestFenceStaleWriter is the attach/fence proof, on the real binaries'
// code (the controller in-process, over SSH to the nvmet-backed emulator)
// and the real kernel on both sides. Node A publishes, its daemon attaches
// (ctrl_loss_tmo -1, reconnect_delay 1), makes ext4, writes 1 MiB and syncs; A's path is
// cut (the subsystem unlinked from its port) and A writes and fsyncs a
// marker, which the kernel queues; the volume is unpublished from A and
// published to B (the attach/detach controller after A was force-deleted);
// the path comes back.
//
//   - fenced (targetFencing=true): the target refuses A's reconnect (the
//     kernel logs "not allowed" for A's host NQN; 6.1 goes on retrying,
//     later kernels remove the controller on the refusal), no byte of the
//     marker reaches the disk, A's daemon reports the volume TargetRejected
//     quoting the kernel and counts it, A's fsync fails once A is gone, B (its
//     own host identity) connects, and the disk's ext4 is clean (e2fsck -f
//     -n after journal recovery) with A's synced data intact.
//   - unfenced: A reconnects and its queued marker lands on the disk after
//     B took over: the hazard the fence prevents.
//
// B's side is the disk itself (the backing file), and B connects only after
// A is gone: two controllers of one subsystem in one kernel share a
// multipath head, which would carry A's queued writes over B's path.
func TestFenceStaleWriter(t *testing.T) {
	for _, fenced := range []bool{true, false} {
		name := map[bool]string{true: "fenced", false: "unfenced"}[fenced]
		t.Run(name, func(t *testing.T) { fenceRun(t, name, fenced) })
	}
}

func fenceRun(t *testing.T, name string, fenced bool) {
	tg := target(t)
	must(t, guestenv.Prepare())
	root := "/run/fence-" + name // the chroot's view; guestenv.Path is the guest's
	must(t, os.MkdirAll(guestenv.Path(root), 0o755))
	t.Cleanup(func() { os.RemoveAll(guestenv.Path(root)) })
	be := tg.FileBackend(guestenv.Path(root), "127.0.0.1")
	t.Cleanup(func() {
		if err := be.Close(); err != nil {
			t.Errorf("emulator backend cleanup: %v", err)
		}
	})
	srv, err := rdstest.Start(rdstest.Options{Backend: be})
	must(t, err)
	t.Cleanup(func() { srv.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run, err := routeros.NewSSH(routeros.SSHConfig{Address: srv.Addr(), User: srv.User(),
		PrivateKey: srv.ClientKeyPEM(), KnownHosts: srv.KnownHosts(), Logger: log})
	must(t, err)
	t.Cleanup(func() { run.Close() })
	ctrl, err := csi.NewController(csi.ControllerConfig{Client: routeros.NewClient(run, nil), RDSAddress: srv.Addr(),
		VolumeDir: emulatorVolumeDir, NQNBase: "nqn.2000-02.com.mikrotik", Logger: log})
	must(t, err)
	ctx := context.Background()

	port := nextPort()
	vc := mountCap("ext4")
	vol, err := ctrl.CreateVolume(ctx, &csipb.CreateVolumeRequest{Name: "fence-" + name,
		Parameters:         map[string]string{csi.KeyTargetFencing: map[bool]string{true: "true", false: "false"}[fenced], csi.KeyNVMePort: strconv.Itoa(port)},
		VolumeCapabilities: []*csipb.VolumeCapability{vc}, CapacityRange: &csipb.CapacityRange{RequiredBytes: 32 << 20}})
	must(t, err)
	volID, vctx := vol.GetVolume().GetVolumeId(), vol.GetVolume().GetVolumeContext()
	nqn := vctx[csi.KeyNQN]
	slot, _ := routeros.SlotFor("fence-" + name)
	file := strings.TrimPrefix(emulatorVolumeDir, "/") + "/" + slot + ".img"
	guestFile, err := be.Path(file)
	must(t, err)
	chrootFile := root + "/" + file

	idA, hostA := fenceNode("node-a", fenceHostA)
	idB, hostB := fenceNode("node-b", fenceHostB)
	_, err = ctrl.ControllerPublishVolume(ctx, &csipb.ControllerPublishVolumeRequest{VolumeId: volID, NodeId: idA, VolumeCapability: vc, VolumeContext: vctx})
	must(t, err)

	// Node A: its daemon attaches with A's host identity; ext4, 1 MiB
	// synced.
	c, fs := client()
	o := hostA
	o.Traddr, o.Trsvcid, o.NQN = "127.0.0.1", port, nqn
	o.CtrlLossTmo, o.ReconnectDelay = fabrics.Int(-1), fabrics.Int(1)
	d, _ := startDaemon(t, t.TempDir(), nil)
	att, err := d.Attach(ctx, daemon.Spec{VolumeID: volID, Options: o, NSID: 1})
	must(t, err)
	vi, ok := d.Volume(volID)
	if !ok || len(vi.Controllers) != 1 {
		t.Fatalf("A's volume: %+v", vi)
	}
	a := fabrics.Controller{Name: vi.Controllers[0]}
	aGone := false
	t.Cleanup(func() {
		if !aGone {
			_ = c.Disconnect(a.Name)
		}
	})
	dev := att.Device
	must(t, hostTool("/usr/sbin/mkfs.ext4", "-q", "-F", dev))
	mnt := t.TempDir()
	must(t, syscall.Mount(dev, mnt, "ext4", 0, ""))
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	writeSynced(t, filepath.Join(mnt, "data"), data)
	syscall.Sync()

	// A's path is cut; A writes the marker and fsyncs: queued.
	must(t, be.Unlink(port, nqn))
	waitState(t, fs, a.Name, sysfs.StateConnecting, 10*time.Second)
	seed := make([]byte, 32)
	_, _ = rand.Read(seed)
	marker := bytes.Repeat(seed, 4096/32*64) // 256 KiB
	staleDone := make(chan error, 1)
	go func() {
		f, err := os.Create(filepath.Join(mnt, "stale"))
		if err == nil {
			_, err = f.Write(marker)
			if err == nil {
				err = f.Sync()
			}
			f.Close()
		}
		staleDone <- err
	}()
	tail := openKmsgTail(t)

	// The attach/detach controller moves the volume to B.
	_, err = ctrl.ControllerUnpublishVolume(ctx, &csipb.ControllerUnpublishVolumeRequest{VolumeId: volID, NodeId: idA})
	must(t, err)
	_, err = ctrl.ControllerPublishVolume(ctx, &csipb.ControllerPublishVolumeRequest{VolumeId: volID, NodeId: idB, VolumeCapability: vc, VolumeContext: vctx})
	must(t, err)
	must(t, be.Relink(port, nqn))

	onDisk := func() bool {
		b, err := os.ReadFile(guestFile)
		must(t, err)
		return bytes.Contains(b, seed)
	}
	if !fenced {
		waitState(t, fs, a.Name, sysfs.StateLive, 15*time.Second)
		select {
		case err := <-staleDone:
			must(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("A's fsync did not complete after A reconnected")
		}
		if !onDisk() {
			t.Fatal("unfenced: A's marker is not on the disk after A reconnected: the hazard was not reproduced")
		}
		t.Logf("unfenced: A reconnected after the volume was published to B, and its queued write (%d bytes) landed on the disk", len(marker))
		return
	}

	// Fenced: A's reconnects are refused by the target. 6.1 goes on
	// retrying (ctrl_loss_tmo -1); later kernels give up on a refusal with
	// DNR set and remove the controller, failing A's queued I/O.
	var refusals []string
	eventually(t, 15*time.Second, "a refused reconnect of A in the kernel log", func() (bool, string) {
		msgs, _ := tail.drain()
		for _, m := range msgs {
			if strings.Contains(m, "not allowed") && strings.Contains(m, hostA.HostNQN) {
				refusals = append(refusals, m)
			}
		}
		return len(refusals) >= 1, strings.Join(refusals, " | ")
	})
	if onDisk() {
		t.Fatal("fenced: A's marker reached the disk")
	}
	// A's node says why: NodeGetVolumeHealth's source.
	h := waitHealthReason(t, d, volID, "TargetRejected", 10*time.Second)
	if !strings.Contains(h.Message, "is not allowed, hostnqn: "+hostA.HostNQN) || d.Snapshot().Counters.TargetRejected < 1 {
		t.Errorf("A's volume health %+v, counter %d: want the kernel's refusal quoted and counted", h, d.Snapshot().Counters.TargetRejected)
	}
	st, err := fs.Controller(a.Name)
	switch {
	case err != nil:
		t.Logf("A's controller %s is gone after the refusal (the kernel gave up: %v)", a.Name, err)
		aGone = true
	case st.State == sysfs.StateLive:
		t.Fatalf("A's controller %s is live while fenced", a.Name)
	default:
		select {
		case err := <-staleDone:
			t.Fatalf("A's fsync returned (%v) while A's controller is %s", err, st.StateRaw)
		default:
		}
		t.Logf("A's controller %s is %s after the refusal (the kernel goes on retrying)", a.Name, st.StateRaw)
		// A is torn down.
		if err := c.Disconnect(a.Name); err != nil && !errors.Is(err, fabrics.ErrControllerGone) {
			t.Fatal(err)
		}
		aGone = true
	}
	// A's queued write fails, and nothing of it landed.
	select {
	case err := <-staleDone:
		if err == nil {
			t.Error("A's fsync succeeded while A was fenced")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("A's fsync still blocked 20 s after A's controller was removed")
	}
	must(t, syscall.Unmount(mnt, syscall.MNT_DETACH))
	if onDisk() {
		t.Fatal("fenced: A's marker reached the disk")
	}
	// B is allowed: it connects with its own identity.
	ob := hostB
	ob.Traddr, ob.Trsvcid, ob.NQN = "127.0.0.1", port, nqn
	b, err := c.Connect(ctx, ob)
	must(t, err)
	must(t, c.Disconnect(b.Name))
	// B's filesystem: the journal recovered as a mount would, then clean;
	// A's synced data intact.
	if err := hostTool("/usr/sbin/e2fsck", "-E", "journal_only", "-y", chrootFile); err != nil {
		t.Logf("journal recovery: %v", err) // exit 1: recovered
	}
	must(t, hostTool("/usr/sbin/e2fsck", "-f", "-n", chrootFile))
	out := root + "/data.out"
	must(t, hostTool("/usr/sbin/debugfs", "-R", "dump /data "+out, chrootFile))
	got, err := os.ReadFile(guestenv.Path(out))
	must(t, err)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("A's synced data: %d bytes, checksum differs", len(got))
	}
	t.Logf("fenced: %d kernel log lines refusing A (target and host side; first: %q), no byte of A's write on the disk, B connected, e2fsck clean, 1 MiB intact", len(refusals), refusals[0])
}

// waitHealthReason waits for a volume's health to carry reason.
func waitHealthReason(t *testing.T, d *daemon.Daemon, id, reason string, within time.Duration) daemon.VolumeHealth {
	t.Helper()
	var h daemon.VolumeHealth
	eventually(t, within, "volume health "+reason, func() (bool, string) {
		var err error
		h, err = d.VolumeHealth(id)
		return err == nil && h.Reason == reason, fmt.Sprintf("%+v %v", h, err)
	})
	t.Logf("volume health: %s %s: %s", h.Condition, h.Reason, h.Message)
	return h
}

func writeSynced(t *testing.T, p string, b []byte) {
	t.Helper()
	f, err := os.Create(p)
	must(t, err)
	defer f.Close()
	_, err = f.Write(b)
	must(t, err)
	must(t, f.Sync())
}
