//go:build linux

package kerneltest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
)

// TestKmsgCapture records what the kernel logs through /dev/kmsg for one
// controller's life: connect, a port unlink with a few failed reconnect
// attempts, relink and reconnect, disconnect. With RDS_CSI_CAPTURE=1 (make
// fixtures) the records go to internal/kmsg/testdata as
// captured-<kernel>-port-unlink.kmsg, where package kmsg's tests parse them.
// Either way it checks that the records carry the controller's device.
func TestKmsgCapture(t *testing.T) {
	tg := target(t)
	nqn, port := simpleTarget(t, tg, "kmsg")
	// A raw non-blocking descriptor: os.File would park a read on the
	// runtime poller instead of returning EAGAIN at the end of the log.
	fd, err := syscall.Open("/dev/kmsg", syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	must(t, err)
	defer syscall.Close(fd)
	if _, err := syscall.Seek(fd, 0, 2); err != nil { // SEEK_END: skip the boot log
		t.Fatal(err)
	}

	c, fs := client()
	o := baseOpts(nqn, port)
	o.CtrlLossTmo = fabrics.Int(-1)
	o.ReconnectDelay = fabrics.Int(1)
	ctrl, err := c.Connect(t.Context(), o)
	must(t, err)
	must(t, tg.Unlink(port, nqn))
	waitState(t, fs, ctrl.Name, sysfs.StateConnecting, 5*time.Second)
	time.Sleep(2500 * time.Millisecond) // two or three failed reconnect attempts
	must(t, tg.Relink(port, nqn))
	waitState(t, fs, ctrl.Name, sysfs.StateLive, 10*time.Second)
	info, err := fs.Controller(ctrl.Name)
	must(t, err)
	must(t, c.Disconnect(ctrl.Name))

	device := fmt.Sprintf("DEVICE=c%d:%d", info.Dev.Major, info.Dev.Minor)
	var recs []string
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Read(fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			break
		}
		if errors.Is(err, syscall.EPIPE) {
			recs = append(recs, "!EPIPE")
			continue
		}
		must(t, err)
		rec := strings.TrimRight(string(buf[:n]), "\n")
		if strings.Contains(rec, "nvme") {
			recs = append(recs, rec)
		}
	}
	var forCtrl int
	for _, r := range recs {
		if strings.Contains(r, "\n "+device) {
			forCtrl++
		}
	}
	t.Logf("%d nvme records, %d tagged %s", len(recs), forCtrl, device)
	if forCtrl == 0 {
		t.Fatalf("no kmsg record carried %s; records:\n%s", device, strings.Join(recs, "\n\n"))
	}
	if os.Getenv("RDS_CSI_CAPTURE") != "1" {
		return
	}
	dir := "/out/kmsg"
	must(t, os.MkdirAll(dir, 0o755))
	head := fmt.Sprintf("# Captured in the QEMU lab (make fixtures) on %s: %s connected to an nvmet\n# target on 127.0.0.1:%d (ctrl_loss_tmo=-1, reconnect_delay=1), port unlinked\n# for about 3 s, relinked, disconnected. Only records mentioning nvme are kept.",
		kernelRelease(), ctrl.Name, port)
	out := head + "\n\n" + strings.Join(recs, "\n\n") + "\n"
	must(t, os.WriteFile(filepath.Join(dir, "captured-"+kernelSeries()+"-port-unlink.kmsg"), []byte(out), 0o644))
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
