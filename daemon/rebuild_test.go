package daemon

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// rebuildSpec: vol0 (nvme0, owned, staged fs), vol1 (nvme1, owned, staged
// block), vol2 (nvme2, owned, unreferenced), root disk (nvme3, another host
// NQN, mounted outside the staging root), and a hand-made connection
// (nvme4, another host NQN, unreferenced).
func rebuildSpec(multipath bool) sysfstest.Spec {
	sub := func(i int, c sysfstest.Controller) sysfstest.Subsystem {
		return sysfstest.Subsystem{Instance: i, NQN: volNQN(i), Controllers: []sysfstest.Controller{c},
			Namespaces: []sysfstest.Namespace{{NSID: 1}}}
	}
	return sysfstest.Spec{Multipath: multipath, Subsystems: []sysfstest.Subsystem{
		sub(0, ctrlSpec(0, "live")),
		sub(1, ctrlSpec(1, "connecting")),
		sub(2, ctrlSpec(2, "live")),
		sub(3, sysfstest.Controller{Instance: 3}),
		sub(4, sysfstest.Controller{Instance: 4}),
	}}
}

func devOf(t *testing.T, root string, i int) sysfs.Namespace {
	t.Helper()
	ns, err := sysfs.NewFS(root).FindNamespace(volNQN(i), 1)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestRebuild(t *testing.T) {
	for _, multipath := range []bool{true, false} {
		t.Run(map[bool]string{true: "multipath", false: "nomultipath"}[multipath], func(t *testing.T) {
			e := newEnv(t, rebuildSpec(multipath))
			stage0 := filepath.Join(e.staging, "kubernetes.io/csi/rds.csi.srvlab.io/aaaa/globalmount")
			stage1 := filepath.Join(e.staging, "kubernetes.io/csi/rds.csi.srvlab.io/bbbb/globalmount")
			stage5 := filepath.Join(e.staging, "kubernetes.io/csi/rds.csi.srvlab.io/cccc/globalmount")
			ns0, ns1, ns3, ns4 := devOf(t, e.root, 0), devOf(t, e.root, 1), devOf(t, e.root, 3), devOf(t, e.root, 4)
			e.writeMounts(
				fsMount(40, ns0.Dev.String(), stage0),
				blockMount(41, ns1.Name, stage1+"/pvc-1"),
				fsMount(42, ns3.Dev.String(), "/var/lib/data"), // the root disk: outside the staging root
				fsMount(43, ns4.Dev.String(), stage5),          // staged, but no record: recovered
				// pvc-1's publish target, also under the staging root: explained by pvc-1
				blockMount(44, ns1.Name, filepath.Join(e.staging, "kubernetes.io/csi/volumeDevices/publish/pvc-1/pod-1")),
			)
			e.writeState(stateFile{
				Controllers: []owner{
					ownerRec("nvme0", volNQN(0), hostNQN),
					ownerRec("nvme1", volNQN(1), hostNQN),
					ownerRec("nvme2", volNQN(2), hostNQN),
					ownerRec("nvme4", volNQN(9), hostNQN), // instance reused by another connection
					ownerRec("nvme7", volNQN(7), hostNQN), // vanished
				},
				Volumes: []volumeState{
					{ID: "pvc-0", SubsysNQN: volNQN(0), NSID: 1, Traddr: "127.0.0.1", Trsvcid: "4420", HostNQN: hostNQN, Controller: "nvme0", StagingPath: stage0},
					{ID: "pvc-1", SubsysNQN: volNQN(1), NSID: 1, Traddr: "127.0.0.1", Trsvcid: "4420", HostNQN: hostNQN, Controller: "nvme1", StagingPath: stage1, Block: true},
					{ID: "pvc-6", SubsysNQN: volNQN(6), NSID: 1, Traddr: "127.0.0.1", Trsvcid: "4420", StagingPath: filepath.Join(e.staging, "gone")},
				},
			})
			d := e.start()

			want := []VolumeInfo{
				{ID: "mount:" + stage5, State: VolumeStaged, SubsysNQN: volNQN(4), NSID: 1, Traddr: "127.0.0.1", Trsvcid: "4420", HostNQN: otherNQN,
					Controllers: []string{"nvme4"}, Device: ns4.DevPath(), StagingPath: stage5, Recovered: true},
				{ID: "pvc-0", State: VolumeStaged, SubsysNQN: volNQN(0), NSID: 1, Traddr: "127.0.0.1", Trsvcid: "4420", HostNQN: hostNQN,
					Controllers: []string{"nvme0"}, Device: ns0.DevPath(), StagingPath: stage0},
				{ID: "pvc-1", State: VolumeStaged, SubsysNQN: volNQN(1), NSID: 1, Traddr: "127.0.0.1", Trsvcid: "4420", HostNQN: hostNQN,
					Controllers: []string{"nvme1"}, Device: ns1.DevPath(), StagingPath: stage1, Block: true},
			}
			if diff := cmp.Diff(want, d.Volumes()); diff != "" {
				t.Errorf("Volumes() (-want +got):\n%s", diff)
			}

			type ownership struct {
				Name       string
				Owned      bool
				Referenced bool
				Unref      bool
			}
			var got []ownership
			for _, c := range d.Snapshot().Controllers {
				got = append(got, ownership{c.Name, c.Owned, c.Referenced, !c.UnreferencedSince.IsZero()})
			}
			wantOwn := []ownership{
				{"nvme0", true, true, false},
				{"nvme1", true, true, false},
				{"nvme2", true, false, true}, // grace clock started at Start
				{"nvme3", false, false, false},
				{"nvme4", false, true, false},
			}
			if diff := cmp.Diff(wantOwn, got); diff != "" {
				t.Errorf("ownership (-want +got):\n%s", diff)
			}
			// Vanished and mismatched records are gone from the file, and
			// so is the volume whose mount is gone.
			if diff := cmp.Diff([]string{"nvme0", "nvme1", "nvme2"}, e.ownedNames()); diff != "" {
				t.Errorf("state file controllers (-want +got):\n%s", diff)
			}
			var ids []string
			for _, v := range e.readState().Volumes {
				ids = append(ids, v.ID)
			}
			if diff := cmp.Diff([]string{"pvc-0", "pvc-1"}, ids); diff != "" {
				t.Errorf("state file volumes (-want +got):\n%s", diff)
			}
			if len(e.conn.disconnected()) != 0 {
				t.Errorf("Start disconnected %v", e.conn.disconnected())
			}
		})
	}
}

// TestRebuildFixtures rebuilds from the trees captured on real kernels
// (read only) with no state file: nothing is owned, nothing is touched.
func TestRebuildFixtures(t *testing.T) {
	for _, name := range []string{"6.1-multipath", "6.1-nomultipath", "6.12-multipath", "6.12-nomultipath"} {
		t.Run(name, func(t *testing.T) {
			root := filepath.Join("..", "testdata", "sysfs", name)
			if _, err := os.Stat(root); err != nil {
				t.Skipf("fixture %s: %v", name, err)
			}
			e := newEnv(t, sysfstest.Spec{})
			e.cfg.FS = sysfs.NewFS(root)
			d := e.start()
			s := d.Snapshot()
			if len(s.Controllers) == 0 {
				t.Fatal("no controllers rebuilt from the fixture")
			}
			for _, c := range s.Controllers {
				if c.Owned {
					t.Errorf("%s owned without a state file", c.Name)
				}
			}
			for _, th := range d.StorageHealth() {
				if len(th.Controllers) == 0 || th.Traddr == "" {
					t.Errorf("target health %+v", th)
				}
			}
		})
	}
}

func TestStateFile(t *testing.T) {
	e := newEnv(t, rebuildSpec(true))
	d := e.start()
	if _, err := d.Attach(t.Context(), spec("pvc-a", volNQN(8), 1)); err != nil {
		t.Fatal(err)
	}
	stage := filepath.Join(e.staging, "a")
	if err := d.MarkStaged("pvc-a", stage, false); err != nil {
		t.Fatal(err)
	}
	st := e.readState()
	if diff := cmp.Diff([]string{"nvme5"}, e.ownedNames()); diff != "" {
		t.Errorf("owned (-want +got):\n%s", diff)
	}
	wantVol := []volumeState{{ID: "pvc-a", SubsysNQN: volNQN(8), NSID: 1, Transport: "tcp", Traddr: "127.0.0.1", Trsvcid: "4420",
		HostNQN: hostNQN, HostID: hostID, Controller: "nvme5", StagingPath: stage, StagedAt: e.clock.Now()}}
	if diff := cmp.Diff(wantVol, st.Volumes, cmpopts.EquateApproxTime(0)); diff != "" {
		t.Errorf("volumes (-want +got):\n%s", diff)
	}
	// No temporary files are left next to it.
	entries, _ := os.ReadDir(e.state)
	for _, ent := range entries {
		if ent.Name() != stateFileName {
			t.Errorf("stray file %s in the state dir", ent.Name())
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart with the volume still mounted restores it by id.
	nsA, err := sysfs.NewFS(e.root).FindNamespace(volNQN(8), 1)
	if err != nil {
		t.Fatal(err)
	}
	e.writeMounts(fsMount(50, nsA.Dev.String(), stage))
	d2 := e.start()
	v, ok := d2.Volume("pvc-a")
	if !ok || v.State != VolumeStaged || v.Recovered || v.Controllers[0] != "nvme5" {
		t.Errorf("after restart: %+v, %v", v, ok)
	}
	if c := controllerInfo(t, d2, "nvme5"); !c.Owned || !c.Referenced {
		t.Errorf("after restart nvme5: %+v", c)
	}
}

func TestStateFileCorrupt(t *testing.T) {
	e := newEnv(t, rebuildSpec(true))
	if err := os.MkdirAll(e.state, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.state, stateFileName)
	if err := os.WriteFile(path, []byte(`{"version":1,"controllers":[{"name":"nvme0"`), 0o600); err != nil {
		t.Fatal(err)
	}
	d := e.start()
	for _, c := range d.Snapshot().Controllers {
		if c.Owned {
			t.Errorf("%s owned after a corrupt state file", c.Name)
		}
	}
	matches, _ := filepath.Glob(path + ".corrupt-*")
	if len(matches) != 1 {
		t.Errorf("corrupt file not moved aside: %v", matches)
	}
}

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		path, dir string
		want      bool
	}{
		{"/a/b", "/a", true},
		{"/a", "/a", true},
		{"/ab", "/a", false},
		{"/a/../b", "/a", false},
		{"/x", "/", true},
	} {
		if got := within(tc.path, tc.dir); got != tc.want {
			t.Errorf("within(%q, %q) = %v", tc.path, tc.dir, got)
		}
	}
}
