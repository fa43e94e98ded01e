//go:build linux

package kerneltest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/sysfs"
)

// kmsgOutages is how many port unlinks each mode of
// TestKmsgDetectionLatency measures: 5 in every lab run (enough for what
// the test asserts), RDS_CSI_KMSG_OUTAGES for a measurement (BENCHMARKS.md
// used 20; each costs about a second per mode under TCG).
func kmsgOutages(t *testing.T) int {
	s := os.Getenv("RDS_CSI_KMSG_OUTAGES")
	if s == "" {
		return 5
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("RDS_CSI_KMSG_OUTAGES=%q: want a positive number", s)
	}
	return n
}

// detection is what one mode of TestKmsgDetectionLatency saw.
type detection struct {
	latencies []time.Duration // port unlink -> registry not live
	counters  daemon.Counters // at the end
	attempt   int             // the attempt seen during a held outage (kmsg on only)
	health    string          // the volume health message then
}

// TestKmsgDetectionLatency compares how fast the registry sees a target
// port unlink with the kernel log trigger and without it (the poller at
// its default 1 s, plus uevents, which say nothing at a fault), in one
// run: kmsgOutages unlinks per mode, each measured from the unlink to the
// first Snapshot that shows the controller not live. It logs
//
//	detection kmsg=on p50=... p95=... ; kmsg=off p50=... p95=...
//
// and does not assert on the values (QEMU's TCG timing varies too much).
// It fails if, with kmsg on, the reader is not active or no kernel log
// record about the controller was ever seen (the trigger would then
// silently not work), and if a held outage shows no reconnect attempt (the
// attempt texts of this kernel are not understood).
func TestKmsgDetectionLatency(t *testing.T) {
	tg := target(t)
	outages := kmsgOutages(t)
	measure := func(mode string, kmsg bool) detection {
		nqn, port := simpleTarget(t, tg, "kmsg-"+mode)
		d, stop := startDaemon(t, t.TempDir(), func(c *daemon.Config) { c.NoKmsg = !kmsg })
		defer stop()
		if got := d.Snapshot().Counters.KmsgActive; got != kmsg {
			t.Fatalf("kmsg=%s: KmsgActive %v (the daemon's log says why)", mode, got)
		}
		id := "vol-kmsg-" + mode
		att, err := d.Attach(context.Background(), volumeSpec(id, nqn, port))
		must(t, err)
		must(t, d.MarkStaged(id, "/staging/"+id, true))
		state := func() daemon.ControllerInfo {
			c, _ := controllerInfo(d, att.Controller)
			return c
		}
		waitLive := func(what string) {
			eventually(t, 10*time.Second, what, func() (bool, string) {
				c := state()
				return c.State == sysfs.StateLive, c.StateRaw
			})
		}
		waitLive("live before the first outage")

		var res detection
		for i := range outages {
			must(t, tg.Unlink(port, nqn))
			lat, ok := untilNotLive(state, 5*time.Second)
			if !ok {
				t.Fatalf("kmsg=%s outage %d: the registry did not see the unlink within 5s", mode, i)
			}
			res.latencies = append(res.latencies, lat)
			must(t, tg.Relink(port, nqn))
			waitLive(fmt.Sprintf("kmsg=%s outage %d: live after relink", mode, i))
		}

		if kmsg {
			// Hold one outage past a failed reconnect (reconnect_delay 1):
			// the attempt comes from the kernel log only.
			must(t, tg.Unlink(port, nqn))
			eventually(t, 6*time.Second, "a reconnect attempt in the registry", func() (bool, string) {
				c := state()
				return c.Attempt >= 1, fmt.Sprintf("%s attempt %d", c.StateRaw, c.Attempt)
			})
			res.attempt = state().Attempt
			h, err := d.VolumeHealth(id)
			must(t, err)
			res.health = h.Message
			if !strings.Contains(h.Message, ", attempt ") {
				t.Errorf("volume health during the outage %q has no attempt", h.Message)
			}
			must(t, tg.Relink(port, nqn))
			waitLive("live after the held outage")
			if c := state(); c.Attempt != 0 {
				t.Errorf("attempt %d once live again, want 0", c.Attempt)
			}
		}
		res.counters = d.Snapshot().Counters
		must(t, d.Detach(context.Background(), id))
		return res
	}

	on := measure("on", true)
	off := measure("off", false)
	t.Logf("detection kmsg=on p50=%v p95=%v ; kmsg=off p50=%v p95=%v",
		percentile(on.latencies, 50), percentile(on.latencies, 95),
		percentile(off.latencies, 50), percentile(off.latencies, 95))
	t.Logf("kernel %s: kmsg=on records=%d gaps=%d polls=%d; kmsg=off polls=%d; held outage: attempt %d, health %q",
		kernelSeries(), on.counters.KmsgRecords, on.counters.KmsgGaps, on.counters.Polls, off.counters.Polls,
		on.attempt, on.health)
	t.Logf("latencies kmsg=on %v", roundAll(on.latencies))
	t.Logf("latencies kmsg=off %v", roundAll(off.latencies))
	if on.counters.KmsgRecords == 0 {
		t.Error("kmsg=on: no kernel log record about the controller was seen: the trigger does not work")
	}
	if off.counters.KmsgRecords != 0 || off.counters.KmsgActive {
		t.Errorf("kmsg=off: records %d, active %v; want 0 and false", off.counters.KmsgRecords, off.counters.KmsgActive)
	}
}

// untilNotLive polls the registry (not sysfs) every 500µs until the
// controller is not live, and returns how long that took (from the call:
// the caller has just unlinked the port).
func untilNotLive(state func() daemon.ControllerInfo, within time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < within {
		if c := state(); c.Name != "" && c.State != sysfs.StateLive {
			return time.Since(start), true
		}
		time.Sleep(500 * time.Microsecond)
	}
	return 0, false
}

// percentile is the nearest-rank p-th percentile of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)].Round(100 * time.Microsecond)
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Microsecond)
	}
	return out
}
