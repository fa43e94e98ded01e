package fabrics

import (
	"net"
	"net/netip"
)

// UUIDNQNPrefix starts an NQN made from a UUID (NVMe base specification,
// "nqn.2014-08.org.nvmexpress:uuid:<UUID>"), the form nvme-cli and the
// kernel's default host use for host NQNs.
const UUIDNQNPrefix = "nqn.2014-08.org.nvmexpress:uuid:"

// CanonicalIP returns the one canonical spelling of an IP literal used
// across this module: the form Options are written in (traddr and
// host_traddr), compared against sysfs by Options.Matches, shown in
// messages and used as a metrics label. It is netip's form (lower case,
// shortest IPv6, zone kept), with an IPv4-mapped IPv6 address written as
// IPv4 as package net does ("::ffff:10.0.0.5" is "10.0.0.5": the same
// target). Anything that is not an IP literal is returned unchanged.
func CanonicalIP(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return a.Unmap().String()
}

// HostPort formats a target address and port for messages and grouping:
// "10.0.0.5:4420", "[fd00::5]:4420", the address in its CanonicalIP form and
// the port as given.
func HostPort(traddr, trsvcid string) string {
	return net.JoinHostPort(CanonicalIP(traddr), trsvcid)
}
