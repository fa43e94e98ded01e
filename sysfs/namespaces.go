package sysfs

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Namespaces are block disks, found in two places:
//   - under a subsystem (devices/virtual/nvme-subsystem/nvme-subsysK/nvmeKnM):
//     the multipath head, the visible /dev/nvmeKnM, with native multipath;
//   - under a controller (devices/virtual/nvme-fabrics/ctl/nvmeN/...): the
//     hidden per-path disk nvmeKcNnM with native multipath, or the visible disk
//     nvmeNnM with nvme_core.multipath=N (or a subsystem that cannot be shared).
// Disk names carry instance numbers, not namespace ids: identify a namespace
// by subsystem NQN and nsid, or by uuid or wwid.

// namespaceAttrs are the attributes of every namespace disk besides nsid,
// which is read first because a disk without one is being torn down.
var namespaceAttrs = []attr[Namespace]{
	textAttr("uuid", func(n *Namespace) *string { return &n.UUID }),
	textAttr("wwid", func(n *Namespace) *string { return &n.WWID }),
	textAttr("nguid", func(n *Namespace) *string { return &n.NGUID }),
	core(attr[Namespace]{name: "size", parse: func(n *Namespace, b []byte) (err error) {
		n.Sectors, err = parseUint64(b)
		return err
	}}),
	{name: "hidden", parse: func(n *Namespace, b []byte) (err error) {
		n.Hidden, err = parseFlag(b)
		return err
	}},
	// Hidden per-path disks have no device number, hence no dev.
	devAttr("dev", func(n *Namespace) *DevNum { return &n.Dev }),
}

// pathAttrs are shown by disks under a controller, when it uses ANA; never by
// multipath heads.
var pathAttrs = []attr[Namespace]{
	textAttr("ana_state", func(n *Namespace) *string { return &n.ANAState }),
	intAttr("ana_grpid", func(n *Namespace) *int { return &n.ANAGrpID }),
}

// Kinds of disk names.
const (
	diskNone  = iota
	diskPlain // nvmeXnY: a head, or a visible disk under a controller
	diskPath  // nvmeXcYnZ: a hidden per-path disk
)

// diskKind classifies a directory entry name.
func diskKind(name []byte) int {
	rest, ok := cutDigits(name, "nvme")
	if !ok {
		return diskNone
	}
	kind := diskPlain
	if r, ok := cutDigits(rest, "c"); ok {
		rest, kind = r, diskPath
	}
	if r, ok := cutDigits(rest, "n"); ok && len(r) == 0 {
		return kind
	}
	return diskNone
}

// cutDigits removes prefix and the run of digits after it (at least one).
func cutDigits(b []byte, prefix string) ([]byte, bool) {
	if len(b) <= len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	i := len(prefix)
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == len(prefix) {
		return b, false
	}
	return b[i:], true
}

func isDisk(name []byte) bool { return diskKind(name) != diskNone }
func isHead(name []byte) bool { return diskKind(name) == diskPlain }

// readNamespace reads the disk directory name under parent, which is the
// directory of owner (a controller or, for a head, a subsystem). ok is false
// when the disk is gone or going.
func readNamespace(parent *dir, name, owner string, head bool) (ns Namespace, ok bool, err error) {
	d, err := parent.sub(name)
	if err != nil {
		if gone(err) {
			return Namespace{}, false, nil
		}
		return Namespace{}, false, ioError(err)
	}
	defer d.close()

	b, ok, err := d.attr("nsid")
	if err != nil || !ok {
		return Namespace{}, false, err
	}
	ns = Namespace{
		Name:   name,
		Parent: owner,
		// Kernels without the hidden attribute: the name tells.
		Hidden: diskKind([]byte(name)) == diskPath,
	}
	if ns.NSID, err = parseUint32(b); err != nil {
		return Namespace{}, false, parseError(d.path+"/nsid", err)
	}
	if err := readAttrs(&d, &ns, namespaceAttrs); err != nil {
		return Namespace{}, false, err
	}
	if !head {
		if err := readAttrs(&d, &ns, pathAttrs); err != nil {
			return Namespace{}, false, err
		}
	}
	if d.missing && d.vanished() {
		return Namespace{}, false, nil
	}
	return ns, true, nil
}

// readNamespaces reads the disks names under d, the directory of owner,
// sorted by nsid, then name. Disks that vanish meanwhile are left out.
func readNamespaces(d *dir, names []string, owner string, heads bool) ([]Namespace, error) {
	if len(names) == 0 {
		return nil, nil
	}
	out := make([]Namespace, 0, len(names))
	for _, name := range names {
		ns, ok, err := readNamespace(d, name, owner, heads)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, ns)
		}
	}
	sortNamespaces(out)
	return out, nil
}

func sortNamespaces(nss []Namespace) {
	slices.SortFunc(nss, func(a, b Namespace) int {
		if c := cmp.Compare(a.NSID, b.NSID); c != 0 {
			return c
		}
		return compareNames(a.Name, b.Name)
	})
}

// compareNames orders names with embedded instance numbers naturally
// (nvme2 before nvme10).
func compareNames(a, b string) int {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			if c := cmp.Compare(da, db); c != 0 { // leading zeros: nvme1 before nvme01
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func digitRun(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// FindNamespace returns the visible block disk serving namespace nsid of the
// subsystem whose NQN is subsysNQN: its multipath head with native
// multipath, else a disk under one of the subsystem's controllers, preferring
// a live controller, then the lowest controller instance. The error wraps
// ErrNotExist when no such disk exists (yet).
func (fs FS) FindNamespace(subsysNQN string, nsid uint32) (Namespace, error) {
	if subsysNQN == "" || nsid == 0 {
		return Namespace{}, fmt.Errorf("sysfs: find namespace: need a subsystem NQN and a non-zero nsid, got %q and %d", subsysNQN, nsid)
	}
	return fs.findNamespace(nsQuery{
		nqn:  subsysNQN,
		attr: "nsid",
		match: func(b []byte) bool {
			v, err := parseUint32(b)
			return err == nil && v == nsid
		},
		what: fmt.Sprintf("namespace %d of %s", nsid, subsysNQN),
	})
}

// nsQuery selects namespaces by one attribute.
type nsQuery struct {
	nqn   string // only the subsystem with this NQN, and its controllers
	attr  string
	match func([]byte) bool
	what  string // for the not-found error
}

// subsysHit is what a subsystem contributes to a query.
type subsysHit struct {
	head        Namespace
	found       bool
	controllers []string // when the NQN matched
}

func (fs FS) findNamespace(q nsQuery) (Namespace, error) {
	subsystems, err := fs.subsystemNames()
	if err != nil {
		return Namespace{}, err
	}
	hits := make([]subsysHit, len(subsystems))
	err = forEach(len(subsystems), func(s *scratch, i int) error {
		var err error
		hits[i], err = fs.querySubsystem(s, subsystems[i], q)
		return err
	})
	if err != nil {
		return Namespace{}, err
	}
	var controllers []string
	for _, h := range hits {
		if h.found {
			return h.head, nil
		}
		controllers = append(controllers, h.controllers...)
	}
	sortByInstance(controllers)
	controllers = slices.Compact(controllers)

	type ctrlHit struct {
		ns    Namespace
		found bool
		live  bool
	}
	chits := make([]ctrlHit, len(controllers))
	err = forEach(len(controllers), func(s *scratch, i int) error {
		ns, live, found, err := fs.queryController(s, controllers[i], q)
		chits[i] = ctrlHit{ns, found, live}
		return err
	})
	if err != nil {
		return Namespace{}, err
	}
	best := -1
	for i, h := range chits {
		if h.found && (best < 0 || h.live && !chits[best].live) {
			best = i
		}
	}
	if best < 0 {
		return Namespace{}, notExistPath("no block disk for", q.what)
	}
	return chits[best].ns, nil
}

// querySubsystem looks for a matching head under one subsystem.
func (fs FS) querySubsystem(s *scratch, name string, q nsQuery) (subsysHit, error) {
	d, err := openDir(s, fs.path(classNVMeSubsystem, name))
	if err != nil {
		if gone(err) {
			return subsysHit{}, nil
		}
		return subsysHit{}, ioError(err)
	}
	defer d.close()
	b, ok, err := d.attr("subsysnqn")
	if err != nil || !ok || string(b) != q.nqn {
		return subsysHit{}, err
	}
	var hit subsysHit
	entries, err := d.list(func(n []byte) bool { return isHead(n) || isControllerName(n) })
	if err != nil {
		return subsysHit{}, err
	}
	slices.SortFunc(entries, compareNames)
	for _, e := range entries {
		if isControllerName([]byte(e)) {
			hit.controllers = append(hit.controllers, e)
			continue
		}
		if hit.found {
			continue
		}
		ns, ok, err := queryDisk(&d, e, name, true, q)
		if err != nil {
			return subsysHit{}, err
		}
		if ok {
			hit.head, hit.found = ns, true
		}
	}
	return hit, nil
}

// queryController looks for a matching visible disk under one controller.
func (fs FS) queryController(s *scratch, name string, q nsQuery) (ns Namespace, live, found bool, err error) {
	d, err := openDir(s, fs.path(classNVMe, name))
	if err != nil {
		if gone(err) {
			return Namespace{}, false, false, nil
		}
		return Namespace{}, false, false, ioError(err)
	}
	defer d.close()
	disks, err := d.list(isHead) // visible disks are named like heads
	if err != nil {
		return Namespace{}, false, false, err
	}
	slices.SortFunc(disks, compareNames)
	for _, disk := range disks {
		ns, ok, err := queryDisk(&d, disk, name, false, q)
		if err != nil {
			return Namespace{}, false, false, err
		}
		if !ok || ns.Hidden {
			continue
		}
		b, ok, err := d.attr("state")
		if err != nil || !ok {
			return Namespace{}, false, false, err
		}
		return ns, ParseState(string(b)).Live(), true, nil
	}
	return Namespace{}, false, false, nil
}

// queryDisk reads the disk name under d if its query attribute matches.
func queryDisk(d *dir, name, owner string, head bool, q nsQuery) (Namespace, bool, error) {
	sub, err := d.sub(name)
	if err != nil {
		if gone(err) {
			return Namespace{}, false, nil
		}
		return Namespace{}, false, ioError(err)
	}
	b, ok, err := sub.attr(q.attr)
	matched := ok && q.match(b)
	sub.close()
	if err != nil || !matched {
		return Namespace{}, false, err
	}
	return readNamespace(d, name, owner, head)
}
