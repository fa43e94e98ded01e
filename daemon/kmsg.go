package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/internal/kmsg"
	"github.com/srvlab/rds-csi/sysfs"
)

// This file is the kernel log trigger: a reader of /dev/kmsg that turns
// every record about a known NVMe controller into an immediate re-read of
// that controller's state (the same level-triggered path the poller uses),
// and that keeps the reconnect attempt number, which sysfs does not expose.
// Opening, parsing and classifying records is package kmsg's.

// DefaultKmsgPath is the kernel log device.
const DefaultKmsgPath = kmsg.DefaultPath

// startKmsg opens the kernel log and starts its reader, or logs (once) that
// controller faults are detected by polling. It runs under lifeMu, from
// goLoop.
func (d *Daemon) startKmsg(ctx context.Context) {
	if d.cfg.NoKmsg {
		d.log.Info("kernel log trigger disabled; controller faults are detected by uevents and polling",
			"poll_interval", d.cfg.PollInterval)
		return
	}
	src, err := d.cfg.openKmsg(d.cfg.KmsgPath)
	if err != nil {
		reason := "open failed"
		switch {
		case errors.Is(err, fs.ErrPermission):
			reason = "no permission (needs CAP_SYSLOG)"
		case errors.Is(err, fs.ErrNotExist):
			reason = "device absent"
		case errors.Is(err, errors.ErrUnsupported):
			reason = "not supported on this platform"
		}
		d.log.Warn("kernel log unavailable; falling back to polling for controller faults",
			"path", d.cfg.KmsgPath, "reason", reason, "poll_interval", d.cfg.PollInterval, "error", err)
		return
	}
	d.counters.kmsgActive.Store(true)
	d.log.Info("kernel log trigger active", "path", d.cfg.KmsgPath)
	d.goFunc(func() { d.readKmsg(ctx, src) })
	d.goFunc(func() { <-ctx.Done(); src.Close() })
}

// readKmsg reads records until the source ends or fails. A sequence gap
// (EPIPE: records overwritten before they were read, or a jump in the
// sequence numbers) is counted and forces a full re-read: a controller
// whose records were lost may have changed state. Malformed reads are
// skipped.
func (d *Daemon) readKmsg(ctx context.Context, src io.Reader) {
	defer d.counters.kmsgActive.Store(false)
	buf := make([]byte, kmsg.BufSize)
	var last uint64
	haveLast := false
	var warned time.Time // the last gap logged at warning level
	gap := func(why string) {
		d.counters.kmsgGaps.Add(1)
		// A flood of kernel messages overruns the buffer again and again:
		// warn once a minute, the counter has the rest.
		level := slog.LevelDebug
		if now := d.now(); now.Sub(warned) >= time.Minute {
			level, warned = slog.LevelWarn, now
		}
		d.log.Log(context.Background(), level, "kernel log records lost; re-reading sysfs in full", "reason", why)
		d.kick(true)
	}
	for {
		n, err := src.Read(buf)
		switch {
		case errors.Is(err, kmsg.ErrLost):
			gap("records overwritten before they were read (EPIPE)")
			haveLast = false // the next record is after the gap
			continue
		case err != nil:
			if ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				d.log.Warn("kernel log read failed; stopping the kernel log trigger, falling back to polling", "error", err)
			}
			return
		case n == 0:
			continue
		}
		rec, err := kmsg.Parse(buf[:n])
		if err != nil {
			d.log.Debug("kernel log record skipped", "error", err)
			continue
		}
		if haveLast && rec.Seq != last+1 {
			gap(fmt.Sprintf("sequence jumped from %d to %d", last, rec.Seq))
		}
		last, haveLast = rec.Seq, true
		d.handleKmsg(&rec)
	}
}

// handleKmsg turns a record about a known NVMe controller into a re-read
// of that controller's state, and keeps its reconnect attempt. A record
// about a device the registry does not know is ignored (a new controller
// comes in through its add uevent or the next full pass), and so is one
// written from user space: the kernel never gives those facility 0.
func (d *Daemon) handleKmsg(rec *kmsg.Record) {
	if rec.Prio>>3 != 0 {
		return
	}
	_, named := rec.Dict["DEVICE"]
	dev, isChar := kmsg.Device(rec)
	switch {
	case named && !isChar:
		return // a block or other device, or a malformed number
	case !named && !strings.HasPrefix(rec.Message, "nvme nvme"):
		return
	}
	if s, ok := rec.Dict["SUBSYSTEM"]; ok && s != "nvme" {
		return
	}
	ev := kmsg.Classify(rec.Message)
	d.mu.Lock()
	name := ev.Ctrl // a record without a dictionary: the text names it
	if named {
		name = d.byDev[dev]
	}
	e := d.ctrls[name]
	if e == nil {
		if ev.Kind == kmsg.HostRejected {
			// The kernel may remove the controller on the refusal before
			// this record is read: the volume it belonged to learns why.
			d.rejectedAfterLossLocked(ev.SubsysNQN, rec.Message)
		}
		d.mu.Unlock()
		return
	}
	switch ev.Kind {
	case kmsg.ReconnectFail:
		if ev.Attempt > 0 {
			e.attempt = ev.Attempt
		}
	case kmsg.ErrorRecovery, kmsg.Reconnected, kmsg.NewCtrl:
		// A new outage starts counting afresh; a reconnect ends it (the
		// transition to live resets it too, whichever is seen first).
		e.attempt, e.rejected = 0, ""
	case kmsg.HostRejected:
		e.rejected = rec.Message
		d.counters.targetRejected.Add(1)
	}
	d.mu.Unlock()
	if ev.Kind == kmsg.HostRejected {
		d.log.Warn("the target refuses this host", "controller", name, "message", rec.Message)
	}
	d.counters.kmsgRecords.Add(1)
	d.log.Debug("kernel log", "controller", name, "kind", ev.Kind.String(), "attempt", ev.Attempt, "message", rec.Message)
	d.kickControllers(name)
}

// indexDevLocked keeps byDev (char device number -> controller name) in
// step with a controller's dev attribute; old is the number the registry
// had for it, zero for none.
func (d *Daemon) indexDevLocked(name string, old, cur sysfs.DevNum) {
	if old != cur && d.byDev[old] == name {
		delete(d.byDev, old)
	}
	if cur != (sysfs.DevNum{}) {
		d.byDev[cur] = name
	}
}

// rejectedAfterLossLocked records a target's refusal of this host on the
// volumes of subsystem nqn whose controller is already gone.
func (d *Daemon) rejectedAfterLossLocked(nqn, msg string) {
	for _, v := range d.vols {
		if v.nqn == nqn && v.lost != "" && !v.lostRejected {
			v.lostRejected = true
			v.lostWhy = "the target refuses this host (" + msg + "); the kernel gave the controller up: its I/O failed"
			d.counters.targetRejected.Add(1)
			d.log.Warn("the target refuses this host", "controller", v.lost, "volume", v.id, "message", msg)
		}
	}
}
