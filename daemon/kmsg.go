package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/srvlab/rds-csi/sysfs"
)

// This file is the kernel log trigger: a reader of /dev/kmsg that turns
// every record about a known NVMe controller into an immediate re-read of
// that controller's state (the same level-triggered path the poller uses),
// and that keeps the reconnect attempt number, which sysfs does not expose.
// The open is in kmsg_linux.go.

// DefaultKmsgPath is the kernel log device.
const DefaultKmsgPath = "/dev/kmsg"

// kmsgBufSize is the read buffer: one read(2) of /dev/kmsg returns exactly
// one record, header, text and dictionary, at most CONSOLE_EXT_LOG_MAX
// (8 KiB) long; a smaller buffer gets EINVAL and no progress.
const kmsgBufSize = 8 << 10

// maxAttempt bounds a parsed reconnect attempt number (the kernel's is an
// int; anything larger is not a count).
const maxAttempt = 1 << 30

// kmsgRecord is one /dev/kmsg record: "prio,seq,ts_usec,flags[,...];text"
// followed by dictionary lines " KEY=value" (Documentation/ABI/testing/dev-kmsg).
type kmsgRecord struct {
	Prio    uint32 // facility<<3 | level
	Seq     uint64 // 64-bit sequence number; a jump means records were lost
	TSUsec  uint64 // microseconds since boot (monotonic)
	Flags   string // "-", "c" or "+"
	Message string // the text, \xNN escapes decoded
	Dict    map[string]string
}

// errUnsupported: the kernel interface does not exist on this platform
// (the *_others.go stubs return it).
var errUnsupported = errors.New("daemon: not supported on this platform")

// errKmsgRecord: a read that is not a kmsg record.
var errKmsgRecord = errors.New("daemon: malformed kmsg record")

// parseKmsgRecord parses one record as read(2) returns it. Fields after the
// fourth in the header (newer kernels add "caller=T123") are ignored, and
// so are lines that are neither the first nor a " KEY=value" dictionary
// line. Escapes (\xNN) in the text and the dictionary values are decoded;
// a backslash that starts no valid escape is kept as it is.
func parseKmsgRecord(b []byte) (kmsgRecord, error) {
	first, rest, _ := bytes.Cut(b, []byte{'\n'})
	header, text, ok := bytes.Cut(first, []byte{';'})
	if !ok {
		return kmsgRecord{}, fmt.Errorf("%w: no ';' after the header: %.80q", errKmsgRecord, first)
	}
	fields := strings.SplitN(string(header), ",", 5)
	if len(fields) < 4 {
		return kmsgRecord{}, fmt.Errorf("%w: header %.80q has %d fields, want at least 4", errKmsgRecord, header, len(fields))
	}
	prio, err := strconv.ParseUint(fields[0], 10, 32)
	if err != nil {
		return kmsgRecord{}, fmt.Errorf("%w: priority %.20q: %w", errKmsgRecord, fields[0], err)
	}
	seq, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return kmsgRecord{}, fmt.Errorf("%w: sequence %.30q: %w", errKmsgRecord, fields[1], err)
	}
	ts, err := strconv.ParseUint(fields[2], 10, 64)
	if err != nil {
		return kmsgRecord{}, fmt.Errorf("%w: timestamp %.30q: %w", errKmsgRecord, fields[2], err)
	}
	r := kmsgRecord{Prio: uint32(prio), Seq: seq, TSUsec: ts, Flags: fields[3], Message: unescapeKmsg(text)}
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		if len(line) == 0 || line[0] != ' ' {
			continue
		}
		k, v, ok := bytes.Cut(line[1:], []byte{'='})
		if !ok || len(k) == 0 {
			continue
		}
		if r.Dict == nil {
			r.Dict = map[string]string{}
		}
		r.Dict[string(k)] = unescapeKmsg(v)
	}
	return r, nil
}

// unescapeKmsg decodes the kernel's \xNN escapes (it escapes control
// characters, bytes >= 0x7f and the backslash itself).
func unescapeKmsg(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) && b[i+1] == 'x' {
			hi, ok1 := unhex(b[i+2])
			lo, ok2 := unhex(b[i+3])
			if ok1 && ok2 {
				out = append(out, hi<<4|lo)
				i += 3
				continue
			}
		}
		out = append(out, b[i])
	}
	return string(out)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// kmsgDevice returns the character device a record's dictionary names
// (DEVICE=cMAJ:MIN, as dev_printk adds it).
func kmsgDevice(r *kmsgRecord) (sysfs.DevNum, bool) {
	dev, ok := r.Dict["DEVICE"]
	if !ok || len(dev) < 4 || dev[0] != 'c' {
		return sysfs.DevNum{}, false
	}
	maj, minor, ok := strings.Cut(dev[1:], ":")
	if !ok {
		return sysfs.DevNum{}, false
	}
	a, err1 := strconv.ParseUint(maj, 10, 32)
	b, err2 := strconv.ParseUint(minor, 10, 32)
	if err1 != nil || err2 != nil {
		return sysfs.DevNum{}, false
	}
	return sysfs.DevNum{Major: uint32(a), Minor: uint32(b)}, true
}

// ctrlPrefix is dev_printk's prefix for an NVMe controller: "nvme nvme3: ".
var ctrlPrefix = regexp.MustCompile(`^nvme (nvme[0-9]+): `)

// kmsgKind is what an NVMe controller record says, as far as the daemon
// cares; texts differ between kernels, and unknown texts are kmsgOther.
type kmsgKind uint8

const (
	kmsgOther         kmsgKind = iota
	kmsgErrorRecovery          // "starting error recovery": an outage begins
	kmsgReconnecting           // "Reconnecting in 1 seconds..."
	kmsgReconnectFail          // "Failed reconnect attempt 3/-1" (6.12), "... attempt 3" (6.1)
	kmsgReconnected            // "Successfully reconnected (attempt 3/-1)" (6.12), "(3 attempt)" (6.1)
	kmsgNewCtrl                // "new ctrl: NQN \"...\", addr ..."
)

func (k kmsgKind) String() string {
	switch k {
	case kmsgErrorRecovery:
		return "error-recovery"
	case kmsgReconnecting:
		return "reconnecting"
	case kmsgReconnectFail:
		return "reconnect-failed"
	case kmsgReconnected:
		return "reconnected"
	case kmsgNewCtrl:
		return "new-ctrl"
	}
	return "other"
}

// kmsgEvent is a classified NVMe record.
type kmsgEvent struct {
	Ctrl    string // from the "nvme nvmeN: " prefix; "" without one
	Kind    kmsgKind
	Attempt int // for kmsgReconnectFail and kmsgReconnected; 0 when not given
}

var (
	reFailedAttempt = regexp.MustCompile(`(?i)\bfailed reconnect attempt (\d+)`)
	reReconnected   = regexp.MustCompile(`(?i)\bsuccessfully reconnected\b(?: \((?:attempt (\d+)|(\d+) attempts?)\b)?`)
	reReconnecting  = regexp.MustCompile(`(?i)\breconnecting in \d+ seconds?`)
	reErrorRecovery = regexp.MustCompile(`(?i)\bstarting error recovery\b`)
	reNewCtrl       = regexp.MustCompile(`(?i)\bnew ctrl: NQN\b`)
)

// classifyNVMe reads an NVMe record's text. It never fails: a text it does
// not know is kmsgOther (still a reason to re-read the controller).
func classifyNVMe(msg string) kmsgEvent {
	var ev kmsgEvent
	if m := ctrlPrefix.FindStringSubmatch(msg); m != nil {
		ev.Ctrl = m[1]
		msg = msg[len(m[0]):]
	}
	switch {
	case reErrorRecovery.MatchString(msg):
		ev.Kind = kmsgErrorRecovery
	case reReconnecting.MatchString(msg):
		ev.Kind = kmsgReconnecting
	case reNewCtrl.MatchString(msg):
		ev.Kind = kmsgNewCtrl
	default:
		if m := reFailedAttempt.FindStringSubmatch(msg); m != nil {
			ev.Kind, ev.Attempt = kmsgReconnectFail, attemptNumber(m[1])
		} else if m := reReconnected.FindStringSubmatch(msg); m != nil {
			ev.Kind, ev.Attempt = kmsgReconnected, attemptNumber(m[1]+m[2])
		}
	}
	return ev
}

// attemptNumber parses a decimal attempt count; 0 when it is not one.
func attemptNumber(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxAttempt {
		return 0
	}
	return n
}

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
		case errors.Is(err, errUnsupported):
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
	buf := make([]byte, kmsgBufSize)
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
		case errors.Is(err, syscall.EPIPE):
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
		rec, err := parseKmsgRecord(buf[:n])
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
func (d *Daemon) handleKmsg(rec *kmsgRecord) {
	if rec.Prio>>3 != 0 {
		return
	}
	_, named := rec.Dict["DEVICE"]
	dev, isChar := kmsgDevice(rec)
	switch {
	case named && !isChar:
		return // a block or other device, or a malformed number
	case !named && !strings.HasPrefix(rec.Message, "nvme nvme"):
		return
	}
	if s, ok := rec.Dict["SUBSYSTEM"]; ok && s != "nvme" {
		return
	}
	ev := classifyNVMe(rec.Message)
	d.mu.Lock()
	name := ev.Ctrl // a record without a dictionary: the text names it
	if named {
		name = d.byDev[dev]
	}
	e := d.ctrls[name]
	if e == nil {
		d.mu.Unlock()
		return
	}
	switch ev.Kind {
	case kmsgReconnectFail:
		if ev.Attempt > 0 {
			e.attempt = ev.Attempt
		}
	case kmsgErrorRecovery, kmsgReconnected, kmsgNewCtrl:
		// A new outage starts counting afresh; a reconnect ends it (the
		// transition to live resets it too, whichever is seen first).
		e.attempt = 0
	}
	d.mu.Unlock()
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
