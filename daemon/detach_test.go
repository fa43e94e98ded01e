package daemon

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// TestDetachRefcount: a controller shared by two volumes is disconnected
// when the last one leaves.
func TestDetachRefcount(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d := e.start()
	for _, s := range []Spec{spec("pvc-1", volNQN(1), 1), spec("pvc-2", volNQN(1), 2)} {
		if _, err := d.Attach(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		if err := d.MarkStaged(s.VolumeID, filepath.Join(e.staging, s.VolumeID), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Detach(t.Context(), "pvc-1"); err != nil {
		t.Fatal(err)
	}
	if got := e.conn.disconnected(); len(got) != 0 {
		t.Fatalf("disconnected %v while pvc-2 holds it", got)
	}
	if err := d.Detach(t.Context(), "pvc-2"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"nvme0"}, e.conn.disconnected()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := e.ownedNames(); len(got) != 0 {
		t.Errorf("still owned: %v", got)
	}
	if len(d.Volumes()) != 0 {
		t.Errorf("volumes left: %+v", d.Volumes())
	}
	// Idempotent.
	if err := d.Detach(t.Context(), "pvc-2"); err != nil {
		t.Errorf("second Detach: %v", err)
	}
}

// TestDetachAlreadyGone: a controller that vanished counts as
// disconnected; a failed disconnect keeps the volume for a retry.
func TestDetachAlreadyGone(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d := e.start()
	if _, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("EBUSY")
	e.conn.disconnectFn = func(string) error { return boom }
	if err := d.Detach(t.Context(), "pvc-1"); !errors.Is(err, boom) {
		t.Fatalf("Detach error %v, want %v", err, boom)
	}
	if _, ok := d.Volume("pvc-1"); !ok {
		t.Fatal("volume forgotten after a failed disconnect")
	}
	e.conn.disconnectFn = nil
	if err := sysfstest.RemoveController(e.root, "nvme0"); err != nil {
		t.Fatal(err)
	}
	if err := d.Detach(t.Context(), "pvc-1"); err != nil {
		t.Fatalf("Detach of a vanished controller: %v", err)
	}
	if _, ok := d.Volume("pvc-1"); ok {
		t.Error("volume still known")
	}
}

func TestNotReady(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1)); !errors.Is(err, ErrNotReady) {
		t.Errorf("Attach before Start: %v", err)
	}
	if err := d.Detach(t.Context(), "pvc-1"); !errors.Is(err, ErrNotReady) {
		t.Errorf("Detach before Start: %v", err)
	}
	if err := d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !d.Ready() {
		t.Error("not ready after Start")
	}
	if err := d.Start(t.Context()); err == nil {
		t.Error("second Start succeeded")
	}
	d.Close()
	d.Close()
	if d.Ready() {
		t.Error("ready after Close")
	}
	if err := d.MarkStaged("pvc-1", "/x", false); !errors.Is(err, ErrNotReady) {
		t.Errorf("MarkStaged after Close: %v", err)
	}
}

// TestConcurrentAttachDetach: 50 goroutines attach, stage and detach 10
// volumes in random order; afterwards the registry, the state file and the
// tree agree.
func TestConcurrentAttachDetach(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	e.cfg.MaxConcurrentConnects = 3
	d := e.start()
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 10 {
				i := r.IntN(10)
				id := fmt.Sprintf("pvc-%d", i)
				if r.IntN(2) == 0 {
					if _, err := d.Attach(t.Context(), spec(id, volNQN(i%5), uint32(i/5+1))); err != nil {
						t.Errorf("attach %s: %v", id, err)
						continue
					}
					if err := d.MarkStaged(id, filepath.Join(e.staging, id), false); err != nil && !errors.Is(err, ErrUnknownVolume) {
						t.Errorf("stage %s: %v", id, err)
					}
				} else if err := d.Detach(t.Context(), id); err != nil {
					t.Errorf("detach %s: %v", id, err)
				}
				if r.IntN(10) == 0 {
					d.kick(r.IntN(2) == 0)
				}
			}
		})
	}
	wg.Wait()
	d.resync(true)
	checkConsistent(t, e, d)

	for i := range 10 {
		if err := d.Detach(t.Context(), fmt.Sprintf("pvc-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	d.resync(true)
	checkConsistent(t, e, d)
	if ctrls, _ := sysfs.NewFS(e.root).Controllers(); len(ctrls) != 0 {
		t.Errorf("controllers left after detaching everything: %d", len(ctrls))
	}
}

// checkConsistent: every volume's controller exists and is owned; every
// owned controller is held by a volume; the state file says the same.
func checkConsistent(t *testing.T, e *env, d *Daemon) {
	t.Helper()
	ctrls, err := sysfs.NewFS(e.root).Controllers()
	if err != nil {
		t.Fatal(err)
	}
	inTree := map[string]bool{}
	for _, c := range ctrls {
		inTree[c.Name] = true
	}
	held := map[string]bool{}
	for _, v := range d.Volumes() {
		if v.State != VolumeStaged {
			t.Errorf("volume %s is %s", v.ID, v.State)
		}
		for _, c := range v.Controllers {
			held[c] = true
			if !inTree[c] {
				t.Errorf("volume %s holds %s, which does not exist", v.ID, c)
			}
		}
	}
	var owned []string
	for _, c := range d.Snapshot().Controllers {
		if c.Owned {
			owned = append(owned, c.Name)
			if !held[c.Name] {
				t.Errorf("%s owned but held by no volume", c.Name)
			}
		}
	}
	for name := range inTree {
		if !held[name] {
			t.Errorf("%s connected but held by no volume", name)
		}
	}
	if diff := cmp.Diff(owned, e.ownedNames()); diff != "" {
		t.Errorf("state file vs registry (-registry +file):\n%s", diff)
	}
}

// TestDetachKeepsMountedController: a disk of the controller still mounted
// anywhere (a mount(8) of a killed predecessor that finished late, a bind
// of the device node, a mount made by hand) keeps the controller
// connected; the volume goes, and orphan cleanup disconnects the
// controller only once nothing is mounted and the grace period has run.
func TestDetachKeepsMountedController(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mount func(att Attachment, staging string) string
	}{
		{"file system on the staging path", func(att Attachment, staging string) string {
			return fsMount(40, fmt.Sprintf("%d:%d", att.Namespace.Dev.Major, att.Namespace.Dev.Minor), staging)
		}},
		{"device node bound outside the staging root", func(att Attachment, _ string) string {
			return blockMount(40, att.Namespace.Name, "/mnt/by-hand")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, sysfstest.Spec{Multipath: true})
			d := e.start()
			att, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1))
			if err != nil {
				t.Fatal(err)
			}
			staging := filepath.Join(e.staging, "pvc-1")
			e.writeMounts(tc.mount(att, staging))
			if err := d.Detach(t.Context(), "pvc-1"); err != nil {
				t.Fatal(err)
			}
			if got := e.conn.disconnected(); len(got) != 0 {
				t.Fatalf("disconnected %v under a mount", got)
			}
			if _, ok := controllerInfoOK(d, att.Controller); !ok {
				t.Fatalf("%s left the registry", att.Controller)
			}
			e.clock.Advance(time.Hour)
			d.cleanup(t.Context())
			if got := e.conn.disconnected(); len(got) != 0 {
				t.Fatalf("cleanup disconnected %v under a mount", got)
			}
			e.writeMounts()
			d.cleanup(t.Context())
			e.clock.Advance(e.cfg.OrphanGrace)
			d.cleanup(t.Context())
			if diff := cmp.Diff([]string{att.Controller}, e.conn.disconnected()); diff != "" {
				t.Errorf("after the unmount and the grace period (-want +got):\n%s", diff)
			}
		})
	}
}

func controllerInfoOK(d *Daemon, name string) (ControllerInfo, bool) {
	for _, c := range d.Snapshot().Controllers {
		if c.Name == name {
			return c, true
		}
	}
	return ControllerInfo{}, false
}

// TestDetachAfterPublishUnderStagingRoot: a block volume's publish target
// (and kubelet's own bind of the device, volumeDevices/<pv>/dev/<pod>) lies
// under the staging root, kubelet's plugins directory. An orphan cleanup
// pass while the volume is published must not take that bind for a staged
// mount no volume explains: the "recovered" volume it made held the
// controllers, so the unstage that followed the unpublish disconnected
// nothing and the controllers stayed until a later pass and the orphan
// grace period. Single-path volumes, multipath on and off.
func TestDetachAfterPublishUnderStagingRoot(t *testing.T) {
	for _, mp := range []bool{true, false} {
		t.Run(fmt.Sprintf("multipath=%t", mp), func(t *testing.T) {
			e := newEnv(t, sysfstest.Spec{Multipath: mp})
			d := e.start()
			att, err := d.Attach(t.Context(), spec("pvc-1", volNQN(1), 1))
			if err != nil {
				t.Fatal(err)
			}
			staging := filepath.Join(e.staging, "kubernetes.io/csi/volumeDevices/staging/pvc-1")
			if err := d.MarkStaged("pvc-1", staging, true); err != nil {
				t.Fatal(err)
			}
			stageMount := blockMount(40, att.Namespace.Name, staging+"/device")
			e.writeMounts(stageMount,
				blockMount(41, att.Namespace.Name, filepath.Join(e.staging, "kubernetes.io/csi/volumeDevices/publish/pvc-1/pod-1")),
				blockMount(42, att.Namespace.Name, filepath.Join(e.staging, "kubernetes.io/csi/volumeDevices/pvc-1/dev/pod-1")))
			d.cleanup(t.Context())
			for _, v := range d.Volumes() {
				if v.Recovered {
					t.Errorf("a publish bind of a staged volume became a recovered volume: %s", v.ID)
				}
			}
			e.writeMounts(stageMount) // unpublished
			e.writeMounts()           // unstaged
			if err := d.Detach(t.Context(), "pvc-1"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{att.Controller}, e.conn.disconnected()); diff != "" {
				t.Errorf("disconnected at unstage (-want +got):\n%s", diff)
			}
		})
	}
}
