//go:build linux

package kerneltest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
)

// Second path address: every 127/8 address is the loopback interface's.
const secondAddr = "127.0.0.2"

// multipathTarget makes a subsystem with one namespace on two nvmet ports
// with the same TCP port number: 127.0.0.1 (port id port) and 127.0.0.2
// (port id id2). The second is linked only if link2.
func multipathTarget(t *testing.T, tg *nvmet.Target, tag string, link2 bool) (nqn string, port, id2 int) {
	t.Helper()
	nqn, port = simpleTarget(t, tg, tag)
	id2 = nextPort()
	must(t, tg.AddPort(nvmet.Port{ID: id2, Traddr: secondAddr, Trsvcid: port}))
	if link2 {
		must(t, tg.Link(id2, nqn))
	}
	return nqn, port, id2
}

func multipathSpec(id, nqn string, port int) daemon.Spec {
	s := volumeSpec(id, nqn, port)
	s.Paths = []daemon.Path{{Traddr: "127.0.0.1"}, {Traddr: secondAddr}}
	return s
}

// pathStates is "nvme0=live nvme1=connecting" for the volume's controllers.
func pathStates(d *daemon.Daemon, id string) (live, total int, s string) {
	vi, _ := d.Volume(id)
	var parts []string
	for _, name := range vi.Controllers {
		c, ok := controllerInfo(d, name)
		if ok && c.State == sysfs.StateLive {
			live++
		}
		parts = append(parts, name+"="+c.StateRaw)
	}
	return live, len(vi.Controllers), strings.Join(parts, " ")
}

func waitHealth(t *testing.T, d *daemon.Daemon, id string, want daemon.Condition, within time.Duration) daemon.VolumeHealth {
	t.Helper()
	var h daemon.VolumeHealth
	eventually(t, within, "volume health "+want.String(), func() (bool, string) {
		var err error
		h, err = d.VolumeHealth(id)
		return err == nil && h.Condition == want, fmt.Sprintf("%+v %v", h, err)
	})
	t.Logf("volume health: %s %s: %s", h.Condition, h.Reason, h.Message)
	return h
}

// syncedWrite writes 4 KiB at offset 0 of the device and fsyncs it, within
// 20 s (a write stuck on a dead path fails the test instead of hanging it).
func syncedWrite(t *testing.T, dev string, b byte) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		if _, err := f.WriteAt(slices.Repeat([]byte{b}, 4096), 0); err != nil {
			done <- err
			return
		}
		done <- f.Sync()
	}()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("a 4 KiB fsynced write to %s did not complete within 20 s", dev)
	}
}

func subsystemOf(t *testing.T, nqn string) sysfs.Subsystem {
	t.Helper()
	subs, err := sysfs.NewFS("/sys").Subsystems()
	must(t, err)
	for _, s := range subs {
		if s.NQN == nqn {
			return s
		}
	}
	t.Fatalf("no subsystem %s", nqn)
	return sysfs.Subsystem{}
}

// TestMultipathPaths: a volume staged on two addresses of one subsystem has
// two controllers behind one block device; one path's port unlinked:
// Degraded, and an fsynced write still succeeds; relinked: Healthy; both
// down: Inaccessible; back: Healthy; Detach removes both controllers.
func TestMultipathPaths(t *testing.T) {
	if !nativeMultipath() {
		t.Skip("native multipath is off in this boot (TestMultipathOff covers it)")
	}
	tg := target(t)
	nqn, port, id2 := multipathTarget(t, tg, "mpath", true)
	d, _ := startDaemon(t, t.TempDir(), nil)
	att, err := d.Attach(context.Background(), multipathSpec("vol-mp", nqn, port))
	must(t, err)
	must(t, d.MarkStaged("vol-mp", "/staging/vol-mp", true))
	eventually(t, 10*time.Second, "both paths live", func() (bool, string) {
		live, total, s := pathStates(d, "vol-mp")
		return live == 2 && total == 2, s
	})
	waitHealth(t, d, "vol-mp", daemon.Healthy, 5*time.Second)
	sub := subsystemOf(t, nqn)
	if len(sub.Controllers) != 2 || len(sub.Namespaces) != 1 || sub.Namespaces[0].DevPath() != att.Device {
		t.Fatalf("subsystem %s: controllers %v, namespaces %d: want 2 controllers behind the one device %s", sub.Name, sub.Controllers, len(sub.Namespaces), att.Device)
	}
	syncedWrite(t, att.Device, 1)

	must(t, tg.Unlink(id2, nqn))
	h := waitHealth(t, d, "vol-mp", daemon.Degraded, 10*time.Second)
	if !strings.Contains(h.Message, secondAddr) {
		t.Errorf("degraded message %q does not name the down path %s", h.Message, secondAddr)
	}
	syncedWrite(t, att.Device, 2)
	must(t, tg.Relink(id2, nqn))
	waitHealth(t, d, "vol-mp", daemon.Healthy, 15*time.Second)

	must(t, tg.Unlink(port, nqn))
	must(t, tg.Unlink(id2, nqn))
	waitHealth(t, d, "vol-mp", daemon.Inaccessible, 10*time.Second)
	must(t, tg.Relink(port, nqn))
	must(t, tg.Relink(id2, nqn))
	waitHealth(t, d, "vol-mp", daemon.Healthy, 15*time.Second)
	syncedWrite(t, att.Device, 3)

	vi, _ := d.Volume("vol-mp")
	must(t, d.Detach(context.Background(), "vol-mp"))
	for _, name := range vi.Controllers {
		if _, err := sysfs.NewFS("/sys").Controller(name); err == nil {
			t.Errorf("Detach left %s connected", name)
		}
	}
}

// TestMultipathLatePath: the second address does not answer at stage time:
// the stage succeeds on the first, health says which path is missing, and
// the second path is attached in the background once its port is linked.
func TestMultipathLatePath(t *testing.T) {
	if !nativeMultipath() {
		t.Skip("native multipath is off in this boot")
	}
	tg := target(t)
	nqn, port, id2 := multipathTarget(t, tg, "mplate", false)
	d, _ := startDaemon(t, t.TempDir(), nil)
	att, err := d.Attach(context.Background(), multipathSpec("vol-late", nqn, port))
	must(t, err)
	if att.PathsPending != 1 {
		t.Errorf("attachment %+v: want 1 path pending", att)
	}
	h := waitHealth(t, d, "vol-late", daemon.Degraded, 10*time.Second)
	if !strings.Contains(h.Message, secondAddr) {
		t.Errorf("degraded message %q does not name the missing path %s", h.Message, secondAddr)
	}
	must(t, tg.Link(id2, nqn))
	linked := time.Now()
	eventually(t, 30*time.Second, "second path attached in the background", func() (bool, string) {
		live, total, s := pathStates(d, "vol-late")
		return live == 2 && total == 2, s
	})
	t.Logf("port linked -> second path live: %s", time.Since(linked).Round(time.Millisecond))
	waitHealth(t, d, "vol-late", daemon.Healthy, 5*time.Second)
	syncedWrite(t, att.Device, 4)
	must(t, d.Detach(context.Background(), "vol-late"))
}

// TestMultipathOff: with nvme_core.multipath=N a volume with two addresses
// is connected on its first only (two paths would be two block devices),
// and health says why.
func TestMultipathOff(t *testing.T) {
	if nativeMultipath() {
		t.Skip("native multipath is on in this boot")
	}
	tg := target(t)
	nqn, port, _ := multipathTarget(t, tg, "mpoff", true)
	d, _ := startDaemon(t, t.TempDir(), nil)
	att, err := d.Attach(context.Background(), multipathSpec("vol-off", nqn, port))
	must(t, err)
	if !att.MultipathOff {
		t.Errorf("attachment %+v: want MultipathOff", att)
	}
	vi, _ := d.Volume("vol-off")
	if len(vi.Controllers) != 1 {
		t.Errorf("controllers %v: want one", vi.Controllers)
	}
	h := waitHealth(t, d, "vol-off", daemon.Degraded, 5*time.Second)
	if h.Reason != "MultipathDisabled" || !strings.Contains(h.Message, "nvme_core.multipath=N") {
		t.Errorf("health %+v: want MultipathDisabled naming nvme_core.multipath=N", h)
	}
	syncedWrite(t, att.Device, 5)
	must(t, d.Detach(context.Background(), "vol-off"))
}

// TestMultipathIOPolicy: the volume's iopolicy is written to its subsystem
// and read back; queue-depth, which Linux 6.11 added, is refused by 6.1
// with fabrics.ErrUnsupportedOption and taken by 6.12.
func TestMultipathIOPolicy(t *testing.T) {
	if !nativeMultipath() {
		t.Skip("native multipath is off in this boot")
	}
	tg := target(t)
	nqn, port, _ := multipathTarget(t, tg, "mppolicy", true)
	d, _ := startDaemon(t, t.TempDir(), nil)
	s := multipathSpec("vol-policy", nqn, port)
	s.IOPolicy = "round-robin"
	_, err := d.Attach(context.Background(), s)
	must(t, err)
	if got := subsystemOf(t, nqn).IOPolicy; got != "round-robin" {
		t.Errorf("iopolicy %q, want round-robin", got)
	}
	s.IOPolicy = "queue-depth"
	_, err = d.Attach(context.Background(), s)
	got := subsystemOf(t, nqn).IOPolicy
	switch kernelSeries() {
	case "6.1":
		if !errors.Is(err, fabrics.ErrUnsupportedOption) || got != "round-robin" {
			t.Errorf("6.1, queue-depth: Attach error %v, iopolicy %q: want ErrUnsupportedOption and round-robin kept", err, got)
		}
	default:
		if err != nil || got != "queue-depth" {
			t.Errorf("%s, queue-depth: Attach error %v, iopolicy %q: want queue-depth", kernelSeries(), err, got)
		}
	}
	t.Logf("queue-depth on %s: %v", kernelSeries(), err)
	must(t, d.Detach(context.Background(), "vol-policy"))
}

// TestMultipathFailover measures failover: a writer does 4 KiB fsynced
// writes to the multipath device while one path's port is unlinked for 3 s,
// then (after it is back) the other's. It logs the longest gap between two
// completed writes in each outage (the kernel's failover time when the
// unlinked path was the one in use) and fails if a write fails or a gap
// exceeds 20 s (I/O stuck on the dead path). BENCHMARKS.md quotes its log.
func TestMultipathFailover(t *testing.T) {
	if !nativeMultipath() {
		t.Skip("native multipath is off in this boot")
	}
	tg := target(t)
	nqn, port, id2 := multipathTarget(t, tg, "mpfail", true)
	d, _ := startDaemon(t, t.TempDir(), nil)
	att, err := d.Attach(context.Background(), multipathSpec("vol-fail", nqn, port))
	must(t, err)
	eventually(t, 10*time.Second, "both paths live", func() (bool, string) {
		live, total, s := pathStates(d, "vol-fail")
		return live == 2 && total == 2, s
	})
	f, err := os.OpenFile(att.Device, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	buf := slices.Repeat([]byte{7}, 4096)
	for i, id := range []int{port, id2} {
		stop := make(chan struct{})
		res := make(chan struct {
			writes int
			gap    time.Duration
			err    error
		}, 1)
		go func() {
			last, n, maxGap := time.Now(), 0, time.Duration(0)
			for {
				select {
				case <-stop:
					res <- struct {
						writes int
						gap    time.Duration
						err    error
					}{n, maxGap, nil}
					return
				default:
				}
				_, err := f.WriteAt(buf, int64(n%256)*4096)
				if err == nil {
					err = f.Sync()
				}
				if err != nil {
					res <- struct {
						writes int
						gap    time.Duration
						err    error
					}{n, maxGap, err}
					return
				}
				now := time.Now()
				maxGap, last, n = max(maxGap, now.Sub(last)), now, n+1
			}
		}()
		time.Sleep(300 * time.Millisecond)
		must(t, tg.Unlink(id, nqn))
		time.Sleep(3 * time.Second)
		must(t, tg.Relink(id, nqn))
		close(stop)
		var r struct {
			writes int
			gap    time.Duration
			err    error
		}
		select {
		case r = <-res:
		case <-time.After(20 * time.Second):
			t.Fatalf("outage %d: the writer is stuck", i+1)
		}
		must(t, r.err)
		t.Logf("failover %s path %d (%s) unlinked 3 s: %d fsynced 4 KiB writes, longest gap %s",
			kernelSeries(), i+1, []string{"127.0.0.1", secondAddr}[i], r.writes, r.gap.Round(time.Millisecond))
		waitHealth(t, d, "vol-fail", daemon.Healthy, 15*time.Second)
	}
	must(t, d.Detach(context.Background(), "vol-fail"))
}

// TestMultipathOrphanCleanup: orphan cleanup, with a short grace period,
// removes an owned controller no volume references, and never a path of a
// staged two-path volume, not even the path that is down (its port
// unlinked: the controller is connecting) while the cleanup runs.
func TestMultipathOrphanCleanup(t *testing.T) {
	if !nativeMultipath() {
		t.Skip("native multipath is off in this boot")
	}
	tg := target(t)
	nqn, port, id2 := multipathTarget(t, tg, "mpkeep", true)
	goneNQN, gonePort := simpleTarget(t, tg, "mporphan")
	fs := sysfs.NewFS("/sys")

	state := t.TempDir()
	d1, stop1 := startDaemon(t, state, nil)
	orphan, err := d1.Attach(context.Background(), volumeSpec("vol-gone", goneNQN, gonePort))
	must(t, err)
	stop1() // the volume is forgotten: its controller is an orphan now

	grace := 3 * time.Second
	d, _ := startDaemon(t, state, func(c *daemon.Config) {
		c.OrphanGrace = grace
		c.CleanupInterval = 250 * time.Millisecond
	})
	_, err = d.Attach(context.Background(), multipathSpec("vol-keep", nqn, port))
	must(t, err)
	must(t, d.MarkStaged("vol-keep", "/staging/vol-keep", true))
	eventually(t, 10*time.Second, "both paths live", func() (bool, string) {
		live, total, s := pathStates(d, "vol-keep")
		return live == 2 && total == 2, s
	})
	vi, _ := d.Volume("vol-keep")
	paths := slices.Clone(vi.Controllers)
	must(t, tg.Unlink(id2, nqn))
	waitHealth(t, d, "vol-keep", daemon.Degraded, 10*time.Second)

	eventually(t, grace+10*time.Second, "orphan removed", func() (bool, string) {
		_, err := fs.Controller(orphan.Controller)
		return err != nil, "still there"
	})
	// A few more cleanup passes with one path down.
	time.Sleep(4 * 250 * time.Millisecond)
	for _, name := range paths {
		c, err := fs.Controller(name)
		if err != nil {
			t.Errorf("cleanup removed %s, a path of the staged volume: %v", name, err)
			continue
		}
		t.Logf("path %s (%s) kept, state %s", name, c.Address.Traddr, c.StateRaw)
	}
	if n := d.Snapshot().Counters.OrphansDisconnected; n != 1 {
		t.Errorf("orphans disconnected = %d, want 1", n)
	}
	must(t, tg.Relink(id2, nqn))
	waitHealth(t, d, "vol-keep", daemon.Healthy, 15*time.Second)
	must(t, d.Detach(context.Background(), "vol-keep"))
	for _, name := range paths {
		if _, err := fs.Controller(name); err == nil {
			t.Errorf("Detach left %s connected", name)
		}
	}
}

// TestMultipathHostTraddr: each path of a volume connects from its own
// source address (host_traddr): 127.0.0.1 from 127.0.0.3 and 127.0.0.2
// from 127.0.0.4. The kernel shows each controller's host_traddr (and, on
// kernels that show it, the socket's src_addr) as asked; a down path is
// named with its source in health; Detach removes both.
func TestMultipathHostTraddr(t *testing.T) {
	if !nativeMultipath() {
		t.Skip("native multipath is off in this boot")
	}
	tg := target(t)
	nqn, port, id2 := multipathTarget(t, tg, "mpsrc", true)
	d, _ := startDaemon(t, t.TempDir(), nil)
	s := volumeSpec("vol-src", nqn, port)
	s.Options.HostTraddr = "127.0.0.3"
	s.Paths = []daemon.Path{{Traddr: "127.0.0.1", HostTraddr: "127.0.0.3"}, {Traddr: secondAddr, HostTraddr: "127.0.0.4"}}
	_, err := d.Attach(context.Background(), s)
	must(t, err)
	must(t, d.MarkStaged("vol-src", "/staging/vol-src", true))
	eventually(t, 10*time.Second, "both paths live", func() (bool, string) {
		live, total, s := pathStates(d, "vol-src")
		return live == 2 && total == 2, s
	})
	want := map[string]string{"127.0.0.1": "127.0.0.3", secondAddr: "127.0.0.4"}
	vi, _ := d.Volume("vol-src")
	for _, name := range vi.Controllers {
		c, err := sysfs.NewFS("/sys").Controller(name)
		must(t, err)
		a := c.Address
		t.Logf("%s: traddr %s host_traddr %s src_addr %s", name, a.Traddr, a.HostTraddr, a.SrcAddr)
		if src, ok := want[a.Traddr]; !ok || a.HostTraddr != src || (a.SrcAddr != "" && a.SrcAddr != src) {
			t.Errorf("%s: traddr %s host_traddr %q src_addr %q; want host_traddr %s", name, a.Traddr, a.HostTraddr, a.SrcAddr, want[a.Traddr])
		}
		delete(want, a.Traddr)
	}
	if len(want) > 0 {
		t.Errorf("no controller for %v", want)
	}
	must(t, tg.Unlink(id2, nqn))
	h := waitHealth(t, d, "vol-src", daemon.Degraded, 10*time.Second)
	if !strings.Contains(h.Message, secondAddr) {
		t.Errorf("degraded message %q does not name the down path %s", h.Message, secondAddr)
	}
	must(t, tg.Relink(id2, nqn))
	waitHealth(t, d, "vol-src", daemon.Healthy, 15*time.Second)
	must(t, d.Detach(context.Background(), "vol-src"))
	for _, name := range vi.Controllers {
		if _, err := sysfs.NewFS("/sys").Controller(name); err == nil {
			t.Errorf("Detach left %s connected", name)
		}
	}
}

// TestMultipathRestartResumes: the second address does not answer while a
// block volume is staged; the daemon stops; the address comes up while no
// daemon runs; the next daemon, restoring the staged volume from its state
// file and the mount, connects the missing path in the background.
func TestMultipathRestartResumes(t *testing.T) {
	if !nativeMultipath() {
		t.Skip("native multipath is off in this boot")
	}
	tg := target(t)
	nqn, port, id2 := multipathTarget(t, tg, "mpresume", false)
	state, root := t.TempDir(), t.TempDir()
	tune := func(c *daemon.Config) { c.StagingRoot = root }
	d1, stop1 := startDaemon(t, state, tune)
	att, err := d1.Attach(context.Background(), multipathSpec("vol-resume", nqn, port)) // ctrl_loss_tmo -1, reconnect_delay 1
	must(t, err)
	if att.PathsPending != 1 {
		t.Errorf("attachment %+v: want 1 path pending", att)
	}
	// Block staging as the node service does it: the disk bind-mounted on
	// a file under the staging root.
	staged := root + "/vol-resume/dev"
	must(t, os.MkdirAll(root+"/vol-resume", 0o750))
	must(t, os.WriteFile(staged, nil, 0o600))
	must(t, syscall.Mount(att.Device, staged, "", syscall.MS_BIND, ""))
	t.Cleanup(func() { _ = syscall.Unmount(staged, syscall.MNT_DETACH) })
	must(t, d1.MarkStaged("vol-resume", staged, true))
	stop1()

	must(t, tg.Link(id2, nqn))
	linked := time.Now()
	d2, _ := startDaemon(t, state, tune)
	eventually(t, 60*time.Second, "the missing path connected by the restarted daemon", func() (bool, string) {
		live, total, s := pathStates(d2, "vol-resume")
		return live == 2 && total == 2, s
	})
	t.Logf("port linked -> second path live after the restart: %s", time.Since(linked).Round(time.Millisecond))
	vi, _ := d2.Volume("vol-resume")
	for _, name := range vi.Controllers {
		c, err := sysfs.NewFS("/sys").Controller(name)
		must(t, err)
		if c.CtrlLossTmo != -1 || c.ReconnectDelay != 1 {
			t.Errorf("%s (%s): ctrl_loss_tmo %d reconnect_delay %d, want the stage's -1 and 1", name, c.Address.Traddr, c.CtrlLossTmo, c.ReconnectDelay)
		}
	}
	waitHealth(t, d2, "vol-resume", daemon.Healthy, 10*time.Second)
	must(t, syscall.Unmount(staged, 0))
	must(t, d2.Detach(context.Background(), "vol-resume"))
	for _, name := range vi.Controllers {
		if _, err := sysfs.NewFS("/sys").Controller(name); err == nil {
			t.Errorf("Detach left %s connected", name)
		}
	}
}
