package daemon

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/srvlab/rds-csi/fabrics"
)

// MaxReconnectSpread is the largest Spec.ReconnectSpread, in seconds.
const MaxReconnectSpread = 600

// maxReconnectDelay is the kernel's largest reconnect_delay (seconds; the
// fabrics package validates the same bound).
const maxReconnectDelay = 2147483

// maxCtrlLossTmo is the largest ctrl_loss_tmo the kernel accepts (an int).
const maxCtrlLossTmo = 1<<31 - 1

// Spread is how a controller's reconnect timer was spread: the kernel
// retries every Base+Offset seconds instead of every Base seconds.
type Spread struct {
	Base   int // the volume's reconnectDelay, seconds
	Bound  int // the volume's reconnectSpread: Offset is in 0..Bound
	Offset int // this controller's offset, seconds
}

// Known reports whether the spread was set by an Attach of this daemon.
func (s Spread) Known() bool { return s.Base > 0 }

// Delay is the reconnect_delay written: Base+Offset.
func (s Spread) Delay() int { return s.Base + s.Offset }

// AvgCost is the average extra time to recover after the target comes back
// at a random moment, compared with no spread: the next attempt comes on
// average half a period after the target is back, and the period is Offset
// seconds longer. The worst case is Offset seconds.
func (s Spread) AvgCost() float64 { return float64(s.Offset) / 2 }

// String is "reconnect every 7s (reconnectDelay 5s + spread 2s of 0..4s: on
// average 1s, at most 2s, later back after a target restart)".
func (s Spread) String() string {
	if !s.Known() {
		return ""
	}
	if s.Bound == 0 {
		return fmt.Sprintf("reconnect every %ds (no spread)", s.Base)
	}
	return fmt.Sprintf("reconnect every %ds (reconnectDelay %ds + spread %ds of 0..%ds: on average %gs, at most %ds, later back after a target restart)",
		s.Delay(), s.Base, s.Offset, s.Bound, s.AvgCost(), s.Offset)
}

// spreadOffset is the controller's deterministic offset in 0..bound
// seconds: a SHA-256 of the host (host NQN and host id) and the connection
// (transport, subsystem NQN, target address and port, source address and
// interface), so it is the same after a restart, on every kernel and Go
// version, and differs between nodes and between the volumes of one node.
func spreadOffset(hostID string, k connKey, bound int) int {
	if bound <= 0 {
		return 0
	}
	h := sha256.New()
	for _, f := range []string{k.hostNQN, hostID, k.transport, k.nqn, k.traddr, k.trsvcid, k.hostTraddr, k.hostIface} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)
	return int(binary.BigEndian.Uint64(sum[:8]) % uint64(bound+1))
}

// spreadFor is the spread of a spec: zero (not Known) when the spec sets no
// reconnect_delay.
func spreadFor(spec *Spec) Spread {
	base, ok := spec.Options.ReconnectDelay.Get()
	if !ok || base <= 0 {
		return Spread{}
	}
	s := Spread{Base: base, Bound: spec.ReconnectSpread}
	s.Offset = min(spreadOffset(spec.Options.HostID, keyOf(&spec.Options), s.Bound), maxReconnectDelay-base)
	return s
}

// spreadCtrlLossTmo is the ctrl_loss_tmo to write with reconnect_delay
// delay so that the kernel gives up no earlier than tmo seconds after the
// loss and less than one delay later: the kernel keeps
// max_reconnects = DIV_ROUND_UP(ctrl_loss_tmo, reconnect_delay) attempts
// and removes the controller when attempt max_reconnects (at about
// max_reconnects*delay) fails. The value returned is that attempt count
// times delay, so the attribute reads back exactly what was written. -1
// (any negative) stays -1 (reconnect forever), 0 stays 0 (remove on the
// first failure). Exact when delay divides tmo.
func spreadCtrlLossTmo(tmo, delay int) int {
	switch {
	case tmo < 0:
		return -1
	case tmo == 0 || delay <= 0:
		return tmo
	}
	n := (tmo + delay - 1) / delay
	if n*delay > maxCtrlLossTmo { // only near the int32 limit: one attempt fewer
		n--
	}
	return n * delay
}

// spreadOptions returns the options with the spread applied: reconnect_delay
// is Base+Offset and ctrl_loss_tmo is converted with spreadCtrlLossTmo. With
// a zero bound the options are returned as they are (the kernel's own
// rounding of ctrl_loss_tmo applies, as before the spread existed).
func spreadOptions(o fabrics.Options, s Spread) fabrics.Options {
	if !s.Known() || s.Bound == 0 {
		return o
	}
	o.ReconnectDelay = fabrics.Int(s.Delay())
	if tmo, ok := o.CtrlLossTmo.Get(); ok {
		o.CtrlLossTmo = fabrics.Int(spreadCtrlLossTmo(tmo, s.Delay()))
	}
	return o
}
