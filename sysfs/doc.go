// Package sysfs reads (and, for the few writable attributes, writes) the Linux
// NVMe over Fabrics sysfs tree: /sys/class/nvme (controllers),
// /sys/class/nvme-subsystem (subsystems and multipath heads) and the block
// disks that serve namespaces.
//
// Everything hangs off an FS value rooted at a mount point (normally /sys), so
// tests run in parallel on fixture trees captured from real kernels
// (testdata/sysfs) or laid out by package sysfstest. There are no
// package-level path globals and no open files between calls: an FS is safe
// for concurrent use. The one piece of process state is the guard around the
// controller address attribute (teardown.go): reading it while the kernel
// tears a controller down can oops the kernel, so the package remembers the
// last address read of each controller instance and which controllers this
// process is deleting.
//
// The layout read (as captured from the lab's 6.1 and 6.12 kernels in
// testdata/sysfs at the repository's root):
//
//	class/nvme/nvmeN -> ../../devices/virtual/nvme-fabrics/ctl/nvmeN
//	    attributes; nvmeKcNnM (hidden per-path disks, native multipath) or
//	    nvmeNnM (visible disks, nvme_core.multipath=N)
//	class/nvme-subsystem/nvme-subsysK -> ../../devices/virtual/nvme-subsystem/nvme-subsysK
//	    attributes; nvmeN -> ../../nvme-fabrics/ctl/nvmeN (its controllers:
//	    the only link between the two); nvmeKnM (multipath heads)
//	module/nvme_core/parameters/multipath
//	block/<disk>, dev/block/MAJ:MIN -> the disk's directory under its
//	    subsystem or controller (DiskName, DiskControllers)
//
// Controllers reads everything about each controller, its disks included;
// ControllerConnections reads only what identifies its connection and how it
// recovers, for a caller (the daemon's full re-read) that needs no more.
//
// Disk names carry instance numbers, not namespace ids: FindNamespace finds
// a volume's disk by its identity (subsystem NQN and nsid).
//
// Error contracts:
//   - a controller, subsystem or namespace that does not exist (or vanished
//     while it was being read) gives an error for which errors.Is(err,
//     ErrNotExist) is true, and so is errors.Is(err, fs.ErrNotExist);
//   - a scan of many controllers or subsystems skips the ones that vanish
//     mid-read; any other failure (a malformed attribute, a permission error)
//     is returned wrapped with the path it came from, and fails the scan;
//   - an attribute that some kernels or transports lack (cntrltype,
//     fast_io_fail_tmo, ana_state, nguid, ...) is its field's zero value;
//   - so is a controller attribute the kernel prints from the subsystem
//     (subsysnqn, model, serial, firmware_rev) before the first connect
//     completes, when it shows "(efault)" or "(null)" (testdata/sysfs-halfborn);
//   - errors of system calls wrap the *fs.PathError, so errors.Is(err,
//     syscall.EINVAL) and friends work (WriteControllerAttr relies on it).
//
// On Linux attribute files are read with raw open/read/close system calls
// relative to their directory's file descriptor, one read each; elsewhere
// with package os, so that the packages above build and test anywhere.
package sysfs
