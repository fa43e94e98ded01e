package daemon

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/srvlab/rds-csi/internal/mountinfo"
	"github.com/srvlab/rds-csi/sysfs"
)

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

// disk returns the indexed disk mount m serves: by the device number of
// its file system, else by the name its source or devtmpfs root gives
// (mountinfo.Entry.Disk). Rebuild, the mount refresh and the "is its disk
// mounted anywhere" check of Detach and cleanup all map mounts to disks
// through it.
func (idx deviceIndex) disk(m mountinfo.Entry) (devInfo, bool) {
	name, dev := m.Disk()
	if di, ok := idx.byDev[dev]; ok && dev != (sysfs.DevNum{}) {
		return di, true
	}
	if name == "" {
		return devInfo{}, false
	}
	di, ok := idx.byName[name]
	return di, ok
}

// stagedMount is a mount that the rebuild rule (doc.go) recognises as a
// staged NVMe volume.
type stagedMount struct {
	mountPoint string
	block      bool
	dev        devInfo
}

// stagedMounts applies the rebuild rule to a mount table.
func stagedMounts(mounts []mountinfo.Entry, stagingRoot string, idx deviceIndex) []stagedMount {
	var out []stagedMount
	for _, m := range mounts {
		if !within(m.MountPoint, stagingRoot) {
			continue
		}
		if di, ok := idx.disk(m); ok {
			out = append(out, stagedMount{mountPoint: m.MountPoint, block: m.FSType == "devtmpfs", dev: di})
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
	mounts, err := mountinfo.Read(d.cfg.MountInfo)
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

// explainedLocked reports whether a known volume accounts for mount m: a
// volume that holds the same disk, wherever m is. A staged volume's disk is
// mounted outside its staging path too: a block volume's publish target and
// kubelet's own bind of the device (volumeDevices/<pv>/dev/<pod>) are bind
// mounts of the device under kubelet's plugins directory, the staging root;
// taken for recovered volumes they held the controllers past the unstage.
// (An attached volume: csi is between mounting and MarkStaged.) Holding the
// volume's controllers is all a recovered volume would do, and Detach and
// cleanup still keep a controller whose disk is mounted anywhere
// (mountedDisks).
func (d *Daemon) explainedLocked(m stagedMount) bool {
	for _, v := range d.vols {
		if !v.recovered && v.holds() && v.nqn == m.dev.nqn && v.nsid == m.dev.ns.NSID {
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
	mounts, err := mountinfo.Read(d.cfg.MountInfo)
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
		di, ok := idx.disk(m)
		if !ok {
			continue
		}
		for _, c := range di.controllers {
			if slices.Contains(names, c) {
				out[c] = append(out[c], m.MountPoint)
			}
		}
	}
	return out, nil
}
