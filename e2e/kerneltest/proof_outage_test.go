//go:build linux

package kerneltest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/e2e/guestenv"
	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/sysfs"
)

// The load of TestProofOutageUnderLoad.
const (
	loadBlockSize = 64 << 10
	loadPace      = 10 * time.Millisecond // pause after each acknowledged block
	loadBudget    = 160 << 20             // the file's limit on the 256 MiB volume
	loadMagic     = "RDSLOAD1"
	outageHold    = 30 * time.Second // each outage of the ctrlLossTmo=-1 volume
	expiryHold    = 12 * time.Second // the outage of the ctrlLossTmo=5 volume
)

// TestProofOutageUnderLoad (issue #7, reliability item 1): an ext4 volume
// staged through the real binary with ctrlLossTmo=-1 (reconnectDelay 2)
// carries a writer that writes checksummed 64 KiB blocks, each followed by
// fsync; a block is acknowledged when its write and fsync returned. The
// target port is unlinked for 30 s, and then lo drops every packet (netem
// loss 100%) for 30 s. Each outage must show in NodeGetVolumeHealth
// (INACCESSIBLE, with a reason) and end healthy; the writer must block (no
// acknowledgement while the volume is down), never see an error, and resume
// after the restore. Then every acknowledged block must read back intact
// from the target (page cache dropped): 0 bytes lost; the filesystem must
// still be mounted rw, take a new file, have logged no ext4 or I/O error,
// and e2fsck must find it clean on the target's disk after unstage.
//
// The same with ctrlLossTmo=5 (reconnectDelay 1) and the port unlinked
// 12 s shows the documented failure: the kernel removes the controller, the
// writer gets an error (it does not hang), NodeGetVolumeHealth says
// ControllerGone naming the controller, unpublish and unstage succeed and
// leave no mount and no controller, and the blocks acknowledged before the
// outage are still on the target (a new stage reads them back).
func TestProofOutageUnderLoad(t *testing.T) {
	tg := target(t)
	must(t, guestenv.Prepare())
	klog := openKmsgTail(t)
	d, endpoint := startRDSCSI(t, "outage")
	node := nodeClient(t, endpoint)
	res := &outageResult{}
	t.Cleanup(func() { writeResult(t, "outage-under-load", res.markdown()) })

	t.Run("ctrlLossTmo=-1", func(t *testing.T) {
		reconnectForever(t, tg, node, klog, res)
	})
	t.Run("ctrlLossTmo=5", func(t *testing.T) {
		lossExpires(t, tg, node, klog, res)
	})
	if t.Failed() {
		t.Logf("rds-csi log:\n%s", d.Logs())
	}
}

func reconnectForever(t *testing.T, tg *nvmet.Target, node csipb.NodeClient, klog *kmsgTail, res *outageResult) {
	klog.drain()
	v := stageLoadVolume(t, tg, node, "forever", "-1", "2")
	res.forever.device, res.forever.ctrl = v.device, v.ctrl
	w := startLoadWriter(t, v.file())
	w.waitAcked(t, 20, time.Minute, "the writer's first blocks")
	res.forever.rate = w.rate(0, 20)

	kinds := []outageKind{
		{name: "port unlink", inject: func() error { return tg.Unlink(v.port, v.nqn) }, restore: func() error { return tg.Relink(v.port, v.nqn) }},
		{name: "netem loss 100% on lo", inject: netemLoss, restore: netemClear},
	}
	for _, k := range kinds {
		res.forever.outages = append(res.forever.outages, runOutage(t, v, w, k))
		if t.Failed() {
			return
		}
	}

	acked, err := w.halt(t, 30*time.Second)
	if err != nil {
		t.Fatalf("the writer failed: %v", err)
	}
	res.forever.acked, res.forever.done = acked, true
	// Every acknowledged block, read from the target (not the page cache).
	must(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0))
	vr := verifyLoad(v.file(), acked)
	res.forever.verify = vr
	if vr.err != nil || vr.good != acked {
		t.Errorf("acknowledged blocks read back: %s", vr)
	}

	// The filesystem: still rw, takes a new file, no error logged. (The
	// options alone prove little: on 6.1 and 6.12 an ext4 that logged
	// "Remounting filesystem read-only" still shows rw in /proc/mounts;
	// the new file and the kernel log are what would catch it.)
	_, opts, ok := mountOf(guestenv.Path(v.staging))
	res.forever.mountOpts = strings.Join(opts, ",")
	if !ok || !slices.Contains(opts, "rw") || slices.Contains(opts, "ro") {
		t.Errorf("staging mount after the outages: mounted %v, options %v; want rw", ok, opts)
	}
	res.forever.newFile = "created and fsynced"
	if err := writeSyncedFile(filepath.Join(guestenv.Path(v.target), "after-outages"), []byte("still writable\n")); err != nil {
		res.forever.newFile = err.Error()
		t.Errorf("new file after the outages: %v", err)
	}
	lines, gap := klog.drain()
	if gap {
		lines = append(lines, "(kernel log records overwritten before they were read)")
	}
	res.forever.fsErrors = fsErrorLines(lines, v.device)
	if len(res.forever.fsErrors) > 0 {
		t.Errorf("kernel log has filesystem or I/O errors for %s:\n%s", v.device, strings.Join(res.forever.fsErrors, "\n"))
	}

	v.unstage(t)
	// The target's own disk: a clean ext4 after the unmount.
	out, err := exec.Command("chroot", guestenv.Root, "/usr/sbin/e2fsck", "-fn", v.backing).CombinedOutput()
	res.forever.fsck = lastLine(string(out))
	if err != nil {
		res.forever.fsck = fmt.Sprintf("%v: %s", err, res.forever.fsck)
		t.Errorf("e2fsck -fn %s (the target's disk) after unstage: %v\n%s", v.backing, err, out)
	}
}

func lossExpires(t *testing.T, tg *nvmet.Target, node csipb.NodeClient, klog *kmsgTail, res *outageResult) {
	x := &res.expiry
	klog.drain() // the device name may be the previous volume's
	v := stageLoadVolume(t, tg, node, "expire", "5", "1")
	x.device, x.ctrl = v.device, v.ctrl
	w := startLoadWriter(t, v.file())
	w.waitAcked(t, 20, time.Minute, "the writer's first blocks")

	relink := sync.OnceValue(func() error { return tg.Relink(v.port, v.nqn) })
	t.Cleanup(func() { _ = relink() })
	x.ackedBefore = w.acked()
	must(t, tg.Unlink(v.port, v.nqn))
	start := time.Now()
	fs := sysfs.NewFS("/sys")
	var gone time.Duration
	deadline := start.Add(60 * time.Second)
	for {
		e := v.health(t)
		x.timeline.note(time.Since(start), e)
		if gone == 0 {
			if _, err := fs.Controller(v.ctrl); errors.Is(err, sysfs.ErrNotExist) {
				gone = time.Since(start)
			}
		}
		n, werr := w.state()
		if werr != nil && x.writerErr == "" {
			x.writerErr, x.writerErrAt, x.ackedAtErr = werr.Error(), w.errTime().Sub(start), n
		}
		if x.writerErr != "" && gone > 0 && e != nil && e.GetReason() == "ControllerGone" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after the unlink: writer error %q, controller %s removed after %v, health %s",
				x.writerErr, v.ctrl, gone, fmtHealth(e))
		}
		time.Sleep(100 * time.Millisecond)
	}
	x.removedAt = gone
	last := x.timeline.last()
	if last.entry.GetStatus() != csipb.VolumeHealthErrorType_INACCESSIBLE || !strings.Contains(last.entry.GetMessage(), v.ctrl) ||
		!strings.Contains(last.entry.GetMessage(), "ctrl_loss_tmo (5s) ran out") {
		t.Errorf("health once the controller is gone: %s; want INACCESSIBLE ControllerGone naming %s and saying that its ctrl_loss_tmo (5s) ran out", fmtHealth(last.entry), v.ctrl)
	}
	// The writer failed with a storage error (it did not hang, nor stop
	// for another reason).
	if _, err := w.halt(t, 10*time.Second); !errors.Is(err, syscall.EIO) && !errors.Is(err, syscall.EROFS) {
		t.Errorf("the writer ended with %v, want EIO or EROFS", err)
	}

	// What the filesystem does now: a new file fails; the mount options
	// are read after that attempt (6.1 remounts read-only only when ext4
	// next notices the aborted journal).
	x.newFile = "created and fsynced"
	if err := writeSyncedFile(filepath.Join(guestenv.Path(v.target), "after-loss"), []byte("x\n")); err != nil {
		x.newFile = err.Error()
	} else {
		t.Error("a new file on the volume whose controller is gone was created and fsynced")
	}
	_, opts, ok := mountOf(guestenv.Path(v.staging))
	x.mountOpts = strings.Join(opts, ",")
	if !ok {
		x.mountOpts = "not mounted"
	}

	if d := expiryHold - time.Since(start); d > 0 {
		time.Sleep(d)
	}
	must(t, relink())
	x.held = time.Since(start)
	time.Sleep(3 * time.Second) // room for anything to reconnect (nothing should)
	x.afterRelink = fmtHealth(v.health(t))
	lines, _ := klog.drain()
	x.fsLines = ext4Lines(lines, v.device)

	// Unpublish and unstage: both succeed and leave nothing.
	t0 := time.Now()
	x.unstage = v.unstage(t)
	x.unstageTook = time.Since(t0)
	x.leftAfter = v.leftovers(t)
	if x.leftAfter != "nothing" {
		t.Errorf("after unstage of the volume whose controller is gone: %s", x.leftAfter)
	}
	_, err := node.NodeGetVolumeHealth(withTimeout(t, 10*time.Second), &csipb.NodeGetVolumeHealthRequest{VolumeId: v.id})
	x.healthAfter = status.Code(err).String()
	if status.Code(err) != codes.NotFound {
		t.Errorf("NodeGetVolumeHealth after unstage: %v, want NotFound", err)
	}

	// The target still has every block acknowledged before the failure.
	v.stage(t)
	vr := verifyLoad(guestenv.Path(v.staging+"/"+loadFile), x.ackedAtErr)
	x.restaged = vr
	if vr.err != nil || vr.good != x.ackedAtErr {
		t.Errorf("blocks acknowledged before the controller loss, read after a new stage: %s", vr)
	}
	v.unstage(t)
}

// outageKind is a fault and its repair.
type outageKind struct {
	name            string
	inject, restore func() error
}

// outageRun is what one outage of the ctrlLossTmo=-1 volume measured.
type outageRun struct {
	kind                    string
	held                    time.Duration // inject -> restore
	detect                  time.Duration // inject -> health INACCESSIBLE
	firstHealth, lateHealth string
	ackedBefore             int           // acknowledged blocks once the fault is in place
	ackedDuring             int           // acknowledged from then to the restore
	ackedAfter              int           // acknowledged from the restore to the end of the run
	blocked                 time.Duration // the write+fsync in flight across the outage
	stall                   time.Duration // last acknowledgement before -> first after
	firstAck                time.Duration // restore -> first acknowledgement
	healthy                 time.Duration // restore -> health without entries
}

// runOutage injects the fault, holds it outageHold, restores and waits for
// the writer to go on.
func runOutage(t *testing.T, v *loadVolume, w *loadWriter, k outageKind) outageRun {
	t.Helper()
	r := outageRun{kind: k.name}
	restore := sync.OnceValue(k.restore)
	t.Cleanup(func() {
		if err := restore(); err != nil {
			t.Errorf("%s: restore at cleanup: %v", k.name, err)
		}
	})
	must(t, k.inject())
	// From here on the fault is in place (tc takes a while under TCG:
	// blocks acknowledged while it runs count as before).
	start := time.Now()
	r.ackedBefore = w.acked()

	e, took := v.waitHealth(t, 60*time.Second, "INACCESSIBLE during the "+k.name, func(e *csipb.VolumeHealth_VolumeHealthEntry) bool {
		return e.GetStatus() == csipb.VolumeHealthErrorType_INACCESSIBLE
	})
	r.detect, r.firstHealth = took, fmtHealth(e)
	if e.GetReason() == "" || e.GetMessage() == "" {
		t.Errorf("%s: health %s has no reason or message", k.name, r.firstHealth)
	}
	atDetect := w.acked()
	// Held: the volume stays INACCESSIBLE and the writer blocked.
	for time.Since(start) < outageHold {
		e := v.health(t)
		if e.GetStatus() != csipb.VolumeHealthErrorType_INACCESSIBLE {
			t.Errorf("%s: health %s at %v of the outage", k.name, fmtHealth(e), time.Since(start).Round(time.Second))
		}
		r.lateHealth = fmtHealth(e)
		if _, err := w.state(); err != nil {
			t.Fatalf("%s: the writer failed during the outage: %v", k.name, err)
		}
		time.Sleep(min(time.Second, outageHold-time.Since(start)))
	}
	atRestore := w.acked()
	r.ackedDuring = atRestore - r.ackedBefore
	if atRestore != atDetect {
		t.Errorf("%s: %d blocks acknowledged while the volume was down: the writer does not write to it", k.name, atRestore-atDetect)
	}
	must(t, restore())
	restored := time.Now()
	r.held = restored.Sub(start)

	_, r.healthy = v.waitHealth(t, 90*time.Second, "healthy after the "+k.name, func(e *csipb.VolumeHealth_VolumeHealthEntry) bool { return e == nil })
	w.waitAcked(t, atRestore+20, 90*time.Second, "the writer after the "+k.name)
	if _, err := w.state(); err != nil {
		t.Fatalf("%s: the writer failed: %v", k.name, err)
	}
	first := w.ackTime(atRestore)
	r.firstAck = first.Sub(restored)
	r.blocked = first.Sub(w.startTime(atRestore))
	if atRestore > 0 {
		r.stall = first.Sub(w.ackTime(atRestore - 1))
	}
	r.ackedAfter = w.acked() - atRestore
	return r
}

// loadVolume is a volume of the test: a 256 MiB null_blk namespace in a
// subsystem of its own on a port of its own, staged as ext4 and published.
type loadVolume struct {
	node            csipb.NodeClient
	id, nqn         string
	port            int
	pathPorts       []int // the nvmet port ids of the volume's addresses (port first)
	vc              map[string]string
	backing         string // the target's null_blk disk
	staging, target string // as the daemon sees them
	device, ctrl    string // the staged disk ("nvme1n1") and its controller
	staged          bool
}

const loadFile = "load.bin"

func stageLoadVolume(t *testing.T, tg *nvmet.Target, node csipb.NodeClient, tag, ctrlLossTmo, reconnectDelay string) *loadVolume {
	t.Helper()
	return stageLoadVolumeOn(t, tg, node, tag, nil, "ctrlLossTmo", ctrlLossTmo, "reconnectDelay", reconnectDelay)
}

// stageLoadVolumeOn is stageLoadVolume with more target addresses: each of
// extraAddrs gets an nvmet port of its own (ids in v.pathPorts, same TCP
// port) linked to the subsystem, and the VolumeContext names every address
// in nvmeAddresses (127.0.0.1 first). vcExtra are more VolumeContext keys
// and values.
func stageLoadVolumeOn(t *testing.T, tg *nvmet.Target, node csipb.NodeClient, tag string, extraAddrs []string, vcExtra ...string) *loadVolume {
	t.Helper()
	v := &loadVolume{node: node, id: "vol-outage-" + tag, nqn: uniqueNQN("outage-" + tag), port: nextPort()}
	var err error
	v.backing, err = tg.NullBlk(256)
	must(t, err)
	must(t, tg.AddSubsystem(nvmet.Subsystem{NQN: v.nqn, AllowAnyHost: true}))
	must(t, tg.AddNamespace(v.nqn, nvmet.Namespace{NSID: 1, Device: v.backing}))
	must(t, tg.AddPort(nvmet.Port{ID: v.port, Traddr: "127.0.0.1", Trsvcid: v.port}))
	must(t, tg.Link(v.port, v.nqn))
	v.pathPorts = []int{v.port}
	addrs := []string{"127.0.0.1"}
	for _, a := range extraAddrs {
		id := nextPort()
		must(t, tg.AddPort(nvmet.Port{ID: id, Traddr: a, Trsvcid: v.port}))
		must(t, tg.Link(id, v.nqn))
		v.pathPorts = append(v.pathPorts, id)
		addrs = append(addrs, a)
	}
	// No reconnect spread: the proof times the kernel's timers as given.
	v.vc = volumeContext(v.nqn, v.port, append(vcExtra, "reconnectSpread", "0")...)
	if len(addrs) > 1 {
		v.vc["nvmeAddresses"] = strings.Join(addrs, ",")
	}
	v.staging = "/run/outage/staging/" + v.id + "/globalmount"
	v.target = "/run/outage/pods/" + v.id + "/mount"
	must(t, os.MkdirAll(guestenv.Path(v.staging), 0o750))
	// Whatever happens, nothing stays mounted on the volume once the test
	// ends (the guest's final sync would wait for a dead disk).
	t.Cleanup(func() {
		if v.staged {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: v.target}); err != nil {
				t.Errorf("cleanup: unpublish %s: %v", v.id, err)
			}
			if _, err := node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging}); err != nil {
				t.Errorf("cleanup: unstage %s: %v", v.id, err)
			}
		}
		_ = syscall.Unmount(guestenv.Path(v.target), syscall.MNT_DETACH)
		_ = syscall.Unmount(guestenv.Path(v.staging), syscall.MNT_DETACH)
	})
	v.stage(t)
	ctx := withTimeout(t, time.Minute)
	if _, err := node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{
		VolumeId: v.id, StagingTargetPath: v.staging, TargetPath: v.target, VolumeCapability: mountCap("ext4"),
	}); err != nil {
		t.Fatalf("NodePublishVolume %s: %v", v.id, err)
	}
	dev, _, ok := mountOf(guestenv.Path(v.staging))
	if !ok || !strings.HasPrefix(dev, "/dev/nvme") {
		t.Fatalf("staging mount of %s: %q (mounted %v), want an NVMe disk", v.id, dev, ok)
	}
	v.device = strings.TrimPrefix(dev, "/dev/")
	cs, err := sysfs.NewFS("/sys").Controllers()
	must(t, err)
	for _, c := range cs {
		if c.SubsysNQN == v.nqn {
			v.ctrl = c.Name
		}
	}
	if v.ctrl == "" {
		t.Fatalf("no controller for %s", v.nqn)
	}
	return v
}

// stage runs NodeStageVolume (ext4, formatting a blank disk).
func (v *loadVolume) stage(t *testing.T) {
	t.Helper()
	ctx := withTimeout(t, 2*time.Minute)
	if _, err := v.node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{
		VolumeId: v.id, StagingTargetPath: v.staging, VolumeCapability: mountCap("ext4"), VolumeContext: v.vc,
	}); err != nil {
		t.Fatalf("NodeStageVolume %s: %v", v.id, err)
	}
	v.staged = true
}

// unstage unpublishes (when published) and unstages; it fails the test
// when either call fails and describes what happened.
func (v *loadVolume) unstage(t *testing.T) string {
	t.Helper()
	ctx := withTimeout(t, time.Minute)
	var steps []string
	if _, ok := mountOfPath(guestenv.Path(v.target)); ok {
		if _, err := v.node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: v.target}); err != nil {
			t.Fatalf("NodeUnpublishVolume %s: %v", v.id, err)
		}
		steps = append(steps, "unpublish ok")
	}
	if _, err := v.node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging}); err != nil {
		t.Fatalf("NodeUnstageVolume %s: %v", v.id, err)
	}
	v.staged = false
	return strings.Join(append(steps, "unstage ok"), ", ")
}

// leftovers says what the volume left behind: mounts of its paths and
// controllers of its subsystem.
func (v *loadVolume) leftovers(t *testing.T) string {
	t.Helper()
	var left []string
	for _, p := range []string{v.staging, v.target} {
		if dev, ok := mountOfPath(guestenv.Path(p)); ok {
			left = append(left, fmt.Sprintf("%s mounted on %s", dev, p))
		}
	}
	cs, err := sysfs.NewFS("/sys").Controllers()
	must(t, err)
	for _, c := range cs {
		if c.SubsysNQN == v.nqn {
			left = append(left, fmt.Sprintf("controller %s (%s)", c.Name, c.StateRaw))
		}
	}
	if len(left) == 0 {
		return "nothing"
	}
	return strings.Join(left, "; ")
}

func (v *loadVolume) file() string { return guestenv.Path(v.target + "/" + loadFile) }

// health asks NodeGetVolumeHealth as kubelet would; nil means healthy.
func (v *loadVolume) health(t *testing.T) *csipb.VolumeHealth_VolumeHealthEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := v.node.NodeGetVolumeHealth(ctx, &csipb.NodeGetVolumeHealthRequest{
		VolumeId: v.id, VolumePublishPath: v.target, StagingTargetPath: v.staging,
	})
	if err != nil {
		t.Fatalf("NodeGetVolumeHealth %s: %v", v.id, err)
	}
	if es := resp.GetVolumeHealth().GetHealthStatuses(); len(es) > 0 {
		return es[0]
	}
	return nil
}

// waitHealth asks until ok holds and returns the entry and how long it took.
func (v *loadVolume) waitHealth(t *testing.T, within time.Duration, what string, ok func(*csipb.VolumeHealth_VolumeHealthEntry) bool) (*csipb.VolumeHealth_VolumeHealthEntry, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		e := v.health(t)
		if ok(e) {
			return e, time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v (last: %s)", what, within, fmtHealth(e))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fmtHealth(e *csipb.VolumeHealth_VolumeHealthEntry) string {
	if e == nil {
		return "healthy"
	}
	return fmt.Sprintf("%s %s: %s", e.GetStatus(), e.GetReason(), e.GetMessage())
}

// healthTimeline keeps each distinct health reason with when it was first seen.
type healthTimeline []healthPoint

type healthPoint struct {
	at    time.Duration
	entry *csipb.VolumeHealth_VolumeHealthEntry
}

func (h *healthTimeline) note(at time.Duration, e *csipb.VolumeHealth_VolumeHealthEntry) {
	if n := len(*h); n > 0 {
		prev := (*h)[n-1].entry
		if prev.GetStatus() == e.GetStatus() && prev.GetReason() == e.GetReason() && (e == nil) == (prev == nil) {
			return
		}
	}
	*h = append(*h, healthPoint{at, e})
}

func (h healthTimeline) last() healthPoint {
	if len(h) == 0 {
		return healthPoint{}
	}
	return h[len(h)-1]
}

// loadWriter writes self-describing blocks to a file, each followed by
// fsync; block i is acknowledged once its write and fsync returned.
type loadWriter struct {
	path string
	pace time.Duration // pause after each acknowledged block
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu     sync.Mutex
	starts []time.Time // starts[i]: block i's write began
	acks   []time.Time // acks[i]: block i's fsync returned without error
	err    error       // the first failure; the writer stops there
	errAt  time.Time
}

func startLoadWriter(t *testing.T, path string) *loadWriter {
	t.Helper()
	return startPacedWriter(t, path, loadPace)
}

// startPacedWriter is startLoadWriter with another pause between blocks.
func startPacedWriter(t *testing.T, path string, pace time.Duration) *loadWriter {
	t.Helper()
	w := &loadWriter{path: path, pace: pace, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	t.Cleanup(func() {
		if _, err := w.halt(t, 30*time.Second); errors.Is(err, errWriterStuck) {
			t.Errorf("cleanup: %v", err)
		}
	})
	return w
}

var errWriterStuck = errors.New("the writer is stuck in a write or fsync")

func (w *loadWriter) run() {
	defer close(w.done)
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		w.fail(err)
		return
	}
	defer f.Close()
	if err := syncDir(filepath.Dir(w.path)); err != nil {
		w.fail(err)
		return
	}
	for seq := 0; ; seq++ {
		select {
		case <-w.stop:
			return
		default:
		}
		if (seq+1)*loadBlockSize > loadBudget {
			w.fail(fmt.Errorf("block %d: the file would exceed %d MiB (raise the writer's pace)", seq, loadBudget>>20))
			return
		}
		b := loadBlock(seq)
		w.mu.Lock()
		w.starts = append(w.starts, time.Now())
		w.mu.Unlock()
		if _, err := f.WriteAt(b, int64(seq)*loadBlockSize); err != nil {
			w.fail(fmt.Errorf("block %d: %w", seq, err))
			return
		}
		if err := f.Sync(); err != nil {
			w.fail(fmt.Errorf("block %d: %w", seq, err))
			return
		}
		w.mu.Lock()
		w.acks = append(w.acks, time.Now())
		w.mu.Unlock()
		select {
		case <-w.stop:
			return
		case <-time.After(w.pace):
		}
	}
}

func (w *loadWriter) fail(err error) {
	w.mu.Lock()
	w.err, w.errAt = err, time.Now()
	w.mu.Unlock()
}

func (w *loadWriter) state() (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks), w.err
}

func (w *loadWriter) acked() int { n, _ := w.state(); return n }

func (w *loadWriter) errTime() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errAt
}

func (w *loadWriter) ackTime(i int) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acks[i]
}

// rate is the write rate over the acknowledgements from..to (exclusive).
func (w *loadWriter) rate(from, to int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if to > len(w.acks) || to-from < 2 {
		return "?"
	}
	span := w.acks[to-1].Sub(w.acks[from])
	per := float64(to-from-1) / span.Seconds()
	return fmt.Sprintf("%.1f blocks/s (%.2f MiB/s)", per, per*loadBlockSize/(1<<20))
}

func (w *loadWriter) startTime(i int) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.starts[i]
}

// waitAcked waits until n blocks are acknowledged; a writer error fails.
func (w *loadWriter) waitAcked(t *testing.T, n int, within time.Duration, what string) {
	t.Helper()
	eventually(t, within, what, func() (bool, string) {
		got, err := w.state()
		if err != nil {
			t.Fatalf("%s: the writer failed: %v", what, err)
		}
		return got >= n, fmt.Sprintf("%d of %d blocks acknowledged", got, n)
	})
}

// halt stops the writer (after the block in flight) and returns how many
// blocks it acknowledged and its error.
func (w *loadWriter) halt(t *testing.T, within time.Duration) (int, error) {
	t.Helper()
	w.once.Do(func() { close(w.stop) })
	select {
	case <-w.done:
	case <-time.After(within):
		n, _ := w.state()
		return n, fmt.Errorf("%w (%d blocks acknowledged)", errWriterStuck, n)
	}
	return w.state()
}

// loadBlock is block seq: "RDSLOAD1", seq (LE uint64), CRC-32C of the
// payload (LE uint32, 4 bytes zero), then the payload, a splitmix64 stream
// seeded by seq.
func loadBlock(seq int) []byte {
	b := make([]byte, loadBlockSize)
	copy(b, loadMagic)
	binary.LittleEndian.PutUint64(b[8:], uint64(seq))
	x := uint64(seq)*0x9e3779b97f4a7c15 + 0x5851f42d4c957f2d
	for i := 24; i+8 <= len(b); i += 8 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(b[i:], z^z>>31)
	}
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[24:], crc32c))
	return b
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// checkBlock says what is wrong with block seq as read ("" when intact).
func checkBlock(b []byte, seq int) string {
	want := loadBlock(seq)
	switch {
	case bytes.Equal(b, want):
		return ""
	case len(b) != len(want):
		return fmt.Sprintf("short: %d bytes", len(b))
	case !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }):
		return "zeros"
	case string(b[:8]) != loadMagic:
		return "no block header"
	case binary.LittleEndian.Uint64(b[8:]) != uint64(seq):
		return fmt.Sprintf("holds block %d", binary.LittleEndian.Uint64(b[8:]))
	case crc32.Checksum(b[24:], crc32c) != binary.LittleEndian.Uint32(b[16:]):
		return "checksum mismatch"
	}
	return "payload differs though its checksum matches"
}

// loadVerify is the check of the acknowledged blocks of a file.
type loadVerify struct {
	want, good int
	size       int64
	bad        []string // the first few bad blocks
	nBad       int
	err        error
}

func (r loadVerify) String() string {
	if r.err != nil {
		return fmt.Sprintf("%d of %d blocks intact, then %v", r.good, r.want, r.err)
	}
	s := fmt.Sprintf("%d of %d acknowledged blocks intact (file %d bytes)", r.good, r.want, r.size)
	if r.nBad > 0 {
		s += fmt.Sprintf("; %d bad: %s", r.nBad, strings.Join(r.bad, ", "))
	}
	return s
}

func (r loadVerify) lost() int64 { return int64(r.want-r.good) * loadBlockSize }

// verifyLoad reads the first n blocks of path and checks each.
func verifyLoad(path string, n int) loadVerify {
	r := loadVerify{want: n}
	f, err := os.Open(path)
	if err != nil {
		r.err = err
		return r
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		r.size = fi.Size()
	}
	b := make([]byte, loadBlockSize)
	for i := range n {
		m, err := f.ReadAt(b, int64(i)*loadBlockSize)
		if err != nil && !errors.Is(err, io.EOF) {
			r.err = fmt.Errorf("read block %d: %w", i, err)
			return r
		}
		if what := checkBlock(b[:m], i); what != "" {
			r.nBad++
			if len(r.bad) < 5 {
				r.bad = append(r.bad, fmt.Sprintf("block %d: %s", i, what))
			}
			continue
		}
		r.good++
	}
	return r
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func writeSyncedFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
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

// mountOf returns the device and options of the topmost mount on the
// guest path mnt.
func mountOf(mnt string) (dev string, opts []string, ok bool) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "", nil, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[1] == mnt {
			dev, opts, ok = f[0], strings.Split(f[3], ","), true
		}
	}
	return dev, opts, ok
}

func mountOfPath(mnt string) (string, bool) {
	dev, _, ok := mountOf(mnt)
	return dev, ok
}

// ext4Lines are the kernel's ext4 messages and block I/O errors about dev.
func ext4Lines(lines []string, dev string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, dev) && (strings.Contains(l, "EXT4-fs") || strings.Contains(l, "I/O error") || strings.Contains(l, "JBD2")) {
			out = append(out, l)
		}
	}
	return out
}

// fsErrorLines are those of ext4Lines that report a failure.
func fsErrorLines(lines []string, dev string) []string {
	var out []string
	for _, l := range ext4Lines(lines, dev) {
		if strings.Contains(l, "mounted filesystem") || strings.Contains(l, "unmounting filesystem") {
			continue // the mount options may say errors=...
		}
		for _, bad := range []string{"error", "warning", "read-only", "Aborting journal", "shut down"} {
			if strings.Contains(l, bad) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// outageResult is what TestProofOutageUnderLoad measured.
type outageResult struct {
	forever struct {
		device, ctrl string
		rate         string
		outages      []outageRun
		done         bool // the writer stopped without error after both outages
		acked        int
		verify       loadVerify
		mountOpts    string
		newFile      string
		fsErrors     []string
		fsck         string
	}
	expiry struct {
		device, ctrl string
		ackedBefore  int
		timeline     healthTimeline
		removedAt    time.Duration
		writerErr    string
		writerErrAt  time.Duration
		ackedAtErr   int
		mountOpts    string
		newFile      string
		held         time.Duration
		afterRelink  string
		fsLines      []string
		unstage      string
		unstageTook  time.Duration
		leftAfter    string
		healthAfter  string
		restaged     loadVerify
	}
}

func (r *outageResult) markdown() string {
	var b strings.Builder
	f := &r.forever
	fmt.Fprintf(&b, "### ctrlLossTmo=-1, reconnectDelay=2: outages under a write load\n\n")
	fmt.Fprintf(&b, "An ext4 volume (256 MiB null_blk namespace, disk %s, controller %s) staged and published by the real binary; "+
		"a writer writes %d KiB blocks (header, sequence, CRC-32C of the payload), fsync after each, pausing %v between blocks; "+
		"a block counts as acknowledged when its write and fsync returned. Health is NodeGetVolumeHealth, asked every 50 ms until it changes. "+
		"Stall: last acknowledgement before the outage to the first after it; blocked: how long the write+fsync in flight across the outage took.\n\n",
		f.device, f.ctrl, loadBlockSize>>10, loadPace)
	fmt.Fprintf(&b, "| outage | held | health INACCESSIBLE after | health at the end of the outage | blocks acked before / during / after | writer stall | blocked write+fsync | restore → first ack | restore → healthy |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|\n")
	for _, o := range f.outages {
		fmt.Fprintf(&b, "| %s | %s | %s (%s) | %s | %d / %d / %d | %s | %s | %s | %s |\n",
			o.kind, fmtDur(o.held), fmtDur(o.detect), o.firstHealth, o.lateHealth, o.ackedBefore, o.ackedDuring, o.ackedAfter,
			fmtDur(o.stall), fmtDur(o.blocked), fmtDur(o.firstAck), fmtDur(o.healthy))
	}
	fmt.Fprintf(&b, "\nWrite rate before the outages: %s.\n", f.rate)
	if !f.done {
		fmt.Fprintf(&b, "\nThe ctrlLossTmo=-1 run failed before both outages were done: no verification.\n")
		return r.markdownExpiry(&b)
	}
	fmt.Fprintf(&b, "\n| after both outages | |\n|---|---|\n")
	fmt.Fprintf(&b, "| blocks acknowledged | %d (%d KiB) |\n", f.acked, f.acked*loadBlockSize>>10)
	fmt.Fprintf(&b, "| read back from the target (page cache dropped) | %s |\n", f.verify)
	fmt.Fprintf(&b, "| bytes lost | %d |\n", f.verify.lost())
	fmt.Fprintf(&b, "| staging mount options | %s |\n", f.mountOpts)
	fmt.Fprintf(&b, "| a new file | %s |\n", f.newFile)
	fmt.Fprintf(&b, "| ext4 / I/O errors in the kernel log for %s | %d%s |\n", f.device, len(f.fsErrors), joinQuoted(f.fsErrors))
	fmt.Fprintf(&b, "| e2fsck -fn on the target's disk after unstage | %s |\n", f.fsck)
	return r.markdownExpiry(&b)
}

func (r *outageResult) markdownExpiry(b *strings.Builder) string {
	x := &r.expiry
	fmt.Fprintf(b, "\n### ctrlLossTmo=5, reconnectDelay=1: the port unlinked %s under the same load\n\n", fmtDur(expiryHold))
	fmt.Fprintf(b, "Disk %s, controller %s. Times are from the unlink.\n\n", x.device, x.ctrl)
	fmt.Fprintf(b, "| what | when | verbatim |\n|---|---|---|\n")
	for _, p := range x.timeline {
		fmt.Fprintf(b, "| NodeGetVolumeHealth | %s | %s |\n", fmtDur(p.at), fmtHealth(p.entry))
	}
	fmt.Fprintf(b, "| kernel removed the controller (gone from sysfs) | %s | |\n", fmtDur(x.removedAt))
	fmt.Fprintf(b, "| writer error (%d blocks acked before the unlink, %d in all) | %s | %s |\n", x.ackedBefore, x.ackedAtErr, fmtDur(x.writerErrAt), x.writerErr)
	fmt.Fprintf(b, "| a new file then | | %s |\n", x.newFile)
	fmt.Fprintf(b, "| staging mount options after that | | %s |\n", x.mountOpts)
	for _, l := range condense(x.fsLines) {
		fmt.Fprintf(b, "| kernel log | | %s |\n", l)
	}
	fmt.Fprintf(b, "| port relinked, 3 s later NodeGetVolumeHealth | %s | %s |\n", fmtDur(x.held+3*time.Second), x.afterRelink)
	fmt.Fprintf(b, "| NodeUnpublishVolume, NodeUnstageVolume | took %s | %s |\n", fmtDur(x.unstageTook), x.unstage)
	fmt.Fprintf(b, "| left after unstage (mounts, controllers) | | %s |\n", x.leftAfter)
	fmt.Fprintf(b, "| NodeGetVolumeHealth after unstage | | %s |\n", x.healthAfter)
	fmt.Fprintf(b, "| acknowledged blocks after a new stage | | %s |\n", x.restaged)
	return b.String()
}

// condense folds kernel log lines that differ only in their numbers
// (block numbers, groups) into the first one with a count.
func condense(lines []string) []string {
	var out []string
	count := map[string]int{}
	first := map[string]int{}
	for _, l := range lines {
		k := digits.ReplaceAllString(l, "N")
		if _, ok := first[k]; !ok {
			first[k] = len(out)
			out = append(out, l)
		}
		count[k]++
	}
	for k, i := range first {
		if n := count[k]; n > 1 {
			out[i] += fmt.Sprintf(" (and %d more like it)", n-1)
		}
	}
	return out
}

var digits = regexp.MustCompile(`[0-9]+`)

func joinQuoted(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return ": " + strings.Join(lines, "; ")
}
