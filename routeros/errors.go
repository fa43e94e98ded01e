package routeros

import (
	"context"
	"errors"
	"fmt"
)

// kind is the type of the package's sentinel errors. Each carries the class
// name ErrorClass reports for it.
type kind struct {
	class string
	msg   string
}

func (k *kind) Error() string { return "routeros: " + k.msg }

// Sentinel errors. Errors returned by this package wrap at most one of them,
// to be tested with errors.Is.
var (
	// ErrInvalidArgument: a value failed validation before any command was
	// built (the error is an *ArgError naming the field), or RouterOS
	// refused the command's syntax or a value ("bad command name",
	// "expected end of command", "input does not match any value",
	// "invalid value", "syntax error", ...).
	ErrInvalidArgument error = &kind{"invalid_argument", "invalid argument"}
	// ErrNotFound: the object does not exist (an empty print, or RouterOS
	// said "no such item").
	ErrNotFound error = &kind{"not_found", "no such item"}
	// ErrExists: RouterOS refused to create an object that already exists.
	ErrExists error = &kind{"exists", "already exists"}
	// ErrNoSpace: the pool has not enough free space ("not enough space").
	ErrNoSpace error = &kind{"no_space", "not enough space"}
	// ErrBusy: RouterOS reported the object busy or in use.
	ErrBusy error = &kind{"busy", "busy"}
	// ErrAuth: the SSH server refused our key, or RouterOS refused the
	// command for lack of permission ("not enough permissions").
	ErrAuth error = &kind{"auth", "authentication or permission failure"}
	// ErrHostKey: the server's host key is not in known_hosts, does not match
	// it, or is revoked. Never retried.
	ErrHostKey error = &kind{"host_key", "host key not verified by known_hosts"}
	// ErrUnreachable: the SSH connection could not be made, or broke while a
	// command ran. A command that broke may or may not have taken effect:
	// callers re-read.
	ErrUnreachable error = &kind{"unreachable", "RDS unreachable"}
	// ErrUnexpectedOutput: the output of a command could not be parsed, or
	// a command that prints nothing on success printed something unknown.
	ErrUnexpectedOutput error = &kind{"unexpected_output", "unexpected output"}
	// ErrUnconfirmed: a command reported success but reading the object back
	// disagrees (a disk still present after remove, a size not reached).
	ErrUnconfirmed error = &kind{"unconfirmed", "change not confirmed by a re-read"}
	// ErrInUse: a file still backs a disk, so it is not removed.
	ErrInUse error = &kind{"in_use", "in use"}
	// ErrNotOwned: the object was not created by this driver (its slot is
	// not of the form SlotFor or SnapshotSlotFor derive, or its file is not
	// such a slot's file in the volume directory), so it is never changed or
	// removed.
	ErrNotOwned error = &kind{"not_owned", "not created by rds-csi"}
	// ErrUnknown: the command failed (non-zero exit status, error text on
	// either stream) in a way none of the other sentinels describes.
	ErrUnknown error = &kind{"unknown", "command failed"}
)

var classOrder = []error{
	ErrInvalidArgument, ErrNotFound, ErrExists, ErrNoSpace, ErrBusy, ErrAuth,
	ErrHostKey, ErrUnreachable, ErrUnexpectedOutput, ErrUnconfirmed, ErrInUse,
	ErrNotOwned, ErrUnknown,
}

// Retryable reports whether the same call may succeed later without any
// change: true for ErrUnreachable and ErrBusy. Callers re-read state before
// retrying a change.
func Retryable(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, ErrBusy)
}

// ErrorClass names the class of err for metrics and logs: "" for nil, the
// class of the package sentinel it wraps ("invalid_argument", "not_found",
// "exists", "no_space", "busy", "auth", "host_key", "unreachable",
// "unexpected_output", "unconfirmed", "in_use", "not_owned", "unknown"),
// "canceled" or "deadline" for context errors, and "other" otherwise. The set
// is fixed, so it is safe as a metric label.
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
	}
	return "other"
}

// ErrorClasses lists every name ErrorClass can return for a non-nil error.
func ErrorClasses() []string {
	out := make([]string, 0, len(classOrder)+3)
	for _, s := range classOrder {
		out = append(out, s.(*kind).class)
	}
	return append(out, "canceled", "deadline", "other")
}

// ArgError describes a value that failed validation. It wraps
// ErrInvalidArgument.
type ArgError struct {
	Field   string // the RouterOS argument or our parameter ("slot", "file-path", ...)
	Value   string // the offending value, quoted with %q in Error
	Allowed string // what would have been accepted
}

func (e *ArgError) Error() string {
	return fmt.Sprintf("routeros: invalid %s %q: want %s", e.Field, e.Value, e.Allowed)
}

// Unwrap returns ErrInvalidArgument.
func (e *ArgError) Unwrap() error { return ErrInvalidArgument }

func invalid(field, value, allowed string) *ArgError {
	return &ArgError{Field: field, Value: value, Allowed: allowed}
}

// CommandError is a command RouterOS (or the connection) failed. It wraps the
// sentinel chosen by the classification and, for transport failures, the
// underlying error. Command holds the command line (it never contains a
// secret: commands are built only from allow-listed values).
type CommandError struct {
	Command    string
	ExitStatus int    // -1 when no status was received
	Text       string // the error text RouterOS printed (either stream), trimmed
	Kind       error  // the sentinel
	Err        error  // the transport error, if any
}

func (e *CommandError) Error() string {
	s := "routeros: " + e.Command + ": " + e.Kind.(*kind).msg
	if e.Text != "" {
		s += ": " + e.Text
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.ExitStatus > 0 {
		s += fmt.Sprintf(" (exit status %d)", e.ExitStatus)
	}
	return s
}

// Unwrap returns the sentinel and the transport error.
func (e *CommandError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}
