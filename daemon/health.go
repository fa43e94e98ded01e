package daemon

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
)

// stateReason is the health reason for a controller that is not live.
func stateReason(st sysfs.State) string {
	switch st {
	case sysfs.StateNew, sysfs.StateConnecting:
		return "ControllerConnecting"
	case sysfs.StateResetting:
		return "ControllerResetting"
	case sysfs.StateDeleting, sysfs.StateDeletingNoIO, sysfs.StateDead:
		return "ControllerDeleting"
	case sysfs.StateLive:
		return ""
	}
	return "ControllerStateUnknown"
}

// describeCtrl is "nvme3 connecting for 42s to 10.0.0.5:4420, attempt 9".
func describeCtrl(e *ctrlEntry, now time.Time) string {
	state := cmp.Or(e.ctrl.StateRaw, e.ctrl.State.String())
	s := fmt.Sprintf("%s %s for %v to %s", e.ctrl.Name, state,
		now.Sub(e.since).Round(time.Second), fabrics.HostPort(e.ctrl.Address.Traddr, e.ctrl.Address.Trsvcid))
	if e.attempt > 0 {
		s += fmt.Sprintf(", attempt %d", e.attempt)
	}
	if e.spread.Known() {
		s += ", " + e.spread.String()
	}
	if e.rejected != "" {
		s += "; the target refuses this host: " + e.rejected
	}
	return s
}

// VolumeHealth reports the condition of a volume:
//   - Inaccessible while none of its paths (the controllers of its
//     subsystem) is live, with the state of its own controller as the
//     reason (ControllerConnecting, ControllerResetting,
//     ControllerDeleting, or ControllerGone when it vanished);
//   - Degraded while some paths are down and one is live;
//   - Healthy otherwise.
//
// A volume whose last Attach failed (and that is not staged) reports the
// failure's reason (TargetUnreachable, TargetRejected,
// AuthenticationFailed, DeviceNotFound, ...). An unknown volume gives
// ErrUnknownVolume.
func (d *Daemon) VolumeHealth(volumeID string) (VolumeHealth, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.vols[volumeID]
	if v == nil {
		return VolumeHealth{}, fmt.Errorf("%w: %s", ErrUnknownVolume, volumeID)
	}
	now := d.now()
	if v.state == VolumeFailed && v.failure != nil {
		f := v.failure
		return VolumeHealth{Condition: Inaccessible, Reason: f.reason, Message: f.message}, nil
	}
	own, paths := d.pathsLocked(v)
	if len(paths) == 0 {
		if v.state == VolumeAttaching {
			return VolumeHealth{Condition: Inaccessible, Reason: "Attaching",
				Message: fmt.Sprintf("connecting to %s", fabrics.HostPort(v.key.traddr, v.key.trsvcid))}, nil
		}
		msg := "no controller for " + v.nqn
		if v.lost != "" {
			msg = fmt.Sprintf("%s (%s) is gone", v.lost, v.nqn)
			if v.lostWhy != "" {
				msg += ": " + v.lostWhy
			}
		}
		reason := "ControllerGone"
		if v.lost != "" && v.lostRejected {
			reason = "TargetRejected"
		}
		return VolumeHealth{Condition: Inaccessible, Reason: reason, Message: msg}, nil
	}
	var down []*ctrlEntry
	for _, e := range paths {
		if !e.ctrl.State.Live() {
			down = append(down, e)
		}
	}
	missing := d.missingPathsLocked(v, paths, now)
	total := len(paths) + len(missing)
	switch {
	case len(down) == 0 && len(missing) == 0 && v.multipathOff:
		return VolumeHealth{Condition: Degraded, Reason: "MultipathDisabled", Message: fmt.Sprintf(
			"%s; native NVMe multipath is off on this node (nvme_core.multipath=N): 1 of the volume's %d paths is used",
			liveMessage(paths), v.pathsAsked)}, nil
	case len(down) == 0 && len(missing) == 0:
		return VolumeHealth{Condition: Healthy, Message: liveMessage(paths)}, nil
	case len(down) < len(paths):
		msgs := make([]string, 0, len(down)+len(missing))
		for _, e := range down {
			msgs = append(msgs, describeCtrl(e, now))
		}
		reason := "PathNotConnected"
		if len(down) > 0 {
			reason = stateReason(down[0].ctrl.State)
		}
		return VolumeHealth{Condition: Degraded, Reason: reason,
			Message: fmt.Sprintf("%d of %d paths down: %s", len(down)+len(missing), total, strings.Join(append(msgs, missing...), "; "))}, nil
	}
	e := own
	if e == nil || e.ctrl.State.Live() {
		e = down[0]
	}
	msg := describeCtrl(e, now)
	if total > 1 {
		msgs := make([]string, 0, total)
		for _, e := range down {
			msgs = append(msgs, describeCtrl(e, now))
		}
		msg = fmt.Sprintf("all %d paths down: %s", total, strings.Join(append(msgs, missing...), "; "))
	}
	reason := stateReason(e.ctrl.State)
	if e.rejected != "" {
		reason = "TargetRejected"
	}
	return VolumeHealth{Condition: Inaccessible, Reason: reason, Message: msg}, nil
}

// missingPathsLocked describes the paths of a multipath volume that have
// no controller among paths: "10.0.0.6:4420 not connected: <last error>".
func (d *Daemon) missingPathsLocked(v *volEntry, paths []*ctrlEntry, now time.Time) []string {
	if len(v.keys) < 2 {
		return nil
	}
	var out []string
	for _, k := range v.keys {
		if slices.ContainsFunc(paths, func(e *ctrlEntry) bool { return k.samePath(&e.ctrl) }) {
			continue
		}
		s := fabrics.HostPort(k.traddr, k.trsvcid) + " not connected"
		if k.hostTraddr != "" {
			s += " (host_traddr " + k.hostTraddr + ")"
		}
		if k.hostIface != "" {
			s += " (host_iface " + k.hostIface + ")"
		}
		if f := v.pathErrs[k.String()]; f != nil {
			s += fmt.Sprintf(" (%s %v ago): %s", f.reason, now.Sub(f.at).Round(time.Second), f.message)
		} else {
			s += ": connecting"
		}
		out = append(out, s)
	}
	return out
}

func liveMessage(paths []*ctrlEntry) string {
	names := make([]string, len(paths))
	for i, e := range paths {
		names[i] = e.ctrl.Name
	}
	return strings.Join(names, ", ") + " live"
}

// pathsLocked returns the volume's own controller (nil if gone) and every
// registry controller that serves its subsystem (its own ones and other
// paths of the same subsystem), sorted by instance.
func (d *Daemon) pathsLocked(v *volEntry) (*ctrlEntry, []*ctrlEntry) {
	var own *ctrlEntry
	var paths []*ctrlEntry
	for _, e := range d.ctrls {
		mine := slices.Contains(v.controllers, e.ctrl.Name)
		if e.ctrl.SubsysNQN != v.nqn || e.ctrl.CntrlType == "discovery" {
			continue
		}
		if !mine && v.key.hostNQN != "" && e.ctrl.HostNQN != v.key.hostNQN {
			continue
		}
		if mine && (own == nil || e.ctrl.Name == v.controllers[0]) {
			own = e
		}
		paths = append(paths, e)
	}
	slices.SortFunc(paths, func(a, b *ctrlEntry) int { return cmp.Compare(a.ctrl.Instance, b.ctrl.Instance) })
	return own, paths
}

// StorageHealth reports, per target address (traddr:trsvcid) of the
// fabrics controllers the registry knows, and of the paths of volumes that
// failed to connect and have none (Inaccessible, TargetUnreachable, with
// the last connect error), whether it is reachable:
// Inaccessible (reason TargetUnreachable) when none of its controllers is
// live, Degraded (PathsDown) when some are not, Healthy otherwise. Sorted by
// address.
func (d *Daemon) StorageHealth() []TargetHealth {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	groups := map[string]*targetGroup{}
	for _, e := range d.ctrls {
		a := e.ctrl.Address
		if a.Traddr == "" {
			continue // pcie and other local controllers
		}
		k := fabrics.HostPort(a.Traddr, a.Trsvcid)
		g := groups[k]
		if g == nil {
			g = &targetGroup{traddr: fabrics.CanonicalIP(a.Traddr), trsvcid: a.Trsvcid}
			groups[k] = g
		}
		g.ctrls = append(g.ctrls, e)
	}
	out := make([]TargetHealth, 0, len(groups))
	out = append(out, d.unconnectedTargetsLocked(groups)...)
	for _, g := range groups {
		slices.SortFunc(g.ctrls, func(a, b *ctrlEntry) int { return cmp.Compare(a.ctrl.Instance, b.ctrl.Instance) })
		th := TargetHealth{Traddr: g.traddr, Trsvcid: g.trsvcid}
		var down []string
		for _, e := range g.ctrls {
			th.Controllers = append(th.Controllers, e.ctrl.Name)
			if !e.ctrl.State.Live() {
				down = append(down, describeCtrl(e, now))
			}
		}
		switch {
		case len(down) == 0:
			th.Condition, th.Message = Healthy, liveMessage(g.ctrls)
		case len(down) == len(g.ctrls):
			th.Condition, th.Reason = Inaccessible, "TargetUnreachable"
			th.Message = "no live controller: " + strings.Join(down, "; ")
		default:
			th.Condition, th.Reason = Degraded, "PathsDown"
			th.Message = fmt.Sprintf("%d of %d controllers not live: %s", len(down), len(g.ctrls), strings.Join(down, "; "))
		}
		out = append(out, th)
	}
	slices.SortFunc(out, func(a, b TargetHealth) int {
		return cmp.Or(cmp.Compare(a.Traddr, b.Traddr), cmp.Compare(a.Trsvcid, b.Trsvcid))
	})
	return out
}

// unconnectedTargetsLocked reports the target addresses that a volume's
// path failed to connect to and that have no controller at all:
// Inaccessible (TargetUnreachable) with the last connect error.
func (d *Daemon) unconnectedTargetsLocked(groups map[string]*targetGroup) []TargetHealth {
	byTarget := map[string]*TargetHealth{}
	var order []string
	for _, v := range d.vols {
		for _, k := range v.keys {
			f := v.pathErrs[k.String()]
			hp := fabrics.HostPort(k.traddr, k.trsvcid)
			if f == nil || groups[hp] != nil {
				continue
			}
			th := byTarget[hp]
			if th == nil {
				th = &TargetHealth{Traddr: k.traddr, Trsvcid: k.trsvcid, Condition: Inaccessible, Reason: "TargetUnreachable",
					Message: fmt.Sprintf("no controller: connect failed (%s): %s", f.reason, f.message)}
				byTarget[hp] = th
				order = append(order, hp)
			}
		}
	}
	out := make([]TargetHealth, 0, len(order))
	for _, hp := range order {
		out = append(out, *byTarget[hp])
	}
	return out
}

// targetGroup is the controllers of one target address.
type targetGroup struct {
	traddr, trsvcid string
	ctrls           []*ctrlEntry
}

// ControllerInfo is a copy of what the registry knows about a controller.
type ControllerInfo struct {
	Name           string
	SubsysNQN      string
	Traddr         string
	Trsvcid        string
	Transport      string
	HostNQN        string
	CntrlType      string
	State          sysfs.State
	StateRaw       string
	Since          time.Time // the current state was first observed then
	Reconnects     int
	Attempt        int // reconnect attempt of the current outage, 0 when unknown
	CtrlLossTmo    int // seconds, -1 for off
	ReconnectDelay int
	KATO           int
	FastIOFailTmo  int // seconds, -1 for off
	// Spread is the reconnect spread the last Attach set; not Known for a
	// controller no Attach of this daemon process touched.
	Spread Spread
	// Owned: this driver created it (Detach and orphan cleanup may
	// disconnect it); false means borrowed (used, never disconnected).
	Owned      bool
	Referenced bool
	// UnreferencedSince: owned and held by no volume since then (the orphan
	// grace clock); zero otherwise.
	UnreferencedSince time.Time
	Transitions       []Transition // the most recent, oldest first
}

// Snapshot is a consistent copy of the registry and the counters, for a
// metrics collector.
type Snapshot struct {
	Taken       time.Time
	Controllers []ControllerInfo // sorted by instance
	Volumes     []VolumeInfo     // sorted by id
	Counters    Counters
}

// Snapshot copies the registry and the counters.
func (d *Daemon) Snapshot() Snapshot {
	d.mu.Lock()
	s := Snapshot{Taken: d.now()}
	refs := d.refsLocked()
	for _, e := range d.ctrls {
		c := &e.ctrl
		s.Controllers = append(s.Controllers, ControllerInfo{
			Name: c.Name, SubsysNQN: c.SubsysNQN, Traddr: c.Address.Traddr, Trsvcid: c.Address.Trsvcid,
			Transport: c.Transport, HostNQN: c.HostNQN, CntrlType: c.CntrlType,
			State: c.State, StateRaw: c.StateRaw, Since: e.since, Reconnects: e.reconnects, Attempt: e.attempt,
			CtrlLossTmo: c.CtrlLossTmo, ReconnectDelay: c.ReconnectDelay, KATO: c.KATO, FastIOFailTmo: c.FastIOFailTmo,
			Spread: e.spread, Owned: d.ownedLocked(e), Referenced: refs[c.Name] > 0, UnreferencedSince: e.unrefSince,
			Transitions: slices.Clone(e.transitions),
		})
	}
	for _, v := range d.vols {
		vi := v.info()
		vi.Paths = max(v.pathsAsked, 1)
		_, paths := d.pathsLocked(v)
		for _, e := range paths {
			if e.ctrl.State.Live() {
				vi.LivePaths++
			}
		}
		s.Volumes = append(s.Volumes, vi)
	}
	d.mu.Unlock()
	slices.SortFunc(s.Controllers, func(a, b ControllerInfo) int {
		return cmp.Compare(instanceOf(a.Name), instanceOf(b.Name))
	})
	slices.SortFunc(s.Volumes, func(a, b VolumeInfo) int { return strings.Compare(a.ID, b.ID) })
	s.Counters = d.counters.snapshot()
	return s
}

// instanceOf is the instance of a controller name, -1 for a name that is
// not one.
func instanceOf(name string) int {
	if n, ok := sysfs.ControllerInstance(name); ok {
		return n
	}
	return -1
}
