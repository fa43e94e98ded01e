package sysfs

import (
	"errors"
	"fmt"
	"os"
)

// classNVMeSubsystem holds one symlink per subsystem:
// class/nvme-subsystem/nvme-subsysK -> ../../devices/virtual/nvme-subsystem/nvme-subsysK.
// A subsystem directory links to its controllers (nvmeN -> ../../nvme-fabrics/ctl/nvmeN)
// and holds its multipath head disks (nvmeKnM).
const classNVMeSubsystem = "class/nvme-subsystem"

// subsystemAttrs are the subsystem attributes besides subsysnqn (read first:
// a subsystem without one is being torn down).
var subsystemAttrs = []attr[Subsystem]{
	textAttr("subsystype", func(s *Subsystem) *string { return &s.Type }),
	textAttr("iopolicy", func(s *Subsystem) *string { return &s.IOPolicy }),
	core(paddedAttr("model", func(s *Subsystem) *string { return &s.Model })),
	core(paddedAttr("serial", func(s *Subsystem) *string { return &s.Serial })),
}

func isSubsystemName(b []byte) bool {
	rest, ok := cutDigits(b, "nvme-subsys")
	return ok && len(rest) == 0
}

// checkSubsystemName accepts only kernel subsystem names (nvme-subsysK).
func checkSubsystemName(name string) error {
	if !isSubsystemName([]byte(name)) {
		return fmt.Errorf("sysfs: invalid subsystem name %q, want nvme-subsys<N>", name)
	}
	return nil
}

// Subsystems reads every subsystem in class/nvme-subsystem, sorted by
// instance, with its controller names and head namespaces. Subsystems that
// vanish while being read are left out; no class/nvme-subsystem is an empty
// result.
func (fs FS) Subsystems() ([]Subsystem, error) {
	names, err := fs.subsystemNames()
	if err != nil || len(names) == 0 {
		return nil, err
	}
	out := make([]Subsystem, len(names))
	keep := make([]bool, len(names))
	err = forEach(len(names), func(s *scratch, i int) error {
		sub, err := fs.readSubsystem(s, names[i])
		if errors.Is(err, ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		out[i], keep[i] = sub, true
		return nil
	})
	if err != nil {
		return nil, err
	}
	return compact(out, keep), nil
}

// Subsystem reads one subsystem by name ("nvme-subsys0"). The error wraps
// ErrNotExist when it does not exist or vanishes while being read.
func (fs FS) Subsystem(name string) (Subsystem, error) {
	if err := checkSubsystemName(name); err != nil {
		return Subsystem{}, err
	}
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	return fs.readSubsystem(s, name)
}

// subsystemNames lists class/nvme-subsystem, sorted by instance.
func (fs FS) subsystemNames() ([]string, error) {
	names, err := listDir(fs.path(classNVMeSubsystem), isSubsystemName)
	if err != nil {
		return nil, err
	}
	sortByInstance(names)
	return names, nil
}

func (fs FS) readSubsystem(s *scratch, name string) (Subsystem, error) {
	inst, _ := instanceOf(name, "nvme-subsys")
	d, err := openDir(s, fs.path(classNVMeSubsystem, name))
	if err != nil {
		if gone(err) {
			return Subsystem{}, notExist(err)
		}
		return Subsystem{}, ioError(err)
	}
	defer d.close()

	b, ok, err := d.attr("subsysnqn")
	if err != nil {
		return Subsystem{}, err
	}
	if !ok {
		return Subsystem{}, notExistPath("subsystem", d.path)
	}
	sub := Subsystem{Name: name, Instance: inst, NQN: string(b)}
	if err := readAttrs(&d, &sub, subsystemAttrs); err != nil {
		return Subsystem{}, err
	}
	entries, err := d.list(func(n []byte) bool { return isControllerName(n) || isHead(n) })
	if err != nil {
		return Subsystem{}, err
	}
	var heads []string
	for _, e := range entries {
		if isControllerName([]byte(e)) {
			sub.Controllers = append(sub.Controllers, e)
		} else {
			heads = append(heads, e)
		}
	}
	sortByInstance(sub.Controllers)
	if sub.Namespaces, err = readNamespaces(&d, heads, name, true); err != nil {
		return Subsystem{}, err
	}
	if d.missing && d.vanished() {
		return Subsystem{}, notExistPath("subsystem", d.path)
	}
	return sub, nil
}

// controllerSubsystems maps each controller name to the subsystem that links
// to it: the controller has no link of its own.
func (fs FS) controllerSubsystems() (map[string]string, error) {
	subsystems, err := fs.subsystemNames()
	if err != nil {
		return nil, err
	}
	links := make([][]string, len(subsystems))
	err = forEach(len(subsystems), func(s *scratch, i int) error {
		d, err := openDir(s, fs.path(classNVMeSubsystem, subsystems[i]))
		if err != nil {
			if gone(err) {
				return nil
			}
			return ioError(err)
		}
		defer d.close()
		links[i], err = d.list(isControllerName)
		return err
	})
	if err != nil {
		return nil, err
	}
	owners := make(map[string]string, len(subsystems))
	for i, ctrls := range links {
		for _, c := range ctrls {
			if _, dup := owners[c]; !dup { // the lowest instance wins, as in subsystemOf
				owners[c] = subsystems[i]
			}
		}
	}
	return owners, nil
}

// subsystemOf finds the subsystem that links to controller ctrl; "" if none.
func (fs FS) subsystemOf(ctrl string) (string, error) {
	subsystems, err := fs.subsystemNames()
	if err != nil {
		return "", err
	}
	for _, sub := range subsystems {
		_, err := os.Lstat(fs.path(classNVMeSubsystem, sub, ctrl))
		switch {
		case err == nil:
			return sub, nil
		case !gone(err):
			return "", ioError(err)
		}
	}
	return "", nil
}
