package fabrics

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
)

// kind is the type of the package's sentinel errors. Each carries the class
// name ErrorClass reports for it.
type kind struct {
	class string
	msg   string
}

func (k *kind) Error() string { return "fabrics: " + k.msg }

// Sentinel errors. Errors returned by this package wrap at most one of them
// (ErrUnsupportedOption also matches ErrInvalidOption), and errors that come
// from a system call also wrap the syscall.Errno, so both
// errors.Is(err, ErrUnreachable) and errors.Is(err, syscall.ECONNREFUSED) hold.
var (
	// ErrInvalidOption: an option failed validation before anything was
	// written, or the kernel refused the option string (EINVAL).
	ErrInvalidOption error = &kind{"invalid_option", "invalid option"}
	// ErrUnsupportedOption: the running kernel does not list the option in
	// /dev/nvme-fabrics. Errors wrapping it also match ErrInvalidOption.
	ErrUnsupportedOption error = &kind{"unsupported_option", "option not supported by the running kernel"}
	// ErrAlreadyConnected: the kernel already has an identical controller
	// (EALREADY) and no matching controller could be found in sysfs.
	ErrAlreadyConnected error = &kind{"already_connected", "controller already exists"}
	// ErrUnreachable: the target could not be reached or dropped the
	// connection (ECONNREFUSED, ECONNRESET, ECONNABORTED, EAGAIN, ETIMEDOUT,
	// EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN). The only retryable class.
	ErrUnreachable error = &kind{"unreachable", "target unreachable"}
	// ErrRejected: the target refused the connection (EIO): unknown subsystem
	// NQN, NQN not exported on that port, or host not allowed. The kernel
	// also answers EIO when the Fabrics Connect command times out (an
	// overloaded target), so the daemon tries an EIO a few times.
	ErrRejected error = &kind{"rejected", "target rejected the connection (unknown NQN or host not allowed; or the connect command timed out)"}
	// ErrAuth: authentication failed (ENOKEY, EKEYREJECTED, EKEYEXPIRED,
	// EKEYREVOKED, EPERM).
	ErrAuth error = &kind{"auth", "authentication failed"}
	// ErrNoDevice: a local device the options name does not exist (ENODEV),
	// for example host_iface not in the caller's network namespace.
	ErrNoDevice error = &kind{"no_device", "no such local device (host_iface not in this network namespace?)"}
	// ErrFabricsUnavailable: the fabrics device is missing (ENOENT, ENODEV or
	// ENXIO when opening it): the nvme-fabrics module is not loaded.
	ErrFabricsUnavailable error = &kind{"fabrics_unavailable", "NVMe over Fabrics is not available: load the driver with `modprobe nvme-tcp`"}
	// ErrControllerGone: the controller no longer exists. For Disconnect this
	// is the desired end state: callers treat it as success.
	ErrControllerGone error = &kind{"controller_gone", "controller does not exist"}
	// ErrUnexpectedReply: the kernel's reply could not be parsed. After a
	// successful write this means a controller may exist that the caller does
	// not know of; a retried Connect finds it through EALREADY adoption.
	ErrUnexpectedReply error = &kind{"unexpected_reply", "unexpected reply from the kernel"}
	// ErrUnsupportedPlatform: the operation needs Linux.
	ErrUnsupportedPlatform error = &kind{"unsupported_platform", "NVMe over Fabrics needs Linux"}
)

// classOrder is the order in which ErrorClass tests the sentinels: the more
// specific first.
var classOrder = []error{
	ErrUnsupportedOption,
	ErrInvalidOption,
	ErrAlreadyConnected,
	ErrUnreachable,
	ErrRejected,
	ErrAuth,
	ErrNoDevice,
	ErrFabricsUnavailable,
	ErrControllerGone,
	ErrUnexpectedReply,
	ErrUnsupportedPlatform,
}

// Retryable reports whether err is worth retrying with the same options: true
// only for the ErrUnreachable class. Invalid options, rejections and
// authentication failures do not heal by themselves.
func Retryable(err error) bool { return errors.Is(err, ErrUnreachable) }

// ErrorClass names the class of err for metrics and logs: "" for nil, the
// class of the package sentinel it wraps ("invalid_option",
// "unsupported_option", "already_connected", "unreachable", "rejected",
// "auth", "no_device", "fabrics_unavailable", "controller_gone",
// "unexpected_reply", "unsupported_platform"), "canceled" or "deadline" for
// context errors, "permission" for fs.ErrPermission, and "other" otherwise.
// The set of names is fixed, so it is safe as a metric label.
func ErrorClass(err error) string {
	if err == nil {
		return ""
	}
	for _, s := range classOrder {
		if errors.Is(err, s) {
			return s.(*kind).class
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, fs.ErrPermission):
		return "permission"
	}
	return "other"
}

// ErrorClasses lists every name ErrorClass can return for a non-nil error.
func ErrorClasses() []string {
	out := make([]string, 0, len(classOrder)+4)
	for _, s := range classOrder {
		out = append(out, s.(*kind).class)
	}
	return append(out, "canceled", "deadline", "permission", "other")
}

// OptionError describes an option that failed validation or that the running
// kernel does not support. It wraps ErrInvalidOption, and for an unsupported
// option ErrUnsupportedOption as well. Secret values are never stored: Value
// is "<redacted>" for them.
type OptionError struct {
	Field   string // the kernel's option name ("traddr", "ctrl_loss_tmo", ...)
	Value   string // the offending value as given; "<redacted>" for secrets
	Allowed string // what would have been accepted

	unsupported bool
}

func (e *OptionError) Error() string {
	if e.unsupported {
		return fmt.Sprintf("fabrics: option %s is not supported: %s", e.Field, e.Allowed)
	}
	return fmt.Sprintf("fabrics: invalid %s %q: want %s", e.Field, e.Value, e.Allowed)
}

// Unwrap returns the sentinels the error matches.
func (e *OptionError) Unwrap() []error {
	if e.unsupported {
		return []error{ErrUnsupportedOption, ErrInvalidOption}
	}
	return []error{ErrInvalidOption}
}

// redacted replaces secret values in errors and logs.
const redacted = "<redacted>"

func invalid(field, value, allowed string) *OptionError {
	return &OptionError{Field: field, Value: value, Allowed: allowed}
}

func invalidSecret(field, allowed string) *OptionError {
	return &OptionError{Field: field, Value: redacted, Allowed: allowed}
}

// opError is a failed kernel operation: what was attempted (never containing
// a secret), the sentinel chosen from the errno (nil if none applies) and the
// underlying error (usually an *fs.PathError wrapping a syscall.Errno).
type opError struct {
	op   string
	kind error
	err  error
}

func (e *opError) Error() string {
	if k, ok := e.kind.(*kind); ok {
		return "fabrics: " + e.op + ": " + k.msg + ": " + e.err.Error()
	}
	return "fabrics: " + e.op + ": " + e.err.Error()
}

func (e *opError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}
