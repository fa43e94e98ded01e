package csi

import (
	"errors"
	"fmt"
	"slices"

	"github.com/srvlab/rds-csi/sysfs"
)

// SysfsRescanner rescans the controllers behind a block device by writing
// their sysfs rescan_controller attribute. With native multipath the device
// is the subsystem's head disk and every controller of the subsystem is
// rescanned; without it, the one controller the disk sits under.
type SysfsRescanner struct {
	FS sysfs.FS
}

// Rescan implements Rescanner.
func (r SysfsRescanner) Rescan(devicePath string) error {
	name, err := blockDeviceName(r.FS.Root(), devicePath)
	if err != nil {
		return err
	}
	ctrls, err := r.controllersOf(name)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range ctrls {
		err := r.FS.WriteControllerAttr(c, "rescan_controller", "1")
		if err != nil && !errors.Is(err, sysfs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(ctrls) && len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// controllersOf finds the controllers serving the disk name.
func (r SysfsRescanner) controllersOf(name string) ([]string, error) {
	subs, err := r.FS.Subsystems()
	if err != nil {
		return nil, err
	}
	for _, s := range subs {
		if slices.ContainsFunc(s.Namespaces, func(ns sysfs.Namespace) bool { return ns.Name == name }) && len(s.Controllers) > 0 {
			return s.Controllers, nil
		}
	}
	ctrls, err := r.FS.Controllers()
	if err != nil {
		return nil, err
	}
	for _, c := range ctrls {
		if slices.ContainsFunc(c.Namespaces, func(ns sysfs.Namespace) bool { return ns.Name == name }) {
			return []string{c.Name}, nil
		}
	}
	return nil, fmt.Errorf("no NVMe controller serves %s: %w", name, sysfs.ErrNotExist)
}
