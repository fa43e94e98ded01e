//go:build linux

package kerneltest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/sysfs"
)

// TestLayoutHalfBorn holds a controller before its first connect completes
// (a peer that accepts TCP and never answers the ICReq, so the connect write
// blocks in the kernel) and reads it while it is half-born: state new or
// connecting, no subsystem yet, and the kernel printing its bad subsystem
// pointer as "(efault)" in subsysnqn, model, serial and firmware_rev. The
// sysfs package must read those as absent. With RDS_CSI_CAPTURE=1 (make
// fixtures) the controller's sysfs is copied to testdata/sysfs-halfborn.
func TestLayoutHalfBorn(t *testing.T) {
	requireLab(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	port := fakePeer(t, func(c net.Conn) {
		<-release // accept, never answer
		c.Close()
	})
	fs := sysfs.NewFS("/sys")
	before := controllerNames(t, fs)
	done := make(chan error, 1)
	go func() {
		_, err := rawConnect(fmt.Sprintf("transport=tcp,traddr=127.0.0.1,trsvcid=%d,nqn=%s,hostnqn=%s,hostid=%s",
			port, uniqueNQN("halfborn"), labHostNQN, labHostID))
		done <- err
	}()

	var name string
	eventually(t, 5*time.Second, "a new controller", func() (bool, string) {
		for _, n := range listClassNVMe() {
			if !slices.Contains(before, n) {
				name = n
				return true, n
			}
		}
		return false, "none"
	})
	dir := "/sys/class/nvme/" + name
	raw := func(attr string) string {
		b, _ := os.ReadFile(dir + "/" + attr)
		return strings.TrimRight(string(b), "\n")
	}
	st := raw("state")
	if st != "new" && st != "connecting" {
		t.Fatalf("%s: state %q, want new or connecting (the connect write is still blocked)", name, st)
	}
	// The kernel's own text for the missing subsystem.
	for _, a := range []string{"subsysnqn", "model", "serial", "firmware_rev"} {
		if v := raw(a); v != "(efault)" && v != "(null)" {
			t.Errorf("%s/%s = %q while %s; want the kernel's (efault) or (null)", name, a, v, st)
		}
	}
	c, err := fs.Controller(name)
	must(t, err)
	if c.SubsysNQN != "" || c.Model != "" || c.Serial != "" || c.FirmwareRev != "" || c.Subsystem != "" {
		t.Errorf("Controller(%s) while %s: subsysnqn %q model %q serial %q firmware_rev %q subsystem %q; want all absent",
			name, st, c.SubsysNQN, c.Model, c.Serial, c.FirmwareRev, c.Subsystem)
	}
	if c.HostNQN != labHostNQN || c.Address.Trsvcid != fmt.Sprint(port) {
		t.Errorf("Controller(%s): hostnqn %q trsvcid %q; want %q, %d", name, c.HostNQN, c.Address.Trsvcid, labHostNQN, port)
	}
	if os.Getenv("RDS_CSI_CAPTURE") == "1" && nativeMultipath() {
		dst := filepath.Join("/out/fixtures-halfborn", kernelSeries())
		must(t, os.RemoveAll(dst))
		must(t, captureController("/sys", dst, name))
		t.Logf("captured %s (%s)", dst, st)
	}

	// Let the connect fail: the peer hangs up, the kernel removes the controller.
	free()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("connect to a peer that never answered succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("connect write still blocked 30 s after the peer hung up")
	}
	noControllerLeft(t, fs, before)
}

// listClassNVMe lists /sys/class/nvme without reading any controller.
func listClassNVMe() []string {
	ents, _ := os.ReadDir("/sys/class/nvme")
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
