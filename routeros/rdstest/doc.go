// Package rdstest is an in-memory RDS for tests: an SSH server on loopback
// that speaks exactly the RouterOS command subset package routeros builds,
// keeps a model of disks, files and the pool, and prints `print detail`
// output with the quirks ROUTEROS.md describes: the Flags legend even on an
// empty result, entries starting with their index, lines wrapped onto
// indented continuation lines (at a space when one fits, else mid-token),
// space-grouped byte counts, lossy human-readable file-size, "type=.img
// file", CRLF line ends.
//
// The output is ours, written from ROUTEROS.md's description, not captured
// from hardware. Where ROUTEROS.md says unverified the emulator picks one
// behaviour and Variant switches to the other, so client tests run against
// both:
//
//   - Variant.ErrorsOnStderr: error text on stderr (default: stdout);
//   - Variant.ErrorExitStatus: the exit status of a failed command
//     (default 0: RouterOS is assumed to exit 0 and print the error);
//   - Variant.FindNoMatchError: a [find] that matches nothing fails with
//     "failure: no such item" (default: a silent no-op);
//   - Variant.RemoveDiskRemovesFile: removing a disk deletes its file too
//     (default, as ROUTEROS.md says: the file is left);
//   - Variant.CopyInheritsExport: a copy takes its source's NVMe/TCP export,
//     port and NQN (default: a copy is not exported);
//   - Variant.CopyRefusesProperties: copy-from is refused with any property
//     but type, file-path and slot (default: mount-filesystem and the export
//     flags are accepted with it);
//   - Variant.MaxSlotLen: the longest slot accepted (default 32, the
//     stricter of the two reports; a longer one fails with "failure: slot
//     name too long");
//   - Variant.AllowHostNameList: nvme-tcp-server-allow-host-name takes a
//     comma-separated list (default: one host NQN, a comma is refused);
//   - Variant.NoCopyFrom: /disk add has no copy-from (default: it has).
//
// Other choices (not switchable): a file still used by a disk cannot be
// removed ("failure: file is in use"); a disk cannot shrink; copy-from
// copies the file's size and data (what WriteData put there; Data reads
// it) at once, the copy complete when the command returns, and refuses
// file-size with it; a new disk's slot or file that exists already
// fails with "failure: ... already exists"; a size larger than the pool's
// free space fails with "failure: not enough space"; an add or set prints
// nothing on success.
//
// Options.Backend makes the emulator real: the model decides every
// command's effects and, before committing them, has the Backend make them
// (files, copies, growth, NVMe/TCP exports); e2e/nvmet's FileBackend does
// so with real files and the kernel's nvmet target in the QEMU lab. A
// Backend error fails the command and leaves the model unchanged.
//
// Faults: Hang (a command containing a string never answers until its
// connection closes), Drop (the connection is closed before or after a
// command containing a string runs, once), RejectAuth, RotateHostKey (the
// server presents a new host key, so known_hosts issued before no longer
// match), Options.MaxSessions (session channels beyond it are refused with
// "resource shortage"), and a pool of any size (SetPool) for "pool full".
package rdstest
