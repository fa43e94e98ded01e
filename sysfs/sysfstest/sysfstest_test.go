package sysfstest_test

import (
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

func build(t *testing.T, spec sysfstest.Spec) (sysfs.FS, string) {
	t.Helper()
	root := t.TempDir()
	if err := sysfstest.Build(root, spec); err != nil {
		t.Fatal(err)
	}
	return sysfs.NewFS(root), root
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		n          int
		multipath  bool
		wantSubs   int
		wantStates map[string]int
	}{
		{name: "one", n: 1, multipath: true, wantSubs: 1, wantStates: map[string]int{"live": 1}},
		{name: "two", n: 2, multipath: true, wantSubs: 2, wantStates: map[string]int{"live": 2}},
		{
			name: "fifty, multipath", n: 50, multipath: true, wantSubs: 46,
			wantStates: map[string]int{"live": 47, "connecting": 1, "resetting": 1, "deleting (no IO)": 1},
		},
		{
			name: "fifty, multipath off", n: 50, multipath: false, wantSubs: 46,
			wantStates: map[string]int{"live": 47, "connecting": 1, "resetting": 1, "deleting (no IO)": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, _ := build(t, sysfstest.Generate(tt.n, tt.multipath))
			ctrls, err := fs.Controllers()
			if err != nil {
				t.Fatal(err)
			}
			subs, err := fs.Subsystems()
			if err != nil {
				t.Fatal(err)
			}
			if len(ctrls) != tt.n || len(subs) != tt.wantSubs {
				t.Fatalf("got %d controllers in %d subsystems, want %d in %d", len(ctrls), len(subs), tt.n, tt.wantSubs)
			}
			if mp, err := fs.Multipath(); err != nil || mp != tt.multipath {
				t.Errorf("Multipath() = %v, %v; want %v", mp, err, tt.multipath)
			}
			states := map[string]int{}
			discovery := 0
			for i, c := range ctrls {
				states[c.StateRaw]++
				if c.Instance != i || c.Subsystem == "" {
					t.Errorf("controller %d: %s in %q", i, c.Name, c.Subsystem)
				}
				if c.CntrlType == "discovery" {
					discovery++
					if len(c.Namespaces) != 0 {
						t.Errorf("%s: discovery controller with namespaces", c.Name)
					}
					continue
				}
				if (c.Address.SrcAddr != "") != (c.State == sysfs.StateLive) {
					t.Errorf("%s in state %s has src_addr %q", c.Name, c.StateRaw, c.Address.SrcAddr)
				}
				if len(c.Namespaces) == 0 {
					t.Errorf("%s: no namespaces", c.Name)
				}
				for _, ns := range c.Namespaces {
					if ns.Hidden != tt.multipath {
						t.Errorf("%s: Hidden = %v with multipath %v", ns.Name, ns.Hidden, tt.multipath)
					}
					found, err := fs.FindNamespace(c.SubsysNQN, ns.NSID)
					if err != nil || found.Hidden || found.UUID != ns.UUID {
						t.Errorf("FindNamespace(%s, %d) = %+v, %v", c.SubsysNQN, ns.NSID, found, err)
					}
				}
			}
			if want := min(tt.n-1, 1); discovery != want {
				t.Errorf("%d discovery controllers, want %d", discovery, want)
			}
			if diff := cmp.Diff(tt.wantStates, states); diff != "" {
				t.Errorf("states mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func twoPaths(multipath bool) sysfstest.Spec {
	return sysfstest.Spec{
		Multipath: multipath,
		Subsystems: []sysfstest.Subsystem{{
			Instance:    0,
			NQN:         "nqn.2024-01.io.test:vol",
			Controllers: []sysfstest.Controller{{Instance: 0}, {Instance: 1}},
			Namespaces:  []sysfstest.Namespace{{NSID: 1}},
		}},
	}
}

// exists lists which of the paths (relative to root) exist, without
// following a final symlink.
func exists(t *testing.T, root string, paths ...string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for _, p := range paths {
		_, err := os.Lstat(filepath.Join(root, p))
		if err != nil && !errors.Is(err, iofs.ErrNotExist) {
			t.Fatal(err)
		}
		got[p] = err == nil
	}
	return got
}

func TestRemoveController(t *testing.T) {
	t.Parallel()
	const (
		class0 = "class/nvme/nvme0"
		class1 = "class/nvme/nvme1"
		subsys = "class/nvme-subsystem/nvme-subsys0"
		link0  = "devices/virtual/nvme-subsystem/nvme-subsys0/nvme0"
		head   = "block/nvme0n1"
		path0  = "block/nvme0c0n1"
		path1  = "block/nvme0c1n1"
		mpath0 = "devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1/multipath/nvme0c0n1"
		plain0 = "block/nvme0n1"
		plain1 = "block/nvme1n1"
	)
	tests := []struct {
		name      string
		multipath bool
		remove    []string
		want      map[string]bool
	}{
		{
			name: "one of two paths", multipath: true, remove: []string{"nvme0"},
			want: map[string]bool{class0: false, class1: true, subsys: true, link0: false, head: true, path0: false, path1: true, mpath0: false},
		},
		{
			name: "both paths", multipath: true, remove: []string{"nvme0", "nvme1"},
			want: map[string]bool{class0: false, class1: false, subsys: false, link0: false, head: false, path0: false, path1: false, mpath0: false},
		},
		{
			name: "multipath off", multipath: false, remove: []string{"nvme0"},
			want: map[string]bool{class0: false, class1: true, subsys: true, link0: false, plain0: false, plain1: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, root := build(t, twoPaths(tt.multipath))
			for _, name := range tt.remove {
				if err := sysfstest.RemoveController(root, name); err != nil {
					t.Fatal(err)
				}
			}
			var paths []string
			for p := range tt.want {
				paths = append(paths, p)
			}
			if diff := cmp.Diff(tt.want, exists(t, root, paths...)); diff != "" {
				t.Errorf("paths after removal (-want +got):\n%s", diff)
			}
			if err := sysfstest.RemoveController(root, tt.remove[0]); err == nil {
				t.Errorf("removing %s twice: no error", tt.remove[0])
			}
		})
	}
}

func TestSetStateAndAttr(t *testing.T) {
	t.Parallel()
	fs, root := build(t, twoPaths(true))
	if err := sysfstest.SetState(root, "nvme1", "connecting"); err != nil {
		t.Fatal(err)
	}
	if err := sysfstest.SetAttr(root, "nvme1", "address", "traddr=127.0.0.1,trsvcid=4420"); err != nil {
		t.Fatal(err)
	}
	c, err := fs.Controller("nvme1")
	if err != nil {
		t.Fatal(err)
	}
	want := sysfs.Address{Traddr: "127.0.0.1", Trsvcid: "4420"}
	if c.State != sysfs.StateConnecting || c.Address != want {
		t.Errorf("after SetState and SetAttr: %v %+v", c.State, c.Address)
	}
	if err := sysfstest.SetState(root, "nvme5", "live"); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("SetState of an absent controller: %v, want fs.ErrNotExist", err)
	}
}

func TestRemoveDisk(t *testing.T) {
	t.Parallel()
	fs, root := build(t, twoPaths(true))
	if err := sysfstest.RemoveDisk(root, "nvme0n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.FindNamespace("nqn.2024-01.io.test:vol", 1); !errors.Is(err, sysfs.ErrNotExist) {
		t.Errorf("FindNamespace after RemoveDisk: %v, want ErrNotExist", err)
	}
	if err := sysfstest.RemoveDisk(root, "nvme0n1"); err == nil {
		t.Error("removing a disk twice: no error")
	}
}

// TestBuildAgain: a second Build on the same root adds to the tree, as a new
// connect would, without reusing device numbers.
func TestBuildAgain(t *testing.T) {
	t.Parallel()
	fs, root := build(t, twoPaths(false))
	more := sysfstest.Spec{Subsystems: []sysfstest.Subsystem{{
		Instance:    1,
		NQN:         "nqn.2024-01.io.test:other",
		Controllers: []sysfstest.Controller{{Instance: 2}},
		Namespaces:  []sysfstest.Namespace{{NSID: 1}},
	}}}
	if err := sysfstest.Build(root, more); err != nil {
		t.Fatal(err)
	}
	ctrls, err := fs.Controllers()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[sysfs.DevNum]string{}
	for _, c := range ctrls {
		for _, ns := range c.Namespaces {
			if other, dup := seen[ns.Dev]; dup {
				t.Errorf("%s and %s share device number %v", ns.Name, other, ns.Dev)
			}
			seen[ns.Dev] = ns.Name
		}
	}
	if len(ctrls) != 3 || len(seen) != 3 {
		t.Errorf("got %d controllers, %d disks; want 3, 3", len(ctrls), len(seen))
	}
}

func TestBuildRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec sysfstest.Spec
	}{
		{"subsystem without NQN", sysfstest.Spec{Subsystems: []sysfstest.Subsystem{{Instance: 0}}}},
		{"namespace 0", sysfstest.Spec{Subsystems: []sysfstest.Subsystem{{
			NQN: "nqn.x", Controllers: []sysfstest.Controller{{}}, Namespaces: []sysfstest.Namespace{{}},
		}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := sysfstest.Build(t.TempDir(), tt.spec); err == nil {
				t.Error("Build: no error")
			}
		})
	}
}
