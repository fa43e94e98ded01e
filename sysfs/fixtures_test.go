package sysfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/sysfs"
)

// fixtureDir holds sysfs trees captured from real kernels, one directory per
// kernel and layout (for example 6.12-multipath, 6.1-nomultipath), each a
// sysfs root (class/, devices/, block/, module/) or holding one as sys/.
const fixtureDir = "../testdata/sysfs"

// TestFixtures checks invariants that hold on any real tree: everything
// parses, subsystems and controllers agree on their links, and every
// namespace can be found by its identity.
func TestFixtures(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir(fixtureDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) == 0 {
		t.Skipf("no fixture trees under %s yet (captured from real kernels by the e2e lab)", fixtureDir)
	}
	for _, name := range dirs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			root := filepath.Join(fixtureDir, name)
			if fi, err := os.Stat(filepath.Join(root, "sys")); err == nil && fi.IsDir() {
				root = filepath.Join(root, "sys")
			}
			checkTree(t, sysfs.NewFS(root))
		})
	}
}

func checkTree(t *testing.T, fs sysfs.FS) {
	t.Helper()
	ctrls, err := fs.Controllers()
	if err != nil {
		t.Fatalf("Controllers: %v", err)
	}
	subs, err := fs.Subsystems()
	if err != nil {
		t.Fatalf("Subsystems: %v", err)
	}
	if _, err := fs.Multipath(); err != nil && !errors.Is(err, sysfs.ErrNotExist) {
		t.Errorf("Multipath: %v", err)
	}

	byName := map[string]sysfs.Controller{}
	for _, c := range ctrls {
		byName[c.Name] = c
		if c.StateRaw == "" || c.Transport == "" || c.SubsysNQN == "" || c.Dev.Major == 0 {
			t.Errorf("%s: incomplete: %+v", c.Name, c)
		}
		if c.State == sysfs.StateUnknown {
			t.Errorf("%s: state %q is not one the package knows", c.Name, c.StateRaw)
		}
		if c.Transport == "tcp" && (c.Address.Traddr == "" || c.Address.Trsvcid == "") {
			t.Errorf("%s: tcp address without traddr or trsvcid: %+v", c.Name, c.Address)
		}
		if c.Transport == "tcp" && c.State == sysfs.StateLive && c.Address.SrcAddr == "" {
			t.Errorf("%s: live tcp controller without src_addr", c.Name)
		}
		one, err := fs.Controller(c.Name)
		if err != nil {
			t.Errorf("Controller(%s): %v", c.Name, err)
		} else if one.Subsystem != c.Subsystem {
			t.Errorf("Controller(%s).Subsystem = %q, Controllers says %q", c.Name, one.Subsystem, c.Subsystem)
		}
		if st, _, err := fs.ControllerState(c.Name); err != nil || st != c.State {
			t.Errorf("ControllerState(%s) = %v, %v; want %v", c.Name, st, err, c.State)
		}
		for _, ns := range c.Namespaces {
			if ns.Parent != c.Name {
				t.Errorf("%s: namespace %s with parent %s", c.Name, ns.Name, ns.Parent)
			}
			checkNamespace(t, ns)
			if ns.Hidden {
				continue
			}
			found, err := fs.FindNamespace(c.SubsysNQN, ns.NSID)
			if err != nil || found.NSID != ns.NSID || found.Hidden {
				t.Errorf("FindNamespace(%s, %d) = %+v, %v; want a visible disk", c.SubsysNQN, ns.NSID, found, err)
			}
		}
	}

	subByName := map[string]sysfs.Subsystem{}
	for _, s := range subs {
		subByName[s.Name] = s
		if s.NQN == "" {
			t.Errorf("%s: no NQN", s.Name)
		}
		for _, name := range s.Controllers {
			c, ok := byName[name]
			if !ok {
				t.Errorf("%s links to %s, which Controllers did not return", s.Name, name)
				continue
			}
			if c.Subsystem != s.Name {
				t.Errorf("%s links to %s, whose Subsystem is %q", s.Name, name, c.Subsystem)
			}
			if c.SubsysNQN != s.NQN {
				t.Errorf("%s (NQN %s) links to %s with subsysnqn %s", s.Name, s.NQN, name, c.SubsysNQN)
			}
		}
		for _, ns := range s.Namespaces {
			if ns.Hidden || ns.Parent != s.Name {
				t.Errorf("%s: head %+v", s.Name, ns)
			}
			checkNamespace(t, ns)
			found, err := fs.FindNamespace(s.NQN, ns.NSID)
			if err != nil || found.Name != ns.Name {
				t.Errorf("FindNamespace(%s, %d) = %+v, %v; want head %s", s.NQN, ns.NSID, found, err, ns.Name)
			}
		}
	}
	for _, c := range ctrls {
		if c.Subsystem == "" {
			continue
		}
		if s, ok := subByName[c.Subsystem]; !ok || !slices.Contains(s.Controllers, c.Name) {
			t.Errorf("%s: Subsystem %q does not list it", c.Name, c.Subsystem)
		}
	}
}

// checkNamespace: per-path disks (nvmeXcYnZ) are hidden and have no device
// number; visible disks have one; every disk has an nsid, a size and an
// identity.
func checkNamespace(t *testing.T, ns sysfs.Namespace) {
	t.Helper()
	perPath := strings.Contains(strings.TrimPrefix(ns.Name, "nvme"), "c")
	if ns.Hidden != perPath {
		t.Errorf("%s: Hidden = %v", ns.Name, ns.Hidden)
	}
	if ns.Hidden != (ns.Dev == sysfs.DevNum{}) {
		t.Errorf("%s: Hidden = %v with Dev %v", ns.Name, ns.Hidden, ns.Dev)
	}
	if ns.NSID == 0 || ns.Sectors == 0 || (ns.UUID == "" && ns.WWID == "") {
		t.Errorf("%s: incomplete: %+v", ns.Name, ns)
	}
}

// TestSyntheticTreesHoldInvariants runs the fixture invariants on generated
// trees, so that the checks themselves are known to pass on a sane tree.
func TestSyntheticTreesHoldInvariants(t *testing.T) {
	t.Parallel()
	for _, multipath := range []bool{true, false} {
		t.Run(map[bool]string{true: "multipath", false: "no multipath"}[multipath], func(t *testing.T) {
			t.Parallel()
			checkTree(t, sharedTree(t, smallSpec(multipath)))
		})
	}
}
