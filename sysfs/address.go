package sysfs

import (
	"errors"
	"fmt"
	"strings"
)

// The address attribute of a fabrics controller: comma separated key=value
// fields. The kernel prints traddr, trsvcid, host_traddr and host_iface (the
// last two only when given at connect time), and NVMe/TCP appends src_addr
// while the connection is up:
//
//	traddr=127.0.0.1,trsvcid=4420,src_addr=127.0.0.1
//	traddr=::1,trsvcid=4420,host_iface=eth0
//	traddr=nn-0x1000:pn-0x2000,host_traddr=nn-0x3000:pn-0x4000   (fc)

var errAddressField = errors.New(`malformed address field, want "key=value"`)

// ParseAddress parses an address attribute (a trailing newline is allowed).
// Fields may come in any order and unknown keys are ignored; a field without
// "=", with an empty key, or a known key given twice is an error. The empty
// string is the zero Address.
func ParseAddress(s string) (Address, error) {
	var a Address
	s = trimNewline(s)
	if s == "" {
		return a, nil
	}
	var seen uint8
	for field := range strings.SplitSeq(s, ",") {
		key, value, ok := strings.Cut(field, "=")
		if !ok || key == "" {
			return Address{}, fmt.Errorf("%w: %q", errAddressField, field)
		}
		var dst *string
		var bit uint8
		switch key {
		case "traddr":
			dst, bit = &a.Traddr, 1<<0
		case "trsvcid":
			dst, bit = &a.Trsvcid, 1<<1
		case "src_addr":
			dst, bit = &a.SrcAddr, 1<<2
		case "host_traddr":
			dst, bit = &a.HostTraddr, 1<<3
		case "host_iface":
			dst, bit = &a.HostIface, 1<<4
		default:
			continue
		}
		if seen&bit != 0 {
			return Address{}, fmt.Errorf("%w: %q given twice", errAddressField, key)
		}
		seen |= bit
		*dst = value
	}
	return a, nil
}

// String formats the address as the kernel does, omitting empty fields.
// ParseAddress(a.String()) == a for fields without "," or a newline.
func (a Address) String() string {
	var b strings.Builder
	for _, f := range [...]struct{ key, value string }{
		{"traddr", a.Traddr},
		{"trsvcid", a.Trsvcid},
		{"host_traddr", a.HostTraddr},
		{"host_iface", a.HostIface},
		{"src_addr", a.SrcAddr},
	} {
		if f.value == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f.key)
		b.WriteByte('=')
		b.WriteString(f.value)
	}
	return b.String()
}
