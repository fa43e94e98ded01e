package daemon

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

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
		now.Sub(e.since).Round(time.Second), hostPort(e.ctrl.Address.Traddr, e.ctrl.Address.Trsvcid))
	if e.attempt > 0 {
		s += fmt.Sprintf(", attempt %d", e.attempt)
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
				Message: fmt.Sprintf("connecting to %s", hostPort(v.key.traddr, v.key.trsvcid))}, nil
		}
		msg := "no controller for " + v.nqn
		if v.lost != "" {
			msg = fmt.Sprintf("%s (%s) is gone", v.lost, v.nqn)
			if v.lostWhy != "" {
				msg += ": " + v.lostWhy
			}
		}
		return VolumeHealth{Condition: Inaccessible, Reason: "ControllerGone", Message: msg}, nil
	}
	var down []*ctrlEntry
	for _, e := range paths {
		if !e.ctrl.State.Live() {
			down = append(down, e)
		}
	}
	switch {
	case len(down) == 0:
		return VolumeHealth{Condition: Healthy, Message: liveMessage(paths)}, nil
	case len(down) < len(paths):
		msgs := make([]string, len(down))
		for i, e := range down {
			msgs[i] = describeCtrl(e, now)
		}
		return VolumeHealth{Condition: Degraded, Reason: stateReason(down[0].ctrl.State),
			Message: fmt.Sprintf("%d of %d paths down: %s", len(down), len(paths), strings.Join(msgs, "; "))}, nil
	}
	e := own
	if e == nil || e.ctrl.State.Live() {
		e = down[0]
	}
	return VolumeHealth{Condition: Inaccessible, Reason: stateReason(e.ctrl.State), Message: describeCtrl(e, now)}, nil
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
// fabrics controllers the registry knows, whether it is reachable:
// Inaccessible (reason TargetUnreachable) when none of its controllers is
// live, Degraded (PathsDown) when some are not, Healthy otherwise. Sorted by
// address.
func (d *Daemon) StorageHealth() []TargetHealth {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	type group struct {
		traddr, trsvcid string
		ctrls           []*ctrlEntry
	}
	groups := map[string]*group{}
	for _, e := range d.ctrls {
		a := e.ctrl.Address
		if a.Traddr == "" {
			continue // pcie and other local controllers
		}
		k := hostPort(canonicalIP(a.Traddr), canonicalPort(a.Trsvcid))
		g := groups[k]
		if g == nil {
			g = &group{traddr: canonicalIP(a.Traddr), trsvcid: canonicalPort(a.Trsvcid)}
			groups[k] = g
		}
		g.ctrls = append(g.ctrls, e)
	}
	out := make([]TargetHealth, 0, len(groups))
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
	Owned          bool
	Referenced     bool
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
			Owned: d.ownedLocked(e), Referenced: refs[c.Name] > 0, UnreferencedSince: e.unrefSince,
			Transitions: slices.Clone(e.transitions),
		})
	}
	for _, v := range d.vols {
		s.Volumes = append(s.Volumes, v.info())
	}
	d.mu.Unlock()
	slices.SortFunc(s.Controllers, func(a, b ControllerInfo) int {
		return cmp.Compare(instanceOf(a.Name), instanceOf(b.Name))
	})
	slices.SortFunc(s.Volumes, func(a, b VolumeInfo) int { return strings.Compare(a.ID, b.ID) })
	s.Counters = d.counters.snapshot()
	return s
}

func instanceOf(name string) int {
	n := 0
	fmt.Sscanf(name, "nvme%d", &n)
	return n
}
