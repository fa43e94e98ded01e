package fabrics

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	gocmp "github.com/google/go-cmp/cmp"
)

// kv is one entry of an option string.
type kv struct {
	Key, Value string
	Flag       bool
}

func splitOptions(s string) []kv {
	var out []kv
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		out = append(out, kv{Key: k, Value: v, Flag: !ok})
	}
	return out
}

// FuzzOptionString: whatever the field values, either validation fails with
// an *OptionError (never showing a secret), or the option string splits on
// ',' into exactly the intended keys, each once, in the fixed order, with
// values equal to the inputs (IP literals in canonical form).
func FuzzOptionString(f *testing.F) {
	full := fullOptions()
	f.Add("tcp", full.Traddr, 4420, full.NQN, full.HostNQN, full.HostID, full.HostTraddr, full.HostIface,
		string(full.DHCHAPSecret), string(full.DHCHAPCtrlSecret), uint16(0x7ff), uint8(0x7f),
		-1, 2, 5, 30, 4, 2, 1, 128, 0, 123456, 654321)
	f.Add("", "192.0.2.10", 0, testNQN, "", "", "", "", "", "", uint16(0), uint8(0), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	f.Add("tcp", "FD00::1", 8009, DiscoveryNQN, "", "", "fd00:0::2", "eth0", "", "", uint16(1), uint8(0x10), -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	f.Add("tcp", "192.0.2.10", 4420, testNQN+",hostnqn=x", "", "", "", "", "", "", uint16(0), uint8(0), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	f.Add("tcp", "192.0.2.10", 4420, testNQN, "", "", "", "", "DHHC-1:00:x=,y:", "", uint16(0), uint8(0), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

	f.Fuzz(func(t *testing.T, transport, traddr string, port int, nqn, hostnqn, hostid, hostTraddr, hostIface,
		sec, ctrlSec string, setMask uint16, flags uint8,
		ctrlLoss, reconnect, kato, failFast, nrIO, nrWrite, nrPoll, queueSize, tos, keyring, tlsKey int) {
		nums := []int{ctrlLoss, reconnect, kato, failFast, nrIO, nrWrite, nrPoll, queueSize, tos, keyring, tlsKey}
		opt := make([]OptInt, len(nums))
		for i, n := range nums {
			if setMask&(1<<i) != 0 {
				opt[i] = Int(n)
			}
		}
		flag := func(i int) bool { return flags&(1<<i) != 0 }
		o := Options{
			Transport: transport, Traddr: traddr, Trsvcid: port, NQN: nqn,
			HostNQN: hostnqn, HostID: hostid, HostTraddr: hostTraddr, HostIface: hostIface,
			CtrlLossTmo: opt[0], ReconnectDelay: opt[1], KeepAliveTmo: opt[2], FastIOFailTmo: opt[3],
			NrIOQueues: opt[4], NrWriteQueues: opt[5], NrPollQueues: opt[6], QueueSize: opt[7], TOS: opt[8],
			Keyring: opt[9], TLSKey: opt[10],
			DuplicateConnect: flag(0), DisableSQFlow: flag(1), HdrDigest: flag(2), DataDigest: flag(3),
			Discovery: flag(4), TLS: flag(5), Concat: flag(6),
			DHCHAPSecret: Secret(sec), DHCHAPCtrlSecret: Secret(ctrlSec),
		}

		s, err := o.optionString()
		if err != nil {
			var oe *OptionError
			if !errors.As(err, &oe) || !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("validation error %v is not an invalid *OptionError", err)
			}
			if strings.HasPrefix(oe.Field, "dhchap") {
				if oe.Value != redacted {
					t.Fatalf("secret field error shows its value: %q", oe.Value)
				}
				if !strings.HasPrefix(oe.Allowed, ruleDHHC) && !strings.HasPrefix(oe.Allowed, ruleChars) &&
					!strings.HasPrefix(oe.Allowed, "dhchap_ctrl_secret only") {
					t.Fatalf("unexpected Allowed text for a secret: %q", oe.Allowed)
				}
			}
			return
		}

		var want []kv
		add := func(k, v string) { want = append(want, kv{Key: k, Value: v}) }
		addNum := func(k string, v OptInt) {
			if n, ok := v.Get(); ok {
				add(k, strconv.Itoa(n))
			}
		}
		addStr := func(k, v string) {
			if v != "" {
				add(k, v)
			}
		}
		addFlag := func(k string, b bool) {
			if b {
				want = append(want, kv{Key: k, Flag: true})
			}
		}
		canon := func(ip string) string {
			if ip == "" {
				return ""
			}
			return netip.MustParseAddr(ip).String()
		}
		add("transport", cmp.Or(transport, "tcp"))
		add("traddr", canon(traddr))
		add("trsvcid", strconv.Itoa(cmp.Or(port, 4420)))
		add("nqn", nqn)
		addNum("queue_size", o.QueueSize)
		addNum("nr_io_queues", o.NrIOQueues)
		addNum("reconnect_delay", o.ReconnectDelay)
		addNum("ctrl_loss_tmo", o.CtrlLossTmo)
		addNum("keep_alive_tmo", o.KeepAliveTmo)
		addStr("hostnqn", hostnqn)
		addStr("host_traddr", canon(hostTraddr))
		addStr("host_iface", hostIface)
		addStr("hostid", hostid)
		addFlag("duplicate_connect", o.DuplicateConnect)
		addFlag("disable_sqflow", o.DisableSQFlow)
		addFlag("hdr_digest", o.HdrDigest)
		addFlag("data_digest", o.DataDigest)
		addNum("nr_write_queues", o.NrWriteQueues)
		addNum("nr_poll_queues", o.NrPollQueues)
		addNum("tos", o.TOS)
		addNum("keyring", o.Keyring)
		addNum("tls_key", o.TLSKey)
		addNum("fast_io_fail_tmo", o.FastIOFailTmo)
		addFlag("discovery", o.Discovery)
		addStr("dhchap_secret", sec)
		addStr("dhchap_ctrl_secret", ctrlSec)
		addFlag("tls", o.TLS)
		addFlag("concat", o.Concat)

		got := splitOptions(s)
		if diff := gocmp.Diff(want, got); diff != "" {
			t.Fatalf("option string %q (-want +got):\n%s", s, diff)
		}
		seen := map[string]bool{}
		for _, e := range got {
			if seen[e.Key] {
				t.Fatalf("key %s twice in %q", e.Key, s)
			}
			seen[e.Key] = true
		}
		if strings.ContainsAny(s, "\n\x00 \t") {
			t.Fatalf("option string %q holds a separator", s)
		}
		r := o.Redacted()
		for _, secret := range []string{sec, ctrlSec} {
			if secret != "" && strings.Contains(r, secret) {
				t.Fatalf("Redacted() %q shows a secret", r)
			}
		}
	})
}

// FuzzParseReply: a reply parses only if it is exactly the canonical
// "instance=N,cntlid=M" (optionally newline terminated).
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"instance=3,cntlid=1\n", "instance=0,cntlid=0", "instance=-1,cntlid=-1\n", probe612, "", "instance=03,cntlid=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseReply(s)
		if err != nil {
			if !errors.Is(err, ErrUnexpectedReply) {
				t.Fatalf("error %v does not wrap ErrUnexpectedReply", err)
			}
			if c != (Controller{}) {
				t.Fatalf("non-zero controller %+v with an error", c)
			}
			return
		}
		if back := fmt.Sprintf("instance=%d,cntlid=%d", c.Instance, c.CntlID); back != strings.TrimSuffix(s, "\n") {
			t.Fatalf("ParseReply(%q) = %+v, which formats as %q", s, c, back)
		}
		if c.Name != "nvme"+strconv.Itoa(c.Instance) || c.Adopted || c.CntlID > 65535 || c.Instance < 0 {
			t.Fatalf("ParseReply(%q) = %+v", s, c)
		}
		if _, err := controllerName(c.Name); err != nil {
			t.Fatalf("name %q from the reply is not a controller name: %v", c.Name, err)
		}
	})
}

var nqnOracle = regexp.MustCompile(`^nqn\.[0-9]{4}-(0[1-9]|1[0-2])\.` +
	`[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*` +
	`(:.+)?$`)

var uuidOracle = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// FuzzValidateNQN compares ValidateNQN with a regular-expression oracle.
func FuzzValidateNQN(f *testing.F) {
	for _, s := range []string{testNQN, testHostNQN, DiscoveryNQN, "nqn.2014-08.org.nvmexpress:uuid:x",
		"nqn.2014-13.org.example:a", "nqn.2014-08.org..example", "nqn.2014-08.a-.b:c", "nqn.2014-08.org.example:a,b",
		"nqn.2014-08.org.example:\u00a0", "nqn.2014-08.x:\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateNQN(s)
		safe := len(s) <= 222 && utf8.ValidString(s)
		for _, r := range s[:min(len(s), 223)] {
			if r == ',' || r == '=' || unicode.IsSpace(r) || unicode.IsControl(r) {
				safe = false
			}
		}
		want := s != "" && safe && nqnOracle.MatchString(s)
		if u, ok := strings.CutPrefix(s, UUIDNQNPrefix); ok && !uuidOracle.MatchString(u) {
			want = false
		}
		if (err == nil) != want {
			t.Fatalf("ValidateNQN(%q) = %v, oracle says valid=%v", s, err, want)
		}
		if err != nil {
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Field != "nqn" || oe.Value != s || !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("ValidateNQN(%q) = %#v", s, err)
			}
		}
	})
}

var optionNameOracle = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// FuzzParseSupported: a parsed set holds only well-formed names that occur
// in the input, and survives a round trip.
func FuzzParseSupported(f *testing.F) {
	for _, s := range []string{probe612, probe61, "instance=-1,cntlid=-1,tls", "instance=-1,cntlid=-1,a=%s,a,b=%d\n", "", "instance=3,cntlid=1\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := ParseSupported(s)
		if err != nil {
			if !errors.Is(err, ErrUnexpectedReply) || set.Known() {
				t.Fatalf("ParseSupported(%q) = known %v, %v", s, set.Known(), err)
			}
			return
		}
		names := set.Names()
		if len(names) == 0 || !set.Known() {
			t.Fatalf("ParseSupported(%q) accepted an empty list", s)
		}
		for _, n := range names {
			if !optionNameOracle.MatchString(n) || !strings.Contains(s, n) || !set.Has(n) {
				t.Fatalf("ParseSupported(%q) gave name %q", s, n)
			}
		}
		again, err := ParseSupported("instance=-1,cntlid=-1," + strings.Join(names, ","))
		if err != nil {
			t.Fatalf("round trip of %q: %v", names, err)
		}
		if diff := gocmp.Diff(names, again.Names()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
