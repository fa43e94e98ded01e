package sysfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

func TestSetIOPolicy(t *testing.T) {
	root := t.TempDir()
	spec := sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{{Instance: 0, NQN: "nqn.2000-02.com.mikrotik:pvc-1"}}}
	if err := sysfstest.Build(root, spec); err != nil {
		t.Fatal(err)
	}
	fs := sysfs.NewFS(root)
	if err := fs.SetIOPolicy("nvme-subsys0", "round-robin"); err != nil {
		t.Fatal(err)
	}
	sub, err := fs.Subsystem("nvme-subsys0")
	if err != nil {
		t.Fatal(err)
	}
	if sub.IOPolicy != "round-robin" {
		t.Errorf("iopolicy %q after SetIOPolicy(round-robin)", sub.IOPolicy)
	}
	if err := fs.SetIOPolicy("nvme-subsys0", "fastest"); err == nil {
		t.Error("SetIOPolicy(fastest) succeeded: want an error before any write")
	}
	if err := fs.SetIOPolicy("../nvme0", "numa"); err == nil {
		t.Error("SetIOPolicy on a name that is not a subsystem succeeded")
	}
	if err := fs.SetIOPolicy("nvme-subsys7", "numa"); !errors.Is(err, sysfs.ErrNotExist) {
		t.Errorf("SetIOPolicy on a missing subsystem: %v, want ErrNotExist", err)
	}
	// An attribute that reads back something else than was written (the
	// kernel kept its policy): an error naming both.
	p := filepath.Join(root, "class/nvme-subsystem/nvme-subsys0/iopolicy")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/null", p); err != nil {
		t.Fatal(err)
	}
	if err := fs.SetIOPolicy("nvme-subsys0", "numa"); err == nil {
		t.Error("SetIOPolicy with a read-back that differs succeeded")
	}
}
