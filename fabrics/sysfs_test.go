package fabrics

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/srvlab/rds-csi/sysfs"
)

func TestFindExisting(t *testing.T) {
	with := func(instance int, edit func(c *sysfs.Controller)) sysfs.Controller {
		c := liveCtrl(instance)
		edit(&c)
		return c
	}
	tests := []struct {
		name  string
		edit  func(o *Options)
		ctrls []sysfs.Controller
		want  string // controller name, "" for none
	}{
		{"match", nil, []sysfs.Controller{liveCtrl(0)}, "nvme0"},
		{"no controllers", nil, nil, ""},
		{"hostnqn given and equal", func(o *Options) { o.HostNQN = testHostNQN }, []sysfs.Controller{liveCtrl(0)}, "nvme0"},
		{"hostnqn given and different", func(o *Options) { o.HostNQN = "nqn.2014-08.org.example:h2" }, []sysfs.Controller{liveCtrl(0)}, ""},
		{"hostid compared case-insensitively", func(o *Options) { o.HostID = strings.ToUpper(testHostID) }, []sysfs.Controller{liveCtrl(0)}, "nvme0"},
		{"hostid different", func(o *Options) { o.HostID = "00000000-0000-0000-0000-000000000001" }, []sysfs.Controller{liveCtrl(0)}, ""},
		{"other nqn", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.SubsysNQN = "nqn.2000-02.com.mikrotik:other" })}, ""},
		{"other port", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.Trsvcid = "4421" })}, ""},
		{"given port", func(o *Options) { o.Trsvcid = 4421 }, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.Trsvcid = "4421" })}, "nvme0"},
		{"other address", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.Traddr = "192.0.2.11" })}, ""},
		{"other transport", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Transport = "rdma" })}, ""},
		{"ipv6 canonical", func(o *Options) { o.Traddr = "fd00:0000::0010" }, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.Traddr = "fd00::10" })}, "nvme0"},
		{"discovery type ignored", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.CntrlType = "discovery" })}, ""},
		{"discovery nqn ignored", func(o *Options) { o.NQN = DiscoveryNQN }, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.SubsysNQN = DiscoveryNQN; c.CntrlType = "" })}, ""},
		{"deleting ignored", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.State = sysfs.StateDeleting })}, ""},
		{"deleting no io ignored", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.State = sysfs.StateDeletingNoIO })}, ""},
		{"dead ignored", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.State = sysfs.StateDead })}, ""},
		{"connecting matches", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.State = sysfs.StateConnecting; c.Address.SrcAddr = "" })}, "nvme0"},
		{"live preferred", nil, []sysfs.Controller{
			with(1, func(c *sysfs.Controller) { c.State = sysfs.StateConnecting }),
			liveCtrl(5),
			liveCtrl(3),
			with(2, func(c *sysfs.Controller) { c.State = sysfs.StateResetting }),
		}, "nvme3"},
		{"lowest instance among non-live", nil, []sysfs.Controller{
			with(9, func(c *sysfs.Controller) { c.State = sysfs.StateConnecting }),
			with(4, func(c *sysfs.Controller) { c.State = sysfs.StateConnecting }),
		}, "nvme4"},
		{"host_traddr on both, canonical", func(o *Options) { o.HostTraddr = "fd00:0::20" },
			[]sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.HostTraddr = "fd00::20" })}, "nvme0"},
		{"host_traddr only on controller", nil,
			[]sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.HostTraddr = "192.0.2.20" })}, ""},
		{"host_traddr only in options", func(o *Options) { o.HostTraddr = "192.0.2.20" }, []sysfs.Controller{liveCtrl(0)}, ""},
		{"host_iface equal", func(o *Options) { o.HostIface = "eth1" },
			[]sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.HostIface = "eth1" })}, "nvme0"},
		{"host_iface different", func(o *Options) { o.HostIface = "eth1" },
			[]sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.HostIface = "eth2" })}, ""},
		// The kernel compares the strings it was given (nvmf_ip_options_match):
		// these are other controllers to it, whatever the addresses mean.
		{"port with a leading zero in sysfs", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.Trsvcid = "04420" })}, ""},
		{"ipv4-mapped traddr in sysfs", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.Traddr = "::ffff:192.0.2.10" })}, ""},
		{"non-canonical traddr in sysfs", func(o *Options) { o.Traddr = "fd00::10" }, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.Traddr = "fd00:0::10" })}, ""},
		{"non-canonical host_traddr in sysfs", func(o *Options) { o.HostTraddr = "fd00::20" }, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.Address.HostTraddr = "fd00:0::20" })}, ""},
		{"hostid not given matches any", nil, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.HostID = "00000000-0000-4000-8000-000000000001" })}, "nvme0"},
		{"hostid given, controller has none", func(o *Options) { o.HostID = testHostID }, []sysfs.Controller{with(0, func(c *sysfs.Controller) { c.HostID = "" })}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := minimalOptions()
			if tt.edit != nil {
				tt.edit(&o)
			}
			got, ok := findExisting(&o, tt.ctrls)
			if ok != (tt.want != "") || got.Name != tt.want {
				t.Errorf("findExisting() = %q, %v; want %q", got.Name, ok, tt.want)
			}
		})
	}
}

func TestDisconnect(t *testing.T) {
	tests := []struct {
		name   string
		ctrl   string
		sys    *fakeSys
		want   error
		writes []string
	}{
		{"live", "nvme2", &fakeSys{ctrls: []sysfs.Controller{liveCtrl(2)}}, nil, []string{"nvme2 delete_controller=1"}},
		{"gone", "nvme2", &fakeSys{}, ErrControllerGone, nil},
		{"gone as ENOENT", "nvme2", &fakeSys{ctrls: []sysfs.Controller{liveCtrl(2)}, writeErr: map[string]error{
			"delete_controller": &fs.PathError{Op: "open", Path: "/sys/class/nvme/nvme2/delete_controller", Err: syscall.ENOENT},
		}}, ErrControllerGone, nil},
		{"empty name", "", &fakeSys{}, ErrInvalidOption, nil},
		{"not nvme", "sda", &fakeSys{}, ErrInvalidOption, nil},
		{"no instance", "nvme", &fakeSys{}, ErrInvalidOption, nil},
		{"leading zero", "nvme02", &fakeSys{}, ErrInvalidOption, nil},
		{"namespace", "nvme0n1", &fakeSys{}, ErrInvalidOption, nil},
		{"path", "../nvme0", &fakeSys{}, ErrInvalidOption, nil},
		{"subsystem", "nvme-subsys0", &fakeSys{}, ErrInvalidOption, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newTestClient(newFakeDevice(), tt.sys).Disconnect(tt.ctrl)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Disconnect(%q) = %v, want %v", tt.ctrl, err, tt.want)
			}
			if diff := cmp.Diff(tt.writes, tt.sys.written()); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if errors.Is(err, ErrControllerGone) && ErrorClass(err) != "controller_gone" {
				t.Errorf("ErrorClass = %q", ErrorClass(err))
			}
		})
	}
}

func TestDisconnectWithoutSource(t *testing.T) {
	if err := NewClient("", nil).Disconnect("nvme0"); err == nil {
		t.Fatal("Disconnect without a sysfs source succeeded")
	}
}

func TestUpdateTimeouts(t *testing.T) {
	ctrl := liveCtrl(1)
	ctrl.CtrlLossTmo, ctrl.ReconnectDelay, ctrl.FastIOFailTmo = 600, 10, -1
	forever := liveCtrl(1)
	forever.CtrlLossTmo = -1
	einval := &fs.PathError{Op: "write", Path: "/sys/class/nvme/nvme1/ctrl_loss_tmo", Err: syscall.EINVAL}
	tests := []struct {
		name   string
		sys    *fakeSys
		ctrl   string
		t      Timeouts
		want   error
		writes []string
	}{
		{
			name: "all, in kernel order",
			sys:  &fakeSys{ctrls: []sysfs.Controller{ctrl}},
			t:    Timeouts{FastIOFailTmo: Int(5), CtrlLossTmo: Int(-1), ReconnectDelay: Int(2)},
			writes: []string{
				"nvme1 reconnect_delay=2",
				"nvme1 ctrl_loss_tmo=-1",
				"nvme1 fast_io_fail_tmo=5",
			},
		},
		{
			name:   "ctrl_loss_tmo only",
			sys:    &fakeSys{ctrls: []sysfs.Controller{ctrl}},
			t:      Timeouts{CtrlLossTmo: Int(120)},
			writes: []string{"nvme1 ctrl_loss_tmo=120"},
		},
		{
			name:   "reconnect_delay then fast_io_fail_tmo off",
			sys:    &fakeSys{ctrls: []sysfs.Controller{ctrl}},
			t:      Timeouts{ReconnectDelay: Int(5), FastIOFailTmo: Int(-1)},
			writes: []string{"nvme1 reconnect_delay=5", "nvme1 fast_io_fail_tmo=-1"},
		},
		{
			name: "nothing set",
			sys:  &fakeSys{ctrls: []sysfs.Controller{ctrl}},
		},
		{
			name: "invalid: nothing written",
			sys:  &fakeSys{ctrls: []sysfs.Controller{ctrl}},
			t:    Timeouts{ReconnectDelay: Int(2), CtrlLossTmo: Int(-5)},
			want: ErrInvalidOption,
		},
		{
			name: "fast_io_fail_tmo above current ctrl_loss_tmo",
			sys:  &fakeSys{ctrls: []sysfs.Controller{ctrl}},
			t:    Timeouts{FastIOFailTmo: Int(601)},
			want: ErrInvalidOption,
		},
		{
			name:   "fast_io_fail_tmo with current ctrl_loss_tmo forever",
			sys:    &fakeSys{ctrls: []sysfs.Controller{forever}},
			t:      Timeouts{FastIOFailTmo: Int(3600)},
			writes: []string{"nvme1 fast_io_fail_tmo=3600"},
		},
		{
			name: "gone",
			sys:  &fakeSys{},
			t:    Timeouts{CtrlLossTmo: Int(1)},
			want: ErrControllerGone,
		},
		{
			name: "gone while reading for the cross-check",
			sys:  &fakeSys{},
			t:    Timeouts{FastIOFailTmo: Int(1)},
			want: ErrControllerGone,
		},
		{
			name:   "kernel EINVAL stops the sequence",
			sys:    &fakeSys{ctrls: []sysfs.Controller{ctrl}, writeErr: map[string]error{"ctrl_loss_tmo": einval}},
			t:      Timeouts{ReconnectDelay: Int(2), CtrlLossTmo: Int(30), FastIOFailTmo: Int(5)},
			want:   ErrInvalidOption,
			writes: []string{"nvme1 reconnect_delay=2"},
		},
		{
			name: "bad name",
			sys:  &fakeSys{ctrls: []sysfs.Controller{ctrl}},
			ctrl: "nvme1/../nvme2",
			t:    Timeouts{CtrlLossTmo: Int(1)},
			want: ErrInvalidOption,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.ctrl
			if name == "" {
				name = "nvme1"
			}
			err := newTestClient(newFakeDevice(), tt.sys).UpdateTimeouts(name, tt.t)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("UpdateTimeouts() = %v, want %v", err, tt.want)
			}
			if diff := cmp.Diff(tt.writes, tt.sys.written()); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpdateTimeoutsErrorNamesProgress(t *testing.T) {
	ctrl := liveCtrl(1)
	einval := &fs.PathError{Op: "write", Path: "/sys/class/nvme/nvme1/ctrl_loss_tmo", Err: syscall.EINVAL}
	sys := &fakeSys{ctrls: []sysfs.Controller{ctrl}, writeErr: map[string]error{"ctrl_loss_tmo": einval}}
	err := newTestClient(newFakeDevice(), sys).UpdateTimeouts("nvme1", Timeouts{ReconnectDelay: Int(2), CtrlLossTmo: Int(30)})
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("errno not reachable: %v", err)
	}
	for _, s := range []string{"ctrl_loss_tmo 30", "nvme1", "reconnect_delay already set"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q does not contain %q", err, s)
		}
	}
}

func TestRescan(t *testing.T) {
	enoent := &fs.PathError{Op: "open", Path: "/sys/class/nvme/nvme1/rescan_controller", Err: syscall.ENOENT}
	eio := &fs.PathError{Op: "write", Path: "/sys/class/nvme/nvme1/rescan_controller", Err: syscall.EIO}
	two := map[string][]string{"nvme0n1": {"nvme0", "nvme1"}}
	tests := []struct {
		name    string
		sys     *fakeSys
		want    error // nil, or a sentinel
		wantAny bool  // some error, not one of the sentinels
		writes  []string
	}{
		{"every path", &fakeSys{ctrls: []sysfs.Controller{liveCtrl(0), liveCtrl(1)}, disks: two}, nil, false,
			[]string{"nvme0 rescan_controller=1", "nvme1 rescan_controller=1"}},
		{"one path gone", &fakeSys{ctrls: []sysfs.Controller{liveCtrl(1)}, disks: two}, nil, false,
			[]string{"nvme1 rescan_controller=1"}},
		{"no such disk", &fakeSys{ctrls: []sysfs.Controller{liveCtrl(0)}}, ErrControllerGone, false, nil},
		{"every path gone", &fakeSys{disks: two}, ErrControllerGone, false, nil},
		{"gone as ENOENT", &fakeSys{ctrls: []sysfs.Controller{liveCtrl(0), liveCtrl(1)}, disks: two,
			writeErr: map[string]error{"rescan_controller": enoent}}, ErrControllerGone, false, nil},
		{"write fails", &fakeSys{ctrls: []sysfs.Controller{liveCtrl(0), liveCtrl(1)}, disks: two,
			writeErr: map[string]error{"rescan_controller": eio}}, nil, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newTestClient(newFakeDevice(), tt.sys).Rescan("nvme0n1")
			switch {
			case tt.want != nil:
				if !errors.Is(err, tt.want) {
					t.Fatalf("Rescan = %v, want %v", err, tt.want)
				}
			case tt.wantAny:
				if err == nil || errors.Is(err, ErrControllerGone) || !errors.Is(err, syscall.EIO) {
					t.Fatalf("Rescan = %v, want the EIO of the writes", err)
				}
			case err != nil:
				t.Fatalf("Rescan = %v", err)
			}
			if diff := cmp.Diff(tt.writes, tt.sys.written()); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
		})
	}
	if err := NewClient("", nil).Rescan("nvme0n1"); err == nil {
		t.Error("Rescan without a sysfs source succeeded")
	}
}
