package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
)

// namespace prefixes every metric name.
const namespace = "rds_csi"

// Source is what a Collector reads at scrape time; *daemon.Daemon
// implements it. Snapshot must be cheap (a copy of the registry) and safe
// for concurrent use.
type Source interface {
	Snapshot() daemon.Snapshot
}

var _ Source = (*daemon.Daemon)(nil)

// ctrlLabels identify a controller on every per-controller series.
var ctrlLabels = []string{"controller", "subsysnqn", "traddr", "trsvcid"}

// Result label values of connect metrics.
const (
	resultSuccess = "success"
	resultFailure = "failure"
)

// results are the values of the result label, in exposition order.
var results = []string{resultSuccess, resultFailure}

func desc(subsystem, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, labels, nil)
}

func ctrlDesc(name, help string, extra ...string) *prometheus.Desc {
	return desc("controller", name, help, append(append([]string(nil), ctrlLabels...), extra...)...)
}

// Descriptors of the metrics a Collector exports.
var (
	descCtrlInfo = desc("controller", "info",
		"NVMe controller known to the daemon (always 1), with its transport and host NQN.",
		"controller", "transport", "hostnqn", "subsysnqn", "traddr", "trsvcid")
	descCtrlState = ctrlDesc("state",
		"Controller state as a state set: 1 for the current state, 0 for the others; states the daemon does not know are \"unknown\".",
		"state")
	descCtrlLossTmo = ctrlDesc("ctrl_loss_timeout_seconds",
		"Effective ctrl_loss_tmo: how long the kernel keeps reconnecting before it removes the controller; -1 means forever. Fabrics controllers only.")
	descReconnectDelay = ctrlDesc("reconnect_delay_seconds",
		"Effective reconnect_delay: the pause between reconnect attempts. Fabrics controllers only.")
	descSpread = ctrlDesc("reconnect_spread_seconds",
		"This controller's reconnect spread: the seconds added to the volume's reconnectDelay (a deterministic offset in 0..reconnectSpread), so that controllers do not retry in lockstep after a common loss. Only for controllers an Attach of this daemon process set up.")
	descSpreadCost = ctrlDesc("reconnect_spread_cost_seconds",
		"What the spread costs: the average extra time to recover after a target restart (half the offset; at most the offset). Only for controllers an Attach of this daemon process set up.")
	descKATO = ctrlDesc("keep_alive_timeout_seconds",
		"Effective keep-alive timeout (kato). Fabrics controllers only.")
	descFastIOFail = ctrlDesc("fast_io_fail_timeout_seconds",
		"Effective fast_io_fail_tmo: how long I/O waits on a reconnecting controller before it fails; -1 means off (I/O waits until ctrl_loss_tmo). Fabrics controllers only.")
	descCtrlReconnects = ctrlDesc("reconnects_total",
		"Reconnects of the controller (transitions back to live) seen by the daemon since it first saw the controller.")
	descCtrlAttempt = ctrlDesc("reconnect_attempt",
		"Reconnect attempt of the current outage; 0 when the controller is live or the attempt is not known.")
	descCtrlNotLive = ctrlDesc("not_live_seconds",
		"How long the controller has not been live (now minus the time its current state was first seen); 0 when live.")
	descCtrlOrphaned = ctrlDesc("orphaned_seconds",
		"How long an owned controller has backed no volume (the orphan grace clock); 0 when referenced or not owned.")

	descControllers = desc("", "controllers",
		"Controllers in the daemon's registry, by whether this driver owns them (created them; the others are borrowed: used, never disconnected).", "owned")
	descVolumesStaged = desc("volumes", "staged",
		"Volumes staged on this node (including volumes recovered from the mount table).")
	descVolumePaths = desc("volume", "paths",
		"Target addresses (paths) a staged volume names: 1, or the length of its nvmeAddresses.", "volume")
	descVolumeLivePaths = desc("volume", "live_paths",
		"Live controllers of a staged volume's subsystem (its live paths); below rds_csi_volume_paths while a path is down, not yet connected, or native multipath is off.", "volume")

	descConnectAttempts = desc("connect", "attempts_total",
		"Connect writes to /dev/nvme-fabrics, by result (success, failure); retries count separately.", "result")
	descConnectErrors = desc("connect", "errors_total",
		"Failed connect writes by error class (fabrics.ErrorClass).", "class")
	descReconnects = desc("", "reconnects_total",
		"Reconnects of all controllers on this node (kept when a controller goes away).")
	descOrphansFound = desc("orphans", "found_total",
		"Owned controllers that became unreferenced (their orphan grace period started).")
	descOrphansDisconnected = desc("orphans", "disconnected_total",
		"Orphaned controllers that cleanup disconnected.")
	descUEvents = desc("uevents", "received_total",
		"NVMe uevents received (after filtering).")
	descUEventOverflows = desc("uevent", "overflows_total",
		"Overflows (ENOBUFS) of the uevent socket; each forces a full re-read of sysfs.")
	descResyncs = desc("", "resyncs_total",
		"Full re-reads of the NVMe controllers in sysfs.")
	descPolls = desc("state", "polls_total",
		"State-only re-reads of the known controllers (the poller and netlink events).")
	descStateWriteErrors = desc("state_file", "write_errors_total",
		"Failed writes of the ownership state file.")
	descKmsgActive = desc("kmsg", "trigger_active",
		"1 while the kernel log (/dev/kmsg) trigger runs: controller faults are seen within milliseconds; 0 when the daemon relies on uevents and polling (disabled, no CAP_SYSLOG, no device, or the reader failed).")
	descKmsgRecords = desc("kmsg", "records_total",
		"Kernel log records about a known NVMe controller; each triggered a re-read of its state.")
	descKmsgTargetRejected = desc("kmsg", "target_rejected_total",
		"Kernel log records saying a target refused this host at a (re)connect of a known controller (target fencing after the volume moved to another node, or an allow list without this host's NQN).")
	descKmsgGaps = desc("kmsg", "gaps_total",
		"Kernel log sequence gaps (records overwritten before they were read); each forced a full re-read of sysfs.")

	descBuildInfo = desc("", "build_info",
		"Build of the running rds-csi (always 1).", "version", "goversion")
)

// Collector exports the daemon's registry and counters at scrape time.
// Create it with NewCollector.
type Collector struct {
	src       Source
	version   string
	goversion string
	now       func() time.Time // used only when a snapshot has no Taken time
}

// NewCollector returns a Collector that reads src at every scrape; version
// is the build's version for rds_csi_build_info.
func NewCollector(src Source, version string) *Collector {
	return &Collector{src: src, version: version, goversion: runtime.Version(), now: time.Now}
}

var _ prometheus.Collector = (*Collector)(nil)

// Describe sends every descriptor the Collector uses.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descCtrlInfo, descCtrlState, descCtrlLossTmo, descReconnectDelay, descSpread, descSpreadCost, descKATO, descFastIOFail,
		descCtrlReconnects, descCtrlAttempt, descCtrlNotLive, descCtrlOrphaned,
		descControllers, descVolumesStaged, descVolumePaths, descVolumeLivePaths,
		descConnectAttempts, descConnectErrors, descReconnects, descOrphansFound, descOrphansDisconnected,
		descUEvents, descUEventOverflows, descResyncs, descPolls, descStateWriteErrors,
		descKmsgActive, descKmsgRecords, descKmsgGaps, descKmsgTargetRejected,
		descBuildInfo,
	} {
		ch <- d
	}
}

// Collect takes one snapshot and sends the metrics built from it.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	now := s.Taken
	if now.IsZero() {
		now = c.now()
	}
	owned := map[bool]int{}
	for i := range s.Controllers {
		ci := &s.Controllers[i]
		owned[ci.Owned]++
		collectController(ch, ci, now)
	}
	gauge(ch, descControllers, float64(owned[true]), "true")
	gauge(ch, descControllers, float64(owned[false]), "false")

	staged := 0
	for _, v := range s.Volumes {
		if v.State == daemon.VolumeStaged {
			staged++
			gauge(ch, descVolumePaths, float64(v.Paths), v.ID)
			gauge(ch, descVolumeLivePaths, float64(v.LivePaths), v.ID)
		}
	}
	gauge(ch, descVolumesStaged, float64(staged))

	collectCounters(ch, &s.Counters)
	gauge(ch, descBuildInfo, 1, c.version, c.goversion)
}

// collectController sends the series of one controller.
func collectController(ch chan<- prometheus.Metric, ci *daemon.ControllerInfo, now time.Time) {
	traddr := fabrics.CanonicalIP(ci.Traddr)
	id := []string{ci.Name, ci.SubsysNQN, traddr, ci.Trsvcid}
	withID := func(extra ...string) []string { return append(append([]string(nil), id...), extra...) }

	gauge(ch, descCtrlInfo, 1, ci.Name, ci.Transport, ci.HostNQN, ci.SubsysNQN, traddr, ci.Trsvcid)

	current := stateLabel(ci.State)
	for _, st := range sysfs.States() {
		v := 0.0
		if st.String() == current {
			v = 1
		}
		gauge(ch, descCtrlState, v, withID(st.String())...)
	}

	if isFabrics(ci.Transport) {
		gauge(ch, descCtrlLossTmo, float64(ci.CtrlLossTmo), id...)
		gauge(ch, descReconnectDelay, float64(ci.ReconnectDelay), id...)
		if ci.Spread.Known() {
			gauge(ch, descSpread, float64(ci.Spread.Offset), id...)
			gauge(ch, descSpreadCost, ci.Spread.AvgCost(), id...)
		}
		gauge(ch, descKATO, float64(ci.KATO), id...)
		gauge(ch, descFastIOFail, float64(ci.FastIOFailTmo), id...)
	}
	counter(ch, descCtrlReconnects, float64(ci.Reconnects), id...)

	attempt, notLive := 0.0, 0.0
	if !ci.State.Live() {
		attempt = float64(ci.Attempt)
		notLive = secondsSince(now, ci.Since)
	}
	gauge(ch, descCtrlAttempt, attempt, id...)
	gauge(ch, descCtrlNotLive, notLive, id...)

	orphaned := 0.0
	if ci.Owned && !ci.Referenced {
		orphaned = secondsSince(now, ci.UnreferencedSince)
	}
	gauge(ch, descCtrlOrphaned, orphaned, id...)
}

// collectCounters sends the node-wide counters.
func collectCounters(ch chan<- prometheus.Metric, k *daemon.Counters) {
	counter(ch, descConnectAttempts, float64(k.ConnectSuccesses), resultSuccess)
	counter(ch, descConnectAttempts, float64(k.ConnectFailures), resultFailure)
	for _, class := range fabrics.ErrorClasses() {
		counter(ch, descConnectErrors, float64(k.ConnectErrors[class]), class)
	}
	counter(ch, descReconnects, float64(k.Reconnects))
	counter(ch, descOrphansFound, float64(k.OrphansFound))
	counter(ch, descOrphansDisconnected, float64(k.OrphansDisconnected))
	counter(ch, descUEvents, float64(k.UEvents))
	counter(ch, descUEventOverflows, float64(k.UEventOverflows))
	counter(ch, descResyncs, float64(k.Resyncs))
	counter(ch, descPolls, float64(k.Polls))
	counter(ch, descStateWriteErrors, float64(k.StateWriteErrors))
	active := 0.0
	if k.KmsgActive {
		active = 1
	}
	gauge(ch, descKmsgActive, active)
	counter(ch, descKmsgRecords, float64(k.KmsgRecords))
	counter(ch, descKmsgGaps, float64(k.KmsgGaps))
	counter(ch, descKmsgTargetRejected, float64(k.TargetRejected))
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// stateLabel is the state set member of s: its kernel spelling, or
// "unknown" for anything sysfs.States does not list.
func stateLabel(s sysfs.State) string {
	for _, st := range sysfs.States() {
		if st == s {
			return s.String()
		}
	}
	return sysfs.StateUnknown.String()
}

// isFabrics reports whether a transport has the fabrics timeouts (every
// transport but PCIe, whose controllers have none).
func isFabrics(transport string) bool { return transport != "pcie" }

// secondsSince is now-t in seconds, 0 for a zero t or a t after now.
func secondsSince(now, t time.Time) float64 {
	if t.IsZero() || !now.After(t) {
		return 0
	}
	return now.Sub(t).Seconds()
}
