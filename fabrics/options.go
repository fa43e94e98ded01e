package fabrics

import (
	"log/slog"
	"strconv"
)

// Defaults this package applies itself (every other unset option is simply
// not sent, and the kernel default applies).
const (
	// DefaultDevicePath is the fabrics control device.
	DefaultDevicePath = "/dev/nvme-fabrics"
	// DefaultTransport is sent when Options.Transport is empty.
	DefaultTransport = "tcp"
	// DefaultPort is sent when Options.Trsvcid is 0. The kernel's own default
	// for a missing trsvcid is the discovery port 8009, so a port is always
	// sent.
	DefaultPort = 4420
	// DiscoveryNQN is the well-known NQN of discovery controllers.
	DiscoveryNQN = "nqn.2014-08.org.nvmexpress.discovery"
)

// OptInt is an optional integer option. The zero value is unset: the option
// is not sent and the kernel default applies. Build set values with Int.
type OptInt struct {
	v   int
	set bool
}

// Int returns a set OptInt holding v (Int(-1) for ctrl_loss_tmo means
// "reconnect forever").
func Int(v int) OptInt { return OptInt{v: v, set: true} }

// Get returns the value and whether it is set.
func (o OptInt) Get() (int, bool) { return o.v, o.set }

// IsSet reports whether the option is set.
func (o OptInt) IsSet() bool { return o.set }

// Equal reports whether o and p are both unset or both set to the same value.
func (o OptInt) Equal(p OptInt) bool { return o == p }

// String returns the decimal value, or "unset".
func (o OptInt) String() string {
	if !o.set {
		return "unset"
	}
	return strconv.Itoa(o.v)
}

// Secret is a value that must never appear in logs or errors (a DH-HMAC-CHAP
// secret). Its String, GoString, LogValue and MarshalText methods all return
// "<redacted>" (or "" when empty), so fmt, log/slog and encoders cannot leak
// it by accident. Convert with string(s) where the value is really needed.
type Secret string

// String returns "<redacted>" for a non-empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString makes %#v redact too.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler (used by encoding/json).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Options is the option string written to /dev/nvme-fabrics, one field per
// option of the kernel's table. Empty strings, false flags and unset OptInts
// are not sent. Validate checks every rule the package knows; Client.Connect
// calls it before anything is written.
//
// Options has String, GoString and LogValue methods that redact secrets, so
// it can be logged with fmt or log/slog.
type Options struct {
	// Transport: only "tcp" is supported; "" means "tcp".
	Transport string
	// Traddr (required): the target's IPv4 or IPv6 address literal, without
	// a zone. Sent in canonical form (so "FD00:0::1" is sent as "fd00::1"),
	// because the kernel compares addresses as strings when it looks for a
	// duplicate controller.
	Traddr string
	// Trsvcid: the target's TCP port, 1..65535; 0 means DefaultPort (4420).
	// Always sent.
	Trsvcid int
	// NQN (required): the subsystem NQN.
	NQN string
	// HostNQN and HostID identify this host to the target; empty means the
	// kernel's default host. HostID is a UUID. Linux 6.12 refuses (EINVAL) a
	// HostNQN other than the default without a HostID, and a HostID already
	// used with another HostNQN.
	HostNQN string
	HostID  string
	// HostTraddr is the source IP address literal (no zone); HostIface the
	// source network interface name (must exist in the caller's network
	// namespace, else ENODEV: ErrNoDevice).
	HostTraddr string
	HostIface  string

	// Timeouts, in seconds. The kernel stores CtrlLossTmo as
	// ceil(CtrlLossTmo/ReconnectDelay) reconnect attempts.
	//
	// CtrlLossTmo: -1 (reconnect forever) or 0..2147483647; 0 removes the
	// controller at the first failure. Kernel default 600.
	CtrlLossTmo OptInt
	// ReconnectDelay: 1..2147483. Kernel default 10.
	ReconnectDelay OptInt
	// KeepAliveTmo: 0..2147483; 0 (and the default) means 5 for I/O
	// controllers.
	KeepAliveTmo OptInt
	// FastIOFailTmo: -1 (off, the kernel default) or 0..2147483: fail I/O
	// after that long reconnecting. Must not exceed CtrlLossTmo (or its
	// default 600) unless CtrlLossTmo is -1; the kernel only warns.
	FastIOFailTmo OptInt

	// Queues.
	NrIOQueues    OptInt // 1..65535; the kernel clamps to online CPUs (the default)
	NrWriteQueues OptInt // 1..65535; kernel default 0 (shared read/write queues)
	NrPollQueues  OptInt // 1..65535; kernel default 0
	QueueSize     OptInt // 16..1024; kernel default 128
	TOS           OptInt // IP type of service 0..255; kernel default: the transport's

	// Flags.
	DuplicateConnect bool
	DisableSQFlow    bool
	HdrDigest        bool
	DataDigest       bool
	Discovery        bool // a discovery controller

	// DHCHAPSecret is the host's DH-HMAC-CHAP secret and DHCHAPCtrlSecret
	// the controller's (bidirectional authentication; needs DHCHAPSecret).
	// Syntax: DHHC-1:0[0-3]:<base64 of a 32, 48 or 64 byte key and its
	// CRC-32>:. Linux 6.1 lists these options but has no authentication.
	DHCHAPSecret     Secret
	DHCHAPCtrlSecret Secret

	// TLS requests a TLS connection (Linux 6.12+; the handshake also needs
	// the tlshd daemon). Keyring and TLSKey are kernel key serial numbers
	// (1..2147483647). Concat asks for secure channel concatenation (needs
	// DHCHAPSecret; only on kernels that list "concat").
	TLS     bool
	Keyring OptInt
	TLSKey  OptInt
	Concat  bool
}

// Timeouts are the controller attributes that can be changed on a live
// controller (Client.UpdateTimeouts). Unset fields are not written. Ranges
// are those of Options.
type Timeouts struct {
	ReconnectDelay OptInt
	CtrlLossTmo    OptInt
	FastIOFailTmo  OptInt
}

// Controller identifies a fabrics controller: the directory
// /sys/class/nvme/<Name>.
type Controller struct {
	Name     string // "nvme3"
	Instance int    // 3
	CntlID   int    // controller ID the target assigned
	// Adopted is true when Connect found an existing identical controller
	// (the kernel answered EALREADY) instead of creating one.
	Adopted bool
}
