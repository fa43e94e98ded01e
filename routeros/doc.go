// Package routeros is the one place rds-csi talks to a MikroTik RDS
// (RouterOS 7): typed commands built from allow-listed values, run over SSH
// with deadlines, their output parsed into typed disks and files, their
// errors classified into sentinels. It knows RouterOS and nothing else:
// provisioning decisions (names, sizes, parameters, gRPC codes) sit above
// it.
//
// # What is verified
//
// Nothing in this package has been run against a real RDS. The commands,
// the output format and the error texts follow ../shared/ROUTEROS.md
// (public material from other drivers, some of it validated on hardware by
// their authors); the tests run against package rdstest, an emulator
// written from the same description. Where ROUTEROS.md says unverified, the
// code does not depend on one answer:
//
//   - error reporting over SSH exec (exit status, stdout or stderr): both
//     streams and the status are read (Classify);
//   - [find] matching nothing (silent or "no such item"): every change is
//     confirmed by reading the object back;
//   - the copy syntax and whether export flags may be given with it: a copy
//     is made without export flags and exported by a separate set
//     (ExportDisk); a copy that inherited its source's export is unexported
//     by a separate set (FinishCopy); mount-filesystem=no is always given
//     with copy-from, so an RDS that refuses it fails the copy loudly; the
//     source is read before copying; whether the copy is complete when the
//     command returns (rdstest: yes) is unknown, and nothing can tell;
//   - the 32-character slot limit: slots are exactly 32 characters;
//   - whether `/disk add` prints the new item's id: nothing or one id
//     ("*1A") is success, anything else is ErrUnexpectedOutput;
//   - whether file-size takes a plain byte count: sizes are written as exact
//     bytes (RoundUp rounds up to a unit if a caller needs one), and every
//     size is read back from size= and compared, never from the lossy
//     file-size=.
//
// Package rdscheck (the `rds-csi check` subcommand) asks a real RDS each of
// these questions with check-only disks and records what it answered.
//
// The structured print forms ROUTEROS.md mentions (`print detail as-value`,
// `print terse`) are not used: their output over SSH is not described
// there, and parsing a form nobody has seen would be a guess. `print
// detail` is, with its quirks, and is what ParseDetail reads.
//
// # Commands
//
// Commands are values of type Command, made only by the constructors
// (AddDiskCommand, CopyDiskCommand, ExportDiskCommand, UnexportDiskCommand,
// ResizeDiskCommand, RemoveDiskCommand, PrintDiskCommand, PrintDisksCommand,
// PrintDisksByFileCommand, PrintPoolCommand, PrintFileCommand,
// PrintFilesCommand, PrintSlotFilesCommand, RemoveFileCommand). Every value is validated first:
// slots [a-z0-9-]{1,32}; NQNs "nqn." then [a-z0-9.:-]; absolute paths of
// [A-Za-z0-9._-] components without "." or ".."; sizes 1..2^60 bytes;
// ports 1..65535. String values are then written in double quotes, which
// they cannot contain, so nothing a user writes can end a value, add an
// argument, start a command, open a [command] or expand a $variable.
// Validation errors are *ArgError naming the field.
//
// Slots are derived, never taken from a user: SlotFor(name) is SlotPrefix
// ("rds-csi-") and the first 24 hexadecimal digits of SHA-256 of the CSI
// volume name; SnapshotSlotFor(name) is SnapshotSlotPrefix ("rds-snap-")
// and the first 23. Both are 32 characters; the same name gives the same
// slot. NQNFor(base, slot) is base:slot; FilePathFor(dir, slot) is
// dir/slot.img; BackingPath names the file of a copy after its source too
// (Ownership).
//
// # Ownership
//
// Client (safe for concurrent use) changes and removes only what this
// driver creates: disks whose slot IsOwnedSlot (one of the two prefixes
// followed by the hash, 32 characters), and files IsOwnedFile (directly
// inside the volume directory, named as ParseBacking reads: <slot>.img for
// a volume created empty, <slot>.<source>.img for a volume copied from a
// volume or snapshot, <slot>.<volume>.<unix seconds>.img for a snapshot).
// This slot form, with the file's place and name, is the marker set at
// create time: it proves a disk is ours, a snapshot, and of which source,
// and gives a snapshot its creation time; RouterOS keeps no other field we
// know of for it (a disk prints no creation time). Anything else is refused with
// ErrNotOwned before a command is sent. A file still used by a disk is
// refused with ErrInUse. Removing a disk leaves its file (ROUTEROS.md):
// RemoveDisk and RemoveFile are separate steps.
//
// Round trips per call (one command each; TestRoundTrips pins them; ~0.5 s
// each on hardware per ROUTEROS.md): Disk, Disks, Pool, File, Files 1;
// CreateDisk 2 (add, read back); ExportDisk 2 (set, read back); RemoveDisk 2
// (remove, read back); ResizeDisk 3 (read, set, read back; 1 when already
// large enough); CopyDisk 3 (read source, copy, read back; 5 when the copy
// inherited an export: unexport, read back); UnexportDisk 2; SlotFiles 1;
// RemoveFile 3 (disks using it, remove, read back).
//
// # The check
//
// `rds-csi check` (package rdscheck) creates disks of its own on a real RDS
// to learn what ROUTEROS.md leaves unverified. Their slots start with
// CheckSlotPrefix ("rds-csi-check-", up to MaxCheckSlotLen, 40, characters:
// longer than MaxSlotLen to probe the limit) and their files are
// <volume dir>/<slot>.img (IsCheckSlot, IsCheckFile). The Check*Command
// constructors build the same commands as the driver's, for those objects
// only; a check slot is never IsOwnedSlot, so the Client never changes one,
// and the check never changes a volume.
//
// # Metrics
//
// The Client's Observer sees every command (verb, error, duration) and
// every Ping (verb PingVerb); SSHConfig.Events sees connections made,
// connection attempts that failed, and waits for a session of the bound.
// Package metrics turns both into the controller's metrics.
//
// # Output
//
// ParseDetail reads `print detail`: the Flags legend (printed even for an
// empty result), entries starting with their index, indented continuation
// lines where RouterOS wrapped (between pairs, inside a value with spaces,
// or mid-token: the join point is kept and resolved per value: removed for
// tokens and byte counts, a space for text), quoted values, ";;;" comments,
// CRLF. Keys are matched only at the start of a pair, so size= is never
// found inside file-size=. A key split by a wrap is rejoined when the joined
// key is a known /disk or /file key; an unknown key split mid-token cannot
// be told from a value and is misread. Byte counts are read only from
// space-grouped digits (size=53 687 091 200); a human-readable size is an
// error, never rounded. Output that does not fit this shape is an error
// wrapping ErrUnexpectedOutput, never an empty result. An entry line has its
// index within the first four columns; continuation lines are assumed
// indented deeper (unverified).
//
// # Errors
//
// Errors wrap one sentinel, to be tested with errors.Is: ErrInvalidArgument,
// ErrNotFound, ErrExists, ErrNoSpace, ErrBusy, ErrAuth, ErrHostKey,
// ErrUnreachable, ErrUnexpectedOutput, ErrUnconfirmed, ErrInUse,
// ErrNotOwned, ErrUnknown. RouterOS reports errors as text only, so Classify
// chooses the sentinel from the text (the only place that reads error
// text); text it does not know, or a non-zero exit status without text, is
// ErrUnknown: an error, never success. A broken connection or an ended
// context is ErrUnreachable (with the context's error wrapped): the command
// may or may not have run, so callers re-read before retrying. ErrorClass
// names errors for metrics from a fixed set; Retryable is true for
// ErrUnreachable and ErrBusy.
//
// # SSH
//
// SSH (golang.org/x/crypto/ssh) authenticates with a PEM private key and
// verifies the host key against known_hosts content (a host that is missing
// or whose key differs or is revoked is ErrHostKey; there is no trust on
// first use). It runs one exec session per command (no PTY), at most
// MaxSessions (default 2) at a time, on one connection made on first use.
// Every command is bound by its context (one without a deadline gets
// CommandTimeout, default 2 minutes): when the context ends, the session
// and the whole connection are closed, so a hung RDS cannot hang the call
// (commands running concurrently on that connection then fail with
// ErrUnreachable too), and the next command reconnects with backoff and
// jitter
// (k8s.io/apimachinery wait.Backoff). A command is never resent; opening a
// session on a broken connection is retried once on a new connection, and a
// session the RDS refuses (too many) is ErrBusy without touching the
// connection.
// Ping opens a session (RouterOS ignores keepalives). The private key never
// appears in errors or logs. A refused key is recognised by the x/crypto
// error text "unable to authenticate" (it has no typed client error).
package routeros
