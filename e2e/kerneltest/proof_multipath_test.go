//go:build linux

package kerneltest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/e2e/guestenv"
	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/sysfs"
)

// The outages of TestProofMultipathFailover.
const (
	mpHold     = 30 * time.Second      // each path's outage (the 30 s)
	mpBothHold = 10 * time.Second      // both paths down
	mpPace     = 25 * time.Millisecond // the writer's pause: ~2 minutes of writing fit loadBudget
)

// TestProofMultipathFailover (issue #17): an ext4 volume whose subsystem is
// exported on two addresses (127.0.0.1 and 127.0.0.2, one nvmet port each)
// is staged and published by the real binary with nvmeAddresses naming
// both (ctrlLossTmo=-1, reconnectDelay=1) and carries the checksummed,
// fsynced writer of TestProofOutageUnderLoad. The first address's port is
// unlinked for 30 s, relinked, then the second's. During each single-path
// outage NodeGetVolumeHealth must say DEGRADED naming the down address and
// never INACCESSIBLE, the writer must go on acknowledging blocks (I/O
// flows on the other path) without an error, and health must come back to
// healthy after the relink. Then both ports are unlinked: INACCESSIBLE, no
// block acknowledged while it lasts; only the second is relinked: the
// writer resumes and health is DEGRADED; the first relinked: healthy. At
// the end every acknowledged block must read back intact from the target
// (page cache dropped), the kernel must have logged no ext4 or I/O error,
// and unstage must leave no mount and neither controller. The longest gap
// between two acknowledgements in each outage (the failover time when the
// unlinked path was the one carrying I/O) is recorded, not asserted.
func TestProofMultipathFailover(t *testing.T) {
	if !nativeMultipath() {
		t.Skip("native multipath is off in this boot")
	}
	tg := target(t)
	must(t, guestenv.Prepare())
	klog := openKmsgTail(t)
	d, endpoint := startRDSCSI(t, "mpfail")
	node := nodeClient(t, endpoint)
	res := &mpResult{}
	clock := newPhaseClock()
	t.Cleanup(func() { res.phases = clock.String(); writeResult(t, "multipath-failover", res.markdown()) })
	defer func() {
		if t.Failed() {
			t.Logf("rds-csi log:\n%s", d.Logs())
		}
	}()

	clock.mark("daemon start")
	klog.drain()
	v := stageLoadVolumeOn(t, tg, node, "mpath", []string{secondAddr}, "ctrlLossTmo", "-1", "reconnectDelay", "1")
	clock.mark("stage and publish")
	addrs := []string{"127.0.0.1", secondAddr}
	res.device = v.device
	// NodeStage returns once one path is live; the other joins in the
	// background.
	ctrls := map[string]string{} // address -> controller
	eventually(t, 30*time.Second, "both paths of the volume live", func() (bool, string) {
		cs, err := sysfs.NewFS("/sys").Controllers()
		must(t, err)
		live, desc := 0, []string{}
		for _, c := range cs {
			if c.SubsysNQN != v.nqn {
				continue
			}
			ctrls[c.Address.Traddr] = c.Name
			if c.State == sysfs.StateLive {
				live++
			}
			desc = append(desc, c.Name+"@"+c.Address.Traddr+"="+c.StateRaw)
		}
		return live == 2 && ctrls["127.0.0.1"] != "" && ctrls[secondAddr] != "", strings.Join(desc, " ")
	})
	clock.mark("second path live")
	for _, a := range addrs {
		res.ctrls = append(res.ctrls, ctrls[a]+" ("+a+")")
	}
	if e := v.health(t); e != nil {
		t.Fatalf("health with both paths live: %s, want healthy", fmtHealth(e))
	}

	w := startPacedWriter(t, v.file(), mpPace)
	w.waitAcked(t, 20, time.Minute, "the writer's first blocks")
	res.rate = w.rate(0, 20)
	res.baseline = w.gaps(0, 20)
	clock.mark("first 20 blocks")

	for i, a := range addrs {
		res.single = append(res.single, mpOnePathDown(t, tg, v, w, i, a, addrs, ctrls))
		clock.mark(fmt.Sprintf("path %d outage", i+1))
		if t.Failed() {
			return
		}
	}
	res.both = mpBothDown(t, tg, v, w, addrs)
	clock.mark("both-paths outage")
	if t.Failed() {
		return
	}

	acked, err := w.halt(t, 30*time.Second)
	if err != nil {
		t.Fatalf("the writer failed: %v", err)
	}
	res.acked, res.done = acked, true
	clock.mark("writer halt")
	must(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0))
	clock.mark("drop caches")
	probe := startIOProbe(2 * time.Second)
	readStart := time.Now()
	res.verify = verifyLoad(v.file(), acked)
	tcp, samples := probe.finish()
	clock.mark("read back")
	if d := time.Since(readStart); d > 20*time.Second {
		// 7 s when this proof runs alone under TCG; much longer in some
		// full runs, with the guest idle. Say what it waited on.
		t.Logf("read back took %s; over it: %s; samples every 2 s (first 6, last 3):\n%s",
			fmtDur(d), tcp, strings.Join(firstLast(samples, 6, 3), "\n"))
	}
	if res.verify.err != nil || res.verify.good != acked {
		t.Errorf("acknowledged blocks read back: %s", res.verify)
	}
	lines, gap := klog.drain()
	if gap {
		lines = append(lines, "(kernel log records overwritten before they were read)")
	}
	res.fsErrors = fsErrorLines(lines, v.device)
	if len(res.fsErrors) > 0 {
		t.Errorf("kernel log has filesystem or I/O errors for %s:\n%s", v.device, strings.Join(res.fsErrors, "\n"))
	}
	v.unstage(t)
	clock.mark("unstage")
	res.left = v.leftovers(t)
	if res.left != "nothing" {
		t.Errorf("after unstage of the two-path volume: %s", res.left)
	}
}

// mpOutage is what one outage of TestProofMultipathFailover measured.
type mpOutage struct {
	what                      string
	held                      time.Duration // unlink -> relink
	timeline                  healthTimeline
	degradedAt                time.Duration // unlink -> first DEGRADED
	lateHealth                string        // the last answer before the relink
	ackedBefore, ackedDuring  int
	ackedAfter                int
	failover                  time.Duration // the gap between acks across the unlink
	gap                       time.Duration // the longest gap between acks from the unlink to the relink
	gapAt                     time.Duration // when (from the unlink) that gap began
	gapRelink                 time.Duration // the longest gap from the relink to healthy
	pathWrites                string        // writes completed per path during the outage
	restoreHealth             string        // both down: the answer once the writer resumed
	restoreAck, restoreHealed time.Duration // relink -> first ack, relink -> healthy
}

// mpOnePathDown unlinks the port of addrs[i] for mpHold.
func mpOnePathDown(t *testing.T, tg *nvmet.Target, v *loadVolume, w *loadWriter, i int, addr string, addrs []string, ctrls map[string]string) mpOutage {
	t.Helper()
	r := mpOutage{what: fmt.Sprintf("path %d (%s) port unlinked", i+1, addr)}
	port := v.pathPorts[i]
	relink := sync.OnceValue(func() error { return tg.Relink(port, v.nqn) })
	t.Cleanup(func() { _ = relink() })
	before := pathWriteCounts(addrs, ctrls)
	must(t, tg.Unlink(port, v.nqn))
	start := time.Now()
	r.ackedBefore = w.acked()
	inaccessible := 0
	for time.Since(start) < mpHold {
		e := v.health(t)
		r.timeline.note(time.Since(start), e)
		if e.GetStatus() == csipb.VolumeHealthErrorType_DEGRADED && r.degradedAt == 0 {
			r.degradedAt = time.Since(start)
		}
		if e.GetStatus() == csipb.VolumeHealthErrorType_INACCESSIBLE {
			inaccessible++
		}
		r.lateHealth = fmtHealth(e)
		if _, err := w.state(); err != nil {
			t.Fatalf("%s: the writer failed: %v", r.what, err)
		}
		time.Sleep(min(200*time.Millisecond, mpHold-time.Since(start)))
	}
	late := v.health(t)
	r.lateHealth = fmtHealth(late)
	r.ackedDuring = w.acked() - r.ackedBefore
	r.pathWrites = pathWriteDelta(addrs, ctrls, before)
	must(t, relink())
	restored := time.Now()
	r.held = restored.Sub(start)
	gap, began := w.maxGap(start, restored)
	r.gap, r.gapAt = gap, began.Sub(start)
	r.failover, _ = w.maxGap(start, start)

	if r.degradedAt == 0 {
		t.Errorf("%s: health was never DEGRADED (%s)", r.what, r.timeline.String())
	}
	if inaccessible > 0 {
		t.Errorf("%s: health was INACCESSIBLE %d times with the other path live (%s)", r.what, inaccessible, r.timeline.String())
	}
	if late.GetStatus() != csipb.VolumeHealthErrorType_DEGRADED || !strings.Contains(late.GetMessage(), addr) {
		t.Errorf("%s: health at the end of the outage %s, want DEGRADED naming %s", r.what, r.lateHealth, addr)
	}
	if r.ackedDuring == 0 {
		t.Errorf("%s: no block acknowledged in %v with the other path live", r.what, mpHold)
	}

	_, r.restoreHealed = v.waitHealth(t, 60*time.Second, "healthy after "+r.what, func(e *csipb.VolumeHealth_VolumeHealthEntry) bool { return e == nil })
	healed := time.Now()
	w.waitAcked(t, w.acked()+10, time.Minute, "the writer after "+r.what)
	r.gapRelink, _ = w.maxGap(restored, healed)
	r.ackedAfter = w.acked() - r.ackedBefore - r.ackedDuring
	if _, err := w.state(); err != nil {
		t.Fatalf("%s: the writer failed: %v", r.what, err)
	}
	return r
}

// mpBothDown unlinks both ports, holds mpBothHold, relinks the second
// only, waits for the writer, then relinks the first.
func mpBothDown(t *testing.T, tg *nvmet.Target, v *loadVolume, w *loadWriter, addrs []string) mpOutage {
	t.Helper()
	r := mpOutage{what: "both ports unlinked; then " + addrs[1] + " relinked"}
	relink := make([]func() error, len(v.pathPorts))
	for i, port := range v.pathPorts {
		relink[i] = sync.OnceValue(func() error { return tg.Relink(port, v.nqn) })
		t.Cleanup(func() { _ = relink[i]() })
	}
	for _, port := range v.pathPorts {
		must(t, tg.Unlink(port, v.nqn))
	}
	start := time.Now()
	r.ackedBefore = w.acked()
	e, took := v.waitHealth(t, 60*time.Second, "INACCESSIBLE with both paths down", func(e *csipb.VolumeHealth_VolumeHealthEntry) bool {
		return e.GetStatus() == csipb.VolumeHealthErrorType_INACCESSIBLE
	})
	r.timeline.note(took, e)
	atDetect := w.acked()
	for time.Since(start) < mpBothHold {
		e := v.health(t)
		r.timeline.note(time.Since(start), e)
		if e.GetStatus() != csipb.VolumeHealthErrorType_INACCESSIBLE {
			t.Errorf("both paths down: health %s at %v", fmtHealth(e), time.Since(start).Round(time.Second))
		}
		r.lateHealth = fmtHealth(e)
		if _, err := w.state(); err != nil {
			t.Fatalf("both paths down: the writer failed: %v", err)
		}
		time.Sleep(min(200*time.Millisecond, mpBothHold-time.Since(start)))
	}
	atRestore := w.acked()
	r.ackedDuring = atRestore - r.ackedBefore
	if atRestore != atDetect {
		t.Errorf("both paths down: %d blocks acknowledged while the volume was INACCESSIBLE", atRestore-atDetect)
	}

	must(t, relink[1]())
	restored := time.Now()
	r.held = restored.Sub(start)
	w.waitAcked(t, atRestore+20, 90*time.Second, "the writer after "+addrs[1]+" came back")
	r.restoreAck = w.ackTime(atRestore).Sub(restored)
	r.gap, _ = w.maxGap(start, restored)
	e, _ = v.waitHealth(t, 60*time.Second, "DEGRADED with "+addrs[1]+" back", func(e *csipb.VolumeHealth_VolumeHealthEntry) bool {
		return e.GetStatus() == csipb.VolumeHealthErrorType_DEGRADED
	})
	r.timeline.note(time.Since(start), e)
	r.restoreHealth = fmtHealth(e)
	if !strings.Contains(e.GetMessage(), addrs[0]) {
		t.Errorf("one path back: health %s does not name the path still down (%s)", r.restoreHealth, addrs[0])
	}
	must(t, relink[0]())
	relinked := time.Now()
	_, r.restoreHealed = v.waitHealth(t, 60*time.Second, "healthy with both paths back", func(e *csipb.VolumeHealth_VolumeHealthEntry) bool { return e == nil })
	r.timeline.note(time.Since(start), nil)
	healed := time.Now()
	w.waitAcked(t, w.acked()+10, time.Minute, "the writer with both paths back")
	r.gapRelink, _ = w.maxGap(relinked, healed)
	r.ackedAfter = w.acked() - atRestore
	return r
}

// gaps are the times between consecutive acknowledgements from..to.
func (w *loadWriter) gaps(from, to int) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Duration
	for i := from + 1; i < to && i < len(w.acks); i++ {
		out = append(out, w.acks[i].Sub(w.acks[i-1]))
	}
	return out
}

// maxGap is the longest gap between two consecutive acknowledgements that
// overlaps [from, to] (a write still in flight at to counts up to to), and
// when it began.
func (w *loadWriter) maxGap(from, to time.Time) (gap time.Duration, began time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := 1; i < len(w.acks); i++ {
		a, b := w.acks[i-1], w.acks[i]
		if b.After(from) && a.Before(to) && b.Sub(a) > gap {
			gap, began = b.Sub(a), a
		}
	}
	if n := len(w.acks); n > 0 && len(w.starts) > n && w.acks[n-1].Before(to) && to.Sub(w.acks[n-1]) > gap {
		gap, began = to.Sub(w.acks[n-1]), w.acks[n-1]
	}
	return gap, began
}

// pathWriteCounts reads the completed writes of each path's hidden disk
// (/sys/class/nvme/<ctrl>/nvme*c*n1/stat, field 5); -1 where unreadable.
func pathWriteCounts(addrs []string, ctrls map[string]string) []int64 {
	out := make([]int64, len(addrs))
	for i, a := range addrs {
		out[i] = -1
		m, _ := filepath.Glob(filepath.Join("/sys/class/nvme", ctrls[a], "nvme*c*n1", "stat"))
		if len(m) != 1 {
			continue
		}
		b, err := os.ReadFile(m[0])
		if f := strings.Fields(string(b)); err == nil && len(f) > 4 {
			if n, err := strconv.ParseInt(f[4], 10, 64); err == nil {
				out[i] = n
			}
		}
	}
	return out
}

func pathWriteDelta(addrs []string, ctrls map[string]string, before []int64) string {
	after := pathWriteCounts(addrs, ctrls)
	var parts []string
	for i, a := range addrs {
		if before[i] < 0 || after[i] < 0 {
			parts = append(parts, a+": unreadable")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: %d", a, after[i]-before[i]))
	}
	return strings.Join(parts, ", ")
}

func (h healthTimeline) String() string {
	var parts []string
	for _, p := range h {
		parts = append(parts, fmt.Sprintf("%s at %s", fmtHealth(p.entry), fmtDur(p.at)))
	}
	return strings.Join(parts, "; ")
}

// mpResult is what TestProofMultipathFailover measured.
type mpResult struct {
	device   string
	ctrls    []string
	rate     string
	baseline []time.Duration // gaps between the first acknowledgements
	single   []mpOutage
	both     mpOutage
	done     bool
	acked    int
	verify   loadVerify
	fsErrors []string
	left     string
	phases   string // where the test's time went
}

func (r *mpResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### One volume on two paths: each path's port unlinked %s, then both\n\n", fmtDur(mpHold))
	fmt.Fprintf(&b, "An ext4 volume (256 MiB null_blk namespace in one nvmet subsystem exported on 127.0.0.1 and %s, same TCP port; disk %s; controllers %s) "+
		"staged and published by the real binary with nvmeAddresses naming both, ctrlLossTmo=-1, reconnectDelay=1, default iopolicy (numa). "+
		"The writer of the outage proof writes %d KiB blocks (header, sequence, CRC-32C), fsync after each, pausing %v between blocks; "+
		"a block is acknowledged when its write and fsync returned. Health is NodeGetVolumeHealth, asked every 200 ms during an outage. "+
		"Gap across the unlink: last acknowledgement before the unlink to the first after it (pace included); when the unlinked path was the one carrying I/O "+
		"(path writes show it) this is the kernel's failover, path down to I/O completing on the other path. "+
		"Longest gap: the longest time between two consecutive acknowledgements from the unlink to the relink, and when it began (this machine's fsync stalls included). "+
		"Path writes: completed writes of each path's hidden disk (nvmeXcYn1 stat) during the outage.\n\n",
		secondAddr, r.device, strings.Join(r.ctrls, ", "), loadBlockSize>>10, mpPace)
	fmt.Fprintf(&b, "| outage | held | health (first DEGRADED after) | health at the end of the outage | blocks acked before / during / after | path writes during | gap across the unlink | longest gap (began at) | relink → healthy | longest gap relink → healthy |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|\n")
	for _, o := range r.single {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d / %d / %d | %s | %s | %s (%s) | %s | %s |\n",
			o.what, fmtDur(o.held), fmtDur(o.degradedAt), o.lateHealth, o.ackedBefore, o.ackedDuring, o.ackedAfter,
			o.pathWrites, fmtDur(o.failover), fmtDur(o.gap), fmtDur(o.gapAt), fmtDur(o.restoreHealed), fmtDur(o.gapRelink))
	}
	fmt.Fprintf(&b, "\nWrite rate before the outages: %s; gaps between those acknowledgements (p50 / p95 / max): %s.\n", r.rate, dist(r.baseline))
	if len(r.single) == 2 {
		o := r.both
		fmt.Fprintf(&b, "\n| both paths down (%s) | |\n|---|---|\n", o.what)
		fmt.Fprintf(&b, "| held (unlink → relink of %s) | %s |\n", secondAddr, fmtDur(o.held))
		for _, p := range o.timeline {
			fmt.Fprintf(&b, "| NodeGetVolumeHealth at %s | %s |\n", fmtDur(p.at), fmtHealth(p.entry))
		}
		fmt.Fprintf(&b, "| blocks acked before / while down / after | %d / %d / %d |\n", o.ackedBefore, o.ackedDuring, o.ackedAfter)
		fmt.Fprintf(&b, "| writer stall (longest gap) | %s |\n", fmtDur(o.gap))
		fmt.Fprintf(&b, "| relink of %s → first ack | %s |\n", secondAddr, fmtDur(o.restoreAck))
		fmt.Fprintf(&b, "| health with %s back | %s |\n", secondAddr, o.restoreHealth)
		fmt.Fprintf(&b, "| relink of 127.0.0.1 → healthy | %s |\n", fmtDur(o.restoreHealed))
		fmt.Fprintf(&b, "| longest gap after that relink | %s |\n", fmtDur(o.gapRelink))
	}
	if !r.done {
		fmt.Fprintf(&b, "\nThe run failed before the end: no verification. Time per phase: %s.\n", r.phases)
		return b.String()
	}
	fmt.Fprintf(&b, "\nTime per phase of the test: %s.\n", r.phases)
	fmt.Fprintf(&b, "\n| after the outages | |\n|---|---|\n")
	fmt.Fprintf(&b, "| blocks acknowledged | %d (%d KiB) |\n", r.acked, r.acked*loadBlockSize>>10)
	fmt.Fprintf(&b, "| read back from the target (page cache dropped) | %s |\n", r.verify)
	fmt.Fprintf(&b, "| bytes lost | %d |\n", r.verify.lost())
	fmt.Fprintf(&b, "| ext4 / I/O errors in the kernel log for %s | %d%s |\n", r.device, len(r.fsErrors), joinQuoted(r.fsErrors))
	fmt.Fprintf(&b, "| left after unstage (mounts, controllers) | %s |\n", r.left)
	return b.String()
}
