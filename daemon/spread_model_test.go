package daemon

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// The model's inputs, measured in the lab (QEMU TCG, Linux 6.12):
//   - modelDrift: a reconnect round takes reconnect_delay plus this (the
//     failed attempt and the kernel's work queue), the same for every
//     controller: results/6.12/reconnect-spread.md, "a round takes
//     reconnect_delay plus (median)", reconnectSpread 0.
//   - modelSkewLab: how far apart 64 controllers of one guest start their
//     reconnect timers after one common loss (the guest's error recovery of
//     64 controllers is slow under emulation): same file, "loss skew".
//   - modelCost: one connect (admin queue + 2 I/O queues, host and target
//     work): results/6.12/stage-latency.md, connect write p50.
//
// The other skew the model runs with, 0, is an assumption: every controller
// starts its timer at the same instant (a target restart seen by hosts on
// real hardware, within a round trip).
const (
	modelDrift   = 138 * time.Millisecond
	modelSkewLab = 1280 * time.Millisecond
	modelCost    = 15300 * time.Microsecond
)

// modelResult is one configuration of the model.
type modelResult struct {
	nodes, vols, spread int
	meanPeak, maxPeak   float64 // reconnects in the busiest 100 ms, over the restore times
	meanRecover         float64 // seconds from the restore to a controller's reconnect, averaged
}

// spreadModel: nodes x vols controllers (each node its own host NQN and
// host id, each volume its own subsystem on one target, as an RDS exports
// them) with reconnect_delay base + spreadOffset(host, connection, spread)
// lose the target at t=0 (each at a uniform offset within skew, from a
// fixed sequence) and retry at loss + k*(delay+modelDrift). The target is
// back at R; a controller reconnects at its first attempt at or after R.
// For R from 10 s to 70 s in steps of 0.5 s it counts the reconnects in the
// busiest 100 ms (sliding) and averages.
func spreadModel(nodes, vols, base, spread int, skew time.Duration) modelResult {
	type ctrl struct{ loss, period float64 }
	cs := make([]ctrl, 0, nodes*vols)
	i := 0
	for n := range nodes {
		nqn, id := hostN(n)
		for v := range vols {
			k := testKey(nqn, n*vols+v)
			d := base + spreadOffset(id, k, spread)
			// A deterministic low-discrepancy skew (golden ratio sequence).
			frac := math.Mod(float64(i)*0.6180339887498949, 1)
			cs = append(cs, ctrl{loss: frac * skew.Seconds(), period: float64(d) + modelDrift.Seconds()})
			i++
		}
	}
	res := modelResult{nodes: nodes, vols: vols, spread: spread}
	arrivals := make([]float64, len(cs))
	runs := 0
	for r := 10.0; r <= 70.0; r += 0.5 {
		sum := 0.0
		for j, c := range cs {
			k := math.Ceil((r - c.loss) / c.period)
			arrivals[j] = c.loss + k*c.period
			sum += arrivals[j] - r
		}
		slices.Sort(arrivals)
		peak, lo := 0, 0
		for hi := range arrivals {
			for arrivals[hi]-arrivals[lo] >= 0.1 {
				lo++
			}
			peak = max(peak, hi-lo+1)
		}
		res.meanPeak += float64(peak)
		res.maxPeak = max(res.maxPeak, float64(peak))
		res.meanRecover += sum / float64(len(cs))
		runs++
	}
	res.meanPeak /= float64(runs)
	res.meanRecover /= float64(runs)
	return res
}

// TestSpreadModel runs the model for 10, 100 and 1000 nodes with 20
// volumes each, without and with the default spread, for both skews, and
// logs the tables BENCHMARKS.md quotes (go test -run TestSpreadModel -v
// ./daemon/). It fails when the spread does not lower the mean peak.
func TestSpreadModel(t *testing.T) {
	const vols, base, spread = 20, 5, 4
	var b strings.Builder
	fmt.Fprintf(&b, "\n| skew | nodes | controllers | reconnectSpread | reconnects in the busiest 100 ms: mean / worst | peak falls by | connect work arriving in that 100 ms (x %v) | restore -> reconnect, mean |\n|---|---|---|---|---|---|---|---|\n", modelCost)
	for _, skew := range []time.Duration{0, modelSkewLab} {
		for _, nodes := range []int{10, 100, 1000} {
			off := spreadModel(nodes, vols, base, 0, skew)
			on := spreadModel(nodes, vols, base, spread, skew)
			for _, r := range []modelResult{off, on} {
				fmt.Fprintf(&b, "| %v | %d | %d | %d | %.0f / %.0f | %.1fx | %v | %.2f s |\n", skew, r.nodes, r.nodes*r.vols, r.spread,
					r.meanPeak, r.maxPeak, off.meanPeak/r.meanPeak, time.Duration(r.meanPeak*float64(modelCost)).Round(time.Millisecond), r.meanRecover)
			}
			if on.meanPeak >= off.meanPeak {
				t.Errorf("skew %v, %d nodes: mean peak %.0f with spread %d, %.0f without", skew, nodes, on.meanPeak, spread, off.meanPeak)
			}
		}
	}
	// The choice of the default: peak and cost by spread, 100 nodes.
	for _, skew := range []time.Duration{0, modelSkewLab} {
		fmt.Fprintf(&b, "\n| reconnectSpread (100 nodes x 20, skew %v) | busiest 100 ms: mean / worst | peak falls by (mean) | extra time to reconnect, mean |\n|---|---|---|---|\n", skew)
		off := spreadModel(100, vols, base, 0, skew)
		for _, s := range []int{0, 1, 2, 3, 4, 6, 9, 14} {
			r := spreadModel(100, vols, base, s, skew)
			fmt.Fprintf(&b, "| %d | %.0f / %.0f | %.1fx | %.2f s |\n", s, r.meanPeak, r.maxPeak, off.meanPeak/r.meanPeak, r.meanRecover-off.meanRecover)
		}
	}
	t.Log(b.String())
}
