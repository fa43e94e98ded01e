package fabrics

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/sysfs"
)

func TestConnectErrno(t *testing.T) {
	tests := []struct {
		errno     syscall.Errno
		sentinel  error
		class     string
		retryable bool
	}{
		{syscall.EINVAL, ErrInvalidOption, "invalid_option", false},
		{syscall.ECONNREFUSED, ErrUnreachable, "unreachable", true},
		{syscall.ECONNRESET, ErrUnreachable, "unreachable", true},
		{syscall.ECONNABORTED, ErrUnreachable, "unreachable", true},
		{syscall.EAGAIN, ErrUnreachable, "unreachable", true},
		{syscall.ETIMEDOUT, ErrUnreachable, "unreachable", true},
		{syscall.EHOSTUNREACH, ErrUnreachable, "unreachable", true},
		{syscall.ENETUNREACH, ErrUnreachable, "unreachable", true},
		{syscall.EHOSTDOWN, ErrUnreachable, "unreachable", true},
		{syscall.ENETDOWN, ErrUnreachable, "unreachable", true},
		{syscall.EIO, ErrRejected, "rejected", false},
		{syscall.ENOKEY, ErrAuth, "auth", false},
		{syscall.EKEYREJECTED, ErrAuth, "auth", false},
		{syscall.EKEYEXPIRED, ErrAuth, "auth", false},
		{syscall.EKEYREVOKED, ErrAuth, "auth", false},
		{syscall.EPERM, ErrAuth, "auth", false},
		{syscall.ENODEV, ErrNoDevice, "no_device", false},
		{syscall.EALREADY, ErrAlreadyConnected, "already_connected", false}, // nothing to adopt
		{syscall.ENOMEM, nil, "other", false},
		{syscall.EBUSY, nil, "other", false},
	}
	for _, tt := range tests {
		t.Run(tt.errno.Error(), func(t *testing.T) {
			dev := newFakeDevice()
			dev.writeErr = tt.errno
			_, err := newTestClient(dev, &fakeSys{}).Connect(t.Context(), fullOptions())
			if err == nil {
				t.Fatal("Connect() succeeded")
			}
			if !errors.Is(err, tt.errno) {
				t.Errorf("errors.Is(err, %v) = false for %v", tt.errno, err)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("errors.Is(err, %v) = false for %v", tt.sentinel, err)
			}
			var errno syscall.Errno
			if !errors.As(err, &errno) || errno != tt.errno {
				t.Errorf("errors.As errno = %v, want %v", errno, tt.errno)
			}
			if got := Retryable(err); got != tt.retryable {
				t.Errorf("Retryable() = %v, want %v", got, tt.retryable)
			}
			if got := ErrorClass(err); got != tt.class {
				t.Errorf("ErrorClass() = %q, want %q", got, tt.class)
			}
			if !strings.Contains(err.Error(), "192.0.2.10:4420") || !strings.Contains(err.Error(), testNQN) {
				t.Errorf("message %q does not name the target", err)
			}
			mustNotContainSecret(t, "error", err.Error())
			if n := len(dev.written()); n != 1 {
				t.Errorf("%d writes, want exactly 1", n)
			}
		})
	}
}

func TestFabricsUnavailable(t *testing.T) {
	check := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, ErrFabricsUnavailable) || !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("Connect() = %v, want ErrFabricsUnavailable and ENOENT", err)
		}
		if !strings.Contains(err.Error(), "modprobe nvme-tcp") {
			t.Errorf("message %q does not tell to modprobe nvme-tcp", err)
		}
		if Retryable(err) || ErrorClass(err) != "fabrics_unavailable" {
			t.Errorf("Retryable=%v class=%q", Retryable(err), ErrorClass(err))
		}
	}
	t.Run("real device path", func(t *testing.T) {
		c := NewClient(filepath.Join(t.TempDir(), "nvme-fabrics"), nil)
		_, err := c.Connect(t.Context(), minimalOptions())
		check(t, err)
	})
	t.Run("fake", func(t *testing.T) {
		dev := newFakeDevice()
		dev.openErr = &fs.PathError{Op: "open", Path: "/dev/nvme-fabrics", Err: syscall.ENOENT}
		_, err := newTestClient(dev, nil).Connect(t.Context(), minimalOptions())
		check(t, err)
	})
}

func TestConnectAdoptsOnEALREADY(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(o *Options)
		ctrls []sysfs.Controller
		want  Controller // zero: ErrAlreadyConnected
	}{
		{
			name:  "match",
			ctrls: []sysfs.Controller{liveCtrl(2)},
			want:  Controller{Name: "nvme2", Instance: 2, CntlID: 102, Adopted: true},
		},
		{
			name:  "hostnqn mismatch",
			edit:  func(o *Options) { o.HostNQN = "nqn.2014-08.org.example:other-host" },
			ctrls: []sysfs.Controller{liveCtrl(2)},
		},
		{
			name: "ipv6 compared canonically",
			edit: func(o *Options) { o.Traddr = "FD00:0:0::10" },
			ctrls: []sysfs.Controller{func() sysfs.Controller {
				c := liveCtrl(4)
				c.Address.Traddr = "fd00::10"
				return c
			}()},
			want: Controller{Name: "nvme4", Instance: 4, CntlID: 104, Adopted: true},
		},
		{
			name: "discovery controller ignored",
			ctrls: []sysfs.Controller{func() sysfs.Controller {
				c := liveCtrl(1)
				c.CntrlType = "discovery"
				return c
			}()},
		},
		{name: "none found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := newFakeDevice()
			dev.writeErr = syscall.EALREADY
			o := minimalOptions()
			if tt.edit != nil {
				tt.edit(&o)
			}
			got, err := newTestClient(dev, &fakeSys{ctrls: tt.ctrls}).Connect(t.Context(), o)
			if tt.want == (Controller{}) {
				if !errors.Is(err, ErrAlreadyConnected) || !errors.Is(err, syscall.EALREADY) {
					t.Fatalf("Connect() = %+v, %v; want ErrAlreadyConnected", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Connect (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConnectEALREADYListFails(t *testing.T) {
	dev := newFakeDevice()
	dev.writeErr = syscall.EALREADY
	listErr := errors.New("sysfs: read /sys/class/nvme: boom")
	_, err := newTestClient(dev, &fakeSys{listErr: listErr}).Connect(t.Context(), minimalOptions())
	if !errors.Is(err, ErrAlreadyConnected) || !errors.Is(err, listErr) || !errors.Is(err, syscall.EALREADY) {
		t.Fatalf("Connect() = %v, want both ErrAlreadyConnected and the listing error", err)
	}
}

func TestKernelRelease(t *testing.T) {
	if r := kernelRelease(); r == "" || strings.ContainsRune(r, 0) {
		t.Errorf("kernelRelease() = %q", r)
	}
}
