package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// multiSpec is a volume with paths on 127.0.0.1 and 127.0.0.2 (port 4420).
func multiSpec(id string) Spec {
	s := spec(id, volNQN(1), 1)
	s.Paths = []Path{{Traddr: "127.0.0.1"}, {Traddr: "127.0.0.2"}}
	return s
}

func (f *fakeConn) setFail(traddr string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failTraddr == nil {
		f.failTraddr = map[string]error{}
	}
	f.failTraddr[traddr] = err
}

func volumeControllers(d *Daemon, id string) []string {
	vi, _ := d.Volume(id)
	c := slices.Clone(vi.Controllers)
	slices.Sort(c)
	return c
}

func TestMultipathAttachAndDetach(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d := e.start()
	att, err := d.Attach(t.Context(), multiSpec("pvc-1"))
	if err != nil {
		t.Fatal(err)
	}
	if att.Device != "/dev/nvme0n1" {
		t.Errorf("device %q, want /dev/nvme0n1 (one head for both paths)", att.Device)
	}
	waitFor(t, "both paths connected and owned", func() bool { return len(e.ownedNames()) == 2 })
	d.resync(true)
	if h, _ := d.VolumeHealth("pvc-1"); h.Condition != Healthy {
		t.Errorf("health %+v, want Healthy", h)
	}
	if vs := d.Snapshot().Volumes; len(vs) != 1 || vs[0].Paths != 2 || vs[0].LivePaths != 2 {
		t.Errorf("snapshot volumes %+v: want pvc-1 with 2 of 2 paths live", vs)
	}
	if err := d.Detach(t.Context(), "pvc-1"); err != nil {
		t.Fatal(err)
	}
	got := e.conn.disconnected()
	slices.Sort(got)
	if diff := cmp.Diff([]string{"nvme0", "nvme1"}, got); diff != "" {
		t.Errorf("disconnected (-want +got):\n%s", diff)
	}
}

// TestMultipathOnePathUnreachable: the stage succeeds on the live path,
// health says which path is down and why, and the other path is attached
// in the background when it becomes reachable.
func TestMultipathOnePathUnreachable(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	e.conn.setFail("127.0.0.2", errRefused)
	d := e.start()
	att, err := d.Attach(t.Context(), multiSpec("pvc-1"))
	if err != nil {
		t.Fatal(err)
	}
	if att.Controller != "nvme0" || att.PathsPending != 1 {
		t.Errorf("attachment %+v: want nvme0 with 1 path pending", att)
	}
	waitFor(t, "the failure of the second path recorded", func() bool {
		h, _ := d.VolumeHealth("pvc-1")
		return h.Condition == Degraded && strings.Contains(h.Message, "TargetUnreachable")
	})
	if vs := d.Snapshot().Volumes; len(vs) != 1 || vs[0].Paths != 2 || vs[0].LivePaths != 1 {
		t.Errorf("snapshot volumes %+v: want pvc-1 with 1 of 2 paths live", vs)
	}
	h, _ := d.VolumeHealth("pvc-1")
	if h.Reason != "PathNotConnected" || !strings.Contains(h.Message, "1 of 2 paths down: 127.0.0.2:4420 not connected") {
		t.Errorf("health %+v: want Degraded PathNotConnected naming 127.0.0.2:4420", h)
	}
	th := d.StorageHealth()
	i := slices.IndexFunc(th, func(t TargetHealth) bool { return t.Traddr == "127.0.0.2" })
	if i < 0 || th[i].Condition != Inaccessible || th[i].Reason != "TargetUnreachable" {
		t.Errorf("storage health %+v: want 127.0.0.2 Inaccessible TargetUnreachable", th)
	}
	e.conn.setFail("127.0.0.2", nil)
	waitFor(t, "the second path connected in the background", func() bool { return len(volumeControllers(d, "pvc-1")) == 2 })
	d.resync(true)
	if h, _ := d.VolumeHealth("pvc-1"); h.Condition != Healthy {
		t.Errorf("health %+v after the second path connected, want Healthy", h)
	}
}

// TestMultipathDetachStopsBackground: Detach ends the connects of a path
// that never comes, and no path goroutine outlives it.
func TestMultipathDetachStopsBackground(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	e.conn.setFail("127.0.0.2", errRefused)
	d := e.start()
	if _, err := d.Attach(t.Context(), multiSpec("pvc-1")); err != nil {
		t.Fatal(err)
	}
	if err := d.Detach(t.Context(), "pvc-1"); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	n := len(d.runs)
	d.mu.Unlock()
	if n != 0 {
		t.Errorf("%d path runs after Detach, want 0", n)
	}
	if diff := cmp.Diff([]string{"nvme0"}, e.conn.disconnected()); diff != "" {
		t.Errorf("disconnected (-want +got):\n%s", diff)
	}
	if _, ok := d.Volume("pvc-1"); ok {
		t.Error("volume still known after Detach")
	}
}

func TestMultipathAllPathsFail(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	e.conn.setFail("127.0.0.1", errRefused)
	e.conn.setFail("127.0.0.2", errAuth)
	d := e.start()
	_, err := d.Attach(t.Context(), multiSpec("pvc-1"))
	if !errors.Is(err, fabrics.ErrUnreachable) || !errors.Is(err, fabrics.ErrAuth) ||
		!strings.Contains(err.Error(), "path 127.0.0.1:4420: ") || !strings.Contains(err.Error(), "path 127.0.0.2:4420: ") {
		t.Fatalf("Attach error %v: want both paths' errors, each naming its address and port", err)
	}
	h, _ := d.VolumeHealth("pvc-1")
	if h.Condition != Inaccessible {
		t.Errorf("health %+v, want Inaccessible", h)
	}
	d.mu.Lock()
	n := len(d.runs)
	d.mu.Unlock()
	if n != 0 {
		t.Errorf("%d path runs after a failed Attach, want 0", n)
	}
}

// TestMultipathOff: with nvme_core.multipath=N only the first path is
// connected (two would be two block devices) and health says why.
func TestMultipathOff(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: false})
	d := e.start()
	att, err := d.Attach(context.Background(), multiSpec("pvc-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !att.MultipathOff || e.conn.connectCount() != 1 {
		t.Errorf("attachment %+v after %d connects: want MultipathOff and one connect", att, e.conn.connectCount())
	}
	d.resync(true)
	h, _ := d.VolumeHealth("pvc-1")
	if h.Condition != Degraded || h.Reason != "MultipathDisabled" || !strings.Contains(h.Message, "nvme_core.multipath=N") {
		t.Errorf("health %+v: want Degraded MultipathDisabled", h)
	}
}

// TestMultipathRestart: a restart finds both paths' controllers of a staged
// multipath volume (the state file names its paths).
func TestMultipathRestart(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d := e.start()
	att, err := d.Attach(t.Context(), multiSpec("pvc-1"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both paths connected and owned", func() bool { return len(e.ownedNames()) == 2 })
	staging := filepath.Join(e.staging, "csi", "pvc-1", "globalmount")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeMounts(fsMount(40, att.Namespace.Dev.String(), staging))
	if err := d.MarkStaged("pvc-1", staging, false); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if st := e.readState(); len(st.Volumes) != 1 || len(st.Volumes[0].Paths) != 1 || st.Volumes[0].Paths[0].Traddr != "127.0.0.2" {
		t.Fatalf("state file volumes %+v: want pvc-1 with its second path", st.Volumes)
	}
	d2 := e.start()
	if diff := cmp.Diff([]string{"nvme0", "nvme1"}, volumeControllers(d2, "pvc-1")); diff != "" {
		t.Errorf("controllers after restart (-want +got):\n%s", diff)
	}
	e.writeMounts() // unstaged
	if err := d2.Detach(t.Context(), "pvc-1"); err != nil {
		t.Fatal(err)
	}
	got := e.conn.disconnected()
	slices.Sort(got)
	if diff := cmp.Diff([]string{"nvme0", "nvme1"}, got); diff != "" {
		t.Errorf("disconnected (-want +got):\n%s", diff)
	}
}

// TestMultipathRestartResumesPath: a path that never connected before a
// restart is connected in the background by the new daemon, with the
// volume's options as the stage gave them (kept in the state file); a
// volume whose stage had DH-CHAP secrets is not resumed (they are not
// kept) and health says so.
func TestMultipathRestartResumesPath(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	e.conn.setFail("127.0.0.2", errRefused)
	d := e.start()
	s := multiSpec("pvc-1")
	s.Options.CtrlLossTmo, s.Options.ReconnectDelay, s.Options.DataDigest = fabrics.Int(-1), fabrics.Int(2), true
	att, err := d.Attach(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(e.staging, "csi", "pvc-1", "globalmount")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeMounts(fsMount(40, att.Namespace.Dev.String(), staging))
	if err := d.MarkStaged("pvc-1", staging, false); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if st := e.readState(); len(st.Volumes) != 1 || st.Volumes[0].Connect == nil || st.Volumes[0].Connect.Secrets {
		t.Fatalf("state file volumes %+v: want pvc-1 with its connect options and no secrets", st.Volumes)
	}

	e.conn.setFail("127.0.0.2", nil)
	d2 := e.start()
	waitFor(t, "the missing path connected after the restart", func() bool { return len(volumeControllers(d2, "pvc-1")) == 2 })
	var second fabrics.Options
	for _, o := range e.conn.connectedOpts() {
		if o.Traddr == "127.0.0.2" {
			second = o
		}
	}
	if cl, _ := second.CtrlLossTmo.Get(); cl != -1 || !second.DataDigest || second.NQN != s.Options.NQN ||
		second.HostNQN != s.Options.HostNQN || second.HostID != s.Options.HostID {
		t.Errorf("the resumed path's connect options %+v: want the stage's (ctrl_loss_tmo -1, data_digest, its NQN, host NQN and host ID)", second)
	}
	d2.resync(true)
	if h, _ := d2.VolumeHealth("pvc-1"); h.Condition != Healthy {
		t.Errorf("health %+v after the resumed path connected, want Healthy", h)
	}
	e.writeMounts()
	if err := d2.Detach(t.Context(), "pvc-1"); err != nil {
		t.Fatal(err)
	}
}

func TestMultipathRestartWithSecretsNotResumed(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	e.conn.setFail("127.0.0.2", errRefused)
	d := e.start()
	s := multiSpec("pvc-1")
	s.Options.DHCHAPSecret = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:"
	att, err := d.Attach(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(e.staging, "csi", "pvc-1", "globalmount")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeMounts(fsMount(40, att.Namespace.Dev.String(), staging))
	if err := d.MarkStaged("pvc-1", staging, false); err != nil {
		t.Fatal(err)
	}
	d.Close()
	b, err := os.ReadFile(filepath.Join(e.state, stateFileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "DHHC") {
		t.Fatalf("the state file holds the secret:\n%s", b)
	}
	e.conn.setFail("127.0.0.2", nil)
	connects := e.conn.connectCount()
	d2 := e.start()
	waitFor(t, "health naming the path not resumed", func() bool {
		h, _ := d2.VolumeHealth("pvc-1")
		return h.Condition == Degraded && strings.Contains(h.Message, "NotRetriedAfterRestart")
	})
	if n := e.conn.connectCount(); n != connects {
		t.Errorf("%d connects after the restart, want none", n-connects)
	}
	e.writeMounts()
	if err := d2.Detach(t.Context(), "pvc-1"); err != nil {
		t.Fatal(err)
	}
}

func TestAttachIOPolicy(t *testing.T) {
	e := newEnv(t, sysfstest.Spec{Multipath: true})
	d := e.start()
	s := multiSpec("pvc-1")
	s.IOPolicy = "round-robin"
	att, err := d.Attach(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := e.cfg.FS.Subsystem(att.Namespace.Parent)
	if err != nil {
		t.Fatal(err)
	}
	if sub.IOPolicy != "round-robin" {
		t.Errorf("iopolicy %q, want round-robin", sub.IOPolicy)
	}
}
