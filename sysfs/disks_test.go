package sysfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/sysfs"
)

func TestDiskControllers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fixture, disk string
		want          []string
		wantNotExist  bool
		wantErr       bool
	}{
		{"6.12-multipath", "nvme0n1", []string{"nvme0", "nvme1"}, false, false},
		{"6.12-multipath", "nvme2n1", []string{"nvme2"}, false, false},
		{"6.1-multipath", "nvme0n1", []string{"nvme0", "nvme1"}, false, false},
		{"6.1-nomultipath", "nvme1n1", []string{"nvme1"}, false, false},
		{"6.12-multipath", "nvme9n1", nil, true, false},
		{"6.12-multipath", "nvme0c1n1", nil, false, true}, // a hidden path disk is not a disk to rescan
		{"6.12-multipath", "../nvme0n1", nil, false, true},
		{"6.12-multipath", "sda", nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.fixture+"/"+tt.disk, func(t *testing.T) {
			got, err := sysfs.NewFS(filepath.Join(fixtureDir, tt.fixture)).DiskControllers(tt.disk)
			switch {
			case tt.wantNotExist:
				if !errors.Is(err, sysfs.ErrNotExist) {
					t.Fatalf("error = %v, want sysfs.ErrNotExist", err)
				}
			case tt.wantErr:
				if err == nil || errors.Is(err, sysfs.ErrNotExist) {
					t.Fatalf("error = %v, want a non-sysfs.ErrNotExist error", err)
				}
			case err != nil:
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("controllers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDiskControllersNotNVMe: a block device elsewhere (a SCSI disk) is an
// error, not an empty answer.
func TestDiskControllersNotNVMe(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dev := filepath.Join(root, "devices/virtual/block/nvme0n1") // not under a controller or subsystem
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../devices/virtual/block/nvme0n1", filepath.Join(root, "block/nvme0n1")); err != nil {
		t.Fatal(err)
	}
	if _, err := sysfs.NewFS(root).DiskControllers("nvme0n1"); err == nil || errors.Is(err, sysfs.ErrNotExist) {
		t.Fatalf("error = %v, want a non-sysfs.ErrNotExist error", err)
	}
}

func TestDiskName(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "dev/block"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../devices/virtual/nvme-subsystem/nvme-subsys3/nvme3n1", filepath.Join(root, "dev/block/259:7")); err != nil {
		t.Fatal(err)
	}
	fs := sysfs.NewFS(root)
	got, err := fs.DiskName(sysfs.DevNum{Major: 259, Minor: 7})
	if err != nil || got != "nvme3n1" {
		t.Errorf("DiskName(259:7) = %q, %v; want nvme3n1", got, err)
	}
	if _, err := fs.DiskName(sysfs.DevNum{Major: 259, Minor: 9}); !errors.Is(err, sysfs.ErrNotExist) {
		t.Errorf("DiskName(259:9) error = %v, want sysfs.ErrNotExist", err)
	}
}
