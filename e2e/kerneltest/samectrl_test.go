//go:build linux

package kerneltest

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/fabrics"
	"golang.org/x/sys/unix"
)

// TestFabricsSameController checks fabrics.Options.Matches against the
// kernel's own verdict: sysfs shows exactly what the options write (so the
// controller matches its options); the port spelled with a leading zero is
// another port to the kernel (octal), not EALREADY; and the same hostnqn
// with another hostid is refused by 6.12 (EINVAL), while 6.1 keeps one host
// per hostnqn, overwrites its hostid and answers EALREADY (seen in the lab),
// after which sysfs shows the new hostid, so adoption still finds the
// controller. The test uses a host identity of its own, so that 6.1's
// overwrite does not touch the lab's.
func TestFabricsSameController(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "same")
	c, fs := client()
	o := baseOpts(nqn, port)
	o.HostID = "0b5c4f0e-0000-4000-8000-0000000000fe"
	o.HostNQN = fabrics.UUIDNQNPrefix + o.HostID
	ctrl := connect(t, c, o)
	sc, err := fs.Controller(ctrl.Name)
	must(t, err)
	if !o.Matches(&sc) {
		t.Fatalf("Matches(%+v, hostid %s) = false for the controller its options made", sc.Address, sc.HostID)
	}

	other := o
	other.HostID = "0b5c4f0e-0000-4000-8000-0000000000ff"
	if other.Matches(&sc) {
		t.Errorf("Matches with another hostid = true")
	}
	before := controllerNames(t, fs)
	second, err := rawConnect("transport=tcp,traddr=127.0.0.1,trsvcid=" + strconv.Itoa(port) + ",nqn=" + nqn +
		",hostnqn=" + o.HostNQN + ",hostid=" + other.HostID)
	want := syscall.EINVAL // 6.12: one hostnqn, one hostid
	if kernelSeries() == "6.1" {
		want = syscall.EALREADY // 6.1: the host's hostid is overwritten
	}
	if !errors.Is(err, want) {
		t.Errorf("connect with another hostid: %q, %v; want %v on %s", second, err, want, kernelSeries())
		if err == nil {
			if name := "nvme" + strings.TrimPrefix(strings.Split(second, ",")[0], "instance="); name != ctrl.Name {
				must(t, rawDelete(name))
			}
		}
	}
	noControllerLeft(t, fs, before)
	if want == syscall.EALREADY {
		sc, err = fs.Controller(ctrl.Name)
		must(t, err)
		if !other.Matches(&sc) {
			t.Errorf("6.1 after EALREADY: hostid %s, and Matches with the new hostid = false", sc.HostID)
		}
	}

	_, err = rawConnect("transport=tcp,traddr=127.0.0.1,trsvcid=0" + strconv.Itoa(port) + ",nqn=" + nqn +
		",hostnqn=" + o.HostNQN + ",hostid=" + o.HostID)
	if err == nil || errors.Is(err, syscall.EALREADY) {
		t.Errorf("connect with trsvcid 0%d: %v, want a failure other than EALREADY (the kernel reads it as octal)", port, err)
	}
	noControllerLeft(t, fs, before)
}

// TestFabricsRescan grows a namespace behind the host's back (the backing
// file and loop device only, no revalidate on the target, so no AEN): the
// disk keeps its old size until Rescan makes the host identify the
// namespace again.
func TestFabricsRescan(t *testing.T) {
	tg := target(t)
	nqn, port := uniqueNQN("rescan"), nextPort()
	loop, err := tg.LoopFile("/tmp", 16)
	must(t, err)
	must(t, tg.AddSubsystem(nvmet.Subsystem{NQN: nqn, AllowAnyHost: true}))
	must(t, tg.AddNamespace(nqn, nvmet.Namespace{NSID: 1, Device: loop.Device}))
	must(t, tg.AddPort(nvmet.Port{ID: port, Traddr: "127.0.0.1", Trsvcid: port}))
	must(t, tg.Link(port, nqn))
	c, fs := client()
	connect(t, c, baseOpts(nqn, port))
	var disk string
	eventually(t, 5*time.Second, "namespace 1", func() (bool, string) {
		ns, err := fs.FindNamespace(nqn, 1)
		if err != nil {
			return false, err.Error()
		}
		disk = ns.Name
		return ns.SizeBytes() == 16<<20, strconv.FormatUint(ns.SizeBytes(), 10)
	})

	must(t, os.Truncate(loop.File, 32<<20))
	d, err := os.OpenFile(loop.Device, os.O_RDWR, 0)
	must(t, err)
	err = unix.IoctlSetInt(int(d.Fd()), unix.LOOP_SET_CAPACITY, 0)
	d.Close()
	must(t, err)

	// The premise: the host has not seen the growth (nothing told it).
	ns, err := fs.FindNamespace(nqn, 1)
	must(t, err)
	if ns.SizeBytes() != 16<<20 {
		t.Fatalf("%s is %d bytes before the rescan: the host learnt of the growth by itself", disk, ns.SizeBytes())
	}
	must(t, c.Rescan(disk))
	eventually(t, 5*time.Second, disk+" at 32 MiB", func() (bool, string) {
		ns, err := fs.FindNamespace(nqn, 1)
		if err != nil {
			return false, err.Error()
		}
		return ns.SizeBytes() == 32<<20, strconv.FormatUint(ns.SizeBytes(), 10)
	})

	if err := c.Rescan("nvme999n1"); !errors.Is(err, fabrics.ErrControllerGone) {
		t.Errorf("Rescan of a disk that does not exist: %v, want ErrControllerGone", err)
	}
}
