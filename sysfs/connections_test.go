package sysfs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/sysfs"
)

// connectionsOf is what ControllerConnections promises: Controllers with
// the fields it does not read left empty.
func connectionsOf(cs []sysfs.Controller) []sysfs.Controller {
	var out []sysfs.Controller
	for _, c := range cs {
		out = append(out, sysfs.Controller{
			Name: c.Name, Instance: c.Instance, State: c.State, StateRaw: c.StateRaw,
			Transport: c.Transport, Address: c.Address, CntrlType: c.CntrlType,
			SubsysNQN: c.SubsysNQN, HostNQN: c.HostNQN, HostID: c.HostID,
			CtrlLossTmo: c.CtrlLossTmo, ReconnectDelay: c.ReconnectDelay,
			FastIOFailTmo: c.FastIOFailTmo, KATO: c.KATO, Dev: c.Dev,
		})
	}
	return out
}

// TestControllerConnections: on synthetic trees and on every tree captured
// from a real kernel, ControllerConnections reads the same as Controllers,
// minus the fields it leaves out.
func TestControllerConnections(t *testing.T) {
	t.Parallel()
	trees := map[string]sysfs.FS{
		"synthetic multipath":    sharedTree(t, smallSpec(true)),
		"synthetic no multipath": sharedTree(t, smallSpec(false)),
		"empty":                  sysfs.NewFS(t.TempDir()),
	}
	dirs, _ := filepath.Glob(filepath.Join(fixtureDir, "*"))
	for _, d := range dirs {
		trees[filepath.Base(d)] = sysfs.NewFS(d)
	}
	if len(dirs) == 0 {
		t.Fatalf("no fixture trees under %s", fixtureDir)
	}
	for name, fs := range trees {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			full, err := fs.Controllers()
			if err != nil {
				t.Fatal(err)
			}
			got, err := fs.ControllerConnections()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(connectionsOf(full), got); diff != "" {
				t.Errorf("ControllerConnections (-want +got):\n%s", diff)
			}
		})
	}
}

// TestControllerConnectionsVanishing: a controller torn down between the
// listing and its read is left out, as by Controllers; a core attribute
// missing from a controller that still exists is not a reason to drop it.
func TestControllerConnectionsVanishing(t *testing.T) {
	t.Parallel()
	fs, root := build(t, smallSpec(true))
	dir := filepath.Join(root, "devices/virtual/nvme-fabrics/ctl/nvme1")
	// Teardown removes the attributes first: no state means going.
	if err := os.Remove(filepath.Join(dir, "state")); err != nil {
		t.Fatal(err)
	}
	// A core attribute missing on a controller still there: kept, the field empty.
	if err := os.Remove(filepath.Join(root, "devices/virtual/nvme-fabrics/ctl/nvme0/transport")); err != nil {
		t.Fatal(err)
	}
	got, err := fs.ControllerConnections()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range got {
		names = append(names, c.Name)
		if c.Name == "nvme0" && c.Transport != "" {
			t.Errorf("nvme0 without transport: Transport = %q", c.Transport)
		}
	}
	full, err := fs.Controllers()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range full {
		want = append(want, c.Name)
	}
	if diff := cmp.Diff(want, names); diff != "" || len(names) == 0 {
		t.Errorf("controllers (-Controllers +ControllerConnections):\n%s", diff)
	}
	for _, n := range names {
		if n == "nvme1" {
			t.Errorf("nvme1, being torn down (no state), was returned")
		}
	}
}
