package csi

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/fabrics"
)

// Parameter keys, as they appear in a StorageClass, in PV volumeAttributes
// and in the VolumeContext.
const (
	KeyNVMeAddress    = "nvmeAddress"    // required: target IP literal
	KeyNVMePort       = "nvmePort"       // default 4420
	KeyNQN            = "nqn"            // required: subsystem NQN
	KeyNSID           = "nsid"           // default 1
	KeyCtrlLossTmo    = "ctrlLossTmo"    // default -1 (reconnect forever)
	KeyReconnectDelay = "reconnectDelay" // default 5
	KeyKeepAliveTmo   = "keepAliveTmo"   // kernel default
	KeyFastIOFailTmo  = "fastIoFailTmo"  // kernel default (off)
	KeyNrIOQueues     = "nrIoQueues"     // kernel default
	KeyQueueSize      = "queueSize"      // kernel default
	KeyHostIface      = "hostIface"      // source interface
	KeyDataDigest     = "dataDigest"     // "true" or "false"
	KeyHeaderDigest   = "headerDigest"   // "true" or "false"
	KeyFSType         = "fsType"         // ext4 (default) or xfs
	KeyMountOptions   = "mountOptions"   // comma separated

	// Keys of the NodeStageVolume secrets.
	SecretDHCHAP     = "dhchapSecret"     // host DH-HMAC-CHAP secret
	SecretDHCHAPCtrl = "dhchapCtrlSecret" // controller secret (bidirectional)
)

// Defaults the parser applies.
const (
	DefaultCtrlLossTmo    = -1
	DefaultReconnectDelay = 5
	DefaultNSID           = 1
	DefaultFSType         = "ext4"
)

// ignoredKeys are accepted and ignored: the controller's own keys.
var ignoredKeys = []string{"rdsAddress", "volumePath"}

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
	// FSType is "" when the parameters do not name one (the capability's
	// fs_type, or DefaultFSType, applies then).
	FSType       string
	MountOptions []string
}

// Spec returns the daemon's connection spec for the volume, with the host
// identity and the secrets filled in.
func (p Params) Spec(volumeID string, host HostIdentity, s Secrets) daemon.Spec {
	o := p.Options
	o.HostNQN, o.HostID = host.NQN, host.ID
	o.DHCHAPSecret, o.DHCHAPCtrlSecret = s.DHCHAP, s.DHCHAPCtrl
	return daemon.Spec{VolumeID: volumeID, Options: o, NSID: p.NSID}
}

// ParamError is a parameter that failed parsing or validation. It matches
// fabrics.ErrInvalidOption (errors.Is), so Status maps it to
// codes.InvalidArgument. Value is never a secret.
type ParamError struct {
	Key     string // the parameter key ("ctrlLossTmo")
	Value   string // the value given (empty for unknown keys and secrets)
	Allowed string // what would have been accepted
	Err     error  // the underlying *fabrics.OptionError, if any
}

func (e *ParamError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("invalid parameter %s: %s", e.Key, e.Allowed)
	}
	return fmt.Sprintf("invalid parameter %s=%q: want %s", e.Key, e.Value, e.Allowed)
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
// VolumeContext: it applies the defaults, refuses unknown keys, parses every
// value strictly, and validates the connect options with
// fabrics.Options.Validate. Errors are *ParamError naming the key, the value
// and the allowed range (and match fabrics.ErrInvalidOption). Keys are
// processed in sorted order, so the error for a map with several problems
// is deterministic. An empty value for an optional key means "unset".
func ParseParams(m map[string]string) (Params, error) {
	p := Params{NSID: DefaultNSID}
	p.Options.CtrlLossTmo = fabrics.Int(DefaultCtrlLossTmo)
	p.Options.ReconnectDelay = fabrics.Int(DefaultReconnectDelay)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := applyParam(&p, k, m[k]); err != nil {
			return Params{}, err
		}
	}
	for _, k := range []string{KeyNVMeAddress, KeyNQN} {
		if m[k] == "" {
			return Params{}, &ParamError{Key: k, Allowed: "missing: " + lookupParam(k).allowed}
		}
	}
	if err := p.Options.Validate(); err != nil {
		return Params{}, optionParamError(err)
	}
	return p, nil
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

// parseMountOptions splits a comma separated list. Items are trimmed, empty
// items dropped; an item with whitespace, control characters or quotes is
// refused (the list is handed to mount(8) as -o items).
func parseMountOptions(key, s string) ([]string, *ParamError) {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !mountOptionOK(item) {
			return nil, &ParamError{Key: key, Value: s, Allowed: "comma separated mount options without whitespace, quotes or control characters"}
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
