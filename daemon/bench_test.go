package daemon

import (
	"runtime"
	"testing"

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
// gap or at start) of 1000 controllers.
func BenchmarkResync1000(b *testing.B) {
	e := newEnv(b, sysfstest.Generate(1000, true))
	d := e.start()
	b.ReportAllocs()
	for b.Loop() {
		d.resync(true)
	}
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
