package sysfs

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
)

// IOPolicies are the I/O policies of native NVMe multipath as a subsystem's
// iopolicy attribute names them. Every kernel with native multipath has
// numa (its default) and round-robin; queue-depth came with Linux 6.11
// (6.1 refuses it). Which ones the running kernel has shows only when one
// is written: SetIOPolicy.
var IOPolicies = []string{"numa", "round-robin", "queue-depth"}

// ErrRefused: the kernel refused a value written to an attribute (EINVAL):
// for iopolicy, a policy the running kernel does not have.
var ErrRefused = errors.New("sysfs: the kernel refused the value")

// SetIOPolicy writes the iopolicy of subsystem subsys ("nvme-subsys0") and
// reads it back. policy must be one of IOPolicies. A policy the kernel does
// not have gives an error matching ErrRefused; a subsystem that does not
// exist, ErrNotExist; a read-back that differs from what was written, an
// error naming both.
func (fs FS) SetIOPolicy(subsys, policy string) error {
	if err := checkSubsystemName(subsys); err != nil {
		return err
	}
	if !slices.Contains(IOPolicies, policy) {
		return fmt.Errorf("sysfs: iopolicy %q: want one of %v", policy, IOPolicies)
	}
	path := fs.path(classNVMeSubsystem, subsys, "iopolicy")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.WriteString(policy)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	switch {
	case errors.Is(err, syscall.EINVAL):
		return fmt.Errorf("%w: %s: iopolicy %q: %w", ErrRefused, path, policy, err)
	case err != nil:
		return writeError(err)
	}
	got, err := readFile(path)
	if err != nil {
		return err
	}
	if got != policy {
		return fmt.Errorf("sysfs: %s reads %q after %q was written", path, got, policy)
	}
	return nil
}
