package kmsg

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/srvlab/rds-csi/sysfs"
)

// DefaultPath is the kernel log device.
const DefaultPath = "/dev/kmsg"

// BufSize is the read buffer: one read(2) of /dev/kmsg returns exactly
// one record, header, text and dictionary, at most CONSOLE_EXT_LOG_MAX
// (8 KiB) long; a smaller buffer gets EINVAL and no progress.
const BufSize = 8 << 10

// MaxAttempt bounds a parsed reconnect attempt number (the kernel's is an
// int; anything larger is not a count).
const MaxAttempt = 1 << 30

// Record is one /dev/kmsg record: "prio,seq,ts_usec,flags[,...];text"
// followed by dictionary lines " KEY=value" (Documentation/ABI/testing/dev-kmsg).
type Record struct {
	Prio    uint32 // facility<<3 | level
	Seq     uint64 // 64-bit sequence number; a jump means records were lost
	TSUsec  uint64 // microseconds since boot (monotonic)
	Flags   string // "-", "c" or "+"
	Message string // the text, \xNN escapes decoded
	Dict    map[string]string
}

// ErrLost: the errno a Read of the kernel log fails with when records
// were overwritten before they were read (EPIPE); reading goes on with the
// oldest record still there. Match it with errors.Is.
var ErrLost error = syscall.EPIPE

// ErrMalformed: a read that is not a kmsg record (Parse's errors wrap it).
var ErrMalformed = errors.New("kmsg: malformed record")

// Parse parses one record as read(2) returns it. Fields after the
// fourth in the header (newer kernels add "caller=T123") are ignored, and
// so are lines that are neither the first nor a " KEY=value" dictionary
// line. Escapes (\xNN) in the text and the dictionary values are decoded;
// a backslash that starts no valid escape is kept as it is.
func Parse(b []byte) (Record, error) {
	first, rest, _ := bytes.Cut(b, []byte{'\n'})
	header, text, ok := bytes.Cut(first, []byte{';'})
	if !ok {
		return Record{}, fmt.Errorf("%w: no ';' after the header: %.80q", ErrMalformed, first)
	}
	fields := strings.SplitN(string(header), ",", 5)
	if len(fields) < 4 {
		return Record{}, fmt.Errorf("%w: header %.80q has %d fields, want at least 4", ErrMalformed, header, len(fields))
	}
	prio, err := strconv.ParseUint(fields[0], 10, 32)
	if err != nil {
		return Record{}, fmt.Errorf("%w: priority %.20q: %w", ErrMalformed, fields[0], err)
	}
	seq, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return Record{}, fmt.Errorf("%w: sequence %.30q: %w", ErrMalformed, fields[1], err)
	}
	ts, err := strconv.ParseUint(fields[2], 10, 64)
	if err != nil {
		return Record{}, fmt.Errorf("%w: timestamp %.30q: %w", ErrMalformed, fields[2], err)
	}
	r := Record{Prio: uint32(prio), Seq: seq, TSUsec: ts, Flags: fields[3], Message: unescape(text)}
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
		r.Dict[string(k)] = unescape(v)
	}
	return r, nil
}

// unescape decodes the kernel's \xNN escapes (it escapes control
// characters, bytes >= 0x7f and the backslash itself).
func unescape(b []byte) string {
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

// Device returns the character device a record's dictionary names
// (DEVICE=cMAJ:MIN, as dev_printk adds it).
func Device(r *Record) (sysfs.DevNum, bool) {
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

// Kind is what an NVMe controller record says, as far as a reader of
// controller states cares; texts differ between kernels, and unknown texts
// are Other.
type Kind uint8

const (
	Other         Kind = iota // any other text
	ErrorRecovery             // "starting error recovery": an outage begins
	Reconnecting              // "Reconnecting in 1 seconds..."
	ReconnectFail             // "Failed reconnect attempt 3/-1" (6.12), "... attempt 3" (6.1)
	Reconnected               // "Successfully reconnected (attempt 3/-1)" (6.12), "(3 attempt)" (6.1)
	NewCtrl                   // "new ctrl: NQN \"...\", addr ..."
	// HostRejected: "Connect for subsystem <nqn> is not allowed, hostnqn:
	// <nqn>": the target refuses this host (its allow list; NVMe status
	// CONNECT_INVALID_HOST), logged at every refused (re)connect.
	HostRejected
)

func (k Kind) String() string {
	switch k {
	case ErrorRecovery:
		return "error-recovery"
	case Reconnecting:
		return "reconnecting"
	case ReconnectFail:
		return "reconnect-failed"
	case Reconnected:
		return "reconnected"
	case NewCtrl:
		return "new-ctrl"
	case HostRejected:
		return "host-rejected"
	}
	return "other"
}

// Event is a classified NVMe record.
type Event struct {
	Ctrl    string // from the "nvme nvmeN: " prefix; "" without one
	Kind    Kind
	Attempt int // for ReconnectFail and Reconnected; 0 when not given
	// SubsysNQN is the subsystem a HostRejected record names.
	SubsysNQN string
}

var (
	reFailedAttempt = regexp.MustCompile(`(?i)\bfailed reconnect attempt (\d+)`)
	reReconnected   = regexp.MustCompile(`(?i)\bsuccessfully reconnected\b(?: \((?:attempt (\d+)|(\d+) attempts?)\b)?`)
	reReconnecting  = regexp.MustCompile(`(?i)\breconnecting in \d+ seconds?`)
	reErrorRecovery = regexp.MustCompile(`(?i)\bstarting error recovery\b`)
	reNewCtrl       = regexp.MustCompile(`(?i)\bnew ctrl: NQN\b`)
	reHostRejected  = regexp.MustCompile(`(?i)\bconnect for subsystem (\S+) is not allowed, hostnqn: \S+`)
)

// Classify reads an NVMe record's text. It never fails: a text it does
// not know is Other (still a reason to re-read the controller).
func Classify(msg string) Event {
	var ev Event
	if m := ctrlPrefix.FindStringSubmatch(msg); m != nil {
		ev.Ctrl = m[1]
		msg = msg[len(m[0]):]
	}
	switch {
	case reErrorRecovery.MatchString(msg):
		ev.Kind = ErrorRecovery
	case reReconnecting.MatchString(msg):
		ev.Kind = Reconnecting
	case reNewCtrl.MatchString(msg):
		ev.Kind = NewCtrl
	case reHostRejected.MatchString(msg):
		ev.Kind = HostRejected
		ev.SubsysNQN = reHostRejected.FindStringSubmatch(msg)[1]
	default:
		if m := reFailedAttempt.FindStringSubmatch(msg); m != nil {
			ev.Kind, ev.Attempt = ReconnectFail, attemptNumber(m[1])
		} else if m := reReconnected.FindStringSubmatch(msg); m != nil {
			ev.Kind, ev.Attempt = Reconnected, attemptNumber(m[1]+m[2])
		}
	}
	return ev
}

// attemptNumber parses a decimal attempt count; 0 when it is not one.
func attemptNumber(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > MaxAttempt {
		return 0
	}
	return n
}
