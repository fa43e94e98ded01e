package csi

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/srvlab/rds-csi/sysfs"
	"golang.org/x/sys/unix"
)

type fakeDisks map[sysfs.DevNum]string

func (f fakeDisks) DiskName(dev sysfs.DevNum) (string, error) {
	if n, ok := f[dev]; ok {
		return n, nil
	}
	return "", sysfs.ErrNotExist
}

type recordRescans []string

func (r *recordRescans) Rescan(disk string) error {
	*r = append(*r, disk)
	return nil
}

// TestKernelRescanner: the device node's number goes to sysfs for the disk
// name, the name to fabrics.
func TestKernelRescanner(t *testing.T) {
	dir := t.TempDir()
	node := filepath.Join(dir, "device")
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(259, 7))); err != nil {
		t.Skipf("cannot make a block device node here: %v", err)
	}
	var got recordRescans
	r := KernelRescanner{Disks: fakeDisks{{Major: 259, Minor: 7}: "nvme3n1"}, Fabrics: &got}
	if err := r.Rescan(node); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "nvme3n1" {
		t.Errorf("rescanned %q, want [nvme3n1]", got)
	}

	other := filepath.Join(dir, "other")
	if err := unix.Mknod(other, unix.S_IFBLK|0o600, int(unix.Mkdev(8, 0))); err != nil {
		t.Fatal(err)
	}
	if err := r.Rescan(other); !errors.Is(err, sysfs.ErrNotExist) {
		t.Errorf("Rescan of a device sysfs does not know: %v, want ErrNotExist", err)
	}
	if err := r.Rescan(dir); err == nil {
		t.Error("Rescan of a directory succeeded")
	}
	if len(got) != 1 {
		t.Errorf("rescanned %q after the failures, want only [nvme3n1]", got)
	}
}
