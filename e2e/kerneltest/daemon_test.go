//go:build linux

package kerneltest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
)

// startDaemon runs an in-process daemon on the real kernel. Close it with the
// returned function (t.Cleanup does too); closing leaves connections alone.
func startDaemon(t *testing.T, stateDir string, tune func(*daemon.Config)) (*daemon.Daemon, func()) {
	t.Helper()
	fs := sysfs.NewFS("/sys")
	cfg := daemon.Config{
		FS:              fs,
		Fabrics:         fabrics.NewClient("", fs),
		StateDir:        stateDir,
		StagingRoot:     t.TempDir(),
		PollInterval:    time.Second,
		OrphanGrace:     time.Hour,
		CleanupInterval: time.Hour,
		Logger:          slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tune != nil {
		tune(&cfg)
	}
	d, err := daemon.New(cfg)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	must(t, d.Start(ctx))
	if !d.Ready() {
		t.Fatal("Start returned but the daemon is not ready")
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = d.Close()
			cancel()
		}
	}
	t.Cleanup(stop)
	return d, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func volumeSpec(id, nqn string, port int) daemon.Spec {
	o := baseOpts(nqn, port)
	o.CtrlLossTmo = fabrics.Int(-1)
	o.ReconnectDelay = fabrics.Int(1)
	return daemon.Spec{VolumeID: id, Options: o, NSID: 1}
}

func controllerInfo(d *daemon.Daemon, name string) (daemon.ControllerInfo, bool) {
	for _, c := range d.Snapshot().Controllers {
		if c.Name == name {
			return c, true
		}
	}
	return daemon.ControllerInfo{}, false
}

// TestDaemonOutage: stage, unlink the target port: the registry shows the
// controller connecting and volume and storage health say so; relink: live
// again, one reconnect counted, healthy.
func TestDaemonOutage(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "outage")
	d, _ := startDaemon(t, t.TempDir(), nil)
	att, err := d.Attach(context.Background(), volumeSpec("vol-outage", nqn, port))
	must(t, err)
	if _, err := os.Stat(att.Device); err != nil {
		t.Fatalf("Attach returned device %s: %v", att.Device, err)
	}
	must(t, d.MarkStaged("vol-outage", "/staging/vol-outage", true))

	must(t, tg.Unlink(port, nqn))
	unlinked := time.Now()
	eventually(t, 5*time.Second, "registry connecting", func() (bool, string) {
		c, _ := controllerInfo(d, att.Controller)
		return c.State == sysfs.StateConnecting, c.StateRaw
	})
	t.Logf("port unlink -> registry connecting: %s", time.Since(unlinked).Round(time.Millisecond))
	h, err := d.VolumeHealth("vol-outage")
	must(t, err)
	if h.Condition != daemon.Inaccessible || h.Reason == "" || h.Message == "" {
		t.Errorf("volume health during the outage = %+v, want Inaccessible with a reason and a message", h)
	}
	t.Logf("volume health: %s %s: %s", h.Condition, h.Reason, h.Message)
	var th daemon.TargetHealth
	for _, x := range d.StorageHealth() {
		if x.Trsvcid == fmt.Sprint(port) {
			th = x
		}
	}
	if th.Condition != daemon.Inaccessible {
		t.Errorf("storage health of 127.0.0.1:%d = %+v, want Inaccessible", port, th)
	}

	must(t, tg.Relink(port, nqn))
	eventually(t, 10*time.Second, "registry live", func() (bool, string) {
		c, _ := controllerInfo(d, att.Controller)
		return c.State == sysfs.StateLive, c.StateRaw
	})
	eventually(t, 5*time.Second, "one reconnect counted", func() (bool, string) {
		c, _ := controllerInfo(d, att.Controller)
		return c.Reconnects == 1, fmt.Sprint(c.Reconnects)
	})
	h, err = d.VolumeHealth("vol-outage")
	must(t, err)
	if h.Condition != daemon.Healthy {
		t.Errorf("volume health after recovery = %+v, want Healthy", h)
	}
	must(t, d.Detach(context.Background(), "vol-outage"))
	if _, err := sysfs.NewFS("/sys").Controller(att.Controller); err == nil {
		t.Errorf("Detach of the last volume left %s connected", att.Controller)
	}
}

// TestDaemonRestartAdopts: the daemon dies between connect and mount; the
// next one rebuilds the registry from sysfs and the ownership file and the
// stage completes on retry with the same controller.
func TestDaemonRestartAdopts(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "restart")
	state := t.TempDir()
	d1, stop1 := startDaemon(t, state, nil)
	first, err := d1.Attach(context.Background(), volumeSpec("vol-restart", nqn, port))
	must(t, err)
	stop1() // dies before MarkStaged: nothing but the ownership file records it

	d2, _ := startDaemon(t, state, nil)
	c, ok := controllerInfo(d2, first.Controller)
	if !ok || !c.Owned {
		t.Fatalf("after restart: %s known %v owned %v, want a known, owned controller", first.Controller, ok, c.Owned)
	}
	again, err := d2.Attach(context.Background(), volumeSpec("vol-restart", nqn, port))
	must(t, err)
	if again.Controller != first.Controller || again.Device != first.Device || !again.Adopted {
		t.Errorf("retry after restart = %+v, want %s/%s adopted", again, first.Controller, first.Device)
	}
	must(t, d2.MarkStaged("vol-restart", "/staging/vol-restart", true))
	must(t, d2.Detach(context.Background(), "vol-restart"))
}

// TestDaemonOrphanCleanup: an owned controller that no volume references is
// removed only after the grace period; one connected by hand with another
// host NQN, and one connected by hand with ours but not created by the
// driver, are never touched.
func TestDaemonOrphanCleanup(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "orphan")
	foreignNQN, foreignPort := simpleTarget(t, tg, "foreign")
	handNQN, handPort := simpleTarget(t, tg, "byhand")
	fs := sysfs.NewFS("/sys")

	state := t.TempDir()
	d1, stop1 := startDaemon(t, state, nil)
	orphan, err := d1.Attach(context.Background(), volumeSpec("vol-gone", nqn, port))
	must(t, err)
	stop1() // the volume is forgotten: its controller is an orphan now

	foreign := connect(t, fabrics.NewClient("", fs), fabrics.Options{
		Traddr: "127.0.0.1", Trsvcid: foreignPort, NQN: foreignNQN,
		HostNQN: "nqn.2014-08.org.nvmexpress:uuid:0b5c4f0e-0000-4000-8000-000000000001", HostID: "0b5c4f0e-0000-4000-8000-000000000001",
	})
	byHand := connect(t, fabrics.NewClient("", fs), baseOpts(handNQN, handPort))

	grace := 3 * time.Second
	// The daemon starts the grace clock inside Start (its rebuild): a time
	// taken before Start is a lower bound of it. One taken after Start
	// returns is not: the removal can come sooner than the grace period
	// after it, by as much as Start took after its rebuild.
	started := time.Now()
	d2, _ := startDaemon(t, state, func(c *daemon.Config) {
		c.OrphanGrace = grace
		c.CleanupInterval = 250 * time.Millisecond
	})
	// Before the grace period ends, the orphan stays.
	if _, err := fs.Controller(orphan.Controller); err != nil {
		if took := time.Since(started); took < grace {
			t.Fatalf("the orphan %s was removed %s after start, before its %s grace period: %v", orphan.Controller, took, grace, err)
		}
	}
	eventually(t, grace+10*time.Second, "orphan removed", func() (bool, string) {
		_, err := fs.Controller(orphan.Controller)
		return err != nil, "still there"
	})
	if took := time.Since(started); took < grace {
		t.Errorf("orphan removed %s after start, before the %s grace period", took, grace)
	}
	for _, name := range []string{foreign.Name, byHand.Name} {
		if _, err := fs.Controller(name); err != nil {
			t.Errorf("cleanup touched %s, which the driver does not own: %v", name, err)
		}
		if c, ok := controllerInfo(d2, name); ok && c.Owned {
			t.Errorf("%s reported as owned", name)
		}
	}
	// The controller leaves sysfs during the delete_controller write; the
	// counter moves once the write returns.
	eventually(t, 5*time.Second, "one orphan disconnect counted", func() (bool, string) {
		n := d2.Snapshot().Counters.OrphansDisconnected
		return n == 1, fmt.Sprint(n)
	})
}

// TestDaemonNamespaceBurst: 100 namespace removes and adds on the target
// leave the registry equal to sysfs, and the volume's device in place.
func TestDaemonNamespaceBurst(t *testing.T) {
	tg := target(t)
	nqn, port := uniqueNQN("burst"), nextPort()
	must(t, tg.AddSubsystem(nvmet.Subsystem{NQN: nqn, AllowAnyHost: true}))
	for ns := 1; ns <= 10; ns++ {
		dev, err := tg.NullBlk(8)
		must(t, err)
		must(t, tg.AddNamespace(nqn, nvmet.Namespace{NSID: ns, Device: dev}))
	}
	must(t, tg.AddPort(nvmet.Port{ID: port, Traddr: "127.0.0.1", Trsvcid: port}))
	must(t, tg.Link(port, nqn))
	d, _ := startDaemon(t, t.TempDir(), nil)
	att, err := d.Attach(context.Background(), volumeSpec("vol-burst", nqn, port))
	must(t, err)
	must(t, d.MarkStaged("vol-burst", "/staging/vol-burst", true))

	for round := 0; round < 5; round++ {
		for ns := 2; ns <= 10; ns++ { // 9 namespaces x 2 x 5 rounds = 90, plus 10 below
			must(t, tg.SetNamespaceEnabled(nqn, ns, false))
			must(t, tg.SetNamespaceEnabled(nqn, ns, true))
		}
	}
	for i := 0; i < 5; i++ {
		must(t, tg.SetNamespaceEnabled(nqn, 10, false))
		must(t, tg.SetNamespaceEnabled(nqn, 10, true))
	}
	fs := sysfs.NewFS("/sys")
	eventually(t, 20*time.Second, "registry equal to sysfs", func() (bool, string) {
		want, err := fs.Controllers()
		if err != nil {
			return false, err.Error()
		}
		var w, g []string
		for _, c := range want {
			w = append(w, c.Name+"="+c.StateRaw)
		}
		for _, c := range d.Snapshot().Controllers {
			g = append(g, c.Name+"="+c.StateRaw)
		}
		return slices.Equal(w, g), fmt.Sprintf("sysfs %v registry %v", w, g)
	})
	v, ok := d.Volume("vol-burst")
	if !ok || v.Device != att.Device {
		t.Errorf("volume after the burst = %+v, want device %s", v, att.Device)
	}
	if _, err := os.Stat(att.Device); err != nil {
		t.Errorf("device %s after the burst: %v", att.Device, err)
	}
	t.Logf("counters: %+v", d.Snapshot().Counters)
	must(t, d.Detach(context.Background(), "vol-burst"))
}

// TestDaemonLowerLossTimeout: a controller reconnecting forever to a dead
// target is given up by the kernel once the drain lowers its ctrl_loss_tmo
// (what --drain-dead-after and SIGUSR1 do), while a live one is untouched.
func TestDaemonLowerLossTimeout(t *testing.T) {
	tg := target(t)
	deadNQN, deadPort := simpleTarget(t, tg, "dead")
	liveNQN, livePort := simpleTarget(t, tg, "alive")
	d, _ := startDaemon(t, t.TempDir(), nil)
	dead, err := d.Attach(context.Background(), volumeSpec("vol-dead", deadNQN, deadPort))
	must(t, err)
	live, err := d.Attach(context.Background(), volumeSpec("vol-live", liveNQN, livePort))
	must(t, err)
	must(t, tg.Unlink(deadPort, deadNQN))
	eventually(t, 5*time.Second, "registry connecting", func() (bool, string) {
		c, _ := controllerInfo(d, dead.Controller)
		return c.State == sysfs.StateConnecting, c.StateRaw
	})
	changed, err := d.LowerLossTimeout(0, 2)
	must(t, err)
	if !slices.Equal(changed, []string{dead.Controller}) {
		t.Fatalf("LowerLossTimeout changed %v, want only %s", changed, dead.Controller)
	}
	fs := sysfs.NewFS("/sys")
	eventually(t, 15*time.Second, dead.Controller+" given up by the kernel", func() (bool, string) {
		_, err := fs.Controller(dead.Controller)
		return err != nil, "still there"
	})
	c, err := fs.Controller(live.Controller)
	must(t, err)
	if c.CtrlLossTmo != -1 || c.State != sysfs.StateLive {
		t.Errorf("the live controller was touched: ctrl_loss_tmo %d state %s", c.CtrlLossTmo, c.StateRaw)
	}
	// The daemon learns of the removal from the kernel's remove uevent,
	// after sysfs has dropped the controller: health says ControllerDeleting
	// (seen in CI, "deleting (no IO)") until then.
	eventually(t, 10*time.Second, "health of the given-up volume Inaccessible ControllerGone", func() (bool, string) {
		h, err := d.VolumeHealth("vol-dead")
		if err != nil {
			return false, err.Error()
		}
		return h.Condition == daemon.Inaccessible && h.Reason == "ControllerGone", fmt.Sprintf("%+v", h)
	})
	must(t, d.Detach(context.Background(), "vol-live"))
	must(t, d.Detach(context.Background(), "vol-dead"))
}

// handConnect connects as nvme-cli does with /etc/nvme/hostnqn and
// /etc/nvme/hostid holding the lab's host identity (the one the daemon's
// specs use): the option string written to /dev/nvme-fabrics by this test,
// not through package fabrics. The controller is deleted at the end.
func handConnect(t *testing.T, nqn string, port int) string {
	t.Helper()
	reply, err := rawConnect(fmt.Sprintf("nqn=%s,transport=tcp,traddr=127.0.0.1,trsvcid=%d,hostnqn=%s,hostid=%s",
		nqn, port, labHostNQN, labHostID))
	if err != nil {
		t.Fatalf("hand connect to %s: %v", nqn, err)
	}
	c, err := fabrics.ParseReply(reply)
	if err != nil {
		t.Fatalf("hand connect reply %q: %v", reply, err)
	}
	t.Cleanup(func() { _ = rawDelete(c.Name) })
	return c.Name
}

// TestDaemonBorrowsHandMadeController (issue #13): a controller connected by
// hand with our host NQN, found in the registry or adopted on EALREADY,
// serves a volume staged on it but stays borrowed: after the unstage, after
// an orphan grace period (an owned witness of the same daemon, left
// unreferenced by a failed Attach, is removed meanwhile, so cleanup did run
// past its grace) and after a restart it is still connected and not owned.
func TestDaemonBorrowsHandMadeController(t *testing.T) {
	tg := target(t)
	fs := sysfs.NewFS("/sys")
	for _, tc := range []struct {
		name     string
		ealready bool // hand connect after the daemon's first re-read: Attach's connect meets EALREADY
	}{
		{name: "found in the registry"},
		{name: "adopted on EALREADY", ealready: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tag := "borrowed"
			if tc.ealready {
				tag = "borrowed-ealready"
			}
			nqn, port := simpleTarget(t, tg, tag)
			witnessNQN, witnessPort := simpleTarget(t, tg, tag+"-witness")
			var hand string
			if !tc.ealready {
				hand = handConnect(t, nqn, port)
			}
			state := t.TempDir()
			grace := time.Second
			tune := func(c *daemon.Config) {
				c.OrphanGrace = grace
				c.CleanupInterval = 250 * time.Millisecond
				c.DeviceTimeout = 500 * time.Millisecond
				c.NoEvents = true // new controllers are seen by full re-reads only
			}
			d, stop := startDaemon(t, state, tune)
			if tc.ealready {
				eventually(t, 10*time.Second, "the daemon's first full re-read", func() (bool, string) {
					n := d.Snapshot().Counters.Resyncs
					return n >= 1, fmt.Sprint(n)
				})
				hand = handConnect(t, nqn, port)
			}

			spec := daemon.Spec{VolumeID: "vol-" + tag, Options: baseOpts(nqn, port), NSID: 1}
			att, err := d.Attach(context.Background(), spec)
			must(t, err)
			wantWrites := 0
			if tc.ealready {
				wantWrites = 1
			}
			if att.Controller != hand || !att.Adopted || att.Timing.Attempts != wantWrites {
				t.Fatalf("Attach = %s adopted %v after %d connect writes; want %s adopted after %d",
					att.Controller, att.Adopted, att.Timing.Attempts, hand, wantWrites)
			}
			must(t, d.MarkStaged(spec.VolumeID, "/staging/"+spec.VolumeID, true))
			if c, _ := controllerInfo(d, hand); c.Owned {
				t.Errorf("%s, connected by hand, is owned", hand)
			}
			if h, err := d.VolumeHealth(spec.VolumeID); err != nil || h.Condition != daemon.Healthy {
				t.Errorf("health of the volume on the borrowed controller: %+v, %v", h, err)
			}
			must(t, d.Detach(context.Background(), spec.VolumeID))
			if _, err := fs.Controller(hand); err != nil {
				t.Fatalf("the unstage disconnected %s, connected by hand: %v", hand, err)
			}

			// The witness: created by the daemon, so owned; its Attach fails
			// (no namespace 2), leaving it unreferenced.
			_, err = d.Attach(context.Background(), daemon.Spec{VolumeID: "vol-" + tag + "-witness", Options: baseOpts(witnessNQN, witnessPort), NSID: 2})
			if !errors.Is(err, daemon.ErrDeviceTimeout) {
				t.Fatalf("witness Attach: %v, want ErrDeviceTimeout", err)
			}
			var witness string
			for _, c := range d.Snapshot().Controllers {
				if c.SubsysNQN == witnessNQN {
					witness = c.Name
					if !c.Owned {
						t.Errorf("witness %s, created by the daemon, is not owned", c.Name)
					}
				}
			}
			if witness == "" {
				t.Fatal("the witness controller is not in the registry")
			}
			eventually(t, grace+10*time.Second, "witness removed by orphan cleanup", func() (bool, string) {
				_, err := fs.Controller(witness)
				return err != nil, "still there"
			})
			if _, err := fs.Controller(hand); err != nil {
				t.Fatalf("orphan cleanup disconnected %s, connected by hand: %v", hand, err)
			}
			// The counter moves just after the delete_controller write.
			eventually(t, 5*time.Second, "one orphan disconnect counted (the witness)", func() (bool, string) {
				n := d.Snapshot().Counters.OrphansDisconnected
				return n == 1, fmt.Sprint(n)
			})

			stop()
			d2, _ := startDaemon(t, state, tune)
			if c, ok := controllerInfo(d2, hand); !ok || c.Owned {
				t.Errorf("after a restart: %s known %v owned %v, want known and borrowed", hand, ok, c.Owned)
			}
			if _, err := fs.Controller(hand); err != nil {
				t.Errorf("%s gone after the restart: %v", hand, err)
			}
		})
	}
}
