package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
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
			HostNQN: k.hostNQN, HostID: k.hostID, HostTraddr: k.hostTraddr, HostIface: k.hostIface,
		},
	}
}

// Attach makes the volume's namespace available: it reuses a controller
// the registry has for the same (subsystem NQN, traddr, trsvcid, host NQN,
// host_traddr, host_iface), or connects one (retrying unreachable targets
// with backoff, at most Config.MaxConcurrentConnects connects at a time
// node-wide, adopting an identical controller on EALREADY), records in the
// state file a connect intent before the first write and, after it, the
// ownership of a controller it created (a reused or adopted one is borrowed,
// never owned: see Ownership in doc.go), brings the controller's timeouts
// in line with the spec, and waits for the namespace's block device.
//
// A spec with several paths (Spec.Paths) connects every path at once, each
// as above with the same options. Attach returns when one path is connected
// and the block device is there (native multipath makes one device of all
// paths); the other paths keep being connected in the background: each
// path's connect runs the same backoff again, after a pause of the
// backoff's longest step, while its errors are retryable
// (fabrics.Retryable), until it connects, or the volume is detached or
// attached again, or the daemon closes. A failed path is remembered for
// VolumeHealth. Attach fails only when every path failed its first round
// (the error joins theirs). With native multipath off
// (nvme_core.multipath=N) each path would be a block device of its own:
// Attach then connects the first path only and says so
// (Attachment.MultipathOff, a warning, VolumeHealth).
//
// Concurrent calls for one volume id, or for one connection, are
// serialised; waiting for that gives up when ctx ends. The volume holds its
// controllers from the start of Attach until Detach (or until this Attach
// fails), so cleanup does not take them away. A failure is remembered for
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
	if spec.ReconnectSpread < 0 || spec.ReconnectSpread > MaxReconnectSpread {
		return Attachment{}, fmt.Errorf("daemon: attach: reconnect spread %d: want 0..%d seconds: %w",
			spec.ReconnectSpread, MaxReconnectSpread, fabrics.ErrInvalidOption)
	}
	paths, err := checkPaths(&spec)
	if err != nil {
		return Attachment{}, err
	}
	multipathOff := len(paths) > 1 && !d.multipath()
	if multipathOff {
		d.log.Warn("native NVMe multipath is off on this node (nvme_core.multipath=N): connecting the volume's first path only, "+
			"as each path would be a block device of its own", "volume", spec.VolumeID, "paths", len(paths),
			"path", fabrics.HostPort(paths[0].Traddr, strconv.Itoa(cmp.Or(paths[0].Trsvcid, fabrics.DefaultPort))))
		paths = paths[:1]
	}
	unlockVol, err := d.locks.lock(ctx, "volume:"+spec.VolumeID)
	if err != nil {
		return Attachment{}, fmt.Errorf("daemon: attach %s: waiting for another operation on the volume: %w", spec.VolumeID, err)
	}
	defer unlockVol()
	// A new Attach of the volume replaces the background connects of an
	// earlier one.
	d.stopPaths(spec.VolumeID)

	isNew, err := d.beginAttach(spec, paths, multipathOff)
	if err != nil {
		return Attachment{}, err
	}
	var att Attachment
	if len(paths) == 1 {
		att, err = d.attachSingle(ctx, spec, paths[0])
	} else {
		att, err = d.attachMulti(ctx, spec, paths)
	}
	att.NewVolume, att.MultipathOff = isNew, multipathOff
	d.endAttach(spec.VolumeID, att, err)
	return att, err
}

// checkPaths validates the spec's options and paths and returns the connect
// options of every path.
func checkPaths(spec *Spec) ([]fabrics.Options, error) {
	if err := spec.Options.Validate(); err != nil {
		return nil, err
	}
	if len(spec.Paths) > MaxPaths {
		return nil, fmt.Errorf("daemon: attach: %d paths: at most %d: %w", len(spec.Paths), MaxPaths, fabrics.ErrInvalidOption)
	}
	if len(spec.Paths) > 0 {
		p := spec.Paths[0]
		if fabrics.CanonicalIP(p.Traddr) != fabrics.CanonicalIP(spec.Options.Traddr) || p.HostIface != spec.Options.HostIface ||
			fabrics.CanonicalIP(p.HostTraddr) != fabrics.CanonicalIP(spec.Options.HostTraddr) {
			return nil, fmt.Errorf("daemon: attach: the first path (%s, host_traddr %q, host_iface %q) is not the options' address (%s, host_traddr %q, host_iface %q): %w",
				p.Traddr, p.HostTraddr, p.HostIface, spec.Options.Traddr, spec.Options.HostTraddr, spec.Options.HostIface, fabrics.ErrInvalidOption)
		}
	}
	paths := spec.pathOptions()
	seen := map[string]bool{}
	for i := range paths {
		if err := paths[i].Validate(); err != nil {
			return nil, err
		}
		k := keyOf(&paths[i]).String()
		if seen[k] {
			return nil, fmt.Errorf("daemon: attach: path %s named twice: %w", fabrics.HostPort(paths[i].Traddr, strconv.Itoa(cmp.Or(paths[i].Trsvcid, fabrics.DefaultPort))), fabrics.ErrInvalidOption)
		}
		seen[k] = true
	}
	return paths, nil
}

// multipath reports whether native NVMe multipath is on. A parameter that
// cannot be read counts as on (the kernel's default), with a warning.
func (d *Daemon) multipath() bool {
	on, err := d.cfg.FS.Multipath()
	if err != nil {
		d.log.Warn("nvme_core multipath parameter not read; assuming native multipath is on", "error", err)
		return true
	}
	return on
}

// beginAttach enters the volume in the registry as attaching. isNew says
// the volume was not staged (see Attachment.NewVolume).
func (d *Daemon) beginAttach(spec Spec, paths []fabrics.Options, multipathOff bool) (isNew bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.vols[spec.VolumeID]
	if v != nil && v.state == VolumeStaged && (v.nqn != spec.Options.NQN || v.nsid != spec.NSID) {
		return false, fmt.Errorf("%w: %s is staged as namespace %d of %s, asked for namespace %d of %s",
			ErrConflict, spec.VolumeID, v.nsid, v.nqn, spec.NSID, spec.Options.NQN)
	}
	isNew = v == nil || v.state != VolumeStaged
	if v == nil {
		v = &volEntry{id: spec.VolumeID}
		d.vols[spec.VolumeID] = v
	}
	v.spec, v.key, v.nqn, v.nsid = spec, keyOf(&paths[0]), spec.Options.NQN, spec.NSID
	v.keys = v.keys[:0]
	for i := range paths {
		v.keys = append(v.keys, keyOf(&paths[i]))
	}
	v.pathErrs, v.multipathOff, v.pathsAsked, v.connect = nil, multipathOff, max(len(spec.Paths), 1), nil
	if v.state != VolumeStaged {
		v.state = VolumeAttaching
	}
	return isNew, nil
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

// attachSingle attaches a volume through one path: the controller, then
// the block device.
func (d *Daemon) attachSingle(ctx context.Context, spec Spec, o fabrics.Options) (Attachment, error) {
	att, err := d.attachPath(ctx, spec, o)
	if err != nil {
		return att, err
	}
	return d.attachDevice(ctx, spec, att)
}

// attachDevice waits for the volume's block device (after a path is
// connected).
func (d *Daemon) attachDevice(ctx context.Context, spec Spec, att Attachment) (Attachment, error) {
	waitStart := time.Now()
	ns, err := d.waitDevice(ctx, spec.Options.NQN, spec.NSID)
	att.Timing.Device = time.Since(waitStart)
	if err != nil {
		return att, err
	}
	att.Namespace, att.Device = ns, ns.DevPath()
	if err := d.applyIOPolicy(spec, ns); err != nil {
		return att, err
	}
	return att, nil
}

// applyIOPolicy writes the spec's iopolicy to the subsystem whose head is
// ns (nothing for a disk without a subsystem head: multipath off).
func (d *Daemon) applyIOPolicy(spec Spec, ns sysfs.Namespace) error {
	if spec.IOPolicy == "" {
		return nil
	}
	if !strings.HasPrefix(ns.Parent, "nvme-subsys") {
		d.log.Warn("iopolicy not applied: native NVMe multipath is off on this node", "volume", spec.VolumeID, "iopolicy", spec.IOPolicy)
		return nil
	}
	err := d.cfg.FS.SetIOPolicy(ns.Parent, spec.IOPolicy)
	switch {
	case errors.Is(err, sysfs.ErrRefused):
		return fmt.Errorf("daemon: iopolicy %s: %w: the running kernel has no such multipath I/O policy "+
			"(numa and round-robin are in every kernel, queue-depth since Linux 6.11): %w", spec.IOPolicy, fabrics.ErrUnsupportedOption, err)
	case err != nil:
		return fmt.Errorf("daemon: iopolicy %s of %s: %w", spec.IOPolicy, ns.Parent, err)
	}
	d.log.Info("subsystem iopolicy set", "volume", spec.VolumeID, "subsystem", ns.Parent, "iopolicy", spec.IOPolicy)
	return nil
}

// attachPath connects (or finds) the controller of one path of the volume
// under the path's connection lock, records its ownership, enters it among
// the volume's controllers and aligns its timeouts.
func (d *Daemon) attachPath(ctx context.Context, spec Spec, o fabrics.Options) (att Attachment, err error) {
	key := keyOf(&o)
	spec.Options = o
	spread := spreadFor(&spec)
	spec.Options = spreadOptions(spec.Options, spread)
	unlockKey, err := d.locks.lock(ctx, "conn:"+key.String())
	if err != nil {
		return Attachment{}, fmt.Errorf("daemon: attach %s: waiting for another operation on %s: %w", spec.VolumeID, fabrics.HostPort(key.traddr, key.trsvcid), err)
	}
	defer unlockKey()

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
	if v := d.vols[spec.VolumeID]; v != nil {
		if !slices.Contains(v.controllers, sc.Name) {
			v.controllers = append(v.controllers, sc.Name)
		}
		v.lost, v.lostRejected = "", false
		delete(v.pathErrs, key.String())
	}
	e := d.ctrls[sc.Name]
	if e == nil { // a re-read raced with us and saw it vanish
		var evs []event
		e = d.observeLocked(sc, now, true, &evs)
		d.touchLocked(sc.Name)
	}
	e.unrefSince, e.orphanNoted = time.Time{}, false
	if spread.Known() {
		e.spread = spread
	}
	// Owned only if this call's connect write created it; a controller
	// found in the registry or adopted on EALREADY is borrowed, whatever
	// its host NQN. The connect's intent is resolved in the same write.
	newOwner := false
	if created && !d.ownedLocked(e) {
		d.owned[sc.Name] = ownerOf(&sc, now)
		newOwner = true
	}
	_, hadIntent := d.intents[key.String()]
	delete(d.intents, key.String())
	owned := d.ownedLocked(e)
	d.mu.Unlock()
	if newOwner || hadIntent {
		persistStart := time.Now()
		err := d.persist()
		timing.StateFile += time.Since(persistStart)
		if err != nil {
			return att, err
		}
	}
	d.log.Info("controller for volume", "volume", spec.VolumeID, "controller", sc.Name,
		"target", fabrics.HostPort(key.traddr, key.trsvcid),
		"created", created, "adopted", adopted, "owned", owned, "state", sc.StateRaw,
		"reconnect_delay", spec.Options.ReconnectDelay, "reconnect_spread", spread.Offset, "reconnect_spread_bound", spread.Bound)

	if !created {
		updated, err := d.alignTimeouts(spec, sc)
		if err != nil {
			return att, err
		}
		att.TimeoutsUpdated = updated
	}
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

	if err := d.recordIntent(spec.VolumeID, key, timing); err != nil {
		return sysfs.Controller{}, false, false, err
	}
	fc, err := d.connect(ctx, spec, timing)
	if err != nil {
		// An unparsable reply comes after a write the kernel accepted: a
		// controller may exist.
		d.abandonIntent(key, errors.Is(err, fabrics.ErrUnexpectedReply))
		return sysfs.Controller{}, false, false, err
	}
	readStart := time.Now()
	c, err := d.readController(fc.Name)
	timing.SysfsRead += time.Since(readStart)
	if err != nil {
		d.abandonIntent(key, !fc.Adopted)
		return sysfs.Controller{}, false, false, fmt.Errorf("daemon: %s connected but cannot be read: %w", fc.Name, err)
	}
	d.register(c)
	return c, fc.Adopted, !fc.Adopted, nil
}

// recordIntent writes the connect's intent to the state file before the
// connect write (see "Ownership" in doc.go). Without a durable record there
// is no connect.
func (d *Daemon) recordIntent(volume string, key connKey, timing *AttachTiming) error {
	d.mu.Lock()
	d.intents[key.String()] = intentOf(volume, key, d.now())
	d.mu.Unlock()
	start := time.Now()
	err := d.persist()
	timing.StateFile += time.Since(start)
	if err != nil {
		d.mu.Lock()
		delete(d.intents, key.String())
		d.mu.Unlock()
		return fmt.Errorf("daemon: attach %s: not connecting without a durable record of the connect: %w", volume, err)
	}
	return nil
}

// abandonIntent resolves the intent of a connect that gave Attach no
// controller. maybeCreated says the write may have created one all the
// same (the kernel accepted it but its reply did not parse, or the created
// controller could not be read back): sysfs is read and the intent resolved
// as at Start. Otherwise the kernel made nothing and the intent is dropped.
// If sysfs cannot be read the intent stays, for the next Start to resolve.
func (d *Daemon) abandonIntent(key connKey, maybeCreated bool) {
	if maybeCreated {
		ctrls, err := d.cfg.FS.Controllers()
		if err != nil {
			d.log.Error("connect intent left unresolved: sysfs not read", "target", fabrics.HostPort(key.traddr, key.trsvcid),
				"subsysnqn", key.nqn, "error", err)
			return
		}
		for _, c := range ctrls {
			if key.matches(&c) {
				d.register(c)
			}
		}
	}
	d.mu.Lock()
	in, ok := d.intents[key.String()]
	if ok && maybeCreated {
		d.resolveIntentLocked(in, d.now())
	}
	delete(d.intents, key.String())
	d.mu.Unlock()
	if ok {
		d.persistLogged()
	}
}

// resolveIntentLocked turns an unresolved connect intent into ownership:
// the one registry controller with the intent's identity (not being
// deleted, not a discovery controller) becomes owned; with none, or more
// than one (the kernel makes one controller per identity, so another was
// made by someone else, and which is ours cannot be told), nothing does.
// Orphan cleanup starts its grace clock if nothing references it.
func (d *Daemon) resolveIntentLocked(in connectIntent, now time.Time) {
	k := in.key()
	var match []*ctrlEntry
	for _, e := range d.ctrls {
		if k.matches(&e.ctrl) {
			match = append(match, e)
		}
	}
	target := fabrics.HostPort(k.traddr, k.trsvcid)
	if len(match) != 1 {
		d.log.Info("connect intent dropped: no controller that is certainly ours", "volume", in.Volume,
			"subsysnqn", k.nqn, "target", target, "matching", len(match), "intent_since", in.Since)
		return
	}
	e := match[0]
	if !d.ownedLocked(e) {
		d.owned[e.ctrl.Name] = ownerOf(&e.ctrl, now)
	}
	d.log.Info("connect intent resolved: the controller it made is owned", "volume", in.Volume,
		"controller", e.ctrl.Name, "subsysnqn", k.nqn, "target", target, "intent_since", in.Since)
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
	d.rereadChanged(c.Name)
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
