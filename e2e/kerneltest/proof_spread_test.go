//go:build linux

package kerneltest

import (
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/csi"
	"github.com/srvlab/rds-csi/sysfs"
)

const (
	// spreadHold is how long the port is gone. Half a second past 15 s
	// keeps the restore away from every multiple of the delays 5..9, so no
	// controller's attempt races the restore.
	spreadHold = 15500 * time.Millisecond
	// spreadBase is the volumes' reconnectDelay (the parser's default).
	spreadBase = csi.DefaultReconnectDelay
	// spreadWindow is the window the arrivals are counted in.
	spreadWindow = 100 * time.Millisecond
)

// cutProxy is a TCP port in front of the nvmet port that can vanish and
// come back at one instant, as a target that restarts: cut closes the
// listener (new connections are refused, as by a removed port) and resets
// every connection through it at once (RST on both sides: the host's
// controllers all see the loss in the same instant); restore listens again.
// Each accepted connection is timed.
type cutProxy struct {
	addr, upstream string

	mu      sync.Mutex
	l       net.Listener
	conns   map[*net.TCPConn]struct{}
	accepts []time.Time
	wg      sync.WaitGroup
}

func startCutProxy(t *testing.T, addr, upstream string) *cutProxy {
	t.Helper()
	p := &cutProxy{addr: addr, upstream: upstream, conns: map[*net.TCPConn]struct{}{}}
	must(t, p.restore())
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *cutProxy) restore() error {
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	p.wg.Go(func() { p.serve(l) })
	return nil
}

func (p *cutProxy) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepts = append(p.accepts, time.Now())
		p.mu.Unlock()
		// Dial off the accept loop, so that accept times are arrival
		// times even when the target is slow.
		p.wg.Go(func() { p.forward(c.(*net.TCPConn)) })
	}
}

func (p *cutProxy) forward(hc *net.TCPConn) {
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		hc.Close()
		return
	}
	uc := up.(*net.TCPConn)
	p.mu.Lock()
	if p.l == nil { // cut meanwhile
		p.mu.Unlock()
		_ = hc.SetLinger(0)
		hc.Close()
		uc.Close()
		return
	}
	p.conns[hc], p.conns[uc] = struct{}{}, struct{}{}
	p.mu.Unlock()
	pipe := func(dst, src *net.TCPConn) {
		_, _ = io.Copy(dst, src)
		// One side ended: end the other (a reset when cut).
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}
	p.wg.Go(func() { pipe(uc, hc) })
	pipe(hc, uc)
}

// cut refuses new connections and resets every open one.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		_ = c.SetLinger(0)
		c.Close()
	}
}

// acceptsBetween returns the accept times in [from, to).
func (p *cutProxy) acceptsBetween(from, to time.Time) []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Duration
	for _, a := range p.accepts {
		if !a.Before(from) && a.Before(to) {
			out = append(out, a.Sub(from))
		}
	}
	return out
}

// kmsgMark writes a marker record into the kernel log, so that test
// instants and kernel records share one clock.
func kmsgMark(t *testing.T, text string) {
	t.Helper()
	must(t, os.WriteFile("/dev/kmsg", []byte("rds-csi-proof: "+text+"\n"), 0))
}

// peakPerWindow is the most instants within any window of length w
// (sliding: the window may start anywhere).
func peakPerWindow(ts []time.Duration, w time.Duration) int {
	s := slices.Clone(ts)
	slices.Sort(s)
	peak, j := 0, 0
	for i := range s {
		for s[i]-s[j] >= w {
			j++
		}
		peak = max(peak, i-j+1)
	}
	return peak
}

// spreadRound is one target restart's measurements.
type spreadRound struct {
	spread        int
	delays        map[int]int // reconnect_delay -> controllers
	held          time.Duration
	nvmetConnects []time.Duration // nvmet admin connects of our subsystems, since the restore (kernel clock)
	failed        []time.Duration // the hosts' failed attempts during the outage, since the cut (kernel clock)
	firstSkew     time.Duration   // first failed attempt: last - first controller
	drift         time.Duration   // median of (time between a controller's failed attempts) - its delay
	accepts       []time.Duration // TCP connections the port accepted, since the restore
	live          []time.Duration // restore -> each controller live
	promised      int             // the peak the delays predict (controllers sharing the first attempt after the restore)
	gap           bool
}

var nvmetCreating = regexp.MustCompile(`^nvmet: creating nvm controller [0-9]+ for subsystem (\S+) for NQN`)

// stormSpreadRound cuts the port, holds it spreadHold, restores it, and
// waits for every controller to be live again.
func stormSpreadRound(t *testing.T, fs sysfs.FS, vols []*stormVol, p *cutProxy, spread int) spreadRound {
	t.Helper()
	r := spreadRound{spread: spread, delays: map[int]int{}}
	nqns := map[string]bool{}
	ctrls := map[string]bool{}
	var delays []int
	for _, v := range vols {
		nqns[v.nqn] = true
		ctrls[v.ctrl] = true
		c, err := fs.Controller(v.ctrl)
		must(t, err)
		if c.ReconnectDelay < spreadBase || c.ReconnectDelay > spreadBase+spread {
			t.Errorf("%s: reconnect_delay %d, want %d..%d", c.Name, c.ReconnectDelay, spreadBase, spreadBase+spread)
		}
		if c.CtrlLossTmo != -1 {
			t.Errorf("%s: ctrl_loss_tmo %d, want -1 (off)", c.Name, c.CtrlLossTmo)
		}
		r.delays[c.ReconnectDelay]++
		delays = append(delays, c.ReconnectDelay)
	}
	if spread > 0 && len(r.delays) < 2 {
		t.Errorf("spread %d: every controller has reconnect_delay %v", spread, r.delays)
	}

	k := openKmsgTail(t)
	kmsgMark(t, "cut")
	cutAt := time.Now()
	p.cut()
	time.Sleep(time.Until(cutAt.Add(spreadHold)))
	kmsgMark(t, "restore")
	restoreAt := time.Now()
	must(t, p.restore())
	w := stormWatchStates(t, vols, restoreAt, func(state string) bool { return state == "live" })
	deadline := time.Now().Add(90 * time.Second)
	for w.count() < len(vols) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	r.live = w.close()
	if n := len(r.live); n != len(vols) {
		t.Errorf("spread %d: %d of %d controllers live 90 s after the restore: %v", spread, n, len(vols), stormStates(vols))
	}
	r.accepts = p.acceptsBetween(restoreAt, time.Now())

	recs, gap := k.drainRecords()
	r.gap = gap
	var cut, restore time.Duration = -1, -1
	failedRe := regexp.MustCompile(`^nvme (nvme[0-9]+): Failed reconnect attempt ([0-9]+)`)
	perCtrl := map[string][]time.Duration{}
	for _, rec := range recs {
		switch {
		case strings.HasSuffix(rec.msg, "rds-csi-proof: cut"):
			cut = rec.at
		case strings.HasSuffix(rec.msg, "rds-csi-proof: restore"):
			restore = rec.at
		}
	}
	if cut < 0 || restore < 0 {
		t.Fatalf("the markers are not in the kernel log (gap %v)", gap)
	}
	r.held = restore - cut
	for _, rec := range recs {
		if m := nvmetCreating.FindStringSubmatch(rec.msg); m != nil && nqns[m[1]] && rec.at > restore {
			r.nvmetConnects = append(r.nvmetConnects, rec.at-restore)
		}
		if m := failedRe.FindStringSubmatch(rec.msg); m != nil && ctrls[m[1]] && rec.at > cut && rec.at < restore {
			r.failed = append(r.failed, rec.at-cut)
			perCtrl[m[1]] = append(perCtrl[m[1]], rec.at-cut)
		}
	}
	var firsts, drifts []time.Duration
	for name, ts := range perCtrl {
		c, err := fs.Controller(name)
		must(t, err)
		delay := time.Duration(c.ReconnectDelay) * time.Second
		firsts = append(firsts, ts[0]-delay) // when the controller's timer started
		for i := 1; i < len(ts); i++ {
			drifts = append(drifts, ts[i]-ts[i-1]-delay)
		}
	}
	if len(firsts) > 0 {
		r.firstSkew = slices.Max(firsts) - slices.Min(firsts)
	}
	if len(drifts) > 0 {
		slices.Sort(drifts)
		r.drift = drifts[len(drifts)/2]
	}
	if len(r.nvmetConnects) < len(vols) {
		t.Errorf("spread %d: %d nvmet connects of our subsystems after the restore in the kernel log, want at least %d (gap %v)",
			spread, len(r.nvmetConnects), len(vols), gap)
	}
	// The promise of the delays: every controller's first attempt after
	// the restore is at the first multiple of its delay past the hold;
	// controllers whose multiples meet arrive together.
	at := map[int]int{}
	for _, d := range delays {
		at[int(math.Ceil(r.held.Seconds()/float64(d)))*d]++
	}
	for _, n := range at {
		r.promised = max(r.promised, n)
	}
	return r
}

// stormSpread (issue 16): the 64 volumes staged again through a port that
// vanishes and comes back at one instant (cutProxy in front of the nvmet
// port), once with reconnectSpread 0 and once, after a repeat stage that
// updates the live controllers through sysfs, with the default spread.
// It fails when a controller does not come back within 90 s, a delay is
// outside reconnectDelay..reconnectDelay+spread, the daemon's spread metric
// disagrees with sysfs, or the peak of the hosts' reconnect attempts per
// 100 ms during the outage does not fall with the spread.
func stormSpread(t *testing.T, fs sysfs.FS, node csipb.NodeClient, vols []*stormVol, upstream int, metricsAddr string) {
	port := nextPort()
	p := startCutProxy(t, "127.0.0.1:"+strconv.Itoa(port), "127.0.0.1:"+strconv.Itoa(upstream))
	ctx := withTimeout(t, 5*time.Minute)
	var retries atomic.Int64
	stage := func(spread int) time.Duration {
		_, wall := stormConcurrently(t, "NodeStageVolume", vols, func(v *stormVol) error {
			var err error
			for try := range 3 {
				if try > 0 {
					retries.Add(1)
					t.Logf("NodeStageVolume %s failed, retrying as kubelet would: %v", v.id, err)
				}
				_, err = node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{
					VolumeId: v.id, StagingTargetPath: v.staging, VolumeCapability: blockCap(),
					VolumeContext: volumeContext(v.nqn, port, "reconnectDelay", strconv.Itoa(spreadBase),
						"reconnectSpread", strconv.Itoa(spread), "ctrlLossTmo", "-1"),
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
		return wall
	}
	stage(0)
	stormMapControllers(t, fs, vols)
	off := stormSpreadRound(t, fs, vols, p, 0)

	// A repeat stage with the default spread: the live update path.
	restage := stage(csi.DefaultReconnectSpread)
	stormMapControllers(t, fs, vols)
	metric := stormControllerMetric(t, metricsAddr, "rds_csi_controller_reconnect_spread_seconds")
	for _, v := range vols {
		c, err := fs.Controller(v.ctrl)
		must(t, err)
		if got, ok := metric[v.ctrl]; !ok || got != c.ReconnectDelay-spreadBase {
			t.Errorf("%s: rds_csi_controller_reconnect_spread_seconds %d (present %v), sysfs reconnect_delay %d: want the difference to %d",
				v.ctrl, got, ok, c.ReconnectDelay, spreadBase)
		}
	}
	on := stormSpreadRound(t, fs, vols, p, csi.DefaultReconnectSpread)

	_, unstageWall := stormConcurrently(t, "NodeUnstageVolume", vols, func(v *stormVol) error {
		_, err := node.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging})
		return err
	})

	// The hosts' attempts during the outage are refused at once, so their
	// records mark the attempts themselves: the clean arrival signal. The
	// connections after the restore also depend on where the restore falls
	// against each controller's timer (reported, not asserted).
	if peakOn, peakOff := peakPerWindow(on.failed, spreadWindow), peakPerWindow(off.failed, spreadWindow); peakOn >= peakOff {
		t.Errorf("reconnect attempts per %v during the outage: peak %d with reconnectSpread %d, %d without: the spread did not lower it",
			spreadWindow, peakOn, on.spread, peakOff)
	}
	row := func(what string, f func(r spreadRound) string) string {
		return fmt.Sprintf("| %s | %s | %s |\n", what, f(off), f(on))
	}
	span := func(ts []time.Duration) string {
		if len(ts) == 0 {
			return "none"
		}
		return fmt.Sprintf("%s .. %s", fmtDur(slices.Min(ts)), fmtDur(slices.Max(ts)))
	}
	var b strings.Builder
	b.WriteString(row("reconnect_delay of the 64 controllers (delay: controllers, from sysfs)", func(r spreadRound) string {
		var ks []int
		for d := range r.delays {
			ks = append(ks, d)
		}
		slices.Sort(ks)
		var parts []string
		for _, d := range ks {
			parts = append(parts, fmt.Sprintf("%ds: %d", d, r.delays[d]))
		}
		return strings.Join(parts, ", ")
	}))
	b.WriteString(row("port gone (kernel log: cut marker -> restore marker)", func(r spreadRound) string { return fmtDur(r.held) }))
	b.WriteString(row("**hosts' reconnect attempts during the outage (refused): total, peak per 100 ms**", func(r spreadRound) string {
		return fmt.Sprintf("%d, **%d**", len(r.failed), peakPerWindow(r.failed, spreadWindow))
	}))
	b.WriteString(row("loss skew: first failed attempt minus the controller's delay, last - first controller", func(r spreadRound) string { return fmtDur(r.firstSkew) }))
	b.WriteString(row("a round takes reconnect_delay plus (median)", func(r spreadRound) string { return fmtDur(r.drift) }))
	b.WriteString(row("TCP connections the port accepted after the restore (admin + I/O queues): total, peak per 100 ms", func(r spreadRound) string {
		return fmt.Sprintf("%d, %d", len(r.accepts), peakPerWindow(r.accepts, spreadWindow))
	}))
	b.WriteString(row("nvmet admin connects served after the restore (kernel log): total, peak per 100 ms", func(r spreadRound) string {
		return fmt.Sprintf("%d, %d", len(r.nvmetConnects), peakPerWindow(r.nvmetConnects, spreadWindow))
	}))
	b.WriteString(row("peak the delays promise (controllers whose first attempt after the restore falls on the same second)", func(r spreadRound) string {
		return strconv.Itoa(r.promised)
	}))
	b.WriteString(row("nvmet admin connects served: first .. last, after the restore", func(r spreadRound) string { return span(r.nvmetConnects) }))
	b.WriteString(row("TCP connections accepted: first .. last, after the restore", func(r spreadRound) string { return span(r.accepts) }))
	b.WriteString(row("restore -> controller live (sysfs, read every 20 ms)", func(r spreadRound) string { return dist(r.live) }))
	b.WriteString(row("**restore -> all 64 live**", func(r spreadRound) string {
		if len(r.live) == 0 {
			return "none"
		}
		return "**" + fmtDur(slices.Max(r.live)) + "**"
	}))
	b.WriteString(row("kernel log lost records", func(r spreadRound) string { return strconv.FormatBool(r.gap) }))

	writeResult(t, "reconnect-spread", fmt.Sprintf(`%d block volumes (the storm's subsystems, one nvmet port) staged through the real rds-csi binary
via a TCP port in front of the nvmet port that the test removes and restores at one instant, as a
target restart: it stops listening (connects are refused) and resets every connection at once, so
all %d controllers see the loss in the same instant; %s later it listens again. reconnectDelay %d,
ctrlLossTmo -1; first with reconnectSpread 0, then (a repeat stage, which updates the live
controllers' reconnect_delay through sysfs) with the default reconnectSpread %d. Arrivals are
the TCP connections the port accepted (timed by the test's accept loop), the hosts' "Failed
reconnect attempt" records during the outage (refused at once, so logged at the attempt) and the
target's "nvmet: creating nvm controller" records (logged when nvmet serves the connect), each
counted in the busiest 100 ms (sliding window). The promised peak is computed from the controllers' delays: each
comes back at the first multiple of its delay past the outage. In this guest the hosts' error
recovery of 64 controllers is itself slow (the loss skew row), so after the restore even the
unspread controllers may split between two rounds. QEMU TCG guest, 2 vCPUs.

| measure | reconnectSpread 0 | reconnectSpread %d |
|---|---|---|
%s| repeat stage of all %d (updates reconnect_delay), wall | - | %s |
| unstage of all %d, wall | - | %s |
| stages retried (as kubelet would) | %d | |
`, len(vols), len(vols), fmtDur(spreadHold), spreadBase, csi.DefaultReconnectSpread, csi.DefaultReconnectSpread,
		b.String(), len(vols), fmtDur(restage), len(vols), fmtDur(unstageWall), retries.Load()))
}
