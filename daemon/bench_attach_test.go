package daemon

import (
	"testing"
	"time"

	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// BenchmarkAttachOverhead is the daemon's own share of a stage on a node
// with 64 other controllers: Attach (locks, registry, the controller read
// back from sysfs, the ownership record written to the state file, the
// namespace lookup) and MarkStaged (the state file again), less the time
// in the connect write and the device wait (here a fake connector that
// lays the controller out in a synthetic sysfs tree on disk). Each
// iteration also detaches (not timed). The state file sits on the test's
// temporary directory (a disk filesystem: fsync is real), where a node's
// /var/lib/rds-csi would be.
func BenchmarkAttachOverhead(b *testing.B) {
	e := newEnv(b, sysfstest.Generate(64, true))
	d := e.start()
	var own time.Duration
	for b.Loop() {
		start := time.Now()
		att, err := d.Attach(b.Context(), spec("pvc-bench", volNQN(1000), 1))
		if err != nil {
			b.Fatal(err)
		}
		if err := d.MarkStaged("pvc-bench", "/staging/pvc-bench", true); err != nil {
			b.Fatal(err)
		}
		own += time.Since(start) - att.Timing.ConnectWrite - att.Timing.Device
		b.StopTimer()
		if err := d.Detach(b.Context(), "pvc-bench"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(own.Microseconds())/float64(b.N), "own-µs/op")
}
