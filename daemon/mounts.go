package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/srvlab/rds-csi/sysfs"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	dev        sysfs.DevNum // field 3: st_dev of the mounted file system
	root       string       // field 4: the mounted subtree ("/nvme0n1" for a bind of a devtmpfs node)
	mountPoint string       // field 5
	fstype     string
	source     string
}

// readMountInfo parses a mountinfo file (proc(5)). Lines that do not parse
// are skipped: the file is the kernel's, and one odd line must not hide the
// others.
func readMountInfo(path string) ([]mountEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("daemon: read mount table: %w", err)
	}
	return parseMountInfo(b), nil
}

func parseMountInfo(b []byte) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if m, ok := parseMountLine(sc.Text()); ok {
			out = append(out, m)
		}
	}
	return out
}

func parseMountLine(line string) (mountEntry, bool) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+3 {
		return mountEntry{}, false
	}
	dev, err := sysfs.ParseDevNum(f[2])
	if err != nil {
		return mountEntry{}, false
	}
	return mountEntry{
		dev:        dev,
		root:       unescapeMount(f[3]),
		mountPoint: unescapeMount(f[4]),
		fstype:     f[sep+1],
		source:     unescapeMount(f[sep+2]),
	}, true
}

// unescapeMount undoes the kernel's octal escapes (\040 for a space, \011,
// \012, \134).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 4
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// devInfo is a visible NVMe block disk and what serves it.
type devInfo struct {
	ns          sysfs.Namespace
	nqn         string
	controllers []string
}

// deviceIndex maps visible NVMe disks by name and by device number.
type deviceIndex struct {
	byName map[string]devInfo
	byDev  map[sysfs.DevNum]devInfo
}

// newDeviceIndex indexes the multipath heads of subs and the visible disks
// under ctrls (multipath off).
func newDeviceIndex(ctrls []sysfs.Controller, subs []sysfs.Subsystem) deviceIndex {
	idx := deviceIndex{byName: map[string]devInfo{}, byDev: map[sysfs.DevNum]devInfo{}}
	add := func(di devInfo) {
		idx.byName[di.ns.Name] = di
		if di.ns.Dev != (sysfs.DevNum{}) {
			idx.byDev[di.ns.Dev] = di
		}
	}
	for _, s := range subs {
		for _, ns := range s.Namespaces {
			if !ns.Hidden {
				add(devInfo{ns: ns, nqn: s.NQN, controllers: s.Controllers})
			}
		}
	}
	for _, c := range ctrls {
		for _, ns := range c.Namespaces {
			if !ns.Hidden {
				add(devInfo{ns: ns, nqn: c.SubsysNQN, controllers: []string{c.Name}})
			}
		}
	}
	return idx
}

// stagedMount is a mount that the rebuild rule (doc.go) recognises as a
// staged NVMe volume.
type stagedMount struct {
	mountPoint string
	block      bool
	dev        devInfo
}

// stagedMounts applies the rebuild rule to a mount table.
func stagedMounts(mounts []mountEntry, stagingRoot string, idx deviceIndex) []stagedMount {
	var out []stagedMount
	for _, m := range mounts {
		if !within(m.mountPoint, stagingRoot) {
			continue
		}
		if m.fstype == "devtmpfs" {
			if di, ok := idx.byName[strings.TrimPrefix(m.root, "/")]; ok {
				out = append(out, stagedMount{mountPoint: m.mountPoint, block: true, dev: di})
			}
			continue
		}
		if di, ok := idx.byDev[m.dev]; ok {
			out = append(out, stagedMount{mountPoint: m.mountPoint, dev: di})
			continue
		}
		if name, ok := strings.CutPrefix(m.source, "/dev/"); ok {
			if di, ok := idx.byName[name]; ok {
				out = append(out, stagedMount{mountPoint: m.mountPoint, dev: di})
			}
		}
	}
	return out
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	path, dir = filepath.Clean(path), filepath.Clean(dir)
	if path == dir {
		return true
	}
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return strings.HasPrefix(path, dir+"/")
}

// readDevices scans sysfs for the device index.
func (d *Daemon) readDevices() ([]sysfs.Controller, deviceIndex, error) {
	ctrls, err := d.cfg.FS.Controllers()
	if err != nil {
		return nil, deviceIndex{}, err
	}
	subs, err := d.cfg.FS.Subsystems()
	if err != nil {
		return nil, deviceIndex{}, err
	}
	return ctrls, newDeviceIndex(ctrls, subs), nil
}

// refreshMounts recomputes the recovered volumes from the mount table: a
// staged NVMe mount that no known volume explains becomes (or stays) a
// recovered volume, and recovered volumes whose mount is gone are dropped.
func (d *Daemon) refreshMounts() error {
	mounts, err := readMountInfo(d.cfg.MountInfo)
	if err != nil {
		return err
	}
	_, idx, err := d.readDevices()
	if err != nil {
		return err
	}
	staged := stagedMounts(mounts, d.cfg.StagingRoot, idx)
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, v := range d.vols {
		if v.recovered {
			delete(d.vols, id)
		}
	}
	for _, m := range staged {
		if d.explainedLocked(m) {
			continue
		}
		d.addRecoveredLocked(m)
	}
	return nil
}

// explainedLocked reports whether a known volume accounts for mount m.
func (d *Daemon) explainedLocked(m stagedMount) bool {
	for _, v := range d.vols {
		if v.recovered || !v.holds() || v.nqn != m.dev.nqn || v.nsid != m.dev.ns.NSID {
			continue
		}
		// Staged: its staging path holds the mount. Attached: csi is
		// between mounting and MarkStaged.
		if v.state != VolumeStaged || within(m.mountPoint, v.stagingPath) {
			return true
		}
	}
	return false
}

func (d *Daemon) addRecoveredLocked(m stagedMount) {
	id := "mount:" + m.mountPoint
	if _, ok := d.vols[id]; ok {
		return
	}
	v := &volEntry{
		id:          id,
		nqn:         m.dev.nqn,
		nsid:        m.dev.ns.NSID,
		controllers: append([]string(nil), m.dev.controllers...),
		ns:          m.dev.ns,
		device:      m.dev.ns.DevPath(),
		stagingPath: m.mountPoint,
		block:       m.block,
		state:       VolumeStaged,
		recovered:   true,
	}
	if len(v.controllers) > 0 {
		if e := d.ctrls[v.controllers[0]]; e != nil {
			v.key = keyOfController(&e.ctrl)
		}
	}
	d.vols[id] = v
}

// mountedDisks returns, for each of the controllers names, where a disk it
// serves (a multipath head of its subsystem or one of its own disks) is
// mounted anywhere, from a fresh read of the mount table and sysfs. A
// controller under a mount is never disconnected: a mount can appear that
// no volume record explains (a mount(8) started by a killed predecessor
// that finished later, or one made by hand).
func (d *Daemon) mountedDisks(names []string) (map[string][]string, error) {
	mounts, err := readMountInfo(d.cfg.MountInfo)
	if err != nil {
		return nil, fmt.Errorf("daemon: read mount table: %w", err)
	}
	// Only these controllers and their subsystems are read: a full scan
	// would fail on any unrelated controller that changes meanwhile.
	var ctrls []sysfs.Controller
	var subs []sysfs.Subsystem
	for _, name := range names {
		c, err := d.cfg.FS.Controller(name)
		if errors.Is(err, sysfs.ErrNotExist) {
			continue // gone: it serves no disk
		}
		if err != nil {
			return nil, fmt.Errorf("daemon: read %s: %w", name, err)
		}
		ctrls = append(ctrls, c)
		if c.Subsystem == "" {
			continue
		}
		s, err := d.cfg.FS.Subsystem(c.Subsystem)
		if err != nil && !errors.Is(err, sysfs.ErrNotExist) {
			return nil, fmt.Errorf("daemon: read %s: %w", c.Subsystem, err)
		}
		if err == nil {
			subs = append(subs, s)
		}
	}
	idx := newDeviceIndex(ctrls, subs)
	out := map[string][]string{}
	for _, m := range mounts {
		di, ok := devInfo{}, false
		if m.fstype == "devtmpfs" {
			di, ok = idx.byName[strings.TrimPrefix(m.root, "/")]
		} else {
			di, ok = idx.byDev[m.dev]
			if !ok {
				if name, cut := strings.CutPrefix(m.source, "/dev/"); cut {
					di, ok = idx.byName[name]
				}
			}
		}
		if !ok {
			continue
		}
		for _, c := range di.controllers {
			if slices.Contains(names, c) {
				out[c] = append(out[c], m.mountPoint)
			}
		}
	}
	return out, nil
}
