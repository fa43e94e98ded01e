package daemon

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
)

// CleanupAction is what one cleanup pass did (or, dry run, would do) about
// one orphan.
type CleanupAction struct {
	Controller string
	Action     string // "waiting", "disconnected", "would-disconnect", "failed"
	Reason     string
	Err        error
}

// cleanup runs one orphan cleanup pass: it re-reads the mount table (so a
// controller under a mounted file system is never taken), starts the grace
// clock of owned controllers that nothing references, and disconnects those
// unreferenced for Config.OrphanGrace (only reports them with
// CleanupDryRun). Controllers the driver does not own are never touched.
func (d *Daemon) cleanup(ctx context.Context) []CleanupAction {
	if err := d.refreshMounts(); err != nil {
		// Without the mount table a mounted volume could look
		// unreferenced: do nothing this time.
		d.log.Error("orphan cleanup skipped: mount table not read", "error", err)
		return nil
	}
	now := d.now()
	grace := d.cfg.OrphanGrace
	var acts []CleanupAction
	var evs []event
	var due []string
	d.mu.Lock()
	refs := d.refsLocked()
	for name := range d.owned {
		e := d.ctrls[name]
		if e == nil || !d.ownedLocked(e) {
			continue
		}
		if refs[name] > 0 {
			e.unrefSince, e.orphanNoted = time.Time{}, false
			continue
		}
		if e.unrefSince.IsZero() {
			e.unrefSince = now
		}
		if !e.orphanNoted {
			e.orphanNoted = true
			d.counters.orphansFound.Add(1)
			evs = append(evs, event{kind: evOrphanFound, ctrl: name})
			d.log.Info("orphan controller found: owned and unreferenced; grace period runs", "controller", name,
				"subsysnqn", e.ctrl.SubsysNQN, "unreferenced_since", e.unrefSince, "grace", grace)
		}
		if age := now.Sub(e.unrefSince); age < grace {
			acts = append(acts, CleanupAction{Controller: name, Action: "waiting",
				Reason: "unreferenced for " + age.Round(time.Second).String() + " of " + grace.String()})
			continue
		}
		due = append(due, name)
	}
	d.mu.Unlock()
	d.emit(evs)
	for _, name := range due {
		acts = append(acts, d.disconnectOrphan(ctx, name, grace))
	}
	return acts
}

// disconnectOrphan disconnects one orphan after checking again, under its
// connection lock, that it is still owned, unreferenced and past its grace.
func (d *Daemon) disconnectOrphan(ctx context.Context, name string, grace time.Duration) CleanupAction {
	d.mu.Lock()
	e := d.ctrls[name]
	if e == nil {
		d.mu.Unlock()
		return CleanupAction{Controller: name, Action: "waiting", Reason: "vanished"}
	}
	key := keyOfController(&e.ctrl)
	d.mu.Unlock()
	unlock, err := d.locks.lock(ctx, "conn:"+key.String())
	if err != nil {
		return CleanupAction{Controller: name, Action: "failed", Reason: "stopping", Err: err}
	}
	defer unlock()
	// The spec's key may leave the host NQN out: take those locks too.
	if key.hostNQN != "" {
		anyHost := key
		anyHost.hostNQN = ""
		unlock2, err := d.locks.lock(ctx, "conn:"+anyHost.String())
		if err != nil {
			return CleanupAction{Controller: name, Action: "failed", Reason: "stopping", Err: err}
		}
		defer unlock2()
	}

	d.mu.Lock()
	e = d.ctrls[name]
	stillDue := e != nil && d.ownedLocked(e) && !d.referencedLocked(name) &&
		!e.unrefSince.IsZero() && d.now().Sub(e.unrefSince) >= grace
	var since time.Time
	if e != nil {
		since = e.unrefSince
	}
	d.mu.Unlock()
	if !stillDue {
		return CleanupAction{Controller: name, Action: "waiting", Reason: "referenced again"}
	}
	reason := "owned and unreferenced since " + since.Format(time.RFC3339)
	mounted, err := d.mountedDisks([]string{name})
	if err != nil {
		d.log.Error("orphan controller not disconnected: mounts unknown", "controller", name, "error", err)
		return CleanupAction{Controller: name, Action: "failed", Reason: reason, Err: err}
	}
	if at := mounted[name]; len(at) > 0 {
		return CleanupAction{Controller: name, Action: "waiting", Reason: "a disk it serves is mounted at " + strings.Join(at, ", ")}
	}
	if d.cfg.CleanupDryRun {
		d.log.Info("dry run: would disconnect orphan controller", "controller", name, "reason", reason)
		return CleanupAction{Controller: name, Action: "would-disconnect", Reason: reason}
	}
	err = d.conn.Disconnect(name)
	if err != nil && !errors.Is(err, fabrics.ErrControllerGone) {
		d.log.Error("orphan controller not disconnected", "controller", name, "reason", reason, "error", err)
		return CleanupAction{Controller: name, Action: "failed", Reason: reason, Err: err}
	}
	d.log.Info("disconnected orphan controller", "controller", name, "reason", reason)
	d.counters.orphansDisconnected.Add(1)
	d.obs.OrphanDisconnected(name)
	d.mu.Lock()
	d.removeControllerLocked(name)
	d.touchLocked(name)
	d.mu.Unlock()
	d.persistLogged()
	return CleanupAction{Controller: name, Action: "disconnected", Reason: reason}
}
