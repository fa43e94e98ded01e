package sysfs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// halfBornAttrs are what the kernel shows for a controller whose first
// connect has not completed: no subsystem yet, so every attribute read
// through the subsystem pointer prints the kernel's text for a bad pointer.
var halfBornAttrs = map[string]string{
	"subsysnqn":    "(efault)",
	"model":        "(efault)",
	"serial":       "(efault)",
	"firmware_rev": "(null)",
	"cntlid":       "0",
}

// buildHalfBorn lays out controller nvme1 in state (new or connecting) with
// halfBornAttrs and no subsystem linking to it, beside the live nvme0.
func buildHalfBorn(t *testing.T, state string) sysfs.FS {
	t.Helper()
	fs, root := build(t, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{
		{Instance: 0, NQN: "nqn.2024-01.io.srvlab:live", Controllers: []sysfstest.Controller{{Instance: 0}},
			Namespaces: []sysfstest.Namespace{{NSID: 1}}},
		{Instance: 1, NQN: "nqn.2024-01.io.srvlab:gone", Controllers: []sysfstest.Controller{
			{Instance: 1, State: state, Attrs: halfBornAttrs}}},
	}})
	// The kernel links a controller to its subsystem only once identify
	// found it: drop the subsystem sysfstest made.
	for _, p := range []string{"class/nvme-subsystem/nvme-subsys1", "devices/virtual/nvme-subsystem/nvme-subsys1"} {
		if err := os.RemoveAll(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

// checkHalfBorn: the kernel's placeholder text is absent, not a value.
func checkHalfBorn(t *testing.T, c sysfs.Controller) {
	t.Helper()
	if c.State != sysfs.StateNew && c.State != sysfs.StateConnecting {
		t.Errorf("%s: state %q, want new or connecting", c.Name, c.StateRaw)
	}
	if c.SubsysNQN != "" || c.Model != "" || c.Serial != "" || c.FirmwareRev != "" || c.Subsystem != "" {
		t.Errorf("%s: subsysnqn %q model %q serial %q firmware_rev %q subsystem %q; want all absent",
			c.Name, c.SubsysNQN, c.Model, c.Serial, c.FirmwareRev, c.Subsystem)
	}
	if c.Transport == "" || c.Address.Traddr == "" || c.HostNQN == "" || c.Dev.Major == 0 {
		t.Errorf("%s: attributes the controller has of its own are missing: %+v", c.Name, c)
	}
}

// TestHalfBornController: a controller before its first connect completes
// reads as present, with its subsystem attributes absent.
func TestHalfBornController(t *testing.T) {
	t.Parallel()
	for _, state := range []string{"new", "connecting"} {
		t.Run(state, func(t *testing.T) {
			t.Parallel()
			fs := buildHalfBorn(t, state)
			one, err := fs.Controller("nvme1")
			if err != nil {
				t.Fatal(err)
			}
			checkHalfBorn(t, one)
			all, err := fs.Controllers()
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 2 || all[1].Name != "nvme1" {
				t.Fatalf("Controllers() = %+v, want nvme0 and nvme1", all)
			}
			checkHalfBorn(t, all[1])
			if all[0].SubsysNQN != "nqn.2024-01.io.srvlab:live" {
				t.Errorf("nvme0: subsysnqn %q", all[0].SubsysNQN)
			}
		})
	}
}

// halfBornFixtures holds, per kernel series, the sysfs of one controller
// captured from a real kernel while its first connect was blocked (a peer
// that accepted TCP and never answered): TestLayoutHalfBorn in the e2e lab,
// make fixtures.
const halfBornFixtures = "../testdata/sysfs-halfborn"

// TestHalfBornFixtures: the captured controllers read as half-born: the
// kernel's "(efault)" is absent, what the controller has of its own is there.
func TestHalfBornFixtures(t *testing.T) {
	t.Parallel()
	dirs, err := filepath.Glob(filepath.Join(halfBornFixtures, "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no fixtures under %s: %v", halfBornFixtures, err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(filepath.Join(dir, "class/nvme/nvme0/subsysnqn"))
			if err != nil || (string(b) != "(efault)\n" && string(b) != "(null)\n") {
				t.Fatalf("fixture's subsysnqn = %q, %v; want the kernel's placeholder", b, err)
			}
			fs := sysfs.NewFS(dir)
			all, err := fs.Controllers()
			if err != nil || len(all) != 1 {
				t.Fatalf("Controllers() = %+v, %v; want nvme0", all, err)
			}
			checkHalfBorn(t, all[0])
			one, err := fs.Controller("nvme0")
			if err != nil {
				t.Fatal(err)
			}
			checkHalfBorn(t, one)
			conns, err := fs.ControllerConnections()
			if err != nil || len(conns) != 1 {
				t.Fatalf("ControllerConnections() = %+v, %v; want nvme0", conns, err)
			}
			checkHalfBorn(t, conns[0])
		})
	}
}
