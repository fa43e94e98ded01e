package sysfs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

const (
	liveAddress  = "traddr=192.0.2.1,trsvcid=4420,host_traddr=192.0.2.7,src_addr=192.0.2.7"
	otherAddress = "traddr=198.51.100.9,trsvcid=4421"
)

var (
	liveParsed = sysfs.Address{Traddr: "192.0.2.1", Trsvcid: "4420", HostTraddr: "192.0.2.7", SrcAddr: "192.0.2.7"}
	// liveStatic is liveParsed as the kernel shows it without an admin
	// queue: no src_addr.
	liveStatic  = sysfs.Address{Traddr: "192.0.2.1", Trsvcid: "4420", HostTraddr: "192.0.2.7"}
	otherParsed = sysfs.Address{Traddr: "198.51.100.9", Trsvcid: "4421"}
)

func oneController(state, address string) sysfstest.Spec {
	return sysfstest.Spec{Subsystems: []sysfstest.Subsystem{{
		Instance:    0,
		NQN:         nqnVol0,
		Controllers: []sysfstest.Controller{{Instance: 0, State: state, Address: address}},
	}}}
}

// readBoth reads nvme0 through Controller and through ControllerConnections,
// which must agree, and returns its address.
func readBoth(t *testing.T, fs sysfs.FS) sysfs.Address {
	t.Helper()
	c, err := fs.Controller("nvme0")
	if err != nil {
		t.Fatal(err)
	}
	all, err := fs.ControllerConnections()
	if err != nil || len(all) != 1 {
		t.Fatalf("ControllerConnections() = %+v, %v", all, err)
	}
	if all[0].Address != c.Address {
		t.Fatalf("ControllerConnections address %+v, Controller address %+v", all[0].Address, c.Address)
	}
	return c.Address
}

// TestAddressNotReadDuringTeardown: in the states the kernel enters before
// it tears a controller's queues down, the address attribute is not read
// (reading it then can oops nvme-tcp); the last read of the same instance
// stands in, without src_addr. Live again, it is read afresh.
func TestAddressNotReadDuringTeardown(t *testing.T) {
	t.Parallel()
	for _, st := range []string{"resetting", "connecting", "deleting", "deleting (no IO)", "dead"} {
		t.Run(st, func(t *testing.T) {
			t.Parallel()
			fs, root := build(t, oneController("live", liveAddress))
			if got := readBoth(t, fs); got != liveParsed {
				t.Fatalf("live: address %+v, want %+v", got, liveParsed)
			}
			// The attribute changes under the read: had it been read, the
			// result would show it.
			if err := sysfstest.SetAttr(root, "nvme0", "address", otherAddress); err != nil {
				t.Fatal(err)
			}
			if err := sysfstest.SetState(root, "nvme0", st); err != nil {
				t.Fatal(err)
			}
			if got := readBoth(t, fs); got != liveStatic {
				t.Fatalf("%s: address %+v, want the last read without src_addr %+v", st, got, liveStatic)
			}
			if err := sysfstest.SetState(root, "nvme0", "live"); err != nil {
				t.Fatal(err)
			}
			if got := readBoth(t, fs); got != otherParsed {
				t.Fatalf("live again: address %+v, want the attribute %+v", got, otherParsed)
			}
		})
	}
}

// TestAddressTeardownUnknownInstance: a controller first seen in a
// teardown state is read (a process that starts during an outage must
// still recognise its controllers), and a new controller under a reused
// name never gets the address of the one before it.
func TestAddressTeardownUnknownInstance(t *testing.T) {
	t.Parallel()
	fs, root := build(t, oneController("connecting", liveAddress))
	if got := readBoth(t, fs); got != liveStatic {
		t.Fatalf("first sight while connecting: address %+v, want the attribute without src_addr %+v", got, liveStatic)
	}

	// The kernel deletes nvme0 and gives the name to a new controller. The
	// old directory is kept (renamed) so that the new one cannot get its
	// inode number.
	other := t.TempDir()
	if err := sysfstest.Build(other, oneController("connecting", otherAddress)); err != nil {
		t.Fatal(err)
	}
	dir := sysfstest.ControllerDir(root, "nvme0")
	if err := os.Rename(dir, filepath.Join(filepath.Dir(dir), "old-nvme0")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(sysfstest.ControllerDir(other, "nvme0"), dir); err != nil {
		t.Fatal(err)
	}
	if got := readBoth(t, fs); got != otherParsed {
		t.Fatalf("new instance while connecting: address %+v, want its own %+v", got, otherParsed)
	}
}

// TestAddressNotReadWhileThisProcessDeletes: while this process deletes a
// controller (WriteControllerAttr delete_controller), its scans do not read
// the address, whatever the state says: the last read stands in, or none.
func TestAddressNotReadWhileThisProcessDeletes(t *testing.T) {
	t.Parallel()
	fs, root := build(t, oneController("live", liveAddress))
	if got := readBoth(t, fs); got != liveParsed {
		t.Fatalf("live: address %+v, want %+v", got, liveParsed)
	}
	if err := sysfstest.SetAttr(root, "nvme0", "address", otherAddress); err != nil {
		t.Fatal(err)
	}
	end := sysfs.BeginTeardown(fs, "nvme0")
	got := readBoth(t, fs)
	end()
	if got != liveStatic {
		t.Fatalf("during this process's delete: address %+v, want the last read without src_addr %+v", got, liveStatic)
	}
	if got := readBoth(t, fs); got != otherParsed {
		t.Fatalf("after the delete: address %+v, want the attribute %+v", got, otherParsed)
	}

	fresh, _ := build(t, oneController("live", liveAddress))
	end = sysfs.BeginTeardown(fresh, "nvme0")
	defer end()
	if got := readBoth(t, fresh); got != (sysfs.Address{}) {
		t.Fatalf("during this process's delete of a controller it never read: address %+v, want none", got)
	}
}
