package sysfs

import (
	"errors"
	"fmt"
	"os"
	"slices"
)

// classNVMe holds one symlink per controller:
// class/nvme/nvmeN -> ../../devices/virtual/nvme-fabrics/ctl/nvmeN (fabrics).
const classNVMe = "class/nvme"

// controllerAttrs are the controller attributes besides state (read first:
// a controller without one is being torn down) and address (read second, by
// the guard in teardown.go). Each is optional: transports
// and kernel versions differ in which they show (pcie has no address or
// timeouts, cntrltype and fast_io_fail_tmo are recent). The core ones are in
// every kernel since 4.x.
var controllerAttrs = []attr[Controller]{
	core(textAttr("transport", func(c *Controller) *string { return &c.Transport })),
	textAttr("cntrltype", func(c *Controller) *string { return &c.CntrlType }),
	core(viaSubsystem(textAttr("subsysnqn", func(c *Controller) *string { return &c.SubsysNQN }))),
	textAttr("hostnqn", func(c *Controller) *string { return &c.HostNQN }),
	textAttr("hostid", func(c *Controller) *string { return &c.HostID }),
	core(intAttr("cntlid", func(c *Controller) *int { return &c.CntlID })),
	timeoutAttr("ctrl_loss_tmo", func(c *Controller) *int { return &c.CtrlLossTmo }),
	intAttr("reconnect_delay", func(c *Controller) *int { return &c.ReconnectDelay }),
	timeoutAttr("fast_io_fail_tmo", func(c *Controller) *int { return &c.FastIOFailTmo }),
	intAttr("kato", func(c *Controller) *int { return &c.KATO }),
	intAttr("queue_count", func(c *Controller) *int { return &c.QueueCount }),
	intAttr("sqsize", func(c *Controller) *int { return &c.SQSize }),
	core(viaSubsystem(paddedAttr("model", func(c *Controller) *string { return &c.Model }))),
	core(viaSubsystem(paddedAttr("serial", func(c *Controller) *string { return &c.Serial }))),
	core(viaSubsystem(paddedAttr("firmware_rev", func(c *Controller) *string { return &c.FirmwareRev }))),
	intAttr("numa_node", func(c *Controller) *int { return &c.NUMANode }),
	core(devAttr("dev", func(c *Controller) *DevNum { return &c.Dev })),
}

// connectionAttrs are the controller attributes ControllerConnections reads
// besides state and address: with the address, those that say which
// connection a controller is (transport, subsystem and host) and how it
// recovers (the timeouts), and its device number. A subset of
// controllerAttrs, parsed the same way.
var connectionAttrs = selectAttrs(controllerAttrs, "transport", "cntrltype", "subsysnqn",
	"hostnqn", "hostid", "ctrl_loss_tmo", "reconnect_delay", "fast_io_fail_tmo", "kato", "dev")

// selectAttrs returns the rows of table with the given names, in table order.
func selectAttrs[T any](table []attr[T], names ...string) []attr[T] {
	var out []attr[T]
	for _, a := range table {
		if slices.Contains(names, a.name) {
			out = append(out, a)
		}
	}
	if len(out) != len(names) {
		panic("sysfs: selectAttrs: a name is not in the table")
	}
	return out
}

// viaSubsystem marks a controller attribute the kernel prints from the
// controller's subsystem (subsysnqn, model, serial, firmware_rev). Before the
// first connect completes (state new or connecting) there is no subsystem,
// and the kernel prints its text for a bad pointer instead: "(efault)", or
// "(null)" for NULL. That text is no value: the field stays empty.
func viaSubsystem(a attr[Controller]) attr[Controller] {
	parse := a.parse
	a.parse = func(c *Controller, b []byte) error {
		if noSubsystemText(b) {
			return nil
		}
		return parse(c, b)
	}
	return a
}

// noSubsystemText reports whether b is the kernel's printf text for a bad
// or NULL pointer.
func noSubsystemText(b []byte) bool {
	return string(b) == "(efault)" || string(b) == "(null)"
}

// Controller attributes that WriteControllerAttr accepts.
var writableControllerAttrs = []string{
	"ctrl_loss_tmo",
	"reconnect_delay",
	"fast_io_fail_tmo",
	"delete_controller",
	"reset_controller",
	"rescan_controller",
}

func isControllerName(b []byte) bool {
	rest, ok := cutDigits(b, "nvme")
	return ok && len(rest) == 0
}

// checkControllerName accepts only kernel controller names (nvmeN), so that a
// name can never lead outside class/nvme.
func checkControllerName(name string) error {
	if !isControllerName([]byte(name)) {
		return fmt.Errorf("sysfs: invalid controller name %q, want nvme<N>", name)
	}
	return nil
}

// Controllers reads every controller in class/nvme, sorted by instance, with
// its subsystem and namespaces. Controllers that vanish while being read are
// left out; no class/nvme at all is an empty result. Any other failure (an
// attribute that does not parse, a permission error) is returned, naming the
// path.
func (fs FS) Controllers() ([]Controller, error) {
	names, err := fs.controllerNames()
	if err == nil {
		guard.forgetExcept(fs.path(classNVMe), names)
	}
	if err != nil || len(names) == 0 {
		return nil, err
	}
	owners, err := fs.controllerSubsystems()
	if err != nil {
		return nil, err
	}
	out := make([]Controller, len(names))
	keep := make([]bool, len(names))
	err = forEach(len(names), func(s *scratch, i int) error {
		c, err := fs.readController(s, names[i])
		if errors.Is(err, ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		c.Subsystem = owners[c.Name]
		out[i], keep[i] = c, true
		return nil
	})
	if err != nil {
		return nil, err
	}
	return compact(out, keep), nil
}

// ControllerConnections reads every controller in class/nvme, sorted by
// instance, as Controllers does, but only what identifies its connection and
// how it recovers: Name, Instance, State, StateRaw, Transport, Address,
// CntrlType, SubsysNQN, HostNQN, HostID, CtrlLossTmo, ReconnectDelay,
// FastIOFailTmo, KATO and Dev. The other fields (CntlID, the identify
// strings, queue sizes, NUMANode, Subsystem and Namespaces) are left empty.
// It reads 12 files per controller where Controllers reads 19, plus 9 per
// disk and a pass over the subsystems: it is the daemon's full re-read,
// which needs no disks. Errors are those of Controllers.
func (fs FS) ControllerConnections() ([]Controller, error) {
	names, err := fs.controllerNames()
	if err == nil {
		guard.forgetExcept(fs.path(classNVMe), names)
	}
	if err != nil || len(names) == 0 {
		return nil, err
	}
	out := make([]Controller, len(names))
	keep := make([]bool, len(names))
	err = forEach(len(names), func(s *scratch, i int) error {
		c, err := fs.readControllerAttrs(s, names[i], connectionAttrs, false)
		if errors.Is(err, ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		out[i], keep[i] = c, true
		return nil
	})
	if err != nil {
		return nil, err
	}
	return compact(out, keep), nil
}

// Controller reads one controller by name ("nvme3"). The error wraps
// ErrNotExist when it does not exist or vanishes while being read.
func (fs FS) Controller(name string) (Controller, error) {
	if err := checkControllerName(name); err != nil {
		return Controller{}, err
	}
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	c, err := fs.readController(s, name)
	if err != nil {
		return Controller{}, err
	}
	if c.Subsystem, err = fs.subsystemOf(name); err != nil {
		return Controller{}, err
	}
	return c, nil
}

// ControllerState reads only the state attribute of a controller: the
// State and the text as read (without its newline). Cheap enough to poll.
// The error wraps ErrNotExist when the controller does not exist.
func (fs FS) ControllerState(name string) (State, string, error) {
	if err := checkControllerName(name); err != nil {
		return StateUnknown, "", err
	}
	path := fs.Root() + "/" + classNVMe + "/" + name + "/state"
	var buf [64]byte // the longest state is "deleting (no IO)"
	n, err := readFileInto(path, buf[:])
	switch {
	case err != nil && gone(err):
		return StateUnknown, "", notExist(err)
	case err != nil:
		return StateUnknown, "", ioError(err)
	case n == len(buf):
		return StateUnknown, "", fmt.Errorf("sysfs: %s: longer than any state", path)
	}
	st, raw := parseStateBytes(trimNewlineBytes(buf[:n]))
	return st, raw, nil
}

// WriteControllerAttr writes value to a writable attribute of a controller:
// ctrl_loss_tmo, reconnect_delay, fast_io_fail_tmo (write reconnect_delay
// first: the kernel stores ctrl_loss_tmo as a count of reconnect_delay),
// delete_controller, reset_controller or rescan_controller. Other attribute
// names are refused. The value is written as given, in one write(2).
//
// The attribute is opened O_WRONLY|O_TRUNC and never created: O_TRUNC is a
// no-op on sysfs (the shell's "echo 5 > attr" does the same) and makes
// regular-file test trees hold exactly the value written.
//
// The error wraps ErrNotExist when the controller (or the attribute) does
// not exist or vanishes during the write, and otherwise wraps the
// *fs.PathError, so errors.Is(err, syscall.EINVAL) tells a value the kernel
// refused.
func (fs FS) WriteControllerAttr(name, attr, value string) error {
	if err := checkControllerName(name); err != nil {
		return err
	}
	if !slices.Contains(writableControllerAttrs, attr) {
		return fmt.Errorf("sysfs: controller attribute %q is not writable (writable: %v)", attr, writableControllerAttrs)
	}
	if len(value) >= attrMax {
		return fmt.Errorf("sysfs: value for %s is %d bytes, more than an attribute takes", attr, len(value))
	}
	if attr == "delete_controller" || attr == "reset_controller" {
		defer guard.beginTeardown(fs.path(classNVMe, name))()
	}
	f, err := os.OpenFile(fs.path(classNVMe, name, attr), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return writeError(err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return writeError(err)
}

func writeError(err error) error {
	switch {
	case err == nil:
		return nil
	case gone(err):
		return notExist(err)
	default:
		return ioError(err)
	}
}

// controllerNames lists class/nvme, sorted by instance.
func (fs FS) controllerNames() ([]string, error) {
	names, err := listDir(fs.path(classNVMe), isControllerName)
	if err != nil {
		return nil, err
	}
	sortByInstance(names)
	return names, nil
}

// readController reads one controller without its Subsystem. The error
// wraps ErrNotExist when the controller is gone or being torn down.
func (fs FS) readController(s *scratch, name string) (Controller, error) {
	return fs.readControllerAttrs(s, name, controllerAttrs, true)
}

// readControllerAttrs reads the state and the attributes of table of one
// controller, and its namespaces when withNamespaces.
func (fs FS) readControllerAttrs(s *scratch, name string, table []attr[Controller], withNamespaces bool) (Controller, error) {
	inst, _ := instanceOf(name, "nvme")
	d, err := openDir(s, fs.path(classNVMe, name))
	if err != nil {
		if gone(err) {
			return Controller{}, notExist(err)
		}
		return Controller{}, ioError(err)
	}
	defer d.close()

	b, ok, err := d.attr("state")
	if err != nil {
		return Controller{}, err
	}
	if !ok {
		// Gone, or its attributes already removed ahead of its directory.
		return Controller{}, notExistPath("controller", d.path)
	}
	c := Controller{Name: name, Instance: inst}
	c.State, c.StateRaw = parseStateBytes(b)
	if err := guard.readAddress(&d, &c); err != nil {
		return Controller{}, err
	}
	if err := readAttrs(&d, &c, table); err != nil {
		return Controller{}, err
	}
	if withNamespaces {
		disks, err := d.list(isDisk)
		if err != nil {
			return Controller{}, err
		}
		if c.Namespaces, err = readNamespaces(&d, disks, name, false); err != nil {
			return Controller{}, err
		}
	}
	if d.missing && d.vanished() {
		return Controller{}, notExistPath("controller", d.path)
	}
	return c, nil
}

// parseStateBytes is ParseState that does not allocate for known states.
func parseStateBytes(b []byte) (State, string) {
	st := ParseState(string(b))
	if st == StateUnknown {
		return st, string(b)
	}
	return st, st.String()
}

// sortByInstance sorts kernel object names by their instance numbers.
func sortByInstance(names []string) {
	slices.SortFunc(names, compareNames)
}
