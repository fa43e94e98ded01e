package csi

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/fabrics"
)

func TestCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"nil", nil, codes.OK},
		{"invalid option", fmt.Errorf("connect: %w", fabrics.ErrInvalidOption), codes.InvalidArgument},
		{"unsupported option", fmt.Errorf("connect: %w", fabrics.ErrUnsupportedOption), codes.InvalidArgument},
		{"option error", &fabrics.OptionError{Field: "traddr"}, codes.InvalidArgument},
		{"param error", &ParamError{Key: KeyNQN}, codes.InvalidArgument},
		{"unreachable", fmt.Errorf("x: %w: %w", fabrics.ErrUnreachable, syscall.ECONNREFUSED), codes.Unavailable},
		{"rejected", fmt.Errorf("x: %w", fabrics.ErrRejected), codes.FailedPrecondition},
		{"auth", fmt.Errorf("x: %w", fabrics.ErrAuth), codes.Unauthenticated},
		{"no device", fmt.Errorf("x: %w", fabrics.ErrNoDevice), codes.FailedPrecondition},
		{"fabrics unavailable", fmt.Errorf("x: %w", fabrics.ErrFabricsUnavailable), codes.FailedPrecondition},
		{"unsupported platform", fabrics.ErrUnsupportedPlatform, codes.FailedPrecondition},
		{"already connected", fmt.Errorf("x: %w", fabrics.ErrAlreadyConnected), codes.Aborted},
		{"device timeout", fmt.Errorf("x: %w", daemon.ErrDeviceTimeout), codes.DeadlineExceeded},
		{"not ready", daemon.ErrNotReady, codes.Unavailable},
		{"closed", daemon.ErrClosed, codes.Unavailable},
		{"conflict", fmt.Errorf("x: %w", daemon.ErrConflict), codes.AlreadyExists},
		{"unknown volume", fmt.Errorf("x: %w", daemon.ErrUnknownVolume), codes.NotFound},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), codes.Canceled},
		// The retry loop ran out of time against an unreachable target: the
		// cause is more useful than the deadline.
		{"unreachable and deadline", errors.Join(fabrics.ErrUnreachable, context.DeadlineExceeded), codes.Unavailable},
		{"status kept", status.Error(codes.Aborted, "busy"), codes.Aborted},
		{"other", errors.New("boom"), codes.Internal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Code(tc.err); got != tc.want {
				t.Errorf("Code = %v, want %v", got, tc.want)
			}
			st := Status("op", tc.err)
			if got := status.Code(st); got != tc.want {
				t.Errorf("Status code = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestStageErrorCodes drives the mapping through NodeStageVolume.
func TestStageErrorCodes(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("connect: %w: %w", fabrics.ErrUnreachable, syscall.ECONNREFUSED), codes.Unavailable},
		{fmt.Errorf("connect: %w: %w", fabrics.ErrRejected, syscall.EIO), codes.FailedPrecondition},
		{fmt.Errorf("connect: %w: %w", fabrics.ErrAuth, syscall.EPERM), codes.Unauthenticated},
		{fmt.Errorf("connect: %w: %w", fabrics.ErrInvalidOption, syscall.EINVAL), codes.InvalidArgument},
		{daemon.ErrDeviceTimeout, codes.DeadlineExceeded},
		{daemon.ErrNotReady, codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			e := newTestEnv(t)
			e.vols.attachErr = tc.err
			_, err := e.node.NodeStageVolume(context.Background(), stageReq(t.TempDir(), "vol-1", mountCap(), validContext()))
			if got := status.Code(err); got != tc.want {
				t.Errorf("code %v (%v), want %v", got, err, tc.want)
			}
			if len(e.mountPaths()) != 0 {
				t.Errorf("mounts after a failed attach: %v", e.mountPaths())
			}
		})
	}
}
