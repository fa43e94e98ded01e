package csi

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
)

// Parameter keys, as they appear in a StorageClass, in PV volumeAttributes
// and in the VolumeContext.
const (
	KeyNVMeAddress     = "nvmeAddress"     // target IP literal (required unless nvmeAddresses)
	KeyNVMeAddresses   = "nvmeAddresses"   // every target address (multipath), comma separated, first first
	KeyNVMePort        = "nvmePort"        // default 4420
	KeyNQN             = "nqn"             // required: subsystem NQN
	KeyNSID            = "nsid"            // default 1
	KeyCtrlLossTmo     = "ctrlLossTmo"     // default -1 (reconnect forever)
	KeyReconnectDelay  = "reconnectDelay"  // default 5
	KeyReconnectSpread = "reconnectSpread" // default 4; 0 is off
	KeyKeepAliveTmo    = "keepAliveTmo"    // kernel default
	KeyFastIOFailTmo   = "fastIoFailTmo"   // kernel default (off)
	KeyNrIOQueues      = "nrIoQueues"      // kernel default
	KeyQueueSize       = "queueSize"       // kernel default
	KeyHostIface       = "hostIface"       // source interface
	KeyDataDigest      = "dataDigest"      // "true" or "false"
	KeyHeaderDigest    = "headerDigest"    // "true" or "false"
	KeyIOPolicy        = "iopolicy"        // multipath I/O policy: numa, round-robin, queue-depth
	KeyFSType          = "fsType"          // ext4 (default) or xfs
	KeyMountOptions    = "mountOptions"    // comma separated

	// KeyContextVersion marks a VolumeContext a controller wrote at
	// CreateVolume after validating it with its own parser (README
	// "Parameters", "Version skew"). With it the node ignores keys it does
	// not know; without it (a hand-written static PV) they are refused.
	KeyContextVersion = "rds.csi.srvlab.io/context-version"

	// Keys of the NodeStageVolume secrets.
	SecretDHCHAP     = "dhchapSecret"     // host DH-HMAC-CHAP secret
	SecretDHCHAPCtrl = "dhchapCtrlSecret" // controller secret (bidirectional)
)

// ContextVersion is the only value of KeyContextVersion this node accepts:
// "validated by a controller; keys a node does not know are safe to
// ignore". A controller that ever needs nodes to understand a new key
// writes another value, which this node refuses (InvalidArgument) rather
// than ignore the key.
const ContextVersion = "1"

// Defaults the parser applies.
const (
	DefaultCtrlLossTmo    = -1
	DefaultReconnectDelay = 5
	// DefaultReconnectSpread: each controller retries every
	// reconnectDelay + 0..4 s (BENCHMARKS.md, "Reconnect spread").
	DefaultReconnectSpread = 4
	DefaultNSID            = 1
	DefaultFSType          = "ext4"
)

// Limits on what one request may ask the parser to read (README
// "Parameters"). Over them, ParseParams answers a *ParamError
// (InvalidArgument) before it parses anything. A real StorageClass never
// comes near them: the longest value the parser reads is an NQN (under 223
// bytes) or a mount option list, and mount(2) takes at most one page (4 KiB)
// of filesystem options; the CSI spec bounds a whole map<string, string> to
// 4 KiB.
const (
	// MaxParamValueBytes bounds the value of each key the parser reads.
	MaxParamValueBytes = 4096
	// MaxVolumeContextBytes bounds the keys and values of the whole map
	// together, ignored keys included.
	MaxVolumeContextBytes = 64 << 10
)

// maxQuoted bounds how much of a value an error message quotes.
const maxQuoted = 128

// quoteBounded quotes s for a message: whole if it is short, else its first
// maxQuoted bytes (cut at a rune start) and its length.
func quoteBounded(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(runePrefix(s, maxQuoted)), len(s))
}

// runePrefix returns the first n bytes of s (all of s if shorter), cut back
// to a rune start so that a multi-byte character is not split.
func runePrefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ignoredKeys are accepted and ignored: the controller's own keys.
var ignoredKeys = []string{"rdsAddress", "volumePath", "targetFencing"}

// ignoredPrefixes are reserved for Kubernetes (external-provisioner adds
// "storage.kubernetes.io/csiProvisionerIdentity" to every volume context;
// kubelet adds "csi.storage.k8s.io/pod.name" and friends).
var ignoredPrefixes = []string{"csi.storage.k8s.io/", "storage.kubernetes.io/"}

// FSTypes are the filesystems a mount volume can be formatted with.
var FSTypes = []string{"ext4", "xfs"}

// Params is the parsed form of a volume's parameters.
type Params struct {
	// Options are the connect options, without host identity and secrets
	// (Spec adds them), validated.
	Options fabrics.Options
	NSID    uint32
	// ReconnectSpread is the bound of the per-controller offset added to
	// reconnect_delay (daemon.Spec.ReconnectSpread), seconds.
	ReconnectSpread int
	// FSType is "" when the parameters do not name one (the capability's
	// fs_type, or DefaultFSType, applies then).
	FSType       string
	MountOptions []string
	// Paths are every target address of a multipath volume (nvmeAddresses),
	// in order, each with its source interface (its own, else hostIface);
	// Paths[0] is the address in Options. Nil for a one-path volume.
	Paths []daemon.Path
	// IOPolicy is the subsystem's multipath I/O policy ("" leaves it).
	IOPolicy string
	// UnknownKeys are the keys of a controller-written context
	// (KeyContextVersion) this parser does not know, sorted (safeKey form),
	// ignored; nil when there are none.
	UnknownKeys []string
}

// Spec returns the daemon's connection spec for the volume, with the host
// identity and the secrets filled in.
func (p Params) Spec(volumeID string, host HostIdentity, s Secrets) daemon.Spec {
	o := p.Options
	o.HostNQN, o.HostID = host.NQN, host.ID
	o.DHCHAPSecret, o.DHCHAPCtrlSecret = s.DHCHAP, s.DHCHAPCtrl
	return daemon.Spec{VolumeID: volumeID, Options: o, NSID: p.NSID, ReconnectSpread: p.ReconnectSpread,
		Paths: slices.Clone(p.Paths), IOPolicy: p.IOPolicy}
}

// ParamError is a parameter that failed parsing or validation. It matches
// fabrics.ErrInvalidOption (errors.Is), so Status maps it to
// codes.InvalidArgument. Value is never a secret.
type ParamError struct {
	Key     string // the parameter key ("ctrlLossTmo")
	Value   string // the value given (empty for unknown keys and secrets); Error quotes a bounded prefix
	Allowed string // what would have been accepted
	Err     error  // the underlying *fabrics.OptionError, if any
}

func (e *ParamError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("invalid parameter %s: %s", e.Key, e.Allowed)
	}
	return fmt.Sprintf("invalid parameter %s=%s: want %s", e.Key, quoteBounded(e.Value), e.Allowed)
}

// Unwrap returns fabrics.ErrInvalidOption and the underlying error.
func (e *ParamError) Unwrap() []error {
	if e.Err != nil {
		return []error{fabrics.ErrInvalidOption, e.Err}
	}
	return []error{fabrics.ErrInvalidOption}
}

// paramKind says how a value is parsed.
type paramKind uint8

const (
	kindString paramKind = iota
	kindInt
	kindBool
)

// param is one accepted key: how to parse it and where it goes.
type param struct {
	key     string
	kind    paramKind
	allowed string // for messages; numeric ranges are enforced by fabrics
	kernel  string // the fabrics option name, "" if none
	lo, hi  int64  // parse range for kindInt (the representable values)
	set     func(p *Params, s string, n int64, b bool) *ParamError
}

const (
	int32Min = -1 << 31
	int32Max = 1<<31 - 1
)

// params lists every accepted key. Numeric ranges are checked by
// fabrics.Options.Validate (one source of truth), except those that are ours.
var params = []param{
	{key: KeyNVMeAddress, kind: kindString, kernel: "traddr",
		allowed: "an IPv4 or IPv6 address literal (required)",
		set: func(p *Params, s string, _ int64, _ bool) *ParamError {
			p.Options.Traddr = s
			return nil
		}},
	{key: KeyNVMeAddresses, kind: kindString,
		allowed: fmt.Sprintf("1..%d comma separated target addresses, each an IPv4 or IPv6 literal, optionally followed by @ and the host interface of that path, then optionally by / and the source address of that path (10.0.0.5@eth1, 10.0.0.5/10.0.0.20, 10.0.0.5@eth1/10.0.0.20); the first is nvmeAddress", daemon.MaxPaths),
		set: func(p *Params, s string, _ int64, _ bool) *ParamError {
			paths, err := parseAddresses(s)
			if err != nil {
				return err
			}
			p.Paths = paths
			return nil
		}},
	{key: KeyNVMePort, kind: kindInt, kernel: "trsvcid", lo: 1, hi: 65535,
		allowed: "a TCP port 1..65535 (default 4420)",
		set: func(p *Params, _ string, n int64, _ bool) *ParamError {
			p.Options.Trsvcid = int(n)
			return nil
		}},
	{key: KeyNQN, kind: kindString, kernel: "nqn",
		allowed: "the subsystem NQN (required)",
		set: func(p *Params, s string, _ int64, _ bool) *ParamError {
			p.Options.NQN = s
			return nil
		}},
	{key: KeyNSID, kind: kindInt, lo: 1, hi: 0xFFFFFFFE,
		allowed: "a namespace id 1..4294967294 (default 1)",
		set: func(p *Params, _ string, n int64, _ bool) *ParamError {
			p.NSID = uint32(n)
			return nil
		}},
	{key: KeyCtrlLossTmo, kind: kindInt, kernel: "ctrl_loss_tmo", lo: int32Min, hi: int32Max,
		allowed: "-1 (reconnect forever, the default) or 0..2147483647 seconds",
		set:     setOption(func(o *fabrics.Options) *fabrics.OptInt { return &o.CtrlLossTmo })},
	{key: KeyReconnectDelay, kind: kindInt, kernel: "reconnect_delay", lo: int32Min, hi: int32Max,
		allowed: "1..2147483 seconds (default 5)",
		set:     setOption(func(o *fabrics.Options) *fabrics.OptInt { return &o.ReconnectDelay })},
	{key: KeyReconnectSpread, kind: kindInt, lo: 0, hi: daemon.MaxReconnectSpread,
		allowed: fmt.Sprintf("0 (off) or up to %d seconds added to reconnectDelay per controller (default %d)", daemon.MaxReconnectSpread, DefaultReconnectSpread),
		set: func(p *Params, _ string, n int64, _ bool) *ParamError {
			p.ReconnectSpread = int(n)
			return nil
		}},
	{key: KeyKeepAliveTmo, kind: kindInt, kernel: "keep_alive_tmo", lo: int32Min, hi: int32Max,
		allowed: "0..2147483 seconds",
		set:     setOption(func(o *fabrics.Options) *fabrics.OptInt { return &o.KeepAliveTmo })},
	{key: KeyFastIOFailTmo, kind: kindInt, kernel: "fast_io_fail_tmo", lo: int32Min, hi: int32Max,
		allowed: "-1 (off) or 0..2147483 seconds, at most ctrlLossTmo",
		set:     setOption(func(o *fabrics.Options) *fabrics.OptInt { return &o.FastIOFailTmo })},
	{key: KeyNrIOQueues, kind: kindInt, kernel: "nr_io_queues", lo: int32Min, hi: int32Max,
		allowed: "1..65535",
		set:     setOption(func(o *fabrics.Options) *fabrics.OptInt { return &o.NrIOQueues })},
	{key: KeyQueueSize, kind: kindInt, kernel: "queue_size", lo: int32Min, hi: int32Max,
		allowed: "16..1024",
		set:     setOption(func(o *fabrics.Options) *fabrics.OptInt { return &o.QueueSize })},
	{key: KeyHostIface, kind: kindString, kernel: "host_iface",
		allowed: "a network interface name",
		set: func(p *Params, s string, _ int64, _ bool) *ParamError {
			p.Options.HostIface = s
			return nil
		}},
	{key: KeyDataDigest, kind: kindBool, kernel: "data_digest",
		allowed: `"true" or "false"`,
		set: func(p *Params, _ string, _ int64, b bool) *ParamError {
			p.Options.DataDigest = b
			return nil
		}},
	{key: KeyHeaderDigest, kind: kindBool, kernel: "hdr_digest",
		allowed: `"true" or "false"`,
		set: func(p *Params, _ string, _ int64, b bool) *ParamError {
			p.Options.HdrDigest = b
			return nil
		}},
	{key: KeyIOPolicy, kind: kindString,
		allowed: `"numa", "round-robin" or "queue-depth" (Linux 6.11 and later): the subsystem's native multipath I/O policy`,
		set: func(p *Params, s string, _ int64, _ bool) *ParamError {
			if !slices.Contains(sysfs.IOPolicies, s) {
				return &ParamError{Key: KeyIOPolicy, Value: s, Allowed: `"numa", "round-robin" or "queue-depth" (Linux 6.11 and later)`}
			}
			p.IOPolicy = s
			return nil
		}},
	{key: KeyFSType, kind: kindString,
		allowed: `"ext4" (the default) or "xfs"`,
		set: func(p *Params, s string, _ int64, _ bool) *ParamError {
			if !slices.Contains(FSTypes, s) {
				return &ParamError{Key: KeyFSType, Value: s, Allowed: `"ext4" (the default) or "xfs"`}
			}
			p.FSType = s
			return nil
		}},
	{key: KeyMountOptions, kind: kindString,
		allowed: "a comma separated list of mount options",
		set: func(p *Params, s string, _ int64, _ bool) *ParamError {
			opts, err := parseMountOptions(KeyMountOptions, s)
			if err != nil {
				return err
			}
			p.MountOptions = opts
			return nil
		}},
}

// secretKeys are refused in parameters: secrets come from NodeStageVolume
// secrets only.
var secretKeys = []string{SecretDHCHAP, SecretDHCHAPCtrl}

// Keys returns every key ParseParams accepts and uses, sorted.
func Keys() []string {
	out := make([]string, 0, len(params))
	for i := range params {
		out = append(out, params[i].key)
	}
	slices.Sort(out)
	return out
}

// ParseParams parses StorageClass parameters, PV volumeAttributes or a
// VolumeContext: it applies the defaults, refuses unknown keys (unless the
// map carries KeyContextVersion: see below), parses every
// value strictly, and validates the connect options with
// fabrics.Options.Validate. Errors are *ParamError naming the key, the value
// and the allowed range (and match fabrics.ErrInvalidOption). Keys are
// processed in sorted order, so the error for a map with several problems
// is deterministic. An empty value for an optional key means "unset". A map
// over MaxVolumeContextBytes, or a value over MaxParamValueBytes, is refused
// before any parsing, so the work is linear in a bounded input.
//
// Version skew: PV attributes can never be edited, so a node must stage
// what a newer controller wrote. A map with KeyContextVersion (which only
// a controller writes, after validating the map with its own parser) may
// carry keys this parser does not know: they are ignored, never used, and
// listed in Params.UnknownKeys. Its value must be ContextVersion, else
// *ParamError. Known keys and secret keys are checked as strictly with the
// marker as without it. A map without the marker (a hand-written static
// PV) refuses unknown keys, so a typo is caught.
func ParseParams(m map[string]string) (Params, error) {
	if err := checkContextSize(m); err != nil {
		return Params{}, err
	}
	v, lenient := m[KeyContextVersion]
	if lenient && v != ContextVersion {
		return Params{}, &ParamError{Key: KeyContextVersion, Value: v, Allowed: fmt.Sprintf("%q (written by the controller; a newer format this node cannot honour: upgrade the node plugin)", ContextVersion)}
	}
	p := Params{NSID: DefaultNSID, ReconnectSpread: DefaultReconnectSpread}
	p.Options.CtrlLossTmo = fabrics.Int(DefaultCtrlLossTmo)
	p.Options.ReconnectDelay = fabrics.Int(DefaultReconnectDelay)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == KeyContextVersion {
			continue
		}
		if lenient && lookupParam(k) == nil && !ignoredKey(k) && !slices.Contains(secretKeys, k) {
			p.UnknownKeys = append(p.UnknownKeys, safeKey(k))
			continue
		}
		if err := applyParam(&p, k, m[k]); err != nil {
			return Params{}, err
		}
	}
	for _, k := range []string{KeyNVMeAddress, KeyNQN} {
		if m[k] == "" && (k != KeyNVMeAddress || m[KeyNVMeAddresses] == "") {
			return Params{}, &ParamError{Key: k, Allowed: "missing: " + lookupParam(k).allowed}
		}
	}
	if err := p.resolvePaths(); err != nil {
		return Params{}, err
	}
	if err := p.Options.Validate(); err != nil {
		return Params{}, optionParamError(err)
	}
	return p, nil
}

// parseAddresses parses nvmeAddresses: comma separated items, each an IP
// literal (no zone) with an optional "@iface" and then an optional "/src"
// (the path's source address, host_traddr). The grammar is unambiguous:
// neither an IP literal nor an interface name (fabrics refuses '/' in one,
// as the kernel does) can hold '/', and an IP literal cannot hold '@'. The
// split removes every comma, the IP literals can hold no other separator
// of the fabrics option string, and the interface and source are checked
// by fabrics.Options.Validate (resolvePaths), so nothing of the value can
// reach the option string except as one traddr, host_iface or host_traddr
// value.
func parseAddresses(s string) ([]daemon.Path, *ParamError) {
	var out []daemon.Path
	for item := range strings.SplitSeq(s, ",") {
		if len(out) == daemon.MaxPaths {
			return nil, &ParamError{Key: KeyNVMeAddresses, Value: s, Allowed: fmt.Sprintf("at most %d addresses", daemon.MaxPaths)}
		}
		target, src, hasSrc := strings.Cut(strings.TrimSpace(item), "/")
		addr, iface, hasIface := strings.Cut(target, "@")
		ip, err := netip.ParseAddr(addr)
		bad := err != nil || ip.Zone() != "" || (hasIface && iface == "")
		if hasSrc {
			sip, err := netip.ParseAddr(src)
			bad = bad || err != nil || sip.Zone() != ""
		}
		if bad {
			return nil, &ParamError{Key: KeyNVMeAddresses, Value: item, Allowed: "an IPv4 or IPv6 address literal without zone, optionally followed by @ and a host interface name, " +
				"then optionally by / and a source IPv4 or IPv6 address literal without zone"}
		}
		p := daemon.Path{Traddr: fabrics.CanonicalIP(addr), HostIface: iface}
		if hasSrc {
			p.HostTraddr = fabrics.CanonicalIP(src)
		}
		if slices.Contains(out, p) {
			return nil, &ParamError{Key: KeyNVMeAddresses, Value: item, Allowed: "each address (with its interface and source) once"}
		}
		out = append(out, p)
	}
	return out, nil
}

// resolvePaths relates nvmeAddresses to nvmeAddress and hostIface: the
// first path is nvmeAddress (which, when given too, must be that address),
// and a path without its own interface takes hostIface. Each path's
// options are validated, errors naming nvmeAddresses.
func (p *Params) resolvePaths() *ParamError {
	if len(p.Paths) == 0 {
		return nil
	}
	first := p.Paths[0].Traddr
	if p.Options.Traddr != "" && fabrics.CanonicalIP(p.Options.Traddr) != first {
		return &ParamError{Key: KeyNVMeAddress, Value: p.Options.Traddr, Allowed: fmt.Sprintf("the first address of nvmeAddresses (%s) when both are given", first)}
	}
	for i := range p.Paths {
		if p.Paths[i].HostIface == "" {
			p.Paths[i].HostIface = p.Options.HostIface
		}
		o := p.Options
		o.Traddr, o.HostTraddr, o.HostIface = p.Paths[i].Traddr, p.Paths[i].HostTraddr, p.Paths[i].HostIface
		if err := o.Validate(); err != nil {
			pe := optionParamError(err).(*ParamError)
			if pe.Key == KeyNVMeAddress || pe.Key == KeyHostIface || pe.Key == "host_traddr" {
				pe.Key = KeyNVMeAddresses
			}
			return pe
		}
	}
	p.Options.Traddr, p.Options.HostTraddr, p.Options.HostIface = first, p.Paths[0].HostTraddr, p.Paths[0].HostIface
	if len(p.Paths) == 1 {
		p.Paths = nil // one path: an ordinary volume
	}
	return nil
}

// checkContextSize refuses a map whose keys and values together exceed
// MaxVolumeContextBytes, naming its largest entry: as the error of that key
// when the parser reads it and its value alone is too long, else in the
// message.
func checkContextSize(m map[string]string) *ParamError {
	n, largest := 0, ""
	for k, v := range m {
		n += len(k) + len(v)
		if size, most := len(k)+len(v), len(largest)+len(m[largest]); largest == "" || size > most || size == most && k < largest {
			largest = k // ties by name: the message is deterministic
		}
	}
	if n <= MaxVolumeContextBytes {
		return nil
	}
	if v := m[largest]; len(v) > MaxParamValueBytes && lookupParam(largest) != nil {
		return valueTooLong(lookupParam(largest), v)
	}
	return &ParamError{Key: "parameters", Allowed: fmt.Sprintf("%d keys with %d bytes of keys and values (the largest: %s, %d bytes): at most %d bytes",
		len(m), n, safeKey(largest), len(largest)+len(m[largest]), MaxVolumeContextBytes)}
}

// valueTooLong is the error of a value over MaxParamValueBytes.
func valueTooLong(d *param, value string) *ParamError {
	return &ParamError{Key: d.key, Value: value, Allowed: fmt.Sprintf("at most %d bytes: %s", MaxParamValueBytes, d.allowed)}
}

func lookupParam(key string) *param {
	for i := range params {
		if params[i].key == key {
			return &params[i]
		}
	}
	return nil
}

// applyParam parses one key into p.
func applyParam(p *Params, key, value string) *ParamError {
	if ignoredKey(key) {
		return nil
	}
	if slices.Contains(secretKeys, key) {
		return &ParamError{Key: key, Allowed: "secrets are read from the NodeStageVolume secrets (csi.storage.k8s.io/node-stage-secret-name), never from parameters or the volume context"}
	}
	d := lookupParam(key)
	if d == nil {
		return &ParamError{Key: safeKey(key), Allowed: "unknown key; accepted keys: " + strings.Join(Keys(), ", ")}
	}
	if value == "" {
		return nil // unset: the default applies (required keys are checked later)
	}
	if len(value) > MaxParamValueBytes {
		return valueTooLong(d, value)
	}
	switch d.kind {
	case kindInt:
		n, ok := parseInt(value, d.lo, d.hi)
		if !ok {
			return &ParamError{Key: key, Value: value, Allowed: "a decimal integer: " + d.allowed}
		}
		return d.set(p, value, n, false)
	case kindBool:
		b, ok := parseBool(value)
		if !ok {
			return &ParamError{Key: key, Value: value, Allowed: d.allowed}
		}
		return d.set(p, value, 0, b)
	}
	return d.set(p, value, 0, false)
}

func ignoredKey(key string) bool {
	if slices.Contains(ignoredKeys, key) {
		return true
	}
	for _, pre := range ignoredPrefixes {
		if strings.HasPrefix(key, pre) {
			return true
		}
	}
	return false
}

// safeKey quotes an unknown key if it holds anything unusual, and bounds its
// length, so that error messages stay one readable line.
func safeKey(k string) string {
	const max = 64
	if len(k) > max {
		k = k[:max] + "..."
	}
	for _, r := range k {
		if !(r == '-' || r == '_' || r == '.' || r == '/' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return strconv.Quote(k)
		}
	}
	return k
}

// parseInt parses an optionally negative decimal integer without sign
// prefix "+", spaces or other bases, in lo..hi.
func parseInt(s string, lo, hi int64) (int64, bool) {
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || len(digits) > 10 {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// parseBool accepts "true" and "false" in any case.
func parseBool(s string) (bool, bool) {
	switch {
	case strings.EqualFold(s, "true"):
		return true, true
	case strings.EqualFold(s, "false"):
		return false, true
	}
	return false, false
}

// parseMountOptions splits a comma separated list in one pass. Items are
// trimmed, empty items dropped; an item with whitespace, control characters
// or quotes is refused, and the error quotes that item (the list is handed
// to mount(8) as -o items). Duplicates are kept: mergeOptions drops them.
func parseMountOptions(key, s string) ([]string, *ParamError) {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !mountOptionOK(item) {
			return nil, &ParamError{Key: key, Value: item, Allowed: "comma separated mount options without whitespace, quotes or control characters"}
		}
		out = append(out, item)
	}
	return out, nil
}

func mountOptionOK(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '"' || r == '\'' || r == '\\' {
			return false
		}
	}
	return true
}

// kernelToKey maps fabrics option names to our parameter keys.
var kernelToKey = func() map[string]string {
	m := map[string]string{
		"dhchap_secret":      SecretDHCHAP,
		"dhchap_ctrl_secret": SecretDHCHAPCtrl,
		"hostnqn":            "hostnqn (host identity)",
		"hostid":             "hostid (host identity)",
	}
	for i := range params {
		if params[i].kernel != "" {
			m[params[i].kernel] = params[i].key
		}
	}
	return m
}()

// optionParamError turns a fabrics validation error into a *ParamError
// with our key names (also inside the allowed text, which may name another
// option: "at most ctrl_loss_tmo (5)").
func optionParamError(err error) error {
	var oe *fabrics.OptionError
	if !errors.As(err, &oe) {
		return &ParamError{Key: "parameters", Allowed: err.Error(), Err: err}
	}
	key, ok := kernelToKey[oe.Field]
	if !ok {
		key = oe.Field
	}
	value := oe.Value
	if key == SecretDHCHAP || key == SecretDHCHAPCtrl {
		value = ""
	}
	return &ParamError{Key: key, Value: value, Allowed: renameKernelKeys(oe.Allowed), Err: err}
}

func renameKernelKeys(s string) string {
	for _, k := range slices.Sorted(maps.Keys(kernelToKey)) {
		if strings.Contains(s, k) && !strings.Contains(kernelToKey[k], " ") {
			s = strings.ReplaceAll(s, k, kernelToKey[k])
		}
	}
	return s
}

// Secrets are the NodeStageVolume secrets the plugin uses.
type Secrets struct {
	DHCHAP     fabrics.Secret
	DHCHAPCtrl fabrics.Secret
}

// ParseSecrets picks the DH-HMAC-CHAP secrets out of a NodeStageVolume
// secrets map. Other keys are ignored: a CO may pass the same secrets to
// every RPC. Values are validated with the connect options (ParamError
// without the value).
func ParseSecrets(m map[string]string) Secrets {
	return Secrets{DHCHAP: fabrics.Secret(m[SecretDHCHAP]), DHCHAPCtrl: fabrics.Secret(m[SecretDHCHAPCtrl])}
}

// validateSpec validates the complete options of a spec (with host identity
// and secrets), as *ParamError.
func validateSpec(s daemon.Spec) error {
	if err := s.Options.Validate(); err != nil {
		return optionParamError(err)
	}
	return nil
}

// setOption is the setter of a key that maps straight to one numeric
// fabrics option (its range is checked by fabrics.Options.Validate).
func setOption(field func(*fabrics.Options) *fabrics.OptInt) func(*Params, string, int64, bool) *ParamError {
	return func(p *Params, _ string, n int64, _ bool) *ParamError {
		*field(&p.Options) = fabrics.Int(int(n))
		return nil
	}
}

// RDS management addresses (rdsAddress, --rds-address).
const (
	// DefaultSSHPort is the port of an rdsAddress that names none.
	DefaultSSHPort = 22
	// MaxRDSAddressBytes bounds the canonical host:port of an rdsAddress:
	// with a 32-character slot and "@" it keeps a volume id within the CSI
	// spec's 128 bytes per string (FormatVolumeID).
	MaxRDSAddressBytes = MaxIDBytes - 1 - 32
	ruleRDSAddress     = "the RDS's SSH management address: an IPv4 or IPv6 literal (no zone) or a DNS name of letters, digits, '-' and '.', optionally with :port (1..65535, default 22; IPv6 with a port in brackets), at most 95 bytes as host:port"
)

// ParseRDSAddress parses an rdsAddress (a StorageClass parameter, or the
// controller's --rds-address) and returns its canonical form, which is what
// a volume id carries: "host:port" with the port always present, an IP in
// its canonical form (IPv4-mapped IPv6 unmapped, IPv6 in brackets), a name
// in lower case without a trailing dot. Nothing but these characters can
// pass, so the value reaches only net.Dial, never a command. Errors are
// *ParamError (InvalidArgument) naming KeyRDSAddress.
func ParseRDSAddress(s string) (string, error) {
	bad := &ParamError{Key: KeyRDSAddress, Value: s, Allowed: ruleRDSAddress}
	if s == "" || len(s) > 2*MaxRDSAddressBytes {
		return "", bad
	}
	host, port := s, strconv.Itoa(DefaultSSHPort)
	if ip, err := netip.ParseAddr(s); err == nil {
		if ip.Zone() != "" {
			return "", bad
		}
	} else if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
			return "", bad
		}
		host, port = h, p
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return "", bad
		}
		host = ip.Unmap().String()
	} else if host = strings.TrimSuffix(strings.ToLower(host), "."); !validDNSName(host) {
		return "", bad
	}
	out := net.JoinHostPort(host, port)
	if len(out) > MaxRDSAddressBytes {
		return "", bad
	}
	return out, nil
}

// validDNSName reports whether s is a lower-case DNS name: labels of
// [a-z0-9-], 1..63 characters, not starting or ending with '-', and a last
// label that is not all digits (so a mistyped IPv4 literal such as
// 10.0.0.256 is not taken for a name).
func validDNSName(s string) bool {
	if s == "" {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}
