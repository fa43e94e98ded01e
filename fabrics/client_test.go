package fabrics

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConnect(t *testing.T) {
	dev := newFakeDevice()
	dev.reply = "instance=7,cntlid=12\n"
	c := newTestClient(dev, &fakeSys{})
	got, err := c.Connect(t.Context(), fullOptions())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Controller{Name: "nvme7", Instance: 7, CntlID: 12}, got); diff != "" {
		t.Errorf("Connect (-want +got):\n%s", diff)
	}
	want, _ := fullOptions().optionString()
	if diff := cmp.Diff([]string{want}, dev.written()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if dev.opens != 2 {
		t.Errorf("%d opens, want 2 (probe, connect)", dev.opens)
	}
}

func TestNewClientDefaults(t *testing.T) {
	if got := NewClient("", nil).path; got != DefaultDevicePath {
		t.Errorf("path = %q, want %q", got, DefaultDevicePath)
	}
	if got := NewClient("/tmp/x", nil).path; got != "/tmp/x" {
		t.Errorf("path = %q", got)
	}
}

func TestProbeCachedAndRetriedAfterFailure(t *testing.T) {
	dev := newFakeDevice()
	dev.openErr = &fs.PathError{Op: "open", Path: "/dev/fake-nvme-fabrics", Err: syscall.EACCES}
	c := newTestClient(dev, &fakeSys{})
	if _, err := c.SupportedOptions(t.Context()); err == nil {
		t.Fatal("SupportedOptions() succeeded with a failing open")
	}
	dev.openErr = nil
	for range 3 {
		set, err := c.SupportedOptions(t.Context())
		if err != nil || !set.Has("tls") {
			t.Fatalf("SupportedOptions() = %v, %v", set.Names(), err)
		}
	}
	if dev.opens != 2 {
		t.Errorf("%d opens, want 2 (failed, then one probe cached)", dev.opens)
	}
	for range 2 {
		if _, err := c.Connect(t.Context(), minimalOptions()); err != nil {
			t.Fatal(err)
		}
	}
	if dev.opens != 4 {
		t.Errorf("%d opens after two connects, want 4", dev.opens)
	}
}

func TestUnsupportedOptionRefused(t *testing.T) {
	tests := []struct {
		name  string
		probe string
		edit  func(o *Options)
		field string // "" means accepted
	}{
		{"tls on 6.1", probe61, func(o *Options) { o.TLS = true }, "tls"},
		{"keyring on 6.1", probe61, func(o *Options) { o.Keyring = Int(5) }, "keyring"},
		{"tls_key on 6.1", probe61, func(o *Options) { o.TLSKey = Int(5) }, "tls_key"},
		{"tls on 6.12", probe612, func(o *Options) { o.TLS = true }, ""},
		{"concat on 6.12", probe612, func(o *Options) { o.DHCHAPSecret, o.Concat = hostSecret, true }, "concat"},
		{"concat listed", strings.TrimSuffix(probe612, "\n") + ",concat\n", func(o *Options) { o.DHCHAPSecret, o.Concat = hostSecret, true }, ""},
		{"dhchap on 6.1 listed", probe61, func(o *Options) { o.DHCHAPSecret = hostSecret }, ""},
		{"secret on a kernel without auth", "instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s\n",
			func(o *Options) { o.DHCHAPSecret = hostSecret }, "dhchap_secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := newFakeDevice()
			dev.probe = tt.probe
			c := newTestClient(dev, &fakeSys{})
			c.release = func() string { return "6.1.0-56-amd64" }
			o := minimalOptions()
			tt.edit(&o)
			_, err := c.Connect(t.Context(), o)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Connect() = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrUnsupportedOption) || !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("Connect() = %v, want ErrUnsupportedOption and ErrInvalidOption", err)
			}
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Field != tt.field {
				t.Fatalf("Connect() = %v, want an *OptionError for %s", err, tt.field)
			}
			for _, s := range []string{tt.field, "6.1.0-56-amd64", "not supported"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not mention %q", err, s)
				}
			}
			mustNotContainSecret(t, "error", err.Error())
			if w := dev.written(); len(w) != 0 {
				t.Errorf("wrote %q", w)
			}
			if ErrorClass(err) != "unsupported_option" {
				t.Errorf("ErrorClass = %q", ErrorClass(err))
			}
		})
	}
}

func TestProbeUnknownDoesNotFilter(t *testing.T) {
	tests := []struct {
		name     string
		probe    string
		probeErr syscall.Errno
		wantErr  error // from SupportedOptions
	}{
		{"old kernel EINVAL", "", syscall.EINVAL, nil},
		{"unparseable list", "something else entirely\n", 0, ErrUnexpectedReply},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := newFakeDevice()
			dev.probe, dev.probeErr = tt.probe, tt.probeErr
			c := newTestClient(dev, &fakeSys{})
			set, err := c.SupportedOptions(t.Context())
			if set.Known() || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("SupportedOptions() = known %v, %v; want unknown, %v", set.Known(), err, tt.wantErr)
			}
			o := minimalOptions()
			o.TLS, o.Concat, o.DHCHAPSecret = true, true, hostSecret
			if _, err := c.Connect(t.Context(), o); err != nil {
				t.Fatalf("Connect() = %v, want no filtering", err)
			}
			if _, err := c.Connect(t.Context(), o); err != nil {
				t.Fatal(err)
			}
			if dev.opens != 3 {
				t.Errorf("%d opens, want 3: the unknown result is cached", dev.opens)
			}
		})
	}
}

func TestConnectChecksContextBeforeWriting(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	dev := newFakeDevice()
	_, err := newTestClient(dev, &fakeSys{}).Connect(ctx, minimalOptions())
	if !errors.Is(err, context.Canceled) || ErrorClass(err) != "canceled" {
		t.Fatalf("Connect() = %v, want context.Canceled", err)
	}
	if dev.opens != 0 {
		t.Errorf("%d opens with a canceled context", dev.opens)
	}
}

func TestConnectValidatesBeforeContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	o := minimalOptions()
	o.Traddr = "localhost"
	if _, err := newTestClient(newFakeDevice(), nil).Connect(ctx, o); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("Connect() = %v, want ErrInvalidOption", err)
	}
}

func TestConnectBadReply(t *testing.T) {
	tests := []struct {
		name    string
		reply   string
		readErr syscall.Errno
	}{
		{"garbage", "hello\n", 0},
		{"probe list after write", probe612, 0},
		{"empty", "", 0},
		{"read error", "", syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := newFakeDevice()
			dev.reply, dev.readErr = tt.reply, tt.readErr
			_, err := newTestClient(dev, &fakeSys{}).Connect(t.Context(), fullOptions())
			if !errors.Is(err, ErrUnexpectedReply) || ErrorClass(err) != "unexpected_reply" || Retryable(err) {
				t.Fatalf("Connect() = %v (class %q), want ErrUnexpectedReply", err, ErrorClass(err))
			}
			if tt.readErr != 0 && !errors.Is(err, tt.readErr) {
				t.Errorf("errno %v not reachable from %v", tt.readErr, err)
			}
			mustNotContainSecret(t, "error", err.Error())
		})
	}
}

func TestConnectUnsupportedPlatformOrNoDevice(t *testing.T) {
	dev := newFakeDevice()
	dev.openErr = ErrUnsupportedPlatform
	_, err := newTestClient(dev, &fakeSys{}).Connect(t.Context(), minimalOptions())
	if !errors.Is(err, ErrUnsupportedPlatform) || ErrorClass(err) != "unsupported_platform" {
		t.Fatalf("Connect() = %v", err)
	}
}

func TestErrorClassNames(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("x"), "other"},
		{context.DeadlineExceeded, "deadline"},
		{fs.ErrPermission, "permission"},
		{&OptionError{Field: "tls", unsupported: true}, "unsupported_option"},
		{&OptionError{Field: "tls"}, "invalid_option"},
	}
	for _, tt := range tests {
		if got := ErrorClass(tt.err); got != tt.want {
			t.Errorf("ErrorClass(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	seen := map[string]bool{}
	for _, c := range ErrorClasses() {
		if seen[c] || c == "" {
			t.Errorf("duplicate or empty class %q", c)
		}
		seen[c] = true
	}
	for _, s := range classOrder {
		if !seen[ErrorClass(s)] {
			t.Errorf("ErrorClass(%v) = %q not in ErrorClasses()", s, ErrorClass(s))
		}
	}
}
