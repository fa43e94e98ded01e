package csi

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/fabrics"
)

// codeRule maps errors matching a sentinel to a code.
type codeRule struct {
	target error
	code   codes.Code
	hint   string // appended to the message
}

// codeRules is the error mapping, most specific first. The reasoning:
//
//   - ErrInvalidOption (and *ParamError, ErrUnsupportedOption):
//     InvalidArgument; the request's parameters must change.
//   - ErrUnreachable: Unavailable; transient, the CO retries, and kubelet
//     treats the stage as uncertain (it will unstage if it gives up).
//   - ErrRejected (EIO: NQN not exported on that port, or this host not
//     allowed): FailedPrecondition; nothing heals until the target's export
//     or ACL is fixed. NotFound would claim the volume does not exist, which
//     the kernel cannot tell apart from a host ACL refusal.
//   - ErrAuth: Unauthenticated; the DH-HMAC-CHAP secrets of the request are
//     not valid (the spec's "does not carry secrets that are valid").
//   - ErrNoDevice (hostIface not on this node), ErrFabricsUnavailable
//     (module not loaded), ErrUnsupportedPlatform: FailedPrecondition; the
//     node must be fixed.
//   - ErrAlreadyConnected (the existing controller vanished mid-connect):
//     Aborted; retry.
//   - daemon.ErrDeviceTimeout: DeadlineExceeded; the controller is
//     connected but the namespace's disk did not appear (wrong nsid?). Not a
//     final error, so kubelet keeps the stage "uncertain" and unstages,
//     which releases the controller.
//   - daemon.ErrNotReady: Unavailable; the first reconcile is still running.
//     daemon.ErrClosed: Unavailable; the plugin is shutting down.
//   - daemon.ErrConflict (the volume id is staged with another NQN or
//     nsid): AlreadyExists, the spec's "published but incompatible".
//   - daemon.ErrUnknownVolume (MarkStaged of a volume that is not attached,
//     VolumeHealth of a volume the daemon does not know): NotFound.
//   - context.DeadlineExceeded, context.Canceled: DeadlineExceeded, Canceled.
//   - anything else: Internal.
var codeRules = []codeRule{
	{fabrics.ErrInvalidOption, codes.InvalidArgument, ""},
	{fabrics.ErrUnsupportedOption, codes.InvalidArgument, " (the running kernel lacks it)"},
	{fabrics.ErrUnreachable, codes.Unavailable, ""},
	{fabrics.ErrRejected, codes.FailedPrecondition, " (is the NQN exported on that port, and is this node's hostnqn allowed?)"},
	{fabrics.ErrAuth, codes.Unauthenticated, " (check the DH-HMAC-CHAP secrets in the node-stage secret)"},
	{fabrics.ErrNoDevice, codes.FailedPrecondition, ""},
	{fabrics.ErrFabricsUnavailable, codes.FailedPrecondition, ""},
	{fabrics.ErrUnsupportedPlatform, codes.FailedPrecondition, ""},
	{fabrics.ErrAlreadyConnected, codes.Aborted, ""},
	{daemon.ErrDeviceTimeout, codes.DeadlineExceeded, " (is the nsid right and the namespace enabled on the target?)"},
	{daemon.ErrNotReady, codes.Unavailable, ""},
	{daemon.ErrClosed, codes.Unavailable, " (the plugin is shutting down)"},
	{daemon.ErrConflict, codes.AlreadyExists, ""},
	{daemon.ErrUnknownVolume, codes.NotFound, ""},
	{context.DeadlineExceeded, codes.DeadlineExceeded, ""},
	{context.Canceled, codes.Canceled, ""},
}

// Code returns the gRPC code for err (codes.OK for nil). An error that
// already carries a gRPC status keeps its code.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return ruleFor(err).code
}

// ruleFor returns the first rule err matches; Internal without a hint if
// none does.
func ruleFor(err error) codeRule {
	for _, r := range codeRules {
		if errors.Is(err, r.target) {
			return r
		}
	}
	return codeRule{code: codes.Internal}
}

// Status converts err into a gRPC status error: nil stays nil, a status
// error is returned unchanged, anything else gets the code of Code and the
// message "<op>: <err><hint>".
func Status(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	msg := err.Error()
	if op != "" {
		msg = op + ": " + msg
	}
	return status.Error(Code(err), msg+ruleFor(err).hint)
}
