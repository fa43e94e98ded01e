//go:build linux

package kerneltest

// Shared helpers of the #7 proofs (TestProof*): they run in a lab boot of
// their own (make proofs, and make e2e), drive the real rds-csi binary over
// its CSI socket, and write their measurements as Markdown tables to
// /out/results/<name>.md, which the host logs and (make proofs) copies to
// results/<series>/.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/e2e/guestenv"
)

// writeResult records a proof's measurements: body is Markdown. The file
// is written even when the test fails afterwards, so a failed run still
// shows what it measured.
func writeResult(t *testing.T, name, body string) {
	t.Helper()
	t.Logf("result %s:\n%s", name, body)
	dir := "/out/results"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("results dir: %v", err)
		return
	}
	head := fmt.Sprintf("<!-- %s, kernel %s (%s), written by %s -->\n", name, kernelSeries(), kernelRelease(), t.Name())
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(head+body), 0o644); err != nil {
		t.Errorf("write result %s: %v", name, err)
	}
}

// nodeClient dials the daemon's CSI endpoint (as returned by startRDSCSI).
func nodeClient(t *testing.T, endpoint string) csipb.NodeClient {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	return csipb.NewNodeClient(conn)
}

// mountCap and blockCap are single-node-writer capabilities.
func mountCap(fsType string) *csipb.VolumeCapability {
	return &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{FsType: fsType}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func blockCap() *csipb.VolumeCapability {
	return &csipb.VolumeCapability{
		AccessType: &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

// volumeContext is the VolumeContext of a lab volume on 127.0.0.1:port,
// with extra parameters (ctrlLossTmo, reconnectDelay, ...).
func volumeContext(nqn string, port int, extra ...string) map[string]string {
	vc := map[string]string{"nvmeAddress": "127.0.0.1", "nvmePort": strconv.Itoa(port), "nqn": nqn}
	for i := 0; i+1 < len(extra); i += 2 {
		vc[extra[i]] = extra[i+1]
	}
	return vc
}

// procStat is a process's resource use read from /proc.
type procStat struct {
	rssKB int64         // VmRSS
	hwmKB int64         // VmHWM: the peak RSS
	cpu   time.Duration // user + system time
}

// readProcStat reads /proc/<pid>/status and /proc/<pid>/stat.
func readProcStat(pid int) (procStat, error) {
	var ps procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		var dst *int64
		switch f[0] {
		case "VmRSS:":
			dst = &ps.rssKB
		case "VmHWM:":
			dst = &ps.hwmKB
		default:
			continue
		}
		if *dst, err = strconv.ParseInt(f[1], 10, 64); err != nil {
			return ps, fmt.Errorf("/proc/%d/status: %s %q: %w", pid, f[0], f[1], err)
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// Fields after the command (which may hold spaces) start after ")".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return ps, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return ps, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	const clkTck = 100 // USER_HZ on x86-64
	ps.cpu = time.Duration(utime+stime) * time.Second / clkTck
	return ps, nil
}

// idleUse measures a process's CPU use (as a share of one core) and RSS
// over window.
func idleUse(t *testing.T, pid int, window time.Duration) (cpuShare float64, after procStat) {
	t.Helper()
	before, err := readProcStat(pid)
	must(t, err)
	start := time.Now()
	time.Sleep(window)
	after, err = readProcStat(pid)
	must(t, err)
	return float64(after.cpu-before.cpu) / float64(time.Since(start)), after
}

// dist summarises durations: "p50 / p95 / max (n)".
func dist(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	return fmt.Sprintf("%s / %s / %s (n=%d)", fmtDur(percentile(ds, 50)), fmtDur(percentile(ds, 95)), fmtDur(slices.Max(ds)), len(ds))
}

// fmtDur prints a duration with 3 significant digits in ms or s.
func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
}

// withTimeout is a context for one CSI call.
func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// netemLoss and netemClear add and remove 100% packet loss on lo (the
// host's tc: the guest's busybox has no netem). Every NVMe/TCP connection
// of the lab stalls; the daemons' CSI sockets are unix sockets.
func netemLoss() error {
	return hostTool("/usr/sbin/tc", "qdisc", "add", "dev", "lo", "root", "netem", "loss", "100%")
}

func netemClear() error { return hostTool("/usr/sbin/tc", "qdisc", "del", "dev", "lo", "root") }

// hostTool runs one of the host's tools (an absolute path inside the
// host root) chrooted into the host root, with the guest's /dev, /proc and
// /sys (guestenv.Prepare).
func hostTool(path string, args ...string) error {
	if err := guestenv.Prepare(); err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: guestenv.Root}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// kmsgTail reads the kernel log records written after it was opened.
type kmsgTail struct{ fd int }

func openKmsgTail(t *testing.T) *kmsgTail {
	t.Helper()
	// Non-blocking: a read returns EAGAIN at the end of the log.
	fd, err := syscall.Open("/dev/kmsg", syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	must(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	if _, err := syscall.Seek(fd, 0, io.SeekEnd); err != nil {
		t.Fatalf("seek /dev/kmsg: %v", err)
	}
	return &kmsgTail{fd: fd}
}

// drain returns the messages logged since the last drain, and whether
// records were overwritten before they could be read.
func (k *kmsgTail) drain() (msgs []string, gap bool) {
	recs, gap := k.drainRecords()
	for _, r := range recs {
		msgs = append(msgs, r.msg)
	}
	return msgs, gap
}

// kmsgRecord is one kernel log record: its timestamp (the kernel's clock,
// time since boot) and its message.
type kmsgRecord struct {
	at  time.Duration
	msg string
}

// drainRecords is drain with each record's timestamp.
func (k *kmsgTail) drainRecords() (recs []kmsgRecord, gap bool) {
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Read(k.fd, buf)
		if errors.Is(err, syscall.EPIPE) {
			gap = true
			continue
		}
		if err != nil || n <= 0 {
			return recs, gap
		}
		prefix, msg, ok := strings.Cut(string(buf[:n]), ";")
		if !ok {
			continue
		}
		msg, _, _ = strings.Cut(msg, "\n")
		var at time.Duration
		// prefix: priority,sequence,microseconds,flags
		if f := strings.Split(prefix, ","); len(f) >= 3 {
			if us, err := strconv.ParseInt(f[2], 10, 64); err == nil {
				at = time.Duration(us) * time.Microsecond
			}
		}
		recs = append(recs, kmsgRecord{at: at, msg: msg})
	}
}

// phaseClock records how long each phase of a proof took, so a result says
// where the test's own time went.
type phaseClock struct {
	last  time.Time
	parts []string
}

func newPhaseClock() *phaseClock { return &phaseClock{last: time.Now()} }

// mark ends the phase called name; the guest's MemAvailable at its end
// goes with it (the lab guest has 1 GiB, the null_blk disks live in it).
func (c *phaseClock) mark(name string) {
	now := time.Now()
	c.parts = append(c.parts, fmt.Sprintf("%s %s (MemAvailable %s)", name, fmtDur(now.Sub(c.last)), memAvailable()))
	c.last = now
}

// memAvailable is /proc/meminfo's MemAvailable in MiB, or "?".
func memAvailable() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemAvailable:" {
			if kb, err := strconv.Atoi(f[1]); err == nil {
				return fmt.Sprintf("%d MiB", kb>>10)
			}
		}
	}
	return "?"
}

func (c *phaseClock) String() string {
	if len(c.parts) == 0 {
		return "none recorded"
	}
	return strings.Join(c.parts, ", ")
}
