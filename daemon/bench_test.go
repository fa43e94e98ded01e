//go:build unix

// (unix: the idle benchmark reads getrusage, which Windows lacks; the
// daemon runs on Linux, and its tests also on macOS.)

package daemon

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// BenchmarkIdlePoll1000 is the daemon's steady-state work with 1000 known
// controllers and nothing changing: one poll pass (read every state file,
// diff, no transition). At the default 1 s interval, ns/op / 1e9 is the
// fraction of one core the poller uses.
func BenchmarkIdlePoll1000(b *testing.B) {
	e := newEnv(b, sysfstest.Generate(1000, true))
	d := e.start()
	if n := len(d.Snapshot().Controllers); n != 1000 {
		b.Fatalf("registry knows %d controllers, want 1000", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		d.resync(false)
	}
}

// BenchmarkResync1000 is a full re-read (after a uevent overflow, a kmsg
// gap or at start) of 1000 controllers. Besides the wall time it reports
// cpu-ms/op, the process's user+system CPU time per re-read, which a busy
// machine inflates far less than the wall time.
func BenchmarkResync1000(b *testing.B) {
	e := newEnv(b, sysfstest.Generate(1000, true))
	d := e.start()
	b.ReportAllocs()
	c0 := cpuTime(b)
	for b.Loop() {
		d.resync(true)
	}
	b.ReportMetric(float64(cpuTime(b)-c0)/float64(b.N)/1e6, "cpu-ms/op")
}

// BenchmarkRegistryMemory reports the heap the registry holds per
// controller, with 1000 controllers registered.
func BenchmarkRegistryMemory(b *testing.B) {
	e := newEnv(b, sysfstest.Generate(1000, true))
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		d, err := New(e.cfg)
		if err != nil {
			b.Fatal(err)
		}
		d.resync(true)
		runtime.GC()
		runtime.ReadMemStats(&after)
		if n := len(d.Snapshot().Controllers); n != 1000 {
			b.Fatalf("registry knows %d controllers, want 1000", n)
		}
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/1000, "heapB/controller")
		runtime.KeepAlive(d)
	}
}

// BenchmarkIdleDaemon1000 runs the daemon as a node runs it at idle, on
// 1000 controllers in a fixture tree (sysfstest.Generate): the default poll
// interval (1 s) and cleanup interval (1 min), the real clock, nothing
// changing. Each iteration lets it run for idleWindow and reports:
//
//   - cpu-share: user+system CPU time of the process (getrusage deltas)
//     divided by the wall time of the window; 0.01 is 1% of one core;
//   - heap-inuse-MiB: runtime.MemStats.HeapInuse at the end of the window;
//   - rss-MiB: VmRSS of the process (/proc/self/status) at the end;
//   - polls/s: poll passes the daemon made, proof that it was not stalled.
//
// The process is the benchmark's test binary, so heap and RSS include the
// testing harness and what building the fixture left behind (a GC runs
// before the window): they are upper bounds of the daemon's own. The CPU
// share is the daemon's (the harness sleeps through the window) plus the
// Go runtime's background work. Event sources (uevents, netlink, the
// kernel log) are off: at idle they block in reads and cost nothing, and
// the fixture tree gets no events. ns/op is the window, not a cost.
func BenchmarkIdleDaemon1000(b *testing.B) {
	const idleWindow = 10 * time.Second
	e := newEnv(b, sysfstest.Generate(1000, true))
	e.cfg.PollInterval = DefaultPollInterval
	e.cfg.CleanupInterval = DefaultCleanupInterval
	e.cfg.now = time.Now
	e.cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	d := e.start()
	if n := len(d.Snapshot().Controllers); n != 1000 {
		b.Fatalf("registry knows %d controllers, want 1000", n)
	}
	runtime.GC()
	var cpu, wall time.Duration
	var polls int64
	var heap uint64
	var rss int64
	for b.Loop() {
		p0, c0, t0 := d.counters.polls.Load(), cpuTime(b), time.Now()
		time.Sleep(idleWindow)
		cpu += cpuTime(b) - c0
		wall += time.Since(t0)
		polls += d.counters.polls.Load() - p0
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap, rss = ms.HeapInuse, vmRSS(b)
	}
	// At 1 s, a window sees about idleWindow/PollInterval passes; far
	// fewer means the poller did not run and the numbers measure nothing.
	if want := int64(wall/DefaultPollInterval) / 2; polls < want {
		b.Fatalf("the daemon made %d poll passes in %v, want at least %d", polls, wall, want)
	}
	b.ReportMetric(float64(cpu)/float64(wall), "cpu-share")
	b.ReportMetric(float64(heap)/(1<<20), "heap-inuse-MiB")
	if rss > 0 {
		b.ReportMetric(float64(rss)/(1<<10), "rss-MiB")
	}
	b.ReportMetric(float64(polls)/wall.Seconds(), "polls/s")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmRSS is the process's resident set in KiB (VmRSS in /proc/self/status),
// 0 where there is no such file (macOS); a value that does not parse fails
// the benchmark.
func vmRSS(b *testing.B) int64 {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(st)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmRSS: %v", err)
			}
			return kb
		}
	}
	return 0
}
