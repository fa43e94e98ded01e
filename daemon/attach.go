package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
	"k8s.io/apimachinery/pkg/util/wait"
)

// specFromKey rebuilds the identity part of a spec (no timeouts, no
// secrets) for a volume restored from the state file.
func specFromKey(id string, k connKey, nsid uint32, port int) Spec {
	return Spec{
		VolumeID: id,
		NSID:     nsid,
		Options: fabrics.Options{
			Transport: k.transport, Traddr: k.traddr, Trsvcid: port, NQN: k.nqn,
			HostNQN: k.hostNQN, HostTraddr: k.hostTraddr, HostIface: k.hostIface,
		},
	}
}

// Attach makes the volume's namespace available: it reuses a controller
// the registry has for the same (subsystem NQN, traddr, trsvcid, host NQN,
// host_traddr, host_iface), or connects one (retrying unreachable targets
// with backoff, at most Config.MaxConcurrentConnects connects at a time
// node-wide, adopting an identical controller on EALREADY), records
// ownership in the state file, brings the controller's timeouts in line with
// the spec, and waits for the namespace's block device.
//
// Concurrent calls for one volume id, or for one connection, are
// serialised; waiting for that gives up when ctx ends. The volume holds its
// controller from the start of Attach until Detach (or until this Attach
// fails), so cleanup does not take it away. A failure is remembered for
// VolumeHealth. A controller created by a failed Attach (the device did not
// appear) is left connected: a retried Attach reuses it, and orphan cleanup
// removes it after the grace period otherwise.
func (d *Daemon) Attach(ctx context.Context, spec Spec) (Attachment, error) {
	if !d.Ready() {
		return Attachment{}, ErrNotReady
	}
	if spec.VolumeID == "" {
		return Attachment{}, fmt.Errorf("daemon: attach: empty volume id: %w", fabrics.ErrInvalidOption)
	}
	if spec.NSID == 0 {
		spec.NSID = 1
	}
	if err := spec.Options.Validate(); err != nil {
		return Attachment{}, err
	}
	key := keyOf(&spec.Options)
	unlockVol, err := d.locks.lock(ctx, "volume:"+spec.VolumeID)
	if err != nil {
		return Attachment{}, fmt.Errorf("daemon: attach %s: waiting for another operation on the volume: %w", spec.VolumeID, err)
	}
	defer unlockVol()
	unlockKey, err := d.locks.lock(ctx, "conn:"+key.String())
	if err != nil {
		return Attachment{}, fmt.Errorf("daemon: attach %s: waiting for another operation on %s: %w", spec.VolumeID, hostPort(key.traddr, key.trsvcid), err)
	}
	defer unlockKey()

	if err := d.beginAttach(spec, key); err != nil {
		return Attachment{}, err
	}
	att, err := d.attach(ctx, spec, key)
	d.endAttach(spec.VolumeID, att, err)
	return att, err
}

// beginAttach enters the volume in the registry as attaching.
func (d *Daemon) beginAttach(spec Spec, key connKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.vols[spec.VolumeID]
	if v != nil && v.state == VolumeStaged && (v.nqn != spec.Options.NQN || v.nsid != spec.NSID) {
		return fmt.Errorf("%w: %s is staged as namespace %d of %s, asked for namespace %d of %s",
			ErrConflict, spec.VolumeID, v.nsid, v.nqn, spec.NSID, spec.Options.NQN)
	}
	if v == nil {
		v = &volEntry{id: spec.VolumeID}
		d.vols[spec.VolumeID] = v
	}
	v.spec, v.key, v.nqn, v.nsid = spec, key, spec.Options.NQN, spec.NSID
	if v.state != VolumeStaged {
		v.state = VolumeAttaching
	}
	return nil
}

// endAttach records the outcome of attach.
func (d *Daemon) endAttach(id string, att Attachment, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.vols[id]
	if v == nil {
		return
	}
	if err != nil {
		v.failure = &failure{reason: failureReason(err), message: err.Error(), at: d.now()}
		if v.state != VolumeStaged {
			v.state = VolumeFailed
			d.unreferencedLocked(v.controllers)
		}
		return
	}
	v.failure = nil
	v.ns, v.device = att.Namespace, att.Device
	if v.state != VolumeStaged {
		v.state = VolumeAttached
	}
}

// unreferencedLocked starts the grace clock of owned controllers among names
// that nothing references any more.
func (d *Daemon) unreferencedLocked(names []string) {
	now := d.now()
	for _, name := range names {
		e := d.ctrls[name]
		if e != nil && e.unrefSince.IsZero() && d.ownedLocked(e) && !d.referencedLocked(name) {
			e.unrefSince = now
		}
	}
}

// attach does the work of Attach under the volume and connection locks.
func (d *Daemon) attach(ctx context.Context, spec Spec, key connKey) (att Attachment, err error) {
	var timing AttachTiming
	defer func() { att.Timing = timing }()
	sc, adopted, created, err := d.findOrConnect(ctx, spec, key, &timing)
	if err != nil {
		return Attachment{}, err
	}
	att = Attachment{Controller: sc.Name, Adopted: adopted}

	// Hold the controller and record ownership before anything else can
	// fail, so neither cleanup nor a restart loses track of it.
	now := d.now()
	d.mu.Lock()
	v := d.vols[spec.VolumeID]
	v.controllers = []string{sc.Name}
	v.lost = ""
	e := d.ctrls[sc.Name]
	if e == nil { // a re-read raced with us and saw it vanish
		var evs []event
		e = d.observeLocked(sc, now, true, &evs)
		d.touchLocked(sc.Name)
	}
	e.unrefSince, e.orphanNoted = time.Time{}, false
	newOwner := false
	if !d.ownedLocked(e) && (created || (spec.Options.HostNQN != "" && sc.HostNQN == spec.Options.HostNQN)) {
		d.owned[sc.Name] = ownerOf(&sc, now)
		newOwner = true
	}
	owned := d.ownedLocked(e)
	d.mu.Unlock()
	if newOwner {
		persistStart := time.Now()
		err := d.persist()
		timing.StateFile += time.Since(persistStart)
		if err != nil {
			return att, err
		}
	}
	d.log.Info("controller for volume", "volume", spec.VolumeID, "controller", sc.Name,
		"created", created, "adopted", adopted, "owned", owned, "state", sc.StateRaw)

	if !created {
		updated, err := d.alignTimeouts(spec, sc)
		if err != nil {
			return att, err
		}
		att.TimeoutsUpdated = updated
	}

	waitStart := time.Now()
	ns, err := d.waitDevice(ctx, spec.Options.NQN, spec.NSID)
	timing.Device = time.Since(waitStart)
	if err != nil {
		return att, err
	}
	att.Namespace, att.Device = ns, ns.DevPath()
	return att, nil
}

// findOrConnect returns the controller for key: one the registry knows (and
// sysfs confirms), else a new or adopted one from a connect. created says
// this call made it.
func (d *Daemon) findOrConnect(ctx context.Context, spec Spec, key connKey, timing *AttachTiming) (sc sysfs.Controller, adopted, created bool, err error) {
	forgot := false
	defer func() {
		if forgot {
			if perr := d.persist(); perr != nil {
				d.log.Error("state file not updated", "error", perr)
			}
		}
	}()
	for {
		d.mu.Lock()
		e := d.findControllerLocked(key)
		var name string
		if e != nil {
			name = e.ctrl.Name
		}
		d.mu.Unlock()
		if e == nil {
			break
		}
		c, err := d.readController(name)
		if err == nil && key.matches(&c) {
			d.register(c)
			return c, true, false, nil
		}
		if err != nil && !errors.Is(err, sysfs.ErrNotExist) {
			return sysfs.Controller{}, false, false, fmt.Errorf("daemon: read %s: %w", name, err)
		}
		// Gone or changed since the last re-read: forget it and look again.
		d.mu.Lock()
		forgot = d.removeControllerLocked(name) || forgot
		d.touchLocked(name)
		d.mu.Unlock()
	}

	fc, err := d.connect(ctx, spec, timing)
	if err != nil {
		return sysfs.Controller{}, false, false, err
	}
	readStart := time.Now()
	c, err := d.readController(fc.Name)
	timing.SysfsRead += time.Since(readStart)
	if err != nil {
		return sysfs.Controller{}, false, false, fmt.Errorf("daemon: %s connected but cannot be read: %w", fc.Name, err)
	}
	d.register(c)
	return c, fc.Adopted, !fc.Adopted, nil
}

// register enters a controller read outside the loop into the registry.
func (d *Daemon) register(c sysfs.Controller) {
	var evs []event
	d.mu.Lock()
	d.observeLocked(c, d.now(), true, &evs)
	d.touchLocked(c.Name)
	d.mu.Unlock()
	d.emit(evs)
}

// rejectedAttempts is how many connect writes an EIO ("rejected") gets.
// The kernel answers EIO both when the target refuses the host or the NQN
// and when the Fabrics Connect command itself times out (measured in the
// lab: 64 connects at once on an overloaded 6.1 guest logged "queue 0:
// timeout request" and failed one write with EIO). A refusal repeats at
// once and costs two short backoffs before it is reported; a timeout
// usually succeeds on the next write.
const rejectedAttempts = 3

// connect runs connect writes with exponential backoff while the error is
// retryable (fabrics.Retryable, and EIO up to rejectedAttempts writes),
// bounded by ctx and the backoff's steps.
// Each write holds one of the node-wide connect slots. timing gets the
// time spent in writes and the rest (backoff, waiting for a slot).
func (d *Daemon) connect(ctx context.Context, spec Spec, timing *AttachTiming) (fabrics.Controller, error) {
	var (
		out      fabrics.Controller
		last     error
		attempts int
	)
	begin := time.Now()
	defer func() {
		timing.Attempts = attempts
		timing.Backoff = time.Since(begin) - timing.ConnectWrite
	}()
	err := wait.ExponentialBackoffWithContext(ctx, *d.cfg.backoff, func(ctx context.Context) (bool, error) {
		select {
		case d.connSem <- struct{}{}:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		attempts++
		start := time.Now()
		c, err := d.conn.Connect(ctx, spec.Options)
		took := time.Since(start)
		<-d.connSem
		timing.ConnectWrite += took
		d.recordConnect(err, took)
		if err == nil {
			out = c
			return true, nil
		}
		last = err
		if fabrics.Retryable(err) || (errors.Is(err, fabrics.ErrRejected) && attempts < rejectedAttempts) {
			d.log.Warn("connect failed; will retry", "volume", spec.VolumeID, "options", spec.Options,
				"attempt", attempts, "error", err)
			return false, nil
		}
		return false, err
	})
	switch {
	case err == nil:
		return out, nil
	case last != nil && errors.Is(err, last):
		return fabrics.Controller{}, err
	case last != nil && wait.Interrupted(err) && ctx.Err() == nil:
		return fabrics.Controller{}, fmt.Errorf("daemon: connect gave up after %d attempts: %w", attempts, last)
	case last != nil:
		return fabrics.Controller{}, fmt.Errorf("daemon: connect: %w after %d attempts; last error: %w", err, attempts, last)
	}
	return fabrics.Controller{}, fmt.Errorf("daemon: connect: %w", err)
}

// alignTimeouts updates an existing controller's timeouts where they differ
// from the spec. It reports whether it changed anything.
func (d *Daemon) alignTimeouts(spec Spec, c sysfs.Controller) (bool, error) {
	t, ok := timeoutsToUpdate(&spec.Options, &c)
	if !ok {
		return false, nil
	}
	d.log.Info("updating the timeouts of an existing controller", "controller", c.Name, "volume", spec.VolumeID,
		"reconnect_delay", fmt.Sprintf("%d -> %v", c.ReconnectDelay, t.ReconnectDelay),
		"ctrl_loss_tmo", fmt.Sprintf("%d -> %v", c.CtrlLossTmo, t.CtrlLossTmo),
		"fast_io_fail_tmo", fmt.Sprintf("%d -> %v", c.FastIOFailTmo, t.FastIOFailTmo))
	if err := d.conn.UpdateTimeouts(c.Name, t); err != nil {
		return false, fmt.Errorf("daemon: update timeouts of %s: %w", c.Name, err)
	}
	if fresh, err := d.readController(c.Name); err == nil {
		d.register(fresh)
	}
	return true, nil
}

// timeoutsToUpdate compares the spec's timeouts with a controller's. The
// kernel stores ctrl_loss_tmo as ceil(tmo/reconnect_delay) attempts and
// shows attempts*reconnect_delay, so that is what is compared. When only
// reconnect_delay is to change, the current ctrl_loss_tmo is written again
// so the effective timeout stays.
func timeoutsToUpdate(o *fabrics.Options, c *sysfs.Controller) (fabrics.Timeouts, bool) {
	delay := c.ReconnectDelay
	differ := false
	if rd, ok := o.ReconnectDelay.Get(); ok {
		differ = differ || rd != c.ReconnectDelay
		delay = rd
	}
	if cl, ok := o.CtrlLossTmo.Get(); ok {
		differ = differ || shownCtrlLossTmo(cl, delay) != c.CtrlLossTmo
	}
	if ff, ok := o.FastIOFailTmo.Get(); ok {
		if ff < 0 {
			ff = -1
		}
		differ = differ || ff != c.FastIOFailTmo
	}
	if !differ {
		return fabrics.Timeouts{}, false
	}
	t := fabrics.Timeouts{ReconnectDelay: o.ReconnectDelay, CtrlLossTmo: o.CtrlLossTmo, FastIOFailTmo: o.FastIOFailTmo}
	if t.ReconnectDelay.IsSet() && !t.CtrlLossTmo.IsSet() {
		t.CtrlLossTmo = fabrics.Int(c.CtrlLossTmo)
	}
	return t, true
}

// shownCtrlLossTmo is what the ctrl_loss_tmo attribute shows after tmo was
// set with reconnect_delay delay (-1 for "off").
func shownCtrlLossTmo(tmo, delay int) int {
	switch {
	case tmo < 0:
		return -1
	case tmo == 0 || delay <= 0:
		return tmo
	}
	return (tmo + delay - 1) / delay * delay
}

// failureReason maps an Attach error to a CamelCase reason for health.
func failureReason(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{ErrDeviceTimeout, "DeviceNotFound"},
		{ErrConflict, "VolumeConflict"},
		{fabrics.ErrRejected, "TargetRejected"},
		{fabrics.ErrUnreachable, "TargetUnreachable"},
		{fabrics.ErrAuth, "AuthenticationFailed"},
		{fabrics.ErrUnsupportedOption, "OptionUnsupported"},
		{fabrics.ErrInvalidOption, "InvalidOption"},
		{fabrics.ErrNoDevice, "HostInterfaceMissing"},
		{fabrics.ErrFabricsUnavailable, "FabricsUnavailable"},
		{fabrics.ErrAlreadyConnected, "AlreadyConnected"},
		{fabrics.ErrControllerGone, "ControllerGone"},
		{fabrics.ErrUnexpectedReply, "UnexpectedKernelReply"},
		{fabrics.ErrUnsupportedPlatform, "UnsupportedPlatform"},
		{context.DeadlineExceeded, "Timeout"},
		{context.Canceled, "Canceled"},
		{fs.ErrPermission, "PermissionDenied"},
	} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "AttachFailed"
}
