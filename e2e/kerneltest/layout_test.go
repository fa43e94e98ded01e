//go:build linux

package kerneltest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/e2e/nvmet"
)

// layoutScenario builds every sysfs shape the fixtures must show, through raw
// writes to /dev/nvme-fabrics: one subsystem with two controllers (two ports,
// so two paths to one namespace), a controller left connecting (its port
// unlinked, ctrl_loss_tmo=-1) and a discovery controller. It returns a
// function that tears the host side down.
func layoutScenario(t *testing.T, tg *nvmet.Target) (teardown func()) {
	t.Helper()
	// The same names and ports on every capture, whichever tests ran first
	// (their targets are gone by now): multi-1 on 4422 and 4423, flaky-4 on 4425.
	seq.Store(0)
	hostnqn := "nqn.2014-08.org.nvmexpress:uuid:2b4ab05b-6a8f-4e0e-9a2c-1f4e5d6c7b8a"
	hostid := "2b4ab05b-6a8f-4e0e-9a2c-1f4e5d6c7b8a"

	multi := uniqueNQN("multi")
	dev, err := tg.NullBlk(64)
	must(t, err)
	must(t, tg.AddSubsystem(nvmet.Subsystem{NQN: multi, AllowAnyHost: true}))
	must(t, tg.AddNamespace(multi, nvmet.Namespace{NSID: 1, Device: dev, UUID: "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"}))
	p1, p2 := nextPort(), nextPort()
	must(t, tg.AddPort(nvmet.Port{ID: p1, Traddr: "127.0.0.1", Trsvcid: p1}))
	must(t, tg.AddPort(nvmet.Port{ID: p2, Traddr: "127.0.0.1", Trsvcid: p2}))
	must(t, tg.Link(p1, multi))
	must(t, tg.Link(p2, multi))

	flaky, p3 := simpleTarget(t, tg, "flaky")

	var names []string
	connect := func(opts string) string {
		t.Helper()
		reply, err := rawConnect(opts)
		if err != nil {
			t.Fatalf("connect %q: %v", opts, err)
		}
		var inst, cntlid int
		if _, err := fmt.Sscanf(reply, "instance=%d,cntlid=%d", &inst, &cntlid); err != nil {
			t.Fatalf("reply %q: %v", reply, err)
		}
		name := fmt.Sprintf("nvme%d", inst)
		names = append(names, name)
		return name
	}
	id := fmt.Sprintf(",hostnqn=%s,hostid=%s", hostnqn, hostid)
	connect(fmt.Sprintf("transport=tcp,traddr=127.0.0.1,trsvcid=%d,nqn=%s,ctrl_loss_tmo=-1,reconnect_delay=1%s", p1, multi, id))
	connect(fmt.Sprintf("transport=tcp,traddr=127.0.0.1,trsvcid=%d,nqn=%s,ctrl_loss_tmo=600,reconnect_delay=2,fast_io_fail_tmo=5%s", p2, multi, id))
	flakyCtrl := connect(fmt.Sprintf("transport=tcp,traddr=127.0.0.1,trsvcid=%d,nqn=%s,ctrl_loss_tmo=-1,reconnect_delay=1,keep_alive_tmo=7%s", p3, flaky, id))
	connect(fmt.Sprintf("transport=tcp,traddr=127.0.0.1,trsvcid=%d,nqn=nqn.2014-08.org.nvmexpress.discovery%s", p1, id))

	// Wait for the disks, then drop the flaky target's port.
	eventually(t, 5*time.Second, "namespace disks", func() (bool, string) {
		m, _ := filepath.Glob("/sys/block/nvme*")
		return len(m) >= 2, strings.Join(m, " ")
	})
	must(t, tg.Unlink(p3, flaky))
	eventually(t, 5*time.Second, flakyCtrl+" connecting", func() (bool, string) {
		b, _ := os.ReadFile("/sys/class/nvme/" + flakyCtrl + "/state")
		s := strings.TrimSpace(string(b))
		return s == "connecting", s
	})
	return func() {
		for _, n := range names {
			if err := rawDelete(n); err != nil && !os.IsNotExist(err) {
				t.Errorf("delete %s: %v", n, err)
			}
		}
	}
}

// TestLayoutCapture builds the scenario and, when asked (make fixtures), copies
// the resulting sysfs tree into the run directory for testdata/sysfs.
func TestLayoutCapture(t *testing.T) {
	tg := target(t)
	teardown := layoutScenario(t, tg)
	defer teardown()
	if os.Getenv("RDS_CSI_CAPTURE") != "1" {
		t.Skip("capture only with RDS_CSI_CAPTURE=1 (make fixtures)")
	}
	layout := "multipath"
	if !nativeMultipath() {
		layout = "nomultipath"
	}
	dst := filepath.Join("/out/fixtures", kernelSeries()+"-"+layout)
	must(t, os.RemoveAll(dst))
	must(t, captureSysfs("/sys", dst))
	t.Logf("captured %s", dst)
}
