package fabrics

import (
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits that are not the kernel's own ranges.
const (
	// MaxNQNLen is the longest NQN the kernel accepts (it needs < 223 bytes).
	MaxNQNLen = 222
	// maxSeconds bounds delays the kernel converts to jiffies, so that
	// seconds*HZ cannot overflow for HZ <= 1000 (about 24.8 days).
	maxSeconds = math.MaxInt32 / 1000
	// maxQueues: NVMe queue identifiers are 16 bits.
	maxQueues = 65535
	// maxIfaceLen is IFNAMSIZ-1.
	maxIfaceLen = 15
	// defaultCtrlLossTmo is the kernel's default, used by the
	// fast_io_fail_tmo <= ctrl_loss_tmo cross-check.
	defaultCtrlLossTmo = 600
)

const (
	ruleChars = "no ',', '=', whitespace or control characters (the value is spliced into a comma separated option string)"
	ruleNQN   = `an NQN "nqn.yyyy-mm.<reversed domain>[:<string>]" or "nqn.2014-08.org.nvmexpress:uuid:<UUID>" of at most 222 bytes`
	ruleIP    = "an IPv4 or IPv6 address literal without zone"
	ruleUUID  = "a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hexadecimal)"
	ruleIface = "a network interface name of 1 to 15 bytes without '/', ':', whitespace, or the names \".\" and \"..\""
	ruleDHHC  = "a DH-HMAC-CHAP secret DHHC-1:0[0-3]:<base64 of a 32, 48 or 64 byte key followed by its CRC-32>:"
)

// Validate checks every option against the kernel's syntax and ranges and the
// package's own rules, without touching the system, and returns the first
// problem in option-string order as an *OptionError wrapping ErrInvalidOption.
// Error messages never contain a secret.
func (o Options) Validate() error {
	for i := range fields {
		if err := fields[i].check(&o); err != nil {
			return err
		}
	}
	if err := checkFailFast(o.CtrlLossTmo, o.FastIOFailTmo, defaultCtrlLossTmo); err != nil {
		return err
	}
	if o.DHCHAPCtrlSecret != "" && o.DHCHAPSecret == "" {
		return invalidSecret("dhchap_ctrl_secret", "dhchap_ctrl_secret only together with dhchap_secret (bidirectional authentication needs the host secret too)")
	}
	if o.Concat && o.DHCHAPSecret == "" {
		return invalid("concat", "set", "concat only together with dhchap_secret")
	}
	return nil
}

// Validate checks the fields that are set, with the ranges of Options,
// including fast_io_fail_tmo <= ctrl_loss_tmo when both are set.
func (t Timeouts) Validate() error {
	if err := checkInt("reconnect_delay", t.ReconnectDelay, 1, maxSeconds, ""); err != nil {
		return err
	}
	if err := checkCtrlLossTmo(t.CtrlLossTmo); err != nil {
		return err
	}
	if err := checkFastIOFailTmo(t.FastIOFailTmo); err != nil {
		return err
	}
	return checkFailFast(t.CtrlLossTmo, t.FastIOFailTmo, -1)
}

// checkFailFast rejects a fast_io_fail_tmo larger than ctrl_loss_tmo (the
// kernel only warns). current is the ctrl_loss_tmo that applies when
// ctrlLoss is unset (-1 for "forever": no limit).
func checkFailFast(ctrlLoss, failFast OptInt, current int) error {
	ff, ok := failFast.Get()
	if !ok || ff < 0 {
		return nil
	}
	cl, ok := ctrlLoss.Get()
	if !ok {
		cl = current
	}
	if cl >= 0 && ff > cl {
		return invalid("fast_io_fail_tmo", strconv.Itoa(ff),
			"at most ctrl_loss_tmo ("+strconv.Itoa(cl)+"), or set ctrl_loss_tmo to -1: I/O would never fail fast before the controller is removed")
	}
	return nil
}

func checkCtrlLossTmo(v OptInt) *OptionError {
	return checkInt("ctrl_loss_tmo", v, -1, math.MaxInt32, "-1 (reconnect forever) or ")
}

func checkFastIOFailTmo(v OptInt) *OptionError {
	return checkInt("fast_io_fail_tmo", v, -1, maxSeconds, "-1 (off) or ")
}

// checkInt checks lo <= v <= hi for a set v. hint describes a special value
// at lo (then the rest of the range starts at lo+1).
func checkInt(field string, v OptInt, lo, hi int, hint string) *OptionError {
	n, ok := v.Get()
	if !ok || (n >= lo && n <= hi) {
		return nil
	}
	allowed := strconv.Itoa(lo) + ".." + strconv.Itoa(hi)
	if hint != "" {
		allowed = hint + strconv.Itoa(lo+1) + ".." + strconv.Itoa(hi)
	}
	return invalid(field, strconv.Itoa(n), allowed)
}

// safeChars reports whether s is valid UTF-8 without ',', '=' (unless
// allowEq), whitespace or control characters.
func safeChars(s string, allowEq bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return safeCharsSlow(s[i:], allowEq)
		}
		if c <= ' ' || c == 0x7f || c == ',' || (c == '=' && !allowEq) {
			return false
		}
	}
	return true
}

func safeCharsSlow(s string, allowEq bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == ',' || (r == '=' && !allowEq) || unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// checkText applies the injection rule to a non-secret value.
func checkText(field, v string) *OptionError {
	if !safeChars(v, false) {
		return invalid(field, v, ruleChars)
	}
	return nil
}

func checkTransport(v string) *OptionError {
	if v == "" || v == "tcp" {
		return nil
	}
	if err := checkText("transport", v); err != nil {
		return err
	}
	return invalid("transport", v, `"tcp" (the only transport this package supports; "" means tcp)`)
}

// checkIP validates an IP literal option. The zone is refused: link-local
// targets are not supported, and the kernel would compare "fe80::1%eth0"
// against other spellings as a plain string.
func checkIP(field, v string, required bool) *OptionError {
	if v == "" {
		if required {
			return invalid(field, v, ruleIP+" (required)")
		}
		return nil
	}
	if err := checkText(field, v); err != nil {
		return err
	}
	a, err := netip.ParseAddr(v)
	switch {
	case err != nil:
		return invalid(field, v, ruleIP+" (host names such as localhost are not resolved)")
	case a.Zone() != "":
		return invalid(field, v, ruleIP+" (zones are not supported)")
	case a.Is4In6():
		return invalid(field, v, ruleIP+" (write the IPv4-mapped address in IPv4 form)")
	case a.IsUnspecified(), a.IsMulticast():
		return invalid(field, v, ruleIP+" (not unspecified or multicast)")
	}
	return nil
}

func checkPort(p int) *OptionError {
	if p == 0 || (p >= 1 && p <= 65535) {
		return nil
	}
	return invalid("trsvcid", strconv.Itoa(p), "a TCP port 1..65535 (0 means 4420)")
}

// ValidateNQN checks an NVMe Qualified Name against the NVMe base
// specification: "nqn.yyyy-mm.<reversed domain>" with a valid year and month
// and a reversed domain of DNS labels, optionally followed by ':' and a
// non-empty string; or "nqn.2014-08.org.nvmexpress:uuid:<UUID>"; at most
// MaxNQNLen bytes, and nothing that could inject an option (',', '=',
// whitespace, control characters, invalid UTF-8). The error is an
// *OptionError for the field "nqn".
func ValidateNQN(nqn string) error {
	if err := checkNQN("nqn", nqn, true); err != nil {
		return err
	}
	return nil
}

func checkNQN(field, v string, required bool) *OptionError {
	if v == "" {
		if required {
			return invalid(field, v, ruleNQN+" (required)")
		}
		return nil
	}
	if len(v) > MaxNQNLen { // first: cheap for any input size
		return invalid(field, v, ruleNQN+" ("+strconv.Itoa(len(v))+" bytes is too long)")
	}
	if err := checkText(field, v); err != nil {
		return err
	}
	if why := nqnProblem(v); why != "" {
		return invalid(field, v, ruleNQN+" ("+why+")")
	}
	return nil
}

// nqnProblem returns why s (at most MaxNQNLen bytes, safe characters) is
// not a valid NQN, or "".
func nqnProblem(s string) string {
	rest, ok := strings.CutPrefix(s, "nqn.")
	if !ok {
		return `it must start with "nqn."`
	}
	if len(rest) < 8 || rest[4] != '-' || rest[7] != '.' ||
		!allDigits(rest[:4]) || !allDigits(rest[5:7]) {
		return `"nqn." must be followed by a date "yyyy-mm."`
	}
	if m := rest[5:7]; m < "01" || m > "12" {
		return "month " + m + " is not 01..12"
	}
	domain, user, hasUser := strings.Cut(rest[8:], ":")
	if why := reversedDomainProblem(domain); why != "" {
		return why
	}
	if hasUser && user == "" {
		return "the string after ':' must not be empty"
	}
	if u, ok := strings.CutPrefix(s, UUIDNQNPrefix); ok && !IsUUID(u) {
		return `"` + UUIDNQNPrefix + `" must be followed by a UUID`
	}
	return ""
}

// reversedDomainProblem checks dot separated DNS labels: 1..63 letters,
// digits and hyphens, not starting or ending with a hyphen.
func reversedDomainProblem(d string) string {
	if d == "" {
		return "the reversed domain name after the date is missing"
	}
	for label := range strings.SplitSeq(d, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "domain label " + strconv.Quote(label) + " must be 1..63 characters, not starting or ending with '-'"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "domain label " + strconv.Quote(label) + " may only hold letters, digits and '-'"
			}
		}
	}
	return ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// IsUUID reports whether s is a UUID in the 8-4-4-4-12 hexadecimal form the
// kernel's uuid_parse accepts (either case).
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

func checkUUID(field, v string) *OptionError {
	if v == "" {
		return nil
	}
	if err := checkText(field, v); err != nil {
		return err
	}
	if !IsUUID(v) {
		return invalid(field, v, ruleUUID)
	}
	return nil
}

// checkIface applies the kernel's dev_valid_name rules.
func checkIface(v string) *OptionError {
	if v == "" {
		return nil
	}
	if err := checkText("host_iface", v); err != nil {
		return err
	}
	if len(v) > maxIfaceLen || v == "." || v == ".." || strings.ContainsAny(v, "/:") {
		return invalid("host_iface", v, ruleIface)
	}
	return nil
}

// checkSecret validates a DH-HMAC-CHAP secret without ever putting it in the
// error. '=' is allowed here, as base64 padding only (the kernel takes
// everything after "dhchap_secret=" up to the next ',' as the value).
func checkSecret(field string, s Secret) *OptionError {
	if s == "" {
		return nil
	}
	if !safeChars(string(s), true) {
		return invalidSecret(field, ruleChars+", except '=' as base64 padding")
	}
	if why := secretProblem(string(s)); why != "" {
		return invalidSecret(field, ruleDHHC+" ("+why+")")
	}
	return nil
}

// secretProblem returns why s is not a DH-HMAC-CHAP secret representation
// (NVMe base specification, "DH-HMAC-CHAP secret representation"), or "".
func secretProblem(s string) string {
	rest, ok := strings.CutPrefix(s, "DHHC-1:")
	if !ok {
		return `it must start with "DHHC-1:"`
	}
	if len(rest) < 3 || rest[0] != '0' || rest[1] < '0' || rest[1] > '3' || rest[2] != ':' {
		return "the hash identifier must be 00, 01, 02 or 03"
	}
	b64, ok := strings.CutSuffix(rest[3:], ":")
	if !ok {
		return "it must end with ':'"
	}
	key, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return "the key is not padded standard base64"
	}
	n := len(key) - crc32.Size
	if n != 32 && n != 48 && n != 64 {
		return "the key must be 32, 48 or 64 bytes"
	}
	if binary.LittleEndian.Uint32(key[n:]) != crc32.ChecksumIEEE(key[:n]) {
		return "the CRC-32 does not match the key"
	}
	return ""
}

// parseDecimal parses a non-negative decimal number without sign or leading
// zeros, at most max.
func parseDecimal(s string, max int) (int, bool) {
	if s == "" || len(s) > 10 || !allDigits(s) || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > max {
		return 0, false
	}
	return n, true
}
