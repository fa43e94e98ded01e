package fabrics

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ParseReply parses what the kernel returns when the fabrics device is read
// after a successful connect write: "instance=N,cntlid=M" with an optional
// trailing newline, N and M plain decimal numbers (no sign, no leading zeros,
// N <= 2147483647, M <= 65535). Anything else is an error wrapping
// ErrUnexpectedReply.
func ParseReply(reply string) (Controller, error) {
	s := strings.TrimSuffix(reply, "\n")
	if rest, ok := strings.CutPrefix(s, "instance="); ok {
		inst, cntlid, ok := strings.Cut(rest, ",cntlid=")
		if ok {
			n, ok1 := parseDecimal(inst, math.MaxInt32)
			c, ok2 := parseDecimal(cntlid, 65535)
			if ok1 && ok2 {
				return Controller{Name: "nvme" + inst, Instance: n, CntlID: c}, nil
			}
		}
	}
	return Controller{}, fmt.Errorf("%w: want \"instance=N,cntlid=M\", got %s", ErrUnexpectedReply, quoteShort(reply))
}

// quoteShort quotes at most 128 bytes of s, for error messages.
func quoteShort(s string) string {
	const max = 128
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// OptionSet is the set of option names a kernel supports, as listed by a read
// of a fresh /dev/nvme-fabrics descriptor. The zero value is an unknown set
// (Known is false): the kernel did not say.
type OptionSet struct {
	names map[string]struct{}
}

// Known reports whether the set came from the kernel.
func (s OptionSet) Known() bool { return s.names != nil }

// Has reports whether the kernel listed the option name ("tls", "keyring").
// It is false for every name on an unknown set.
func (s OptionSet) Has(name string) bool {
	_, ok := s.names[name]
	return ok
}

// Names returns the option names, sorted.
func (s OptionSet) Names() []string { return slices.Sorted(maps.Keys(s.names)) }

// ParseSupported parses the option list a read of a fresh /dev/nvme-fabrics
// descriptor returns:
//
//	instance=-1,cntlid=-1,transport=%s,traddr=%s,...,duplicate_connect,...,tls
//
// (optionally newline terminated) into the set of option names. Each entry is
// a name of lower case letters, digits and '_', optionally followed by
// "=%<verb>". Anything else, including a list without "instance=-1,cntlid=-1"
// first or without any option, is an error wrapping ErrUnexpectedReply.
func ParseSupported(list string) (OptionSet, error) {
	bad := func(why string) (OptionSet, error) {
		return OptionSet{}, fmt.Errorf("%w: option list %s: %s", ErrUnexpectedReply, quoteShort(list), why)
	}
	s := strings.TrimSuffix(list, "\n")
	rest, ok := strings.CutPrefix(s, "instance=-1,cntlid=-1,")
	if !ok {
		return bad(`want "instance=-1,cntlid=-1," first`)
	}
	names := make(map[string]struct{}, 32)
	for entry := range strings.SplitSeq(rest, ",") {
		name, verb, hasVerb := strings.Cut(entry, "=")
		if !isOptionName(name) {
			return bad("bad option name " + quoteShort(name))
		}
		if hasVerb && !isFormatVerb(verb) {
			return bad("bad format " + quoteShort(verb) + " for " + name)
		}
		names[name] = struct{}{}
	}
	return OptionSet{names: names}, nil
}

func isOptionName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// isFormatVerb accepts the conversion of a match_token pattern: '%' and one
// to three lower case letters ("%s", "%d", "%u", ...).
func isFormatVerb(s string) bool {
	if len(s) < 2 || len(s) > 4 || s[0] != '%' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return true
}
