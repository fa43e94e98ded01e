package daemon

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
)

// maxTransitions bounds the state history kept per controller.
const maxTransitions = 16

// connKey identifies a controller by what the kernel compares to decide
// that two connects are the same (fabrics.Options.Matches holds the rule):
// transport, subsystem NQN, target address and port, host NQN and host ID,
// and the optional source address and interface. A key made from Options
// holds the values fabrics writes (fabrics.CanonicalIP of the addresses, the
// decimal port); one made from a controller holds what sysfs shows. An
// empty hostNQN or hostID matches any host (the kernel's default host,
// which sysfs does not name).
type connKey struct {
	transport  string
	nqn        string
	traddr     string
	trsvcid    string
	hostNQN    string
	hostID     string
	hostTraddr string
	hostIface  string
}

func keyOf(o *fabrics.Options) connKey {
	return connKey{
		transport:  cmp.Or(o.Transport, fabrics.DefaultTransport),
		nqn:        o.NQN,
		traddr:     fabrics.CanonicalIP(o.Traddr),
		trsvcid:    strconv.Itoa(cmp.Or(o.Trsvcid, fabrics.DefaultPort)),
		hostNQN:    o.HostNQN,
		hostID:     strings.ToLower(o.HostID),
		hostTraddr: fabrics.CanonicalIP(o.HostTraddr),
		hostIface:  o.HostIface,
	}
}

// keyOfController is the key of an existing controller: the strings sysfs
// shows, which for a controller that matches a key made from Options are
// that key's.
func keyOfController(c *sysfs.Controller) connKey {
	return connKey{
		transport:  c.Transport,
		nqn:        c.SubsysNQN,
		traddr:     c.Address.Traddr,
		trsvcid:    c.Address.Trsvcid,
		hostNQN:    c.HostNQN,
		hostID:     strings.ToLower(c.HostID),
		hostTraddr: c.Address.HostTraddr,
		hostIface:  c.Address.HostIface,
	}
}

// String is the lock name of the key. It leaves the host ID out: connects
// that differ only in it take one lock, which serialises more than needed
// but never less (a spec's key and the key of its controller lock alike
// whether or not the spec names a host ID).
func (k connKey) String() string {
	return strings.Join([]string{k.transport, k.nqn, k.traddr, k.trsvcid, k.hostNQN, k.hostTraddr, k.hostIface}, "|")
}

// matches reports whether c is a controller the kernel would consider
// identical to a connect with key k, and one that can still serve I/O
// (fabrics.Options.Matches). A key whose port is not a plain decimal
// number matches nothing.
func (k connKey) matches(c *sysfs.Controller) bool {
	o, ok := k.options()
	return ok && o.Matches(c)
}

// samePath reports whether controller c goes to k's target address and
// port from k's source (whatever its state): it is that path of a volume.
func (k connKey) samePath(c *sysfs.Controller) bool {
	return fabrics.CanonicalIP(c.Address.Traddr) == k.traddr && c.Address.Trsvcid == k.trsvcid &&
		(k.hostIface == "" || c.Address.HostIface == k.hostIface) &&
		(k.hostTraddr == "" || fabrics.CanonicalIP(c.Address.HostTraddr) == k.hostTraddr)
}

// options returns the identity part of the Options k was made from.
func (k connKey) options() (fabrics.Options, bool) {
	port, err := strconv.Atoi(k.trsvcid)
	if err != nil || strconv.Itoa(port) != k.trsvcid {
		return fabrics.Options{}, false
	}
	return fabrics.Options{
		Transport: k.transport, NQN: k.nqn, Traddr: k.traddr, Trsvcid: port,
		HostNQN: k.hostNQN, HostID: k.hostID, HostTraddr: k.hostTraddr, HostIface: k.hostIface,
	}, true
}

// Transition is one observed state change of a controller.
type Transition struct {
	From sysfs.State
	To   sysfs.State
	At   time.Time
}

// ctrlEntry is the registry's view of one controller.
type ctrlEntry struct {
	// ctrl is the last read (the state may be newer than the other
	// attributes). Full re-reads fill only the fields of
	// sysfs.FS.ControllerConnections: nothing here uses the others.
	ctrl        sysfs.Controller
	since       time.Time    // when the current state was first observed
	transitions []Transition // the last maxTransitions
	reconnects  int
	attempt     int       // reconnect attempt of the current outage, 0 when unknown
	downSince   time.Time // start of the current outage; zero while live
	unrefSince  time.Time // owned and unreferenced since; zero otherwise
	orphanNoted bool      // cleanup has reported it as an orphan
	everLive    bool      // observed live at least once
	// expectUEvent: a transition to live was observed (or the controller
	// is new), so one NVME_EVENT=connected uevent for it is already
	// accounted for.
	expectUEvent bool
	connected    int // NVME_EVENT=connected uevents not yet processed
	// spread is the reconnect spread the last Attach set (not Known
	// before one did, e.g. after a restart until the next stage).
	spread Spread
	// rejected is the kernel's last report that the target refused this
	// host at a (re)connect of the current outage (kmsg HostRejected:
	// target fencing, or an allow list without this host's NQN); "" once
	// live again or when a new outage starts.
	rejected string
}

// owner is one controller in the ownership file: its name and the identity
// that must still match for the record to apply (instance numbers are
// reused).
type owner struct {
	Name      string    `json:"name"`
	Transport string    `json:"transport"`
	SubsysNQN string    `json:"subsysnqn"`
	Traddr    string    `json:"traddr"`
	Trsvcid   string    `json:"trsvcid"`
	HostNQN   string    `json:"hostnqn"`
	Since     time.Time `json:"since"`
}

func ownerOf(c *sysfs.Controller, now time.Time) owner {
	return owner{
		Name:      c.Name,
		Transport: c.Transport,
		SubsysNQN: c.SubsysNQN,
		Traddr:    fabrics.CanonicalIP(c.Address.Traddr),
		Trsvcid:   c.Address.Trsvcid,
		HostNQN:   c.HostNQN,
		Since:     now,
	}
}

// describes reports whether the record is about controller c.
func (o owner) describes(c *sysfs.Controller) bool {
	return o.Name == c.Name && o.SubsysNQN == c.SubsysNQN &&
		o.Traddr == fabrics.CanonicalIP(c.Address.Traddr) &&
		o.Trsvcid == c.Address.Trsvcid &&
		o.HostNQN == c.HostNQN &&
		(o.Transport == "" || o.Transport == c.Transport)
}

// VolumeState is where a volume is in its life cycle.
type VolumeState string

// Volume states.
const (
	VolumeAttaching VolumeState = "attaching" // Attach in progress
	VolumeAttached  VolumeState = "attached"  // Attach succeeded, not staged yet
	VolumeStaged    VolumeState = "staged"    // MarkStaged (or rebuilt from the mount table)
	VolumeFailed    VolumeState = "failed"    // the last Attach failed; holds no controller
)

// volEntry is the registry's view of one volume.
type volEntry struct {
	id   string
	spec Spec
	key  connKey   // the first path's
	keys []connKey // every path's, the first first
	// pathErrs: the last connect failure of each path (by key) that has
	// not connected since.
	pathErrs map[string]*failure
	// pathsAsked is how many paths the spec named; multipathOff says
	// only the first was used because native multipath is off.
	pathsAsked   int
	multipathOff bool
	// connect: a volume restored from the state file keeps the record's
	// connect options here (its spec has no secrets, so connectStateOf
	// would lose that it had some).
	connect     *connectState
	nqn         string
	nsid        uint32
	controllers []string // the controllers the volume holds (refcount)
	ns          sysfs.Namespace
	device      string
	stagingPath string
	stagedAt    time.Time
	block       bool
	state       VolumeState
	recovered   bool   // rebuilt from a mount no record explains
	lost        string // a controller of the volume that vanished
	lostWhy     string // what the registry knew of it then (lostReason)
	// lostRejected: the target had refused this host when the controller
	// vanished (the kernel removes a controller on a refusal with DNR).
	lostRejected bool
	failure      *failure
}

// failure is the outcome of a failed Attach, for health.
type failure struct {
	reason  string
	message string
	at      time.Time
}

// holds reports whether the volume references its controllers.
func (v *volEntry) holds() bool { return v.state != VolumeFailed }

// refsLocked counts, per controller, the volumes that hold it.
func (d *Daemon) refsLocked() map[string]int {
	refs := make(map[string]int)
	for _, v := range d.vols {
		if !v.holds() {
			continue
		}
		for _, c := range v.controllers {
			refs[c]++
		}
	}
	return refs
}

// referencedLocked reports whether any volume holds controller name.
func (d *Daemon) referencedLocked(name string) bool {
	for _, v := range d.vols {
		if v.holds() && slices.Contains(v.controllers, name) {
			return true
		}
	}
	return false
}

// findControllerLocked returns a registry controller matching k: a live one
// first, then the lowest instance.
func (d *Daemon) findControllerLocked(k connKey) *ctrlEntry {
	var best *ctrlEntry
	for _, e := range d.ctrls {
		if !k.matches(&e.ctrl) {
			continue
		}
		if best == nil ||
			(e.ctrl.State.Live() && !best.ctrl.State.Live()) ||
			(e.ctrl.State.Live() == best.ctrl.State.Live() && e.ctrl.Instance < best.ctrl.Instance) {
			best = e
		}
	}
	return best
}

// ownedLocked reports whether the ownership file covers controller e.
func (d *Daemon) ownedLocked(e *ctrlEntry) bool {
	o, ok := d.owned[e.ctrl.Name]
	return ok && o.describes(&e.ctrl)
}

// touchLocked marks a registry change made outside the event loop, so that
// a re-read that started before it does not undo it.
func (d *Daemon) touchLocked(name string) {
	d.mutation++
	d.touched[name] = d.mutation
}

// event is something to tell the Observer once the lock is released.
type event struct {
	kind eventKind
	ctrl string
	dur  time.Duration
}

type eventKind uint8

const (
	evReconnect eventKind = iota
	evOutageEnded
	evOrphanFound
	evOrphanDisconnected
)

// observeLocked applies a fresh full read of a controller. fromLoop says
// the controller was found after the initial rebuild (its first
// NVME_EVENT=connected uevent may still be queued).
func (d *Daemon) observeLocked(c sysfs.Controller, now time.Time, fromLoop bool, evs *[]event) *ctrlEntry {
	e := d.ctrls[c.Name]
	var oldDev sysfs.DevNum
	if e != nil {
		oldDev = e.ctrl.Dev
	}
	d.indexDevLocked(c.Name, oldDev, c.Dev)
	if o, ok := d.owned[c.Name]; ok && !o.describes(&c) {
		// The kernel reused the name of a controller this driver owned for
		// one it does not: the record is stale.
		delete(d.owned, c.Name)
		d.ownersDirty = true
	}
	if e == nil || !sameController(&e.ctrl, &c) {
		e = &ctrlEntry{ctrl: c, since: now, everLive: c.State.Live(), expectUEvent: fromLoop}
		if !c.State.Live() {
			e.downSince = now
		}
		d.ctrls[c.Name] = e
		return e
	}
	if e.halfBorn() && c.SubsysNQN != "" {
		d.log.Info("controller connected", "controller", c.Name, "state", c.StateRaw,
			"subsysnqn", c.SubsysNQN, "target", fabrics.HostPort(c.Address.Traddr, c.Address.Trsvcid))
	}
	prev := e.ctrl.State
	if c.StateRaw == "" {
		// An empty state is a torn read, not a state: keep the last one.
		c.State, c.StateRaw = e.ctrl.State, e.ctrl.StateRaw
	}
	e.ctrl = c
	if prev != c.State {
		d.transitionLocked(e, prev, c.State, now, evs)
	}
	return e
}

// sameController reports whether a fresh read c is still the controller
// the registry knew as old: the same key, or the same key but for the
// subsystem NQN that old, read before its first connect completed, did not
// have yet.
func sameController(old, c *sysfs.Controller) bool {
	ko, kc := keyOfController(old), keyOfController(c)
	if old.SubsysNQN == "" {
		ko.nqn = kc.nqn
	}
	return ko == kc
}

// halfBorn reports whether the registry read e before its first connect
// completed: it has no subsystem NQN yet (the kernel links the controller to
// its subsystem only then; every controller has one after).
func (e *ctrlEntry) halfBorn() bool { return e.ctrl.SubsysNQN == "" }

// setStateLocked applies a fresh read of the state attribute only.
func (d *Daemon) setStateLocked(e *ctrlEntry, st sysfs.State, raw string, now time.Time, evs *[]event) {
	prev := e.ctrl.State
	if prev == st && e.ctrl.StateRaw == raw {
		return
	}
	e.ctrl.State, e.ctrl.StateRaw = st, raw
	if prev != st {
		d.transitionLocked(e, prev, st, now, evs)
	}
}

func (d *Daemon) transitionLocked(e *ctrlEntry, from, to sysfs.State, now time.Time, evs *[]event) {
	e.transitions = append(e.transitions, Transition{From: from, To: to, At: now})
	if n := len(e.transitions); n > maxTransitions {
		e.transitions = slices.Delete(e.transitions, 0, n-maxTransitions)
	}
	e.since = now
	name := e.ctrl.Name
	if to.Live() {
		if e.everLive && !e.downSince.IsZero() {
			e.reconnects++
			d.counters.reconnects.Add(1)
			*evs = append(*evs, event{kind: evReconnect, ctrl: name},
				event{kind: evOutageEnded, ctrl: name, dur: now.Sub(e.downSince)})
			d.log.Info("controller reconnected", "controller", name, "outage", now.Sub(e.downSince).Round(time.Millisecond), "from", from.String())
		}
		e.everLive, e.expectUEvent = true, true
		e.downSince, e.attempt, e.rejected = time.Time{}, 0, ""
		return
	}
	if e.downSince.IsZero() {
		e.downSince = now
	}
	if from.Live() {
		d.log.Warn("controller not live", "controller", name, "state", e.ctrl.StateRaw,
			"target", fabrics.HostPort(e.ctrl.Address.Traddr, e.ctrl.Address.Trsvcid), "subsysnqn", e.ctrl.SubsysNQN)
	}
}

// connectedLocked processes NVME_EVENT=connected uevents counted for e:
// each is a reconnect unless a transition to live already accounted for it.
// The kernel sends the event after setting the controller live, so one
// that finds the registry showing the controller not live means the last
// re-read came before the reconnect: the event applies the transition to
// live (counting the reconnect and ending the outage once, there) rather
// than counting a reconnect that the next re-read would count again.
func (d *Daemon) connectedLocked(e *ctrlEntry, evs *[]event) {
	for ; e.connected > 0; e.connected-- {
		if e.expectUEvent {
			e.expectUEvent = false
			continue
		}
		if prev := e.ctrl.State; !prev.Live() {
			e.ctrl.State, e.ctrl.StateRaw = sysfs.StateLive, "live"
			d.transitionLocked(e, prev, sysfs.StateLive, d.now(), evs)
			e.expectUEvent = false     // this event is the one the transition expects
			d.touchLocked(e.ctrl.Name) // a re-read begun before this event is stale
			continue
		}
		// A reset or reconnect too quick for any re-read to see.
		e.reconnects++
		d.counters.reconnects.Add(1)
		e.everLive = true
		*evs = append(*evs, event{kind: evReconnect, ctrl: e.ctrl.Name})
		d.log.Info("controller reconnected", "controller", e.ctrl.Name, "seen", "uevent")
	}
}

// lostReason says why a controller that vanished probably went, from its
// last registry entry: a controller that was unreachable for at least its
// ctrl_loss_tmo was given up by the kernel (its I/O failed then); one that
// was live was disconnected by someone else.
func lostReason(e *ctrlEntry, now time.Time) string {
	switch {
	case e == nil:
		return ""
	case e.rejected != "":
		return "the target refuses this host (" + e.rejected + "); the kernel gave the controller up: its I/O failed"
	case e.ctrl.State.Live() || e.downSince.IsZero():
		return "disconnected while live (not by this driver)"
	}
	down := now.Sub(e.downSince).Round(time.Second)
	tmo := time.Duration(e.ctrl.CtrlLossTmo) * time.Second
	delay := time.Duration(e.ctrl.ReconnectDelay) * time.Second
	if tmo > 0 && now.Sub(e.downSince) >= tmo-delay {
		s := fmt.Sprintf("the kernel gave it up when ctrl_loss_tmo (%v) ran out, after %v unreachable", tmo, down)
		if e.attempt > 0 {
			s += fmt.Sprintf(" and %d reconnect attempts", e.attempt)
		}
		return s + "; its I/O failed: stage the volume again (restart the pod) once the target is back"
	}
	return fmt.Sprintf("removed while unreachable for %v (before its ctrl_loss_tmo ran out: deleted by hand?)", down)
}

// removeControllerLocked forgets a controller that is gone; it reports
// whether the ownership file changed.
func (d *Daemon) removeControllerLocked(name string) bool {
	e := d.ctrls[name]
	delete(d.ctrls, name)
	if e != nil && d.byDev[e.ctrl.Dev] == name {
		delete(d.byDev, e.ctrl.Dev)
	}
	for _, v := range d.vols {
		if !slices.Contains(v.controllers, name) {
			continue
		}
		// The kernel reuses instance numbers: forget the name, so a new
		// controller called the same is not taken for this one.
		v.controllers = slices.DeleteFunc(slices.Clone(v.controllers), func(c string) bool { return c == name })
		v.lost, v.lostWhy = name, lostReason(e, d.now())
		v.lostRejected = e != nil && e.rejected != ""
		if v.holds() {
			d.log.Warn("controller of a volume vanished", "controller", name, "volume", v.id)
		}
	}
	// The name is gone from sysfs: any ownership record under it is stale,
	// whether it describes the controller the registry last saw or an
	// earlier one that had the same (reused) name.
	if _, ok := d.owned[name]; ok {
		delete(d.owned, name)
		return true
	}
	return false
}
