// Package fabrics is the contract with the Linux NVMe over Fabrics host
// driver: it creates NVMe/TCP controllers by writing an option string to
// /dev/nvme-fabrics (no nvme-cli), and deletes, retunes or rescans them
// through sysfs (Disconnect, UpdateTimeouts, Rescan).
//
// # Options
//
// Options is typed after the kernel's option table. Unset fields are not
// sent and the kernel default applies, with two exceptions: transport
// defaults to "tcp" and trsvcid to 4420 (the kernel's own default is the
// discovery port 8009), so both are always sent. Options.Validate checks
// every value before anything is written: NQN syntax, IP literals (no
// zones, no host names), ports, UUIDs, interface names, the kernel's
// numeric ranges, DH-HMAC-CHAP secret syntax and checksum, and option
// injection (',', '=', whitespace and control characters are refused in every
// string; secrets may hold '=' as base64 padding only). The option string is
// built in a fixed key order. Secrets never appear in errors or in
// Options.String, Redacted, GoString or LogValue.
//
// # Connecting
//
// Client.Connect validates, refuses options the running kernel does not list
// (read from a fresh descriptor of the device, cached), checks the context,
// writes once and parses the reply "instance=N,cntlid=M". The write itself
// cannot be interrupted: the kernel blocks until the transport gives up
// (about 10 s for a target that never answers), and serialises all connects.
// When the kernel answers EALREADY, Connect returns the existing identical
// controller from sysfs with Adopted set. "Identical" is Options.Matches,
// the kernel's own rule (subsystem, host NQN and host ID, and the address
// strings as written), which the daemon's registry uses too. CanonicalIP and
// HostPort are the one spelling of addresses across the module, and
// UUIDNQNPrefix the one uuid-NQN prefix.
//
// # Errors
//
// Errors wrap one of the exported sentinels, to be tested with errors.Is;
// errors from a system call also wrap the syscall.Errno, so
// errors.Is(err, syscall.ECONNREFUSED) works as well. Errors are classified
// by errno, never by message text.
//
//   - ErrInvalidOption: validation failed (the error is an *OptionError with
//     Field, Value and Allowed), or the kernel answered EINVAL.
//   - ErrUnsupportedOption: the running kernel lacks an option (also matches
//     ErrInvalidOption).
//   - ErrAlreadyConnected: EALREADY and no matching controller was found.
//   - ErrUnreachable: ECONNREFUSED, ECONNRESET, ECONNABORTED, EAGAIN,
//     ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN. The only
//     class for which Retryable is true.
//   - ErrRejected: EIO: unknown subsystem NQN, NQN not on that port, host
//     not allowed.
//   - ErrAuth: ENOKEY, EKEYREJECTED, EKEYEXPIRED, EKEYREVOKED, EPERM.
//   - ErrNoDevice: ENODEV from the write (host_iface not in this network
//     namespace).
//   - ErrFabricsUnavailable: the device cannot be opened because it does not
//     exist (ENOENT, ENODEV, ENXIO): the module is not loaded.
//   - ErrControllerGone: Disconnect or UpdateTimeouts of a controller that
//     does not exist, Rescan of a disk that does not exist or whose
//     controllers are all gone. For Disconnect callers treat it as success.
//   - ErrUnexpectedReply: the kernel's reply could not be parsed.
//   - ErrUnsupportedPlatform: not Linux.
//
// Context errors are wrapped too (errors.Is(err, context.Canceled)).
// ErrorClass names the class of an error for metrics.
//
// The device I/O and the errno tables are Linux only; on other systems the
// package builds, validates and formats options, and Connect fails with
// ErrUnsupportedPlatform.
package fabrics
