package fabrics

// This file holds everything that depends on package sysfs.

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"syscall"

	"github.com/srvlab/rds-csi/sysfs"
)

// ControllerSource is what Client needs from sysfs; sysfs.FS implements it.
//
// Controller and WriteControllerAttr return an error matching
// sysfs.ErrNotExist when the controller does not exist; WriteControllerAttr
// otherwise wraps the *fs.PathError, so the errno stays reachable.
type ControllerSource interface {
	Controllers() ([]sysfs.Controller, error)
	Controller(name string) (sysfs.Controller, error)
	WriteControllerAttr(name, attr, value string) error
}

var _ ControllerSource = sysfs.FS{}

var errNoSource = errors.New("fabrics: client has no sysfs source")

// adopt looks for the controller that made the kernel answer EALREADY.
// already is that error; it is returned when no controller matches.
func (c *Client) adopt(o *Options, already error) (Controller, error) {
	if c.sys == nil {
		return Controller{}, already
	}
	ctrls, err := c.sys.Controllers()
	if err != nil {
		return Controller{}, fmt.Errorf("%w; finding the existing controller failed: %w", already, err)
	}
	sc, ok := findExisting(o, ctrls)
	if !ok {
		return Controller{}, already
	}
	return Controller{Name: sc.Name, Instance: sc.Instance, CntlID: sc.CntlID, Adopted: true}, nil
}

// findExisting returns the controller the kernel would consider identical to
// one created from o (drivers/nvme/host/fabrics.c nvmf_ip_options_match):
// same transport, subsystem NQN, traddr and trsvcid; the same hostnqn and
// hostid when o gives them (the kernel's default host otherwise, which
// sysfs does not tell); host_traddr and host_iface equal, or absent on both
// sides; not deleting or dead; not a discovery controller. IP addresses are
// compared canonically. Among several, a live one wins, then the lowest
// instance.
func findExisting(o *Options, ctrls []sysfs.Controller) (sysfs.Controller, bool) {
	var best *sysfs.Controller
	for i := range ctrls {
		sc := &ctrls[i]
		if !matchesExisting(o, sc) {
			continue
		}
		if best == nil || betterCandidate(sc, best) {
			best = sc
		}
	}
	if best == nil {
		return sysfs.Controller{}, false
	}
	return *best, true
}

func betterCandidate(a, b *sysfs.Controller) bool {
	if a.State.Live() != b.State.Live() {
		return a.State.Live()
	}
	return a.Instance < b.Instance
}

func matchesExisting(o *Options, sc *sysfs.Controller) bool {
	switch sc.State {
	case sysfs.StateDeleting, sysfs.StateDeletingNoIO, sysfs.StateDead:
		return false
	}
	if sc.CntrlType == "discovery" || sc.SubsysNQN == DiscoveryNQN {
		return false
	}
	if sc.Transport != cmp.Or(o.Transport, DefaultTransport) || sc.SubsysNQN != o.NQN {
		return false
	}
	a := &sc.Address
	if !sameIP(a.Traddr, o.Traddr) {
		return false
	}
	if port, ok := parseDecimal(a.Trsvcid, 65535); !ok || port != cmp.Or(o.Trsvcid, DefaultPort) {
		return false
	}
	if o.HostNQN != "" && sc.HostNQN != o.HostNQN {
		return false
	}
	if o.HostID != "" && !strings.EqualFold(sc.HostID, o.HostID) {
		return false
	}
	if (o.HostTraddr == "") != (a.HostTraddr == "") ||
		(o.HostTraddr != "" && !sameIP(a.HostTraddr, o.HostTraddr)) {
		return false
	}
	return a.HostIface == o.HostIface
}

// Disconnect deletes the controller name ("nvme3") by writing its sysfs
// delete_controller attribute. The write is synchronous for a live
// controller. A controller that does not exist (any more) gives an error
// matching ErrControllerGone: callers that want it gone treat that as
// success.
func (c *Client) Disconnect(name string) error {
	if _, err := controllerName(name); err != nil {
		return err
	}
	if c.sys == nil {
		return errNoSource
	}
	return attrError("disconnect "+name, c.sys.WriteControllerAttr(name, "delete_controller", "1"))
}

// UpdateTimeouts changes the timeouts of an existing controller through its
// sysfs attributes. Only the fields set are written, in the order the kernel
// needs: reconnect_delay, then ctrl_loss_tmo (stored as
// ceil(ctrl_loss_tmo/reconnect_delay) attempts, so it must see the new
// delay), then fast_io_fail_tmo. -1 is written as "-1". Setting
// ReconnectDelay alone keeps the attempt count, so it changes the effective
// ctrl_loss_tmo: set CtrlLossTmo too to keep it.
//
// t is validated first (ErrInvalidOption), including fast_io_fail_tmo <=
// ctrl_loss_tmo; when only FastIOFailTmo is given, the controller's current
// ctrl_loss_tmo is read for that check. A controller that does not exist
// gives ErrControllerGone. A failed write stops the sequence; the error
// names the attributes already written.
func (c *Client) UpdateTimeouts(name string, t Timeouts) error {
	if _, err := controllerName(name); err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return err
	}
	if c.sys == nil {
		return errNoSource
	}
	if ff, ok := t.FastIOFailTmo.Get(); ok && ff >= 0 && !t.CtrlLossTmo.IsSet() {
		cur, err := c.sys.Controller(name)
		if err != nil {
			return attrError("read "+name, err)
		}
		if err := checkFailFast(t.CtrlLossTmo, t.FastIOFailTmo, cur.CtrlLossTmo); err != nil {
			return err
		}
	}
	writes := [...]struct {
		attr string
		v    OptInt
	}{
		{"reconnect_delay", t.ReconnectDelay},
		{"ctrl_loss_tmo", t.CtrlLossTmo},
		{"fast_io_fail_tmo", t.FastIOFailTmo},
	}
	var done []string
	for _, w := range writes {
		n, ok := w.v.Get()
		if !ok {
			continue
		}
		v := strconv.Itoa(n)
		if err := c.sys.WriteControllerAttr(name, w.attr, v); err != nil {
			op := "set " + w.attr + " " + v + " on " + name
			if len(done) > 0 {
				op += " (" + strings.Join(done, ", ") + " already set)"
			}
			return attrError(op, err)
		}
		done = append(done, w.attr)
	}
	return nil
}

// attrError classifies a sysfs failure: a missing controller is
// ErrControllerGone, EINVAL is ErrInvalidOption.
func attrError(op string, err error) error {
	if err == nil {
		return nil
	}
	var k error
	switch {
	case errors.Is(err, sysfs.ErrNotExist), errors.Is(err, fs.ErrNotExist):
		k = ErrControllerGone
	case errors.Is(err, syscall.EINVAL):
		k = ErrInvalidOption
	}
	return &opError{op: op, kind: k, err: err}
}
