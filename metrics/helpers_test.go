package metrics

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
)

// fakeSource returns a fixed snapshot, and counts the calls.
type fakeSource struct {
	mu    sync.Mutex
	snap  daemon.Snapshot
	calls int
}

func (f *fakeSource) Snapshot() daemon.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.snap
}

func (f *fakeSource) set(s daemon.Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap = s
}

// taken is the fixed "now" of the test snapshots.
var taken = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

const (
	hostNQN = "nqn.2014-08.org.nvmexpress:uuid:6a6f2a57-8f43-4a53-9f0e-1d2b2a0c0001"
	nqnA    = "nqn.2000-02.com.mikrotik:pvc-0f0c5e61"
	nqnB    = "nqn.2000-02.com.mikrotik:pvc-7d1e2a90"
)

// populatedSnapshot has a controller in every situation the exporter tells
// apart: live and owned, reconnecting with a finite ctrl_loss_tmo (IPv6,
// written non-canonically), an orphan, a PCIe root disk, and a state the
// daemon does not know.
func populatedSnapshot() daemon.Snapshot {
	errs := map[string]int64{}
	for _, c := range fabrics.ErrorClasses() {
		errs[c] = 0
	}
	errs["unreachable"] = 7
	errs["rejected"] = 2
	return daemon.Snapshot{
		Taken: taken,
		Controllers: []daemon.ControllerInfo{
			{
				Name: "nvme0", SubsysNQN: nqnA, Traddr: "10.0.0.5", Trsvcid: "4420", Transport: "tcp",
				HostNQN: hostNQN, CntrlType: "io", State: sysfs.StateLive, StateRaw: "live",
				Since: taken.Add(-time.Hour), Reconnects: 2, CtrlLossTmo: -1, ReconnectDelay: 8, KATO: 5,
				FastIOFailTmo: -1, Owned: true, Referenced: true,
				Spread: daemon.Spread{Base: 5, Bound: 4, Offset: 3},
			},
			{
				Name: "nvme1", SubsysNQN: nqnB, Traddr: "fd00:0:0::5", Trsvcid: "4420", Transport: "tcp",
				HostNQN: hostNQN, CntrlType: "io", State: sysfs.StateConnecting, StateRaw: "connecting",
				Since: taken.Add(-90 * time.Second), Reconnects: 4, Attempt: 9, CtrlLossTmo: 600,
				ReconnectDelay: 10, KATO: 5, FastIOFailTmo: 30, Owned: true, Referenced: true,
			},
			{
				Name: "nvme2", SubsysNQN: nqnA, Traddr: "10.0.0.6", Trsvcid: "4420", Transport: "tcp",
				HostNQN: hostNQN, CntrlType: "io", State: sysfs.StateLive, StateRaw: "live",
				Since: taken.Add(-time.Hour), CtrlLossTmo: -1, ReconnectDelay: 5, KATO: 5, FastIOFailTmo: -1,
				Owned: true, UnreferencedSince: taken.Add(-2 * time.Minute),
			},
			{
				Name: "nvme3", SubsysNQN: "nqn.2014.08.org.nvmexpress:144d144dS5GXNX0T123456", Transport: "pcie",
				CntrlType: "io", State: sysfs.StateLive, StateRaw: "live", Since: taken.Add(-24 * time.Hour),
				Referenced: true,
			},
			{
				Name: "nvme4", SubsysNQN: nqnB, Traddr: "10.0.0.7", Trsvcid: "4420", Transport: "tcp",
				HostNQN: hostNQN, CntrlType: "io", State: sysfs.StateUnknown, StateRaw: "frobnicating",
				Since: taken.Add(-30 * time.Second), CtrlLossTmo: 600, ReconnectDelay: 10, KATO: 5, FastIOFailTmo: -1,
			},
		},
		Volumes: []daemon.VolumeInfo{
			{ID: "pvc-0f0c5e61", State: daemon.VolumeStaged, SubsysNQN: nqnA, Controllers: []string{"nvme0"}, Paths: 2, LivePaths: 1},
			{ID: "pvc-7d1e2a90", State: daemon.VolumeStaged, SubsysNQN: nqnB, Controllers: []string{"nvme1"}, Paths: 1, LivePaths: 1},
			{ID: "mount:/var/lib/kubelet/plugins/x/globalmount", State: daemon.VolumeStaged, Recovered: true, Paths: 1},
			{ID: "pvc-attaching", State: daemon.VolumeAttaching},
			{ID: "pvc-failed", State: daemon.VolumeFailed, FailureReason: "TargetUnreachable"},
		},
		Counters: daemon.Counters{
			UEvents: 42, UEventOverflows: 1, Resyncs: 12, Polls: 3600, Reconnects: 9,
			OrphansFound: 3, OrphansDisconnected: 1, StateWriteErrors: 0,
			ConnectSuccesses: 5, ConnectFailures: 9, ConnectErrors: errs,
			ConnectDuration: 3 * time.Second,
			KmsgActive:      true, KmsgRecords: 57, KmsgGaps: 1, TargetRejected: 3,
		},
	}
}

// feedObserver sends the observer a few events of each kind.
func feedObserver(o *Observer) {
	o.ConnectDone("", 30*time.Millisecond)
	o.ConnectDone("", 200*time.Millisecond)
	o.ConnectDone("unreachable", 3*time.Second)
	o.ConnectDone("rejected", 8*time.Millisecond)
	o.OutageEnded("nvme1", 45*time.Second)
	o.OutageEnded("nvme0", 2*time.Hour)
	o.Reconnect("nvme1")
	o.OrphanFound("nvme2")
	o.OrphanDisconnected("nvme2")
	o.UEvent()
	o.UEventOverflow()
	o.Resync()
}

// testRegistry registers a Collector with a fixed Go version for src and
// obs in a pedantic registry (which checks every metric against its
// descriptor).
func testRegistry(t *testing.T, src Source, obs *Observer) *prometheus.Registry {
	t.Helper()
	c := NewCollector(src, "v1.2.3-test")
	c.goversion = "go1.26-test"
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("register collector: %v", err)
	}
	if obs != nil {
		if err := reg.Register(obs); err != nil {
			t.Fatalf("register observer: %v", err)
		}
	}
	return reg
}

// populatedRegistry is the exporter in full: the populated snapshot and an
// observer that has seen events.
func populatedRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	obs := NewObserver()
	feedObserver(obs)
	return testRegistry(t, &fakeSource{snap: populatedSnapshot()}, obs)
}

// formatLE prints a bucket bound the way the text format does.
func formatLE(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
