package fabrics

import (
	"cmp"
	"log/slog"
	"math"
	"strconv"
)

type fieldKind uint8

const (
	kindText   fieldKind = iota // key=value
	kindNum                     // key=<decimal>
	kindFlag                    // bare key
	kindSecret                  // key=value, redacted in logs
)

// field is one option of the kernel's table: its key, how to read it from
// Options and how to check it.
type field struct {
	key  string
	kind fieldKind
	// get returns the value to send (text or secret), the number (num) and
	// whether the option is sent at all.
	get   func(o *Options) (text string, num int, present bool)
	check func(o *Options) *OptionError
}

func valText(s string) (string, int, bool)   { return s, 0, s != "" }
func valNum(v OptInt) (string, int, bool)    { n, ok := v.Get(); return "", n, ok }
func valFlag(b bool) (string, int, bool)     { return "", 0, b }
func valSecret(s Secret) (string, int, bool) { return string(s), 0, s != "" }

// fields lists every option in the fixed order of the option string: the
// order of the kernel's own table (drivers/nvme/host/fabrics.c opt_tokens),
// which is also the order /dev/nvme-fabrics lists them in.
var fields = [...]field{
	{key: "transport", kind: kindText,
		get:   func(o *Options) (string, int, bool) { return valText(cmp.Or(o.Transport, DefaultTransport)) },
		check: func(o *Options) *OptionError { return checkTransport(o.Transport) }},
	{key: "traddr", kind: kindText,
		get:   func(o *Options) (string, int, bool) { return valText(CanonicalIP(o.Traddr)) },
		check: func(o *Options) *OptionError { return checkIP("traddr", o.Traddr, true) }},
	{key: "trsvcid", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(Int(cmp.Or(o.Trsvcid, DefaultPort))) },
		check: func(o *Options) *OptionError { return checkPort(o.Trsvcid) }},
	{key: "nqn", kind: kindText,
		get:   func(o *Options) (string, int, bool) { return valText(o.NQN) },
		check: func(o *Options) *OptionError { return checkNQN("nqn", o.NQN, true) }},
	{key: "queue_size", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(o.QueueSize) },
		check: func(o *Options) *OptionError { return checkInt("queue_size", o.QueueSize, 16, 1024, "") }},
	{key: "nr_io_queues", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(o.NrIOQueues) },
		check: func(o *Options) *OptionError { return checkInt("nr_io_queues", o.NrIOQueues, 1, maxQueues, "") }},
	{key: "reconnect_delay", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(o.ReconnectDelay) },
		check: func(o *Options) *OptionError { return checkInt("reconnect_delay", o.ReconnectDelay, 1, maxSeconds, "") }},
	{key: "ctrl_loss_tmo", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(o.CtrlLossTmo) },
		check: func(o *Options) *OptionError { return checkCtrlLossTmo(o.CtrlLossTmo) }},
	{key: "keep_alive_tmo", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(o.KeepAliveTmo) },
		check: func(o *Options) *OptionError { return checkInt("keep_alive_tmo", o.KeepAliveTmo, 0, maxSeconds, "") }},
	{key: "hostnqn", kind: kindText,
		get:   func(o *Options) (string, int, bool) { return valText(o.HostNQN) },
		check: func(o *Options) *OptionError { return checkNQN("hostnqn", o.HostNQN, false) }},
	{key: "host_traddr", kind: kindText,
		get:   func(o *Options) (string, int, bool) { return valText(CanonicalIP(o.HostTraddr)) },
		check: func(o *Options) *OptionError { return checkIP("host_traddr", o.HostTraddr, false) }},
	{key: "host_iface", kind: kindText,
		get:   func(o *Options) (string, int, bool) { return valText(o.HostIface) },
		check: func(o *Options) *OptionError { return checkIface(o.HostIface) }},
	{key: "hostid", kind: kindText,
		get:   func(o *Options) (string, int, bool) { return valText(o.HostID) },
		check: func(o *Options) *OptionError { return checkUUID("hostid", o.HostID) }},
	{key: "duplicate_connect", kind: kindFlag,
		get:   func(o *Options) (string, int, bool) { return valFlag(o.DuplicateConnect) },
		check: func(*Options) *OptionError { return nil }},
	{key: "disable_sqflow", kind: kindFlag,
		get:   func(o *Options) (string, int, bool) { return valFlag(o.DisableSQFlow) },
		check: func(*Options) *OptionError { return nil }},
	{key: "hdr_digest", kind: kindFlag,
		get:   func(o *Options) (string, int, bool) { return valFlag(o.HdrDigest) },
		check: func(*Options) *OptionError { return nil }},
	{key: "data_digest", kind: kindFlag,
		get:   func(o *Options) (string, int, bool) { return valFlag(o.DataDigest) },
		check: func(*Options) *OptionError { return nil }},
	{key: "nr_write_queues", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(o.NrWriteQueues) },
		check: func(o *Options) *OptionError { return checkInt("nr_write_queues", o.NrWriteQueues, 1, maxQueues, "") }},
	{key: "nr_poll_queues", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(o.NrPollQueues) },
		check: func(o *Options) *OptionError { return checkInt("nr_poll_queues", o.NrPollQueues, 1, maxQueues, "") }},
	{key: "tos", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(o.TOS) },
		check: func(o *Options) *OptionError { return checkInt("tos", o.TOS, 0, 255, "") }},
	{key: "keyring", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(o.Keyring) },
		check: func(o *Options) *OptionError { return checkInt("keyring", o.Keyring, 1, math.MaxInt32, "") }},
	{key: "tls_key", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(o.TLSKey) },
		check: func(o *Options) *OptionError { return checkInt("tls_key", o.TLSKey, 1, math.MaxInt32, "") }},
	{key: "fast_io_fail_tmo", kind: kindNum,
		get:   func(o *Options) (string, int, bool) { return valNum(o.FastIOFailTmo) },
		check: func(o *Options) *OptionError { return checkFastIOFailTmo(o.FastIOFailTmo) }},
	{key: "discovery", kind: kindFlag,
		get:   func(o *Options) (string, int, bool) { return valFlag(o.Discovery) },
		check: func(*Options) *OptionError { return nil }},
	{key: "dhchap_secret", kind: kindSecret,
		get:   func(o *Options) (string, int, bool) { return valSecret(o.DHCHAPSecret) },
		check: func(o *Options) *OptionError { return checkSecret("dhchap_secret", o.DHCHAPSecret) }},
	{key: "dhchap_ctrl_secret", kind: kindSecret,
		get:   func(o *Options) (string, int, bool) { return valSecret(o.DHCHAPCtrlSecret) },
		check: func(o *Options) *OptionError { return checkSecret("dhchap_ctrl_secret", o.DHCHAPCtrlSecret) }},
	{key: "tls", kind: kindFlag,
		get:   func(o *Options) (string, int, bool) { return valFlag(o.TLS) },
		check: func(*Options) *OptionError { return nil }},
	{key: "concat", kind: kindFlag,
		get:   func(o *Options) (string, int, bool) { return valFlag(o.Concat) },
		check: func(*Options) *OptionError { return nil }},
}

// appendOptions appends the option string (without a trailing newline) to b.
// It does not validate: callers validate first. With redact, secret values
// are replaced by "<redacted>".
func (o *Options) appendOptions(b []byte, redact bool) []byte {
	first := true
	for i := range fields {
		f := &fields[i]
		s, n, ok := f.get(o)
		if !ok {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, f.key...)
		switch f.kind {
		case kindText:
			b = append(b, '=')
			b = append(b, s...)
		case kindNum:
			b = append(b, '=')
			b = strconv.AppendInt(b, int64(n), 10)
		case kindSecret:
			b = append(b, '=')
			if redact {
				b = append(b, redacted...)
			} else {
				b = append(b, s...)
			}
		}
	}
	return b
}

// optionString validates o and returns the string to write to the device.
func (o Options) optionString() (string, error) {
	if err := o.Validate(); err != nil {
		return "", err
	}
	return string(o.appendOptions(make([]byte, 0, 512), false)), nil
}

// Redacted returns the option string as it would be written, with secret
// values replaced by "<redacted>": safe for logs. It does not validate.
func (o Options) Redacted() string { return string(o.appendOptions(nil, true)) }

// String returns Redacted.
func (o Options) String() string { return o.Redacted() }

// GoString returns the redacted option string quoted, so %#v cannot leak a
// secret either.
func (o Options) GoString() string { return "fabrics.Options(" + strconv.Quote(o.Redacted()) + ")" }

// LogValue implements slog.LogValuer with the redacted option string.
func (o Options) LogValue() slog.Value { return slog.StringValue(o.Redacted()) }
