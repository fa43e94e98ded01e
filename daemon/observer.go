package daemon

import (
	"sync/atomic"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
)

// Observer is told about events as they happen, for metrics (histograms of
// connect and outage durations, counters). Methods are called from the
// daemon's goroutines and from Attach callers, never with the registry lock
// held; they must be quick and safe for concurrent use. Embed NopObserver to
// implement only some of them.
type Observer interface {
	// ConnectDone: one connect write finished after d; class is
	// fabrics.ErrorClass of its error, "" on success.
	ConnectDone(class string, d time.Duration)
	// OutageEnded: controller ctrl is live again after being down for d.
	OutageEnded(ctrl string, d time.Duration)
	// Reconnect: controller ctrl reconnected (counted once per reconnect).
	Reconnect(ctrl string)
	// OrphanFound: an owned controller became unreferenced (its grace
	// period starts); OrphanDisconnected: cleanup disconnected it.
	OrphanFound(ctrl string)
	OrphanDisconnected(ctrl string)
	// UEvent: an NVMe uevent was received; UEventOverflow: the uevent
	// socket overflowed (ENOBUFS); Resync: a full re-read of sysfs ran.
	UEvent()
	UEventOverflow()
	Resync()
}

// NopObserver ignores everything.
type NopObserver struct{}

func (NopObserver) ConnectDone(string, time.Duration) {}
func (NopObserver) OutageEnded(string, time.Duration) {}
func (NopObserver) Reconnect(string)                  {}
func (NopObserver) OrphanFound(string)                {}
func (NopObserver) OrphanDisconnected(string)         {}
func (NopObserver) UEvent()                           {}
func (NopObserver) UEventOverflow()                   {}
func (NopObserver) Resync()                           {}

// counters are the daemon's event counts (Snapshot copies them).
type counters struct {
	uevents             atomic.Int64
	ueventOverflows     atomic.Int64
	resyncs             atomic.Int64
	polls               atomic.Int64
	reconnects          atomic.Int64
	orphansFound        atomic.Int64
	orphansDisconnected atomic.Int64
	stateWriteErrors    atomic.Int64
	connectOK           atomic.Int64
	connectFailed       atomic.Int64
	connectNanos        atomic.Int64 // sum of connect durations
	kmsgActive          atomic.Bool  // the kernel log reader is running
	kmsgRecords         atomic.Int64 // kernel log records about known controllers
	kmsgGaps            atomic.Int64 // kernel log sequence gaps
	targetRejected      atomic.Int64 // kernel log: the target refused this host at a connect
	// connectErrors by fabrics.ErrorClass; the map is filled by init and
	// only read afterwards.
	connectErrors map[string]*atomic.Int64
}

func (c *counters) init() {
	c.connectErrors = map[string]*atomic.Int64{}
	for _, class := range fabrics.ErrorClasses() {
		c.connectErrors[class] = new(atomic.Int64)
	}
}

// Counters is a copy of the daemon's counters.
type Counters struct {
	UEvents             int64 // NVMe uevents received (after filtering)
	UEventOverflows     int64 // ENOBUFS on the uevent socket
	Resyncs             int64 // full re-reads of sysfs
	Polls               int64 // state-only re-reads
	Reconnects          int64
	OrphansFound        int64
	OrphansDisconnected int64
	StateWriteErrors    int64
	ConnectSuccesses    int64
	ConnectFailures     int64
	// ConnectErrors counts failed connect writes by fabrics.ErrorClass;
	// every class is present.
	ConnectErrors map[string]int64
	// ConnectDuration is the sum of the durations of all connect writes
	// (successes and failures), for an average with their count.
	ConnectDuration time.Duration
	// KmsgActive: the kernel log (/dev/kmsg) trigger is running; false
	// means controller faults are seen by uevents and the poller only
	// (disabled, no CAP_SYSLOG, no device, or the reader failed).
	KmsgActive bool
	// KmsgRecords counts kernel log records about a known NVMe controller
	// (each triggered a re-read of its state); KmsgGaps counts sequence
	// gaps (records lost before they were read; each forced a full
	// re-read).
	KmsgRecords int64
	KmsgGaps    int64
	// TargetRejected counts kernel log records saying a target refused
	// this host at a (re)connect of a known controller (target fencing,
	// or an allow list without this host).
	TargetRejected int64
}

func (c *counters) snapshot() Counters {
	out := Counters{
		UEvents:             c.uevents.Load(),
		UEventOverflows:     c.ueventOverflows.Load(),
		Resyncs:             c.resyncs.Load(),
		Polls:               c.polls.Load(),
		Reconnects:          c.reconnects.Load(),
		OrphansFound:        c.orphansFound.Load(),
		OrphansDisconnected: c.orphansDisconnected.Load(),
		StateWriteErrors:    c.stateWriteErrors.Load(),
		ConnectSuccesses:    c.connectOK.Load(),
		ConnectFailures:     c.connectFailed.Load(),
		ConnectDuration:     time.Duration(c.connectNanos.Load()),
		KmsgActive:          c.kmsgActive.Load(),
		KmsgRecords:         c.kmsgRecords.Load(),
		KmsgGaps:            c.kmsgGaps.Load(),
		TargetRejected:      c.targetRejected.Load(),
		ConnectErrors:       make(map[string]int64, len(c.connectErrors)),
	}
	for k, v := range c.connectErrors {
		out.ConnectErrors[k] = v.Load()
	}
	return out
}

// recordConnect counts one connect write and tells the Observer.
func (d *Daemon) recordConnect(err error, took time.Duration) {
	d.counters.connectNanos.Add(int64(took))
	class := fabrics.ErrorClass(err)
	if err == nil {
		d.counters.connectOK.Add(1)
	} else {
		d.counters.connectFailed.Add(1)
		if c := d.counters.connectErrors[class]; c != nil {
			c.Add(1)
		}
	}
	d.obs.ConnectDone(class, took)
}

// emit tells the Observer about events collected under the lock.
func (d *Daemon) emit(evs []event) {
	for _, e := range evs {
		switch e.kind {
		case evReconnect:
			d.obs.Reconnect(e.ctrl)
		case evOutageEnded:
			d.obs.OutageEnded(e.ctrl, e.dur)
		case evOrphanFound:
			d.obs.OrphanFound(e.ctrl)
		case evOrphanDisconnected:
			d.obs.OrphanDisconnected(e.ctrl)
		}
	}
}
