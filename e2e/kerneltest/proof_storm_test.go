//go:build linux

package kerneltest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/e2e/guestenv"
	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/sysfs"
)

const (
	stormVolumes = 64
	// stormIdle is the idle window with the 64 live controllers.
	stormIdle = 20 * time.Second
	// stormOutage is the least time the outage is held; it is held at
	// least stormAfterDown past the moment every controller is down too.
	stormOutage    = 15 * time.Second
	stormAfterDown = 5 * time.Second
	// stormScanRuns is how often each scan of the comparison runs.
	stormScanRuns = 20
)

// stormVol is one volume of the storm: its own subsystem (as an RDS
// exports each disk), its staging path (the daemon's view) and the
// controller its stage made.
type stormVol struct {
	id, nqn, staging string
	ctrl             string
}

// TestProofStorm64 (issue #7, Reliability 3 and Performance 3 and 4): 64
// block volumes, each its own subsystem with a 16 MiB null_blk namespace,
// all behind one nvmet port on 127.0.0.1, are staged concurrently through
// the real binary (reconnectDelay 2, reconnectSpread 0, ctrlLossTmo -1). It measures the
// daemon idle with the 64 live controllers, compares our full sysfs scan
// with Debian's nvme-cli on the same kernel state, then drops all 64 at
// once with one outage (100% packet loss on lo) held ~15-20 s, and after
// the restore measures per volume the time to a live controller and to a
// healthy NodeGetVolumeHealth, the daemon's CPU over the outage and its
// peak RSS. It fails when a stage fails, a stage makes other than one
// controller per volume, the daemon does not report all 64 inaccessible
// during the outage, a volume does not recover within 90 s (controller
// live and health healthy), a volume has other than its one controller
// after the recovery, the daemon's rds_csi_reconnects_total does not grow
// by at least 64, nvme-cli does not list the 64 subsystems our scan lists,
// or a controller is left after the unstage. Its subtest reconnect-spread
// (stormSpread, issue 16) then stages the 64 again through a port that is
// removed and restored, without and with the reconnect spread.
func TestProofStorm64(t *testing.T) {
	tg := target(t)
	must(t, guestenv.Prepare())
	port := nextPort()
	must(t, tg.AddPort(nvmet.Port{ID: port, Traddr: "127.0.0.1", Trsvcid: port}))
	vols := make([]*stormVol, stormVolumes)
	for i := range vols {
		v := &stormVol{
			id:      fmt.Sprintf("storm-%02d", i),
			nqn:     uniqueNQN(fmt.Sprintf("storm%02d", i)),
			staging: fmt.Sprintf("/run/storm/staging/%02d", i),
		}
		dev, err := tg.NullBlk(16)
		must(t, err)
		must(t, tg.AddSubsystem(nvmet.Subsystem{NQN: v.nqn, AllowAnyHost: true}))
		must(t, tg.AddNamespace(v.nqn, nvmet.Namespace{NSID: 1, Device: dev}))
		must(t, tg.Link(port, v.nqn))
		must(t, os.MkdirAll(guestenv.Path(v.staging), 0o750))
		vols[i] = v
	}
	fs := sysfs.NewFS("/sys")
	// After the daemon stops and before the target goes (cleanups run last
	// first): whatever a failure left, no bind mount on a disk and no
	// controller of ours stays.
	t.Cleanup(func() { stormLeftovers(t, fs, vols) })

	d, ep := startRDSCSI(t, "storm")
	node := nodeClient(t, ep)
	metricsAddr := stormMetricsAddress(t, d)

	// Stage all 64 at once, as kubelet does when 64 pods land on a node.
	startCPU, err := readProcStat(d.Pid())
	must(t, err)
	ctx := withTimeout(t, 5*time.Minute)
	// A failed stage is retried (at most twice) as kubelet would; the
	// retries are reported.
	var stageRetries atomic.Int64
	stageLat, stageWall := stormConcurrently(t, "NodeStageVolume", vols, func(v *stormVol) error {
		var err error
		for try := range 3 {
			if try > 0 {
				stageRetries.Add(1)
				t.Logf("NodeStageVolume %s failed, retrying as kubelet would: %v", v.id, err)
			}
			_, err = node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{
				VolumeId: v.id, StagingTargetPath: v.staging, VolumeCapability: blockCap(),
				VolumeContext: volumeContext(v.nqn, port, "reconnectDelay", "2", "reconnectSpread", "0", "ctrlLossTmo", "-1"),
			})
			if err == nil {
				return nil
			}
		}
		return err
	})
	if t.Failed() {
		t.FailNow()
	}
	staged, err := readProcStat(d.Pid())
	must(t, err)
	stormMapControllers(t, fs, vols)
	// Right after 64 concurrent stages the TCG guest is overloaded, and
	// the kernel may reset a controller whose keep-alive answer came late
	// ("long keepalive RTT", then error recovery: seen once on 6.1 while
	// the host was busy). That is the kernel's own recovery, not the
	// driver's doing: wait for it, bounded, and report it; a volume that
	// is not healthy once its controller is live again still fails.
	eventually(t, 90*time.Second, "every storm volume healthy after the stages", func() (bool, string) {
		for _, v := range vols {
			if st, entry := stormHealth(ctx, t, node, v); st != stormHealthy {
				return false, fmt.Sprintf("%s: %v", v.id, entry)
			}
		}
		return true, ""
	})

	// Performance 4 (lab part): the daemon at idle with 64 live controllers.
	idleShare, idle := idleUse(t, d.Pid(), stormIdle)
	writeResult(t, "idle64", fmt.Sprintf(`Daemon at idle with %d live NVMe/TCP controllers (one per staged block volume, one
subsystem each) on a 2-vCPU QEMU TCG guest, default --poll-interval (1 s), events and kmsg on. CPU is
utime+stime of the rds-csi process from /proc/<pid>/stat over the window.

| measure | value |
|---|---|
| idle window | %s |
| CPU share (of one core) | %.2f%% |
| RSS at the end of the window (VmRSS) | %.1f MiB |
| peak RSS since start (VmHWM, includes the 64 concurrent stages) | %.1f MiB |
| CPU used by the 64 concurrent stages | %s |
`, stormVolumes, fmtDur(stormIdle), 100*idleShare, float64(idle.rssKB)/1024, float64(idle.hwmKB)/1024, fmtDur(staged.cpu-startCPU.cpu)))

	// Performance 3: our full scan against nvme-cli's, same kernel state.
	t.Run("scan-vs-nvme-cli", func(t *testing.T) { stormScanComparison(t, fs, vols) })

	// Reliability 3: one outage drops all 64 at once.
	res := stormOutageAndRecovery(t, d, node, fs, vols, metricsAddr)

	// Unstage all 64 at once; no controller of ours may stay.
	unstageLat, unstageWall := stormConcurrently(t, "NodeUnstageVolume", vols, func(v *stormVol) error {
		_, err := node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging})
		return err
	})
	if left := stormOurControllers(t, fs, vols); len(left) > 0 {
		t.Errorf("controllers left after the unstage of all %d volumes: %v", stormVolumes, left)
	}

	writeResult(t, "storm64", fmt.Sprintf(`%d block volumes, each its own nvmet subsystem (16 MiB null_blk namespace), all behind ONE
nvmet port on 127.0.0.1, staged concurrently through the real rds-csi binary over its CSI socket
(reconnectDelay 2, reconnectSpread 0, ctrlLossTmo -1, kernel default keep-alive and queues; the daemon's node-wide
bound of 4 concurrent connects applies). The outage is 100%% packet loss on lo (tc netem) held
%s: every TCP connection stalls, as in a network partition or a hung target; the host notices by
keep-alive timeout and retries every 2 s. Recovery is timed from the moment the loss is removed, per
volume: the controller's state in sysfs turns live (read every 20 ms) and NodeGetVolumeHealth
over gRPC reports no abnormal entry again (asked only after the controller was seen live). Times are
p50 / p95 / max (n), min separately. QEMU TCG guest, 2 vCPUs: absolute times are slow.

| measure | value |
|---|---|
| stage, per volume (all %d issued at once) | %s, min %s |
| stage, all %d done (wall) | %s |
| stages that failed and were retried (as kubelet would) | %d |
%s| outage: loss on -> controller not live (sysfs) | %s, min %s |
| outage: loss on -> all %d volumes INACCESSIBLE in NodeGetVolumeHealth | %s |
| outage held (loss on -> loss off) | %s |
| recovery: loss off -> controller live (sysfs) | %s, min %s |
| recovery: loss off -> NodeGetVolumeHealth healthy | %s, min %s |
| recovery: loss off -> all %d healthy | %s |
| daemon CPU during outage + recovery | %s over %s (%.2f%% of one core) |
| daemon CPU during the outage alone (loss on -> off) | %s (%.2f%% of one core) |
| daemon RSS after recovery / peak since start (VmHWM) | %.1f MiB / %.1f MiB |
| rds_csi_reconnects_total, before -> after | %s -> %s |
| reconnects the kernel logged ("Successfully reconnected" records in /dev/kmsg) | %s |
| controllers whose daemon count (rds_csi_controller_reconnects_total) differs from the kernel's | %s |
| NodeGetVolumeHealth calls made by the test during recovery | %d |
| unstage, per volume (all %d issued at once) | %s, min %s |
| unstage, all %d done (wall) | %s |
`,
		stormVolumes, fmtDur(res.held),
		stormVolumes, dist(stageLat), fmtDur(slices.Min(stageLat)),
		stormVolumes, fmtDur(stageWall), stageRetries.Load(), stormStageSplit(t, d.Logs()),
		dist(res.down), fmtDur(slices.Min(res.down)),
		stormVolumes, fmtDur(res.allInaccessible),
		fmtDur(res.held),
		dist(res.live), fmtDur(slices.Min(res.live)),
		dist(res.healthy), fmtDur(slices.Min(res.healthy)),
		stormVolumes, fmtDur(slices.Max(res.healthy)),
		fmtDur(res.cpu), fmtDur(res.window), 100*float64(res.cpu)/float64(res.window),
		fmtDur(res.outageCPU), 100*float64(res.outageCPU)/float64(res.held),
		float64(res.after.rssKB)/1024, float64(res.after.hwmKB)/1024,
		res.reconnectsBefore, res.reconnectsAfter,
		stormKernelCount(res.kernelReconnects), stormMismatch(res.mismatch),
		res.healthCalls,
		stormVolumes, dist(unstageLat), fmtDur(slices.Min(unstageLat)),
		stormVolumes, fmtDur(unstageWall)))

	// Issue 16: the same 64 subsystems through a port that vanishes and
	// comes back at one instant, without and with the reconnect spread.
	t.Run("reconnect-spread", func(t *testing.T) { stormSpread(t, fs, node, vols, port, metricsAddr) })
}

// stormStageSplit turns the timing of the binary's "volume staged" lines
// (text log: timing.connect_write=18ms ...) into table rows: where the
// concurrent stages spent their time.
func stormStageSplit(t *testing.T, logs string) string {
	t.Helper()
	re := regexp.MustCompile(`timing\.([a-z_]+)=((?:[0-9.]+[a-zµ]+)+)`) // 1m2.5s, 350ms, 12µs
	phases := map[string][]time.Duration{}
	for l := range strings.Lines(logs) {
		if !strings.Contains(l, `msg="volume staged"`) {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(l, -1) {
			if d, err := time.ParseDuration(m[2]); err == nil {
				phases[m[1]] = append(phases[m[1]], d)
			}
		}
	}
	if len(phases["total"]) != stormVolumes {
		t.Errorf("%d \"volume staged\" lines with timing in the daemon's log, want %d", len(phases["total"]), stormVolumes)
	}
	var b strings.Builder
	for _, p := range []struct{ key, what string }{
		{"backoff", "waiting for one of the 4 connect slots (and backoff)"},
		{"connect_write", "the connect write"},
		{"device", "waiting for the block device"},
		{"mount", "the bind mount (mount(8))"},
		{"overhead", "the driver's own overhead"},
		{"total", "total in the driver"},
	} {
		fmt.Fprintf(&b, "| stage split, per volume: %s | %s |\n", p.what, dist(phases[p.key]))
	}
	return b.String()
}

func stormKernelCount(n int) string {
	if n < 0 {
		return "unknown (the kernel log lost records)"
	}
	return strconv.Itoa(n)
}

func stormMismatch(m []string) string {
	if len(m) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d: %s", len(m), strings.Join(m, "; "))
}

// stormConcurrently runs call for every volume at once and returns each
// call's latency and the wall time until all returned; a failed call fails
// the test.
func stormConcurrently(t *testing.T, what string, vols []*stormVol, call func(*stormVol) error) ([]time.Duration, time.Duration) {
	t.Helper()
	lat := make([]time.Duration, len(vols))
	errs := make([]error, len(vols))
	start := time.Now()
	var wg sync.WaitGroup
	for i, v := range vols {
		wg.Go(func() {
			t0 := time.Now()
			errs[i] = call(v)
			lat[i] = time.Since(t0)
		})
	}
	wg.Wait()
	wall := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s %s: %v", what, vols[i].id, err)
		}
	}
	return lat, wall
}

// stormMapControllers finds each volume's controller: exactly one per
// subsystem, live.
func stormMapControllers(t *testing.T, fs sysfs.FS, vols []*stormVol) {
	t.Helper()
	reset := map[string]bool{}
	eventually(t, 90*time.Second, "one live controller per storm volume after the stages", func() (bool, string) {
		cs, err := fs.Controllers()
		if err != nil {
			return false, err.Error()
		}
		for _, v := range vols {
			var names []string
			for _, c := range cs {
				if c.SubsysNQN == v.nqn {
					names = append(names, c.Name+" "+c.StateRaw)
					v.ctrl = c.Name
				}
			}
			if len(names) != 1 {
				t.Fatalf("%s after its stage: controllers %v, want exactly one", v.id, names)
			}
			if !strings.HasSuffix(names[0], " live") {
				reset[names[0]] = true
				return false, fmt.Sprintf("%s: %v", v.id, names)
			}
		}
		return true, ""
	})
	if len(reset) > 0 {
		t.Logf("controllers seen not live after the stages, live again within the bound (the kernel's keep-alive recovery under the guest's overload): %v", reset)
	}
}

// stormOurControllers lists the controllers of the storm's subsystems.
func stormOurControllers(t *testing.T, fs sysfs.FS, vols []*stormVol) []string {
	t.Helper()
	nqns := map[string]bool{}
	for _, v := range vols {
		nqns[v.nqn] = true
	}
	cs, err := fs.Controllers()
	if err != nil {
		t.Errorf("controllers: %v", err)
		return nil
	}
	var out []string
	for _, c := range cs {
		if nqns[c.SubsysNQN] {
			out = append(out, c.Name)
		}
	}
	return out
}

// stormLeftovers removes what a failed run left: bind mounts under the
// staging root and controllers of the storm's subsystems.
func stormLeftovers(t *testing.T, fs sysfs.FS, vols []*stormVol) {
	root := guestenv.Path("/run/storm/")
	if f, err := os.Open("/proc/self/mounts"); err == nil {
		var mnts []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fl := strings.Fields(sc.Text()); len(fl) > 1 && strings.HasPrefix(fl[1], root) {
				mnts = append(mnts, fl[1])
			}
		}
		f.Close()
		for _, m := range mnts {
			t.Logf("cleanup: unmounting %s", m)
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	for _, name := range stormOurControllers(t, fs, vols) {
		t.Logf("cleanup: deleting controller %s", name)
		_ = rawDelete(name)
	}
}

// stormMetricsAddress is where the daemon serves /metrics (startRDSCSI
// asks for 127.0.0.1:0; the daemon logs the port it got).
func stormMetricsAddress(t *testing.T, d *guestenv.Daemon) string {
	t.Helper()
	re := regexp.MustCompile(`serving metrics and health endpoints.* address=(127\.0\.0\.1:[0-9]+)`)
	var addr string
	eventually(t, 20*time.Second, "the daemon's metrics address in its log", func() (bool, string) {
		if m := re.FindStringSubmatch(d.Logs()); m != nil {
			addr = m[1]
			return true, addr
		}
		return false, "not logged yet"
	})
	return addr
}

// stormMetric is the value of an unlabelled metric, or the scrape error.
func stormMetric(addr, name string) string {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return "scrape failed: " + err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "scrape failed: " + err.Error()
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return "absent"
}

type stormCondition int

const (
	stormHealthy stormCondition = iota
	stormInaccessible
	stormOther
)

// stormHealth asks NodeGetVolumeHealth about one volume.
func stormHealth(ctx context.Context, t *testing.T, node csipb.NodeClient, v *stormVol) (stormCondition, []*csipb.VolumeHealth_VolumeHealthEntry) {
	t.Helper()
	resp, err := node.NodeGetVolumeHealth(ctx, &csipb.NodeGetVolumeHealthRequest{VolumeId: v.id, StagingTargetPath: v.staging})
	if err != nil {
		t.Fatalf("NodeGetVolumeHealth %s: %v", v.id, err)
	}
	entries := resp.GetVolumeHealth().GetHealthStatuses()
	switch {
	case len(entries) == 0:
		return stormHealthy, nil
	case entries[0].GetStatus() == csipb.VolumeHealthErrorType_INACCESSIBLE:
		return stormInaccessible, entries
	}
	return stormOther, entries
}

// stormStates reads the state of each volume's controller.
func stormStates(vols []*stormVol) []string {
	out := make([]string, len(vols))
	for i, v := range vols {
		b, err := os.ReadFile("/sys/class/nvme/" + v.ctrl + "/state")
		if err != nil {
			out[i] = "unreadable: " + err.Error()
			continue
		}
		out[i] = strings.TrimSpace(string(b))
	}
	return out
}

// stormWatch records when each volume's controller first met a condition
// on its state, read from sysfs by a goroutine of its own every 20 ms (so
// the times do not wait for the test's gRPC calls).
type stormWatch struct {
	mu   sync.Mutex
	at   []time.Duration // since the start; 0 while not met
	n    int
	once sync.Once
	stop chan struct{}
	done chan struct{}
}

func stormWatchStates(t *testing.T, vols []*stormVol, start time.Time, cond func(state string) bool) *stormWatch {
	w := &stormWatch{at: make([]time.Duration, len(vols)), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			for i, v := range vols {
				w.mu.Lock()
				met := w.at[i] != 0
				w.mu.Unlock()
				if met {
					continue
				}
				b, err := os.ReadFile("/sys/class/nvme/" + v.ctrl + "/state")
				if err == nil && cond(strings.TrimSpace(string(b))) {
					since := time.Since(start)
					w.mu.Lock()
					w.at[i] = since
					w.n++
					w.mu.Unlock()
				}
			}
			if w.count() == len(vols) {
				return
			}
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { w.close() })
	return w
}

func (w *stormWatch) seen(i int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at[i] != 0
}

func (w *stormWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// close stops the watch and returns the times.
func (w *stormWatch) close() []time.Duration {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.at)
}

// stormControllerMetric is a per-controller metric family from /metrics,
// by controller name.
func stormControllerMetric(t *testing.T, addr, family string) map[string]int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(family) + `\{.*controller="(nvme[0-9]+)".*\} ([0-9.e+]+)$`)
	out := map[string]int{}
	for l := range strings.Lines(string(b)) {
		if m := re.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			must(t, err)
			out[m[1]] = int(v)
		}
	}
	return out
}

// kernelReconnects counts the kernel's "nvmeN: Successfully reconnected"
// records per controller among msgs.
func kernelReconnects(msgs []string) map[string]int {
	re := regexp.MustCompile(`^nvme (nvme[0-9]+): Successfully reconnected`)
	counts := map[string]int{}
	for _, msg := range msgs {
		if m := re.FindStringSubmatch(msg); m != nil {
			counts[m[1]]++
		}
	}
	return counts
}

type stormResult struct {
	down            []time.Duration // loss on -> each controller not live
	allInaccessible time.Duration   // loss on -> every volume INACCESSIBLE
	held            time.Duration   // loss on -> loss off
	live, healthy   []time.Duration // loss off -> controller live, volume healthy
	window          time.Duration   // loss on -> all healthy
	cpu, outageCPU  time.Duration
	after           procStat
	healthCalls     int

	reconnectsBefore, reconnectsAfter string
	kernelReconnects                  int      // "Successfully reconnected" records; -1 when the log had a gap
	mismatch                          []string // controllers whose kernel and daemon counts differ
}

// stormOutageAndRecovery makes one outage that drops every controller at
// once and measures the recovery.
//
// The outage is 100% packet loss on lo (netem), added and removed with one
// command each. That is one event for all 64 connections at the same
// instant, like a switch or link failure, an RDS that hangs, or a network
// partition: the connections stall without a FIN or RST, the host notices
// by its keep-alive timeout and then retries (each SYN of a reconnect is
// lost too) until the path is back. Unlinking the port from 64 subsystems
// would be 64 configfs writes spread over time, and closes the connections
// cleanly, which a real outage rarely does. The daemon's CSI socket is a
// unix socket, so the loss does not touch it; its /metrics (TCP on lo) is
// read only before and after.
func stormOutageAndRecovery(t *testing.T, d *guestenv.Daemon, node csipb.NodeClient, fs sysfs.FS, vols []*stormVol, metricsAddr string) stormResult {
	t.Helper()
	var res stormResult
	res.reconnectsBefore = stormMetric(metricsAddr, "rds_csi_reconnects_total")
	ctx := withTimeout(t, 5*time.Minute)
	ctrlBefore := stormControllerMetric(t, metricsAddr, "rds_csi_controller_reconnects_total")
	kmsg := openKmsgTail(t)
	before, err := readProcStat(d.Pid())
	must(t, err)

	must(t, netemLoss())
	on := time.Now()
	lossOn := true
	lossOff := func() {
		if lossOn {
			lossOn = false
			if err := netemClear(); err != nil {
				t.Errorf("restore lo: %v", err)
			}
		}
	}
	t.Cleanup(lossOff)

	// Every controller drops (keep-alive timeout), and the daemon reports
	// every volume inaccessible.
	down := stormWatchStates(t, vols, on, func(st string) bool { return st != "live" })
	inaccessible := make([]bool, len(vols))
	nInaccessible := 0
	eventually(t, 60*time.Second, "all controllers down and all volumes INACCESSIBLE during the outage", func() (bool, string) {
		for i, v := range vols {
			if down.seen(i) && !inaccessible[i] {
				if c, _ := stormHealth(ctx, t, node, v); c == stormInaccessible {
					inaccessible[i] = true
					nInaccessible++
				}
			}
		}
		if nInaccessible == len(vols) {
			res.allInaccessible = time.Since(on)
			return true, ""
		}
		time.Sleep(50 * time.Millisecond)
		return false, fmt.Sprintf("%d of %d controllers seen not live, %d volumes INACCESSIBLE", down.count(), len(vols), nInaccessible)
	})
	res.down = down.close()
	allDown := slices.Max(res.down)
	time.Sleep(max(time.Until(on.Add(stormOutage)), time.Until(on.Add(allDown+stormAfterDown))))
	if states := stormStates(vols); slices.Contains(states, "live") {
		t.Fatalf("a controller is live again while lo drops every packet: %v", states)
	}
	during, err := readProcStat(d.Pid())
	must(t, err)
	lossOff()
	off := time.Now()
	res.held = off.Sub(on)
	res.outageCPU = during.cpu - before.cpu

	// Recovery, per volume: controller live (sysfs), then health healthy
	// (asked once the controller was seen live).
	live := stormWatchStates(t, vols, off, func(st string) bool { return st == "live" })
	healthyAt := make([]time.Duration, len(vols))
	nHealthy := 0
	eventually(t, 90*time.Second, "every volume recovered after the outage", func() (bool, string) {
		for i, v := range vols {
			if live.seen(i) && healthyAt[i] == 0 {
				res.healthCalls++
				if c, _ := stormHealth(ctx, t, node, v); c == stormHealthy {
					healthyAt[i] = time.Since(off)
					nHealthy++
				}
			}
		}
		if nHealthy == len(vols) {
			return true, ""
		}
		var waiting []string
		for i, v := range vols {
			if healthyAt[i] == 0 {
				waiting = append(waiting, fmt.Sprintf("%s (%s, seen live: %v)", v.id, v.ctrl, live.seen(i)))
			}
		}
		time.Sleep(50 * time.Millisecond)
		return false, fmt.Sprintf("%d of %d healthy; waiting: %s", nHealthy, len(vols), strings.Join(waiting, "; "))
	})
	res.live, res.healthy = live.close(), healthyAt
	res.window = time.Since(on)
	res.after, err = readProcStat(d.Pid())
	must(t, err)
	res.cpu = res.after.cpu - before.cpu
	// Let late uevents and kernel log records land before the counts.
	time.Sleep(2 * time.Second)
	res.reconnectsAfter = stormMetric(metricsAddr, "rds_csi_reconnects_total")
	ctrlAfter := stormControllerMetric(t, metricsAddr, "rds_csi_controller_reconnects_total")
	msgs, gap := kmsg.drain()
	kernel := kernelReconnects(msgs)
	res.kernelReconnects = -1
	if !gap {
		res.kernelReconnects = 0
	}
	for _, v := range vols {
		k, dm := kernel[v.ctrl], ctrlAfter[v.ctrl]-ctrlBefore[v.ctrl]
		if !gap {
			res.kernelReconnects += k
			if k != dm {
				res.mismatch = append(res.mismatch, fmt.Sprintf("%s: kernel %d, daemon %d", v.ctrl, k, dm))
			}
		}
	}
	if len(res.mismatch) > 0 {
		t.Errorf("per-controller reconnects, kernel log vs the daemon's rds_csi_controller_reconnects_total: %s", strings.Join(res.mismatch, "; "))
		for l := range strings.Lines(d.Logs()) {
			for _, m := range res.mismatch {
				if c := m[:strings.IndexByte(m, ':')]; strings.Contains(l, "controller="+c+" ") && (strings.Contains(l, "reconnected") || strings.Contains(l, "not live")) {
					t.Logf("daemon: %s", strings.TrimSpace(l))
				}
			}
		}
	}
	// Every recovery shows in the daemon's reconnect counter (a controller
	// that flapped may add more).
	if b, err1 := strconv.Atoi(res.reconnectsBefore); err1 != nil {
		t.Errorf("rds_csi_reconnects_total before the outage: %s", res.reconnectsBefore)
	} else if a, err2 := strconv.Atoi(res.reconnectsAfter); err2 != nil || a-b < len(vols) {
		t.Errorf("rds_csi_reconnects_total went from %s to %s over the outage, want at least %d more", res.reconnectsBefore, res.reconnectsAfter, len(vols))
	}
	// The controllers came back as they were: no volume got a second one.
	cs, err := fs.Controllers()
	must(t, err)
	for _, v := range vols {
		n := 0
		for _, c := range cs {
			if c.SubsysNQN == v.nqn {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s after the recovery: %d controllers, want its one %s", v.id, n, v.ctrl)
		}
	}
	return res
}

// stormScanComparison times our full scan (sysfs.FS Controllers and
// Subsystems, in-process) and the daemon's full re-read (ControllerConnections) against Debian's nvme-cli on the same kernel
// state, after checking that nvme-cli lists every subsystem of the storm.
func stormScanComparison(t *testing.T, fs sysfs.FS, vols []*stormVol) {
	dir := os.Getenv("RDS_CSI_NVME_CLI")
	if dir == "" {
		t.Skip("RDS_CSI_NVME_CLI not set: the lab harness passes nvme-cli's directory in proof runs")
	}
	ours := map[string]bool{}
	for _, v := range vols {
		ours[v.nqn] = true
	}
	// nvme-cli runs chrooted into the host root (its libraries are the
	// host's Debian ones) with the guest's /sys and /dev bound there; the
	// chroot is made by the fork, as guestenv.Start does, so no chroot(1)
	// or env(1) process start is counted, only nvme's own.
	cli := func(args ...string) ([]byte, time.Duration, error) {
		cmd := exec.Command(dir+"/usr/sbin/nvme", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: guestenv.Root}
		cmd.Dir = "/"
		cmd.Env = []string{
			"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
			"LD_LIBRARY_PATH=" + dir + "/usr/lib/x86_64-linux-gnu:" + dir + "/lib/x86_64-linux-gnu",
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		t0 := time.Now()
		out, err := cmd.Output()
		took := time.Since(t0)
		if err != nil {
			return out, took, fmt.Errorf("nvme %s: %w: %s", strings.Join(args, " "), err, stderr.String())
		}
		return out, took, nil
	}
	scan := func() (int, int, time.Duration) {
		t0 := time.Now()
		cs, err := fs.Controllers()
		must(t, err)
		ss, err := fs.Subsystems()
		must(t, err)
		took := time.Since(t0)
		nc, ns := 0, 0
		for _, c := range cs {
			if ours[c.SubsysNQN] && c.State.Live() {
				nc++
			}
		}
		for _, s := range ss {
			// Head disks sit under the subsystem with native multipath only.
			if ours[s.NQN] && (len(s.Namespaces) == 1 || !nativeMultipath()) {
				ns++
			}
		}
		return nc, ns, took
	}

	// The daemon's full re-read: every controller's connection, no disks.
	reread := func() (int, time.Duration) {
		t0 := time.Now()
		cs, err := fs.ControllerConnections()
		must(t, err)
		took := time.Since(t0)
		n := 0
		for _, c := range cs {
			if ours[c.SubsysNQN] && c.State.Live() {
				n++
			}
		}
		return n, took
	}

	version, _, err := cli("version")
	must(t, err)
	// Both see the same kernel state: our scan finds the 64 live
	// controllers and subsystems (with their namespace), nvme-cli lists
	// the 64 subsystems.
	if nc, ns, _ := scan(); nc != len(vols) || ns != len(vols) {
		t.Fatalf("our scan: %d live controllers and %d subsystems with a namespace of the storm, want %d each", nc, ns, len(vols))
	}
	if n, _ := reread(); n != len(vols) {
		t.Fatalf("our re-read: %d live controllers of the storm, want %d", n, len(vols))
	}
	out, _, err := cli("list-subsys", "-o", "json")
	must(t, err)
	var doc any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nvme list-subsys -o json: %v:\n%s", err, out)
	}
	seen := map[string]bool{}
	stormWalkJSON(doc, func(m map[string]any) {
		if nqn, ok := m["NQN"].(string); ok && ours[nqn] {
			if name, _ := m["Name"].(string); strings.HasPrefix(name, "nvme-subsys") {
				seen[nqn] = true
			}
		}
	})
	if len(seen) != len(vols) {
		t.Fatalf("nvme list-subsys -o json lists %d of the %d subsystems:\n%s", len(seen), len(vols), out)
	}
	out, _, err = cli("list", "-o", "json")
	must(t, err)
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nvme list -o json: %v:\n%s", err, out)
	}
	devices := 0
	stormWalkJSON(doc, func(m map[string]any) {
		if _, ok := m["DevicePath"]; ok {
			devices++
		}
	})

	// Interleaved runs, so background noise hits each alike.
	var tOurs, tReread, tSubsys, tList, tVersion []time.Duration
	for range stormScanRuns {
		_, _, d := scan()
		tOurs = append(tOurs, d)
		_, d = reread()
		tReread = append(tReread, d)
		_, d, err := cli("list-subsys", "-o", "json")
		must(t, err)
		tSubsys = append(tSubsys, d)
		_, d, err = cli("list", "-o", "json")
		must(t, err)
		tList = append(tList, d)
		_, d, err = cli("version")
		must(t, err)
		tVersion = append(tVersion, d)
	}
	// Medians unrounded (percentile rounds to 0.1 ms, coarse for our scan).
	med := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[(len(s)-1)/2]
	}
	ratio := func(a, b time.Duration) string { return fmt.Sprintf("%.1f×", float64(a)/float64(b)) }
	cliVersion := strings.TrimSpace(strings.SplitN(string(version), "\n", 2)[0])
	if b, err := os.ReadFile(guestenv.Path(dir + "/version")); err == nil {
		cliVersion += " (Debian " + strings.TrimSpace(string(b)) + ")"
	}
	writeResult(t, "scan-vs-nvme-cli", fmt.Sprintf(`Full scan of the NVMe state with %d live NVMe/TCP controllers (%d subsystems, one namespace each,
native multipath on): ours is sysfs.NewFS("/sys").Controllers() + Subsystems() in-process (every
controller's attributes, state and per-path disks, every subsystem with its head disks: the daemon's
device scan at start); the daemon's full re-read is ControllerConnections() (what identifies each
controller's connection, its timeouts and device number; no disks). nvme-cli is %s,
Debian's binary run in the guest (chrooted into the host root, its libraries from the unpacked
packages) on the same kernel: its times INCLUDE its process start (fork, exec, dynamic linking,
libnvme setup), which is how the research note compared them; "nvme version" shows that fixed cost
alone. Before timing, nvme-cli's JSON was checked to list all %d subsystems (nvme list -o json
listed %d devices). %d runs each, interleaved; median and p95. QEMU TCG guest, 2 vCPUs.

| scan | median | p95 |
|---|---|---|
| ours: Controllers() + Subsystems() | %s | %s |
| ours: ControllerConnections() (the daemon's full re-read) | %s | %s |
| nvme list-subsys -o json | %s | %s |
| nvme list -o json | %s | %s |
| nvme version (process start only) | %s | %s |

| ratio (medians) | value |
|---|---|
| nvme list-subsys / ours | %s |
| nvme list-subsys / our re-read | %s |
| nvme list / ours | %s |
| (nvme list-subsys - nvme version) / ours, the scan without process start (approximate) | %s |
| (nvme list-subsys - nvme version) / our re-read (approximate) | %s |
`, len(vols), len(vols), cliVersion, len(vols), devices, stormScanRuns,
		fmtDur(med(tOurs)), fmtDur(percentile(tOurs, 95)),
		fmtDur(med(tReread)), fmtDur(percentile(tReread, 95)),
		fmtDur(med(tSubsys)), fmtDur(percentile(tSubsys, 95)),
		fmtDur(med(tList)), fmtDur(percentile(tList, 95)),
		fmtDur(med(tVersion)), fmtDur(percentile(tVersion, 95)),
		ratio(med(tSubsys), med(tOurs)), ratio(med(tSubsys), med(tReread)), ratio(med(tList), med(tOurs)),
		ratio(max(med(tSubsys)-med(tVersion), 0), med(tOurs)), ratio(max(med(tSubsys)-med(tVersion), 0), med(tReread))))
}

// stormWalkJSON calls f on every object of a decoded JSON document.
func stormWalkJSON(v any, f func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		f(x)
		for _, e := range x {
			stormWalkJSON(e, f)
		}
	case []any:
		for _, e := range x {
			stormWalkJSON(e, f)
		}
	}
}
