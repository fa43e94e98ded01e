// Package sysfstest lays out synthetic NVMe over Fabrics sysfs trees for
// tests: the directories, attribute files and symlinks that the kernel shows
// under /sys for controllers (class/nvme), subsystems (class/nvme-subsystem),
// their block disks (block) and nvme_core's multipath parameter, with the
// same relative symlinks as a real kernel (compare the captured trees in
// testdata/sysfs at the repository's root):
//
//	class/nvme/nvme0 -> ../../devices/virtual/nvme-fabrics/ctl/nvme0
//	class/nvme-subsystem/nvme-subsys0 -> ../../devices/virtual/nvme-subsystem/nvme-subsys0
//	devices/virtual/nvme-subsystem/nvme-subsys0/nvme0 -> ../../nvme-fabrics/ctl/nvme0
//	devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1          head disk (multipath on)
//	devices/virtual/nvme-fabrics/ctl/nvme0/nvme0c0n1              hidden per-path disk
//	devices/virtual/nvme-fabrics/ctl/nvme0/nvme0n1                visible disk (multipath off)
//	block/nvme0n1 -> ../devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1
//
// Build writes a tree from a Spec; Generate makes a Spec of many controllers
// in a realistic mix of states; SetState, SetAttr, RemoveController and
// RemoveDisk change a built tree the way the kernel would.
package sysfstest

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Defaults written when a Spec leaves a value empty.
const (
	DefaultHostNQN   = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000001"
	DefaultHostID    = "00000000-0000-4000-8000-000000000001"
	DefaultTraddr    = "127.0.0.1"
	DefaultTrsvcid   = "4420"
	DefaultModel     = "Linux"
	DefaultFirmware  = "6.12.0"
	DefaultSectors   = 2097152 // 1 GiB
	DiscoveryNQN     = "nqn.2014-08.org.nvmexpress.discovery"
	DiscoveryTrsvcid = "8009"

	ctrlMajor    = 245 // the nvme char devices (dynamic on a real kernel)
	genericMajor = 243 // the nvme-generic char devices (ngXnY)
	blockMajor   = 259 // blkext
)

// Spec describes a tree.
type Spec struct {
	// Multipath is nvme_core's multipath parameter. True: each namespace is a
	// head disk under its subsystem plus a hidden per-path disk under each
	// controller. False: a visible disk under each controller.
	Multipath bool
	// NoModule leaves out module/nvme_core (nvme_core not loaded).
	NoModule   bool
	Subsystems []Subsystem
}

// Subsystem describes one nvme-subsysK and everything under it.
type Subsystem struct {
	Instance int
	NQN      string // required
	// Type is subsystype: "nvm" when empty; "discovery" for a discovery
	// subsystem (whose controllers default to discovery controllers).
	Type        string
	Model       string // DefaultModel when empty; written space padded to 40 characters
	Serial      string // derived from Instance when empty; padded to 20
	IOPolicy    string // "numa" when empty
	Controllers []Controller
	Namespaces  []Namespace
	Omit        []string // subsystem attributes to leave out
}

// Controller describes one nvmeN controller. Attributes not given here get
// the values a live NVMe/TCP I/O controller with kernel defaults shows.
type Controller struct {
	Instance int
	// State is the state attribute, verbatim ("live" when empty).
	State string
	// Address is the address attribute, verbatim. When empty:
	// traddr=127.0.0.1,trsvcid=4420 (8009 for discovery), followed by
	// ,src_addr=127.0.0.1 only in state live (none while connecting).
	Address string
	// Attrs sets or overrides attributes by name, verbatim without the
	// newline: for example "ctrl_loss_tmo": "off" or "model": "RDS".
	Attrs map[string]string
	// Omit leaves attributes out, as older kernels or other transports do
	// (for example "cntrltype", "fast_io_fail_tmo").
	Omit []string
}

// Namespace describes one namespace of a subsystem, served by each of its
// controllers.
type Namespace struct {
	NSID uint32
	// UUID is the uuid attribute; derived from the subsystem instance and
	// NSID when empty. The wwid is "uuid." + UUID.
	UUID    string
	NGUID   string // the nguid attribute, absent when empty (as with Linux nvmet's default)
	Sectors uint64 // DefaultSectors when zero
	// ANAState is the per-path ana_state (multipath only): "optimized" when
	// empty.
	ANAState string
}

// UUIDFor is the UUID a Namespace gets when its spec leaves UUID empty.
func UUIDFor(subsysInstance int, nsid uint32) string {
	return fmt.Sprintf("%08x-%04x-4000-8000-%012x", subsysInstance, nsid&0xffff, nsid)
}

// Paths relative to the root.
const (
	classNVMe     = "class/nvme"
	classSubsys   = "class/nvme-subsystem"
	classBlock    = "class/block"
	block         = "block"
	ctlDir        = "devices/virtual/nvme-fabrics/ctl"
	subsysDevices = "devices/virtual/nvme-subsystem"
	multipathFile = "module/nvme_core/parameters/multipath"
)

// ControllerDir is the real directory of controller name ("nvme3").
func ControllerDir(root, name string) string { return filepath.Join(root, ctlDir, name) }

// SubsystemDir is the real directory of subsystem name ("nvme-subsys0").
func SubsystemDir(root, name string) string { return filepath.Join(root, subsysDevices, name) }

// Build writes the tree described by spec under root, creating root if
// needed. It may be called again on the same root with more subsystems or
// controllers (with new instance numbers) to add them, as a connect would.
func Build(root string, spec Spec) error {
	b := builder{root: root, spec: spec}
	return b.build()
}

type builder struct {
	root      string
	spec      Spec
	blockNext int // next minor for block disks
	diskseq   int
}

func (b *builder) build() error {
	for _, d := range []string{classNVMe, classSubsys, classBlock, block, ctlDir, subsysDevices} {
		if err := os.MkdirAll(filepath.Join(b.root, d), 0o755); err != nil {
			return err
		}
	}
	if !b.spec.NoModule {
		v := "N"
		if b.spec.Multipath {
			v = "Y"
		}
		if err := b.write(multipathFile, v, 0o644); err != nil {
			return err
		}
	}
	// Continue block minors after disks already in the tree.
	devs, _ := filepath.Glob(filepath.Join(b.root, block, "*", "dev"))
	for _, d := range devs {
		if v, err := os.ReadFile(d); err == nil {
			_, minor, _ := strings.Cut(strings.TrimSpace(string(v)), ":")
			if m, err := strconv.Atoi(minor); err == nil && m+2 > b.blockNext {
				b.blockNext = m + 2
			}
		}
	}
	// Subsystems are independent: build them in parallel (file creation is
	// slow on some disks), each starting at the device numbers a sequential
	// build would give it, so the tree does not depend on scheduling.
	subs := make([]builder, len(b.spec.Subsystems))
	for i, s := range b.spec.Subsystems {
		subs[i] = *b
		visible, disks := 0, 0
		if s.Type != "discovery" {
			n, c := len(s.Namespaces), len(s.Controllers)
			if b.spec.Multipath {
				visible, disks = n, n*(1+c)
			} else {
				visible, disks = n*c, n*c
			}
		}
		b.blockNext += 2 * visible
		b.diskseq += disks
	}
	errs := make([]error, len(subs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), 8) {
		wg.Go(func() {
			for i := range next {
				errs[i] = subs[i].subsystem(b.spec.Subsystems[i])
			}
		})
	}
	for i := range subs {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("sysfstest: subsystem %d: %w", b.spec.Subsystems[i].Instance, err)
		}
	}
	return nil
}

func (b *builder) subsystem(s Subsystem) error {
	if s.NQN == "" {
		return errors.New("empty NQN")
	}
	name := fmt.Sprintf("nvme-subsys%d", s.Instance)
	dir := filepath.Join(subsysDevices, name)
	typ := cmp.Or(s.Type, "nvm")
	attrs := map[string]string{
		"subsysnqn":    s.NQN,
		"subsystype":   typ,
		"iopolicy":     cmp.Or(s.IOPolicy, "numa"),
		"model":        pad(cmp.Or(s.Model, DefaultModel), 40),
		"serial":       pad(cmp.Or(s.Serial, fmt.Sprintf("%016x", s.Instance+1)), 20),
		"firmware_rev": pad(DefaultFirmware, 8),
		"uevent":       "",
	}
	// A subsystem already in the tree (Build adding another controller to
	// it, as a second path's connect does) keeps its attributes, as the
	// kernel keeps them when a controller joins: rewriting iopolicy here
	// raced with, and undid, a policy set through sysfs.
	if _, err := os.Stat(filepath.Join(b.root, dir, "subsysnqn")); err != nil {
		if err := b.attrs(dir, attrs, s.Omit); err != nil {
			return err
		}
	}
	for _, d := range []string{"power"} {
		if err := os.MkdirAll(filepath.Join(b.root, dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := b.link(filepath.Join(dir, "subsystem"), classSubsys); err != nil {
		return err
	}
	if err := b.link(filepath.Join(classSubsys, name), dir); err != nil {
		return err
	}
	for _, c := range s.Controllers {
		if err := b.controller(s, c); err != nil {
			return fmt.Errorf("controller %d: %w", c.Instance, err)
		}
		ctrl := fmt.Sprintf("nvme%d", c.Instance)
		if err := b.link(filepath.Join(dir, ctrl), filepath.Join(ctlDir, ctrl)); err != nil {
			return err
		}
	}
	if typ == "discovery" {
		return nil
	}
	for i, ns := range s.Namespaces {
		if err := b.namespace(s, i+1, ns); err != nil {
			return fmt.Errorf("namespace %d: %w", ns.NSID, err)
		}
	}
	return nil
}

func (b *builder) controller(s Subsystem, c Controller) error {
	name := fmt.Sprintf("nvme%d", c.Instance)
	dir := filepath.Join(ctlDir, name)
	discovery := s.Type == "discovery"
	state := cmp.Or(c.State, "live")
	addr := c.Address
	if addr == "" {
		port := DefaultTrsvcid
		if discovery {
			port = DiscoveryTrsvcid
		}
		addr = "traddr=" + DefaultTraddr + ",trsvcid=" + port
		if state == "live" {
			addr += ",src_addr=" + DefaultTraddr
		}
	}
	attrs := map[string]string{
		"state":             state,
		"address":           addr,
		"transport":         "tcp",
		"cntrltype":         "io",
		"dctype":            "none",
		"subsysnqn":         s.NQN,
		"hostnqn":           DefaultHostNQN,
		"hostid":            DefaultHostID,
		"cntlid":            strconv.Itoa(c.Instance%0xffef + 1),
		"ctrl_loss_tmo":     "600",
		"reconnect_delay":   "10",
		"fast_io_fail_tmo":  "off",
		"kato":              "5",
		"queue_count":       "3",
		"sqsize":            "127",
		"model":             pad(cmp.Or(s.Model, DefaultModel), 40),
		"serial":            pad(cmp.Or(s.Serial, fmt.Sprintf("%016x", s.Instance+1)), 20),
		"firmware_rev":      pad(DefaultFirmware, 8),
		"numa_node":         "-1",
		"dev":               fmt.Sprintf("%d:%d", ctrlMajor, c.Instance),
		"uevent":            fmt.Sprintf("MAJOR=%d\nMINOR=%d\nDEVNAME=%s", ctrlMajor, c.Instance, name),
		"delete_controller": "",
		"reset_controller":  "",
		"rescan_controller": "",
	}
	if discovery {
		attrs["cntrltype"] = "discovery"
		attrs["kato"] = "30"
		attrs["queue_count"] = "1"
		attrs["sqsize"] = "31"
	}
	for k, v := range c.Attrs {
		attrs[k] = v
	}
	if err := b.attrs(dir, attrs, c.Omit); err != nil {
		return err
	}
	for _, d := range []string{"power", fmt.Sprintf("hwmon%d", c.Instance)} {
		if err := os.MkdirAll(filepath.Join(b.root, dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := b.link(filepath.Join(dir, "device"), ctlDir); err != nil {
		return err
	}
	if err := b.link(filepath.Join(dir, "subsystem"), classNVMe); err != nil {
		return err
	}
	return b.link(filepath.Join(classNVMe, name), dir)
}

// namespace lays out the disks of namespace ns, the head-th of subsystem s.
func (b *builder) namespace(s Subsystem, head int, ns Namespace) error {
	if ns.NSID == 0 {
		return errors.New("nsid 0")
	}
	uuid := cmp.Or(ns.UUID, UUIDFor(s.Instance, ns.NSID))
	attrs := map[string]string{
		"nsid":      strconv.FormatUint(uint64(ns.NSID), 10),
		"uuid":      uuid,
		"wwid":      "uuid." + uuid,
		"size":      strconv.FormatUint(cmp.Or(ns.Sectors, DefaultSectors), 10),
		"csi":       "0",
		"ro":        "0",
		"removable": "0",
		"hidden":    "0",
	}
	if ns.NGUID != "" {
		attrs["nguid"] = ns.NGUID
	}
	if !b.spec.Multipath {
		for _, c := range s.Controllers {
			disk := fmt.Sprintf("nvme%dn%d", c.Instance, head)
			ctrlDir := filepath.Join(ctlDir, fmt.Sprintf("nvme%d", c.Instance))
			if err := b.disk(filepath.Join(ctrlDir, disk), attrs, nil); err != nil {
				return err
			}
			if err := b.generic(filepath.Join(ctrlDir, fmt.Sprintf("ng%dn%d", c.Instance, head))); err != nil {
				return err
			}
		}
		return nil
	}
	headDir := filepath.Join(subsysDevices, fmt.Sprintf("nvme-subsys%d", s.Instance), fmt.Sprintf("nvme%dn%d", s.Instance, head))
	if err := b.disk(headDir, attrs, nil); err != nil {
		return err
	}
	if err := b.generic(filepath.Join(filepath.Dir(headDir), fmt.Sprintf("ng%dn%d", s.Instance, head))); err != nil {
		return err
	}
	path := with(attrs, map[string]string{
		"hidden":    "1",
		"ana_state": cmp.Or(ns.ANAState, "optimized"),
		"ana_grpid": "1",
	})
	for _, c := range s.Controllers {
		disk := fmt.Sprintf("nvme%dc%dn%d", s.Instance, c.Instance, head)
		pathDir := filepath.Join(ctlDir, fmt.Sprintf("nvme%d", c.Instance), disk)
		if err := b.disk(pathDir, path, nil); err != nil {
			return err
		}
		if err := b.link(filepath.Join(headDir, "multipath", disk), pathDir); err != nil {
			return err
		}
	}
	return nil
}

// disk writes a block disk directory and its block/ and class/block/ links.
// A hidden disk has no device number: no dev attribute, no MAJOR/MINOR.
func (b *builder) disk(dir string, attrs map[string]string, omit []string) error {
	name := filepath.Base(dir)
	b.diskseq++
	if attrs["hidden"] == "1" {
		attrs = with(attrs, map[string]string{
			"uevent": fmt.Sprintf("DEVTYPE=disk\nDISKSEQ=%d", b.diskseq),
		})
	} else {
		minor := b.blockNext
		b.blockNext += 2
		attrs = with(attrs, map[string]string{
			"dev":    fmt.Sprintf("%d:%d", blockMajor, minor),
			"uevent": fmt.Sprintf("MAJOR=%d\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=disk\nDISKSEQ=%d", blockMajor, minor, name, b.diskseq),
		})
	}
	if err := b.attrs(dir, attrs, omit); err != nil {
		return err
	}
	for _, d := range []string{"queue", "power", "holders", "slaves"} {
		if err := os.MkdirAll(filepath.Join(b.root, dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := b.link(filepath.Join(block, name), dir); err != nil {
		return err
	}
	return b.link(filepath.Join(classBlock, name), dir)
}

// generic writes an nvme-generic char device directory (ngXnY).
func (b *builder) generic(dir string) error {
	return b.attrs(dir, map[string]string{
		"dev":    fmt.Sprintf("%d:%d", genericMajor, b.blockNext),
		"uevent": "",
	}, nil)
}

// attrs writes one file per attribute (with the kernel's trailing newline,
// except for write-only and empty ones) into dir, created if needed.
func (b *builder) attrs(dir string, attrs map[string]string, omit []string) error {
	if err := os.MkdirAll(filepath.Join(b.root, dir), 0o755); err != nil {
		return err
	}
	for k, v := range attrs {
		if slices.Contains(omit, k) {
			continue
		}
		mode := fs.FileMode(0o644)
		switch k {
		case "delete_controller", "reset_controller", "rescan_controller":
			mode = 0o200
		}
		if v != "" {
			v += "\n"
		}
		if err := b.write(filepath.Join(dir, k), v, mode); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) write(rel, content string, mode fs.FileMode) error {
	path := filepath.Join(b.root, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), mode)
}

// link makes root/rel a symlink to root/target, with a relative target as
// sysfs has, replacing an existing link.
func (b *builder) link(rel, target string) error {
	from := filepath.Join(b.root, rel)
	if err := os.MkdirAll(filepath.Dir(from), 0o755); err != nil {
		return err
	}
	t, err := filepath.Rel(filepath.Dir(from), filepath.Join(b.root, target))
	if err != nil {
		return err
	}
	if err := os.Remove(from); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Symlink(t, from)
}

// Generate returns a Spec of n controllers the way a node with many volumes
// looks: one subsystem per volume with one namespace (every 25th volume has
// two), every 10th volume reached over two controllers, and, when n > 1, the
// last controller a discovery controller in a discovery subsystem. States
// and attributes vary with the instance number:
//
//   - instance%50 == 7: connecting (address without src_addr)
//   - instance%100 == 13: resetting (no src_addr)
//   - instance%200 == 42: "deleting (no IO)"
//   - instance%10 == 3: IPv6 (traddr=::1, src_addr=::1)
//   - instance%20 == 9: host_iface=eth0 in the address
//   - instance%30 == 11: ctrl_loss_tmo off, fast_io_fail_tmo 5
//
// the rest live with kernel defaults.
func Generate(n int, multipath bool) Spec {
	spec := Spec{Multipath: multipath}
	io := n
	if n > 1 {
		io = n - 1
	}
	sub := 0
	for ctrl := 0; ctrl < io; sub++ {
		s := Subsystem{
			Instance: sub,
			NQN:      fmt.Sprintf("nqn.2000-02.com.mikrotik:pvc-%08x-0000-4000-8000-%012x", sub, sub),
			Serial:   fmt.Sprintf("%016x", sub+1),
			Model:    "RDS",
		}
		paths := 1
		if sub%10 == 4 && ctrl+1 < io {
			paths = 2
		}
		for p := 0; p < paths; p++ {
			s.Controllers = append(s.Controllers, generated(ctrl))
			ctrl++
		}
		s.Namespaces = []Namespace{{NSID: 1}}
		if sub%25 == 24 {
			s.Namespaces = append(s.Namespaces, Namespace{NSID: 2, Sectors: 4 * DefaultSectors})
		}
		spec.Subsystems = append(spec.Subsystems, s)
	}
	if n > 1 {
		spec.Subsystems = append(spec.Subsystems, Subsystem{
			Instance:    sub,
			NQN:         DiscoveryNQN,
			Type:        "discovery",
			Controllers: []Controller{{Instance: n - 1}},
		})
	}
	return spec
}

// generated is controller i of Generate.
func generated(i int) Controller {
	c := Controller{Instance: i, State: "live"}
	switch {
	case i%50 == 7:
		c.State = "connecting"
	case i%100 == 13:
		c.State = "resetting"
	case i%200 == 42:
		c.State = "deleting (no IO)"
	}
	traddr := DefaultTraddr
	if i%10 == 3 {
		traddr = "::1"
	}
	c.Address = "traddr=" + traddr + ",trsvcid=" + DefaultTrsvcid
	if i%20 == 9 {
		c.Address += ",host_iface=eth0"
	}
	if c.State == "live" {
		c.Address += ",src_addr=" + traddr
	}
	if i%30 == 11 {
		c.Attrs = map[string]string{"ctrl_loss_tmo": "off", "fast_io_fail_tmo": "5"}
	}
	return c
}

// SetState writes the state attribute of controller name, as the kernel
// changes it (the address keeps whatever it had: see SetAttr).
func SetState(root, name, state string) error {
	return SetAttr(root, name, "state", state)
}

// SetAttr writes (or creates) attribute attr of controller name, with the
// kernel's trailing newline.
func SetAttr(root, name, attr, value string) error {
	dir := ControllerDir(root, name)
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, attr), []byte(value+"\n"), 0o644)
}

// RemoveController removes controller name as the kernel does on delete or
// ctrl_loss_tmo expiry: its class link, its directory with its disks (and
// their block links), its link from the subsystem, and the subsystem with
// its heads when it was the last controller.
func RemoveController(root, name string) error {
	dir := ControllerDir(root, name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "nvme") {
			if err := removeBlockLinks(root, e.Name()); err != nil {
				return err
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := removeIfExists(filepath.Join(root, classNVMe, name)); err != nil {
		return err
	}
	subs, err := os.ReadDir(filepath.Join(root, subsysDevices))
	if err != nil {
		return err
	}
	for _, s := range subs {
		sdir := filepath.Join(root, subsysDevices, s.Name())
		if _, err := os.Lstat(filepath.Join(sdir, name)); err != nil {
			continue
		}
		if err := os.Remove(filepath.Join(sdir, name)); err != nil {
			return err
		}
		// Drop the head's multipath links to the removed per-path disks.
		links, _ := filepath.Glob(filepath.Join(sdir, "nvme*n*", "multipath", "nvme*c*n*"))
		for _, l := range links {
			if _, err := os.Stat(l); errors.Is(err, fs.ErrNotExist) {
				if err := os.Remove(l); err != nil {
					return err
				}
			}
		}
		if err := removeSubsystemIfEmpty(root, s.Name()); err != nil {
			return err
		}
	}
	return nil
}

func removeSubsystemIfEmpty(root, name string) error {
	dir := SubsystemDir(root, name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if isControllerName(e.Name()) {
			return nil
		}
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "nvme") && e.IsDir() {
			if err := removeBlockLinks(root, e.Name()); err != nil {
				return err
			}
		}
	}
	if err := removeIfExists(filepath.Join(root, classSubsys, name)); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// RemoveDisk removes block disk name (a head, per-path or plain disk), as
// the kernel does when a namespace is disabled on the target.
func RemoveDisk(root, name string) error {
	target, err := filepath.EvalSymlinks(filepath.Join(root, block, name))
	if err != nil {
		return err
	}
	if err := removeBlockLinks(root, name); err != nil {
		return err
	}
	return os.RemoveAll(target)
}

func removeBlockLinks(root, disk string) error {
	for _, d := range []string{block, classBlock} {
		if err := removeIfExists(filepath.Join(root, d, disk)); err != nil {
			return err
		}
	}
	return nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func isControllerName(s string) bool {
	digits, ok := strings.CutPrefix(s, "nvme")
	if !ok || digits == "" {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// pad right-pads s with spaces to width, as identify strings are.
func pad(s string, width int) string {
	if len(s) >= width {
		return s
	}
	return s + strings.Repeat(" ", width-len(s))
}

// with returns a copy of base with over applied.
func with(base, over map[string]string) map[string]string {
	out := maps.Clone(base)
	maps.Copy(out, over)
	return out
}
