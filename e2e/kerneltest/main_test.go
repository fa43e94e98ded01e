//go:build linux

package kerneltest

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/e2e/nvmet"
)

// inLab reports whether this binary runs inside the QEMU lab guest.
func inLab() bool { return os.Getenv("RDS_CSI_LAB") == "1" }

func requireLab(t *testing.T) {
	t.Helper()
	if !inLab() {
		t.Skip("real-kernel test: runs inside the QEMU lab only (make e2e)")
	}
}

// kernelSeries is "6.1" or "6.12" in the lab.
func kernelSeries() string { return os.Getenv("RDS_CSI_LAB_KERNEL") }

// nativeMultipath reports the boot's nvme_core.multipath setting.
func nativeMultipath() bool { return os.Getenv("RDS_CSI_LAB_MULTIPATH") != "N" }

var seq atomic.Int64

// uniqueNQN returns a fresh subsystem NQN for one test.
func uniqueNQN(tag string) string {
	return fmt.Sprintf("nqn.2024-01.io.srvlab.lab:%s-%d", strings.ToLower(tag), seq.Add(1))
}

// nextPort returns a fresh TCP port and nvmet port id for one test.
func nextPort() int { return 4420 + int(seq.Add(1)) }

// target opens the nvmet target and removes what the test made at its end.
func target(t *testing.T) *nvmet.Target {
	t.Helper()
	requireLab(t)
	tg, err := nvmet.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tg.Close(); err != nil {
			t.Errorf("target cleanup: %v", err)
		}
	})
	return tg
}

// simpleTarget makes a subsystem with one 64 MiB namespace (nsid 1) exposed on
// a fresh port of 127.0.0.1 and returns its NQN and port.
func simpleTarget(t *testing.T, tg *nvmet.Target, tag string) (string, int) {
	t.Helper()
	nqn := uniqueNQN(tag)
	port := nextPort()
	dev, err := tg.NullBlk(64)
	if err != nil {
		t.Fatal(err)
	}
	must(t, tg.AddSubsystem(nvmet.Subsystem{NQN: nqn, AllowAnyHost: true}))
	must(t, tg.AddNamespace(nqn, nvmet.Namespace{NSID: 1, Device: dev}))
	must(t, tg.AddPort(nvmet.Port{ID: port, Traddr: "127.0.0.1", Trsvcid: port}))
	must(t, tg.Link(port, nqn))
	return nqn, port
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// eventually re-checks cond until it holds or the deadline passes. Test-only:
// the product code waits on events; here a bounded re-check keeps the tests
// independent of the code under test.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last seen: %s)", what, within, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawConnect writes an option string to /dev/nvme-fabrics and returns the
// reply. The layout tests use it so the fixtures do not depend on the code
// they test.
func rawConnect(opts string) (string, error) {
	f, err := os.OpenFile("/dev/nvme-fabrics", os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.WriteString(opts); err != nil {
		return "", err
	}
	buf := make([]byte, 256)
	n, err := f.Read(buf)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

// rawDelete writes delete_controller for a controller name.
func rawDelete(name string) error {
	return os.WriteFile("/sys/class/nvme/"+name+"/delete_controller", []byte("1"), 0)
}
