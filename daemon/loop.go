package daemon

import (
	"context"
	"errors"
	"strings"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/internal/uevent"
	"github.com/srvlab/rds-csi/sysfs"
)

// kick asks the loop for a re-read (full: every controller, new and
// vanished ones included; otherwise the state of known controllers). It
// never blocks: requests coalesce while a pass is pending.
func (d *Daemon) kick(full bool) {
	if full {
		d.pendingFull.Store(true)
	} else {
		d.pendingAll.Store(true)
	}
	d.signal()
}

// kickControllers asks the loop for a re-read of the state of the named
// controllers only (a kernel log record named them). It never blocks; the
// names accumulate until the next pass, and a pending wider pass covers
// them.
func (d *Daemon) kickControllers(names ...string) {
	d.pendingMu.Lock()
	for _, n := range names {
		d.pendingNames[n] = struct{}{}
	}
	d.pendingMu.Unlock()
	d.signal()
}

func (d *Daemon) signal() {
	select {
	case d.trigger <- struct{}{}:
	default:
	}
}

// consume is the one goroutine that turns triggers into re-reads.
func (d *Daemon) consume(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.trigger:
			full, all := d.pendingFull.Swap(false), d.pendingAll.Swap(false)
			d.pendingMu.Lock()
			var names []string
			for n := range d.pendingNames {
				names = append(names, n)
			}
			clear(d.pendingNames)
			d.pendingMu.Unlock()
			if full || all || len(names) == 0 {
				d.resync(full)
			} else {
				d.pass(false, names)
			}
		}
	}
}

// resync re-reads sysfs, diffs against the registry and records what
// changed: transitions, reconnects, new and vanished controllers. With
// nothing changed it changes nothing (and logs nothing). A state-only pass
// that finds a controller gone, or a connected uevent for an unknown
// controller, turns into a full pass.
func (d *Daemon) resync(full bool) { d.pass(full, nil) }

// pass is resync, with a state-only pass limited to the controllers in only
// when only is not nil.
func (d *Daemon) pass(full bool, only []string) {
	d.scanMu.Lock()
	defer d.scanMu.Unlock()

	d.mu.Lock()
	start := d.mutation
	names := only
	if names == nil {
		names = make([]string, 0, len(d.ctrls))
		for name := range d.ctrls {
			names = append(names, name)
		}
	}
	d.mu.Unlock()

	if !full {
		full = d.pollStates(start, names)
	}
	if full {
		d.rescan(start)
	}
	// Devices may have appeared (or a uevent was lost): let waiters look.
	if d.waiters.any() {
		d.waiters.wakeAll()
	}
}

// pollStates re-reads the state attribute of the known controllers. It
// reports whether a full pass is needed.
func (d *Daemon) pollStates(start uint64, names []string) (needFull bool) {
	d.counters.polls.Add(1)
	type read struct {
		st  sysfs.State
		raw string
	}
	reads := make(map[string]read, len(names))
	for _, name := range names {
		st, raw, err := d.cfg.FS.ControllerState(name)
		if errors.Is(err, sysfs.ErrNotExist) {
			needFull = true
			continue
		}
		if err != nil {
			d.log.Warn("controller state not read", "controller", name, "error", err)
			continue
		}
		if raw == "" {
			continue // torn read of a file being rewritten (test trees): no information
		}
		reads[name] = read{st, raw}
	}
	now := d.now()
	var evs []event
	d.mu.Lock()
	for name, r := range reads {
		e := d.ctrls[name]
		if e == nil || d.touched[name] > start {
			continue
		}
		d.setStateLocked(e, r.st, r.raw, now, &evs)
	}
	if d.connectedPendingLocked(&evs) {
		needFull = true
	}
	// Controllers read before their first connect completed that are live
	// now: read them again, for what they lacked then.
	var reread []string
	for name, e := range d.ctrls {
		if e.halfBorn() && e.ctrl.State.Live() {
			reread = append(reread, name)
		}
	}
	d.pruneTouchedLocked(start)
	d.mu.Unlock()
	d.emit(evs)
	d.rereadControllers(start, reread)
	return needFull
}

// rereadControllers reads the named controllers in full and applies what
// it finds, unless the registry changed them since start. One that is gone
// is left to the next full pass.
func (d *Daemon) rereadControllers(start uint64, names []string) {
	if len(names) == 0 {
		return
	}
	read := make([]sysfs.Controller, 0, len(names))
	for _, name := range names {
		c, err := d.cfg.FS.Controller(name)
		if err != nil {
			if !errors.Is(err, sysfs.ErrNotExist) {
				d.log.Warn("controller not re-read", "controller", name, "error", err)
			}
			continue
		}
		read = append(read, c)
	}
	now := d.now()
	var evs []event
	d.mu.Lock()
	for _, c := range read {
		if d.ctrls[c.Name] == nil || d.touched[c.Name] > start {
			continue
		}
		d.observeLocked(c, now, true, &evs)
	}
	d.mu.Unlock()
	d.emit(evs)
}

// rescan re-reads every controller: what identifies its connection and its
// timeouts (sysfs.FS.ControllerConnections), not its disks or identify
// strings, which the registry does not use.
func (d *Daemon) rescan(start uint64) {
	d.counters.resyncs.Add(1)
	d.obs.Resync()
	ctrls, err := d.cfg.FS.ControllerConnections()
	if err != nil {
		d.log.Warn("controllers not read", "error", err)
		return
	}
	now := d.now()
	var evs []event
	seen := make(map[string]bool, len(ctrls))
	persist := false
	d.mu.Lock()
	for _, c := range ctrls {
		seen[c.Name] = true
		if d.touched[c.Name] > start {
			continue
		}
		if _, known := d.ctrls[c.Name]; !known {
			d.log.Info("controller appeared", "controller", c.Name, "state", c.StateRaw,
				"subsysnqn", c.SubsysNQN, "target", fabrics.HostPort(c.Address.Traddr, c.Address.Trsvcid))
		}
		d.observeLocked(c, now, true, &evs)
	}
	for name := range d.ctrls {
		if seen[name] || d.touched[name] > start {
			continue
		}
		d.log.Info("controller vanished", "controller", name)
		persist = d.removeControllerLocked(name) || persist
	}
	d.connectedPendingLocked(&evs)
	// Connected uevents for controllers that no longer exist: drop them.
	for name, n := range d.pendingConnected {
		if n > 0 && d.ctrls[name] == nil {
			delete(d.pendingConnected, name)
		}
	}
	d.pruneTouchedLocked(start)
	persist = persist || d.ownersDirty
	d.ownersDirty = false
	d.mu.Unlock()
	d.emit(evs)
	if persist {
		d.persistLogged()
	}
}

// connectedPendingLocked moves queued NVME_EVENT=connected uevents onto
// their controllers and accounts for them. It reports whether one names a
// controller the registry does not know (a full pass will pick it up).
func (d *Daemon) connectedPendingLocked(evs *[]event) (unknown bool) {
	for name, n := range d.pendingConnected {
		e := d.ctrls[name]
		if e == nil {
			unknown = true
			continue
		}
		delete(d.pendingConnected, name)
		e.connected += n
		d.connectedLocked(e, evs)
	}
	return unknown
}

func (d *Daemon) pruneTouchedLocked(start uint64) {
	for name, m := range d.touched {
		if m <= start {
			delete(d.touched, name)
		}
	}
}

// relevant filters uevents: nvme controllers, nvme subsystems and nvme*
// block devices.
func relevant(ev *uevent.Event) bool {
	switch ev.Subsystem {
	case "nvme", "nvme-subsystem":
		return true
	case "block":
		return strings.HasPrefix(ev.DevName, "nvme")
	}
	return false
}

// readUEvents feeds uevents into the loop until the source closes.
func (d *Daemon) readUEvents(ctx context.Context, src uevent.Source) {
	for {
		ev, err := src.Read()
		switch {
		case errors.Is(err, uevent.ErrClosed):
			return
		case errors.Is(err, uevent.ErrOverflow):
			d.overflow()
			continue
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			d.log.Warn("uevent read failed; stopping uevents, relying on polling", "error", err)
			return
		}
		if !relevant(&ev) {
			continue
		}
		d.counters.uevents.Add(1)
		d.obs.UEvent()
		d.handleUEvent(&ev)
	}
}

// overflow handles a lost-events signal: count it and re-read everything.
// Connected uevents may have been lost too, so none is expected any more.
func (d *Daemon) overflow() {
	d.counters.ueventOverflows.Add(1)
	d.obs.UEventOverflow()
	d.log.Warn("uevent socket overflowed; re-reading sysfs in full")
	d.mu.Lock()
	for _, e := range d.ctrls {
		e.expectUEvent = false
	}
	d.mu.Unlock()
	d.kick(true)
}

// handleUEvent turns one relevant uevent into triggers.
func (d *Daemon) handleUEvent(ev *uevent.Event) {
	switch ev.Subsystem {
	case "nvme":
		name := ev.DevName
		if name == "" {
			name = ev.DevPath[strings.LastIndexByte(ev.DevPath, '/')+1:]
		}
		switch ev.Action {
		case "add", "remove":
			d.kick(true)
		case "change":
			if ev.Env["NVME_EVENT"] == "connected" {
				d.mu.Lock()
				d.pendingConnected[name]++
				d.mu.Unlock()
			}
			d.kick(false)
		default:
			d.kick(false)
		}
	case "nvme-subsystem":
		d.kick(true)
	case "block":
		if ev.Action == "add" {
			d.waiters.wakeAll()
		}
		d.kick(ev.Action != "change")
	}
}
