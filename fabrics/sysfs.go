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
//
// DiskControllers returns the controllers serving a visible NVMe disk
// (sysfs.FS.DiskControllers), an error matching sysfs.ErrNotExist when the
// disk does not exist.
type ControllerSource interface {
	Controllers() ([]sysfs.Controller, error)
	Controller(name string) (sysfs.Controller, error)
	WriteControllerAttr(name, attr, value string) error
	DiskControllers(disk string) ([]string, error)
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
// one created from o (Options.Matches). Among several, a live one wins, then
// the lowest instance.
func findExisting(o *Options, ctrls []sysfs.Controller) (sysfs.Controller, bool) {
	var best *sysfs.Controller
	for i := range ctrls {
		sc := &ctrls[i]
		if !o.Matches(sc) {
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

// Matches reports whether c is the controller the kernel would find instead
// of creating a new one for a connect with o, and one that can still serve
// I/O. It is the one "same controller" rule of this module: Connect uses it
// to adopt on EALREADY and the daemon's registry to reuse a controller.
//
// The kernel's rule (drivers/nvme/host/fabrics.h nvmf_ctlr_matches_baseopts
// and fabrics.c nvmf_ip_options_match, the same on 6.1 and 6.12): not
// deleting, deleting (no IO) or dead; subsystem NQN, hostnqn and hostid
// equal (hostid as a UUID); traddr and trsvcid equal as strings;
// host_traddr and host_iface equal as strings, or absent on both sides. It
// compares the strings it was given, not addresses: "04420" is another
// controller than "4420" (and to the kernel's inet_pton_with_scope it is
// port 2320, octal), "fd00:0::10" another than "fd00::10". So c matches when
// sysfs shows exactly the values this package writes for o (CanonicalIP of
// the addresses, the decimal port, 4420 by default). Two rules of this
// driver on top: the transport must be o's (the kernel only searches that
// transport's controllers), and discovery controllers never match. The
// kernel always compares the host too; sysfs does not name the kernel's
// default host, so an o without HostNQN matches any hostnqn, and one
// without HostID any hostid (a hostnqn without hostid is EINVAL on 6.12;
// 6.1 takes the hostid an earlier connect used with that hostnqn, or a
// random one). A controller with o's hostnqn and another hostid: 6.12
// refuses o (EINVAL, one hostid per hostnqn); 6.1 keeps one host per
// hostnqn, overwrites its hostid with o's and answers EALREADY (seen in the
// lab), after which sysfs shows o's hostid and the controller matches.
func (o *Options) Matches(c *sysfs.Controller) bool {
	switch c.State {
	case sysfs.StateDeleting, sysfs.StateDeletingNoIO, sysfs.StateDead:
		return false
	}
	if c.CntrlType == "discovery" || c.SubsysNQN == DiscoveryNQN {
		return false
	}
	a := &c.Address
	return c.Transport == cmp.Or(o.Transport, DefaultTransport) &&
		c.SubsysNQN == o.NQN &&
		a.Traddr == CanonicalIP(o.Traddr) &&
		a.Trsvcid == strconv.Itoa(cmp.Or(o.Trsvcid, DefaultPort)) &&
		(o.HostNQN == "" || c.HostNQN == o.HostNQN) &&
		(o.HostID == "" || sameUUID(c.HostID, o.HostID)) &&
		a.HostTraddr == CanonicalIP(o.HostTraddr) &&
		a.HostIface == o.HostIface
}

// sameUUID compares two UUIDs as the kernel's uuid_equal does: as values,
// so the case of the hex digits does not matter.
func sameUUID(a, b string) bool { return IsUUID(a) && strings.EqualFold(a, b) }

// controllerName checks a controller name "nvmeN" (sysfs.ControllerInstance)
// and returns N.
func controllerName(name string) (int, error) {
	if n, ok := sysfs.ControllerInstance(name); ok {
		return n, nil
	}
	return 0, invalid("controller", name, `a controller name "nvme<N>"`)
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

// Rescan makes the kernel re-read the namespaces, and so the sizes, behind
// the visible NVMe disk ("nvme3n1") after a target grew one: it writes
// rescan_controller of every controller serving the disk, found with one
// sysfs look-up (with native multipath the disk is its subsystem's head, and
// every controller of the subsystem is rescanned; without, the one
// controller it sits under). The kernel applies a rescan asynchronously:
// the new size shows some time after Rescan returns.
//
// It succeeds when at least one controller took the write (one path is
// enough to re-read the namespace); every controller is written. A disk that does not exist, or whose
// controllers all vanished, gives ErrControllerGone; an EINVAL write,
// ErrInvalidOption; otherwise the errors of every write.
func (c *Client) Rescan(disk string) error {
	if c.sys == nil {
		return errNoSource
	}
	ctrls, err := c.sys.DiskControllers(disk)
	if err != nil {
		return attrError("find the controllers of "+disk, err)
	}
	var errs []error
	gone := 0
	for _, name := range ctrls {
		err := c.sys.WriteControllerAttr(name, "rescan_controller", "1")
		if err == nil {
			continue
		}
		err = attrError("rescan "+name+" (serving "+disk+")", err)
		if errors.Is(err, ErrControllerGone) {
			gone++
		}
		errs = append(errs, err)
	}
	if len(errs) < len(ctrls) {
		return nil
	}
	if gone == len(errs) {
		return &opError{op: "rescan " + disk, kind: ErrControllerGone, err: errors.Join(errs...)}
	}
	return errors.Join(errs...)
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
