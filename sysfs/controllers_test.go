package sysfs_test

import (
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

func TestControllers(t *testing.T) {
	t.Parallel()
	multipathOff := smallControllers()
	// With multipath off the visible disks sit under the controllers, named
	// after the controller; no per-path ANA. Minors in build order: nvme0n1 0,
	// nvme2n1 2, nvme0n2 4, nvme2n2 6, nvme1n1 8.
	const uuid2 = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	multipathOff[0].Namespaces = []sysfs.Namespace{
		disk("nvme0n1", "nvme0", 0, 1, 0),
		withUUID(disk("nvme0n2", "nvme0", 0, 2, 4), uuid2, 4096),
	}
	multipathOff[1].Namespaces = []sysfs.Namespace{disk("nvme1n1", "nvme1", 1, 1, 8)}
	multipathOff[2].Namespaces = []sysfs.Namespace{
		disk("nvme2n1", "nvme2", 0, 1, 2),
		withUUID(disk("nvme2n2", "nvme2", 0, 2, 6), uuid2, 4096),
	}

	tests := []struct {
		name string
		spec sysfstest.Spec
		want []sysfs.Controller
	}{
		{"native multipath", smallSpec(true), smallControllers()},
		{"multipath off", smallSpec(false), multipathOff},
		{"no controllers", sysfstest.Spec{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := sharedTree(t, tt.spec)
			got, err := fs.Controllers()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Controllers() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestControllersMissingTree(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(root string) error
	}{
		{"empty root", func(string) error { return nil }},
		{"root does not exist", func(root string) error { return os.Remove(root) }},
		{"empty class dirs", func(root string) error {
			if err := os.MkdirAll(filepath.Join(root, "class/nvme"), 0o755); err != nil {
				return err
			}
			return os.MkdirAll(filepath.Join(root, "class/nvme-subsystem"), 0o755)
		}},
		{"only unrelated entries", func(root string) error {
			dir := filepath.Join(root, "class/nvme")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "nvme-fabrics"), nil, 0o644)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if err := tt.setup(root); err != nil {
				t.Fatal(err)
			}
			fs := sysfs.NewFS(root)
			ctrls, err := fs.Controllers()
			if err != nil || len(ctrls) != 0 {
				t.Errorf("Controllers() = %v, %v; want empty, nil", ctrls, err)
			}
			subs, err := fs.Subsystems()
			if err != nil || len(subs) != 0 {
				t.Errorf("Subsystems() = %v, %v; want empty, nil", subs, err)
			}
		})
	}
}

// TestControllersVanishing: controllers that disappear while a scan reads
// them are skipped, and reading them by name says ErrNotExist.
func TestControllersVanishing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// vanish makes nvme2 disappear in some way.
		vanish func(root string) error
	}{
		{"directory gone, class link dangling", func(root string) error {
			return os.RemoveAll(sysfstest.ControllerDir(root, "nvme2"))
		}},
		{"attributes removed ahead of the directory", func(root string) error {
			return os.Remove(filepath.Join(sysfstest.ControllerDir(root, "nvme2"), "state"))
		}},
		{"removed the kernel's way", func(root string) error {
			return sysfstest.RemoveController(root, "nvme2")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, root := build(t, smallSpec(true))
			if err := tt.vanish(root); err != nil {
				t.Fatal(err)
			}
			got, err := fs.Controllers()
			if err != nil {
				t.Fatal(err)
			}
			all := smallControllers()
			want := []sysfs.Controller{all[0], all[1], all[3]}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Controllers() mismatch (-want +got):\n%s", diff)
			}
			_, err = fs.Controller("nvme2")
			if !errors.Is(err, sysfs.ErrNotExist) || !errors.Is(err, iofs.ErrNotExist) {
				t.Errorf("Controller(nvme2) error = %v, want ErrNotExist and fs.ErrNotExist", err)
			}
		})
	}
}

// TestControllersErrors: failures other than a vanished controller fail the
// scan, naming the file.
func TestControllersErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string // relative to the controller directory of nvme1
		content string // "" makes it a directory, so that read fails EISDIR
		wantErr error
	}{
		{"integer", "cntlid", "x1\n", strconv.ErrSyntax},
		{"timeout", "ctrl_loss_tmo", "never\n", strconv.ErrSyntax},
		{"device number", "dev", "245\n", nil},
		{"address", "address", "traddr=::1,trsvcid\n", nil},
		{"namespace nsid", "nvme1c1n1/nsid", "one\n", strconv.ErrSyntax},
		{"namespace size", "nvme1c1n1/size", "-1\n", strconv.ErrSyntax},
		{"namespace hidden", "nvme1c1n1/hidden", "yes\n", nil},
		{"unreadable attribute", "kato", "", syscall.EISDIR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, root := build(t, smallSpec(true))
			path := filepath.Join(sysfstest.ControllerDir(root, "nvme1"), tt.file)
			if tt.content == "" {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			// The error names the file through the path it was read by.
			wantPath := filepath.Join(root, "class/nvme/nvme1", tt.file)

			got, err := fs.Controllers()
			if err == nil {
				t.Fatalf("Controllers() = %d controllers, want an error", len(got))
			}
			checkErr(t, "Controllers()", err, wantPath, tt.wantErr)
			_, err = fs.Controller("nvme1")
			checkErr(t, "Controller(nvme1)", err, wantPath, tt.wantErr)
		})
	}
}

func checkErr(t *testing.T, call string, err error, wantPath string, wantErr error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one naming %s", call, wantPath)
		return
	}
	if !strings.Contains(err.Error(), wantPath) {
		t.Errorf("%s error %q does not name %s", call, err, wantPath)
	}
	if errors.Is(err, sysfs.ErrNotExist) {
		t.Errorf("%s error %q matches ErrNotExist", call, err)
	}
	if wantErr != nil && !errors.Is(err, wantErr) {
		t.Errorf("%s error %q does not match %v", call, err, wantErr)
	}
}

func TestController(t *testing.T) {
	t.Parallel()
	fs, root := build(t, smallSpec(true))
	all := smallControllers()
	unlinked := all[1]
	unlinked.Subsystem = ""
	if err := os.Remove(filepath.Join(sysfstest.SubsystemDir(root, "nvme-subsys1"), "nvme1")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		ctrl     string
		want     sysfs.Controller
		notExist bool // want an ErrNotExist error
		invalid  bool // want another error
	}{
		{name: "live", ctrl: "nvme0", want: all[0]},
		{name: "connecting", ctrl: "nvme2", want: all[2]},
		{name: "discovery", ctrl: "nvme10", want: all[3]},
		{name: "no subsystem links to it", ctrl: "nvme1", want: unlinked},
		{name: "absent", ctrl: "nvme7", notExist: true},
		{name: "traversal", ctrl: "../nvme0", invalid: true},
		{name: "subsystem name", ctrl: "nvme-subsys0", invalid: true},
		{name: "disk name", ctrl: "nvme0n1", invalid: true},
		{name: "empty", ctrl: "", invalid: true},
		{name: "no number", ctrl: "nvme", invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := fs.Controller(tt.ctrl)
			switch {
			case tt.notExist:
				if !errors.Is(err, sysfs.ErrNotExist) || !errors.Is(err, iofs.ErrNotExist) {
					t.Errorf("Controller(%q) error = %v, want ErrNotExist", tt.ctrl, err)
				}
			case tt.invalid:
				if err == nil || errors.Is(err, sysfs.ErrNotExist) {
					t.Errorf("Controller(%q) error = %v, want an invalid-name error", tt.ctrl, err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Controller(%q) mismatch (-want +got):\n%s", tt.ctrl, diff)
				}
			}
		})
	}
}

// TestControllerOptionalAttributes: attributes some kernels or transports
// lack read as zero values.
func TestControllerOptionalAttributes(t *testing.T) {
	t.Parallel()
	optional := []string{
		"address", "cntrltype", "hostnqn", "hostid", "ctrl_loss_tmo", "reconnect_delay",
		"fast_io_fail_tmo", "kato", "queue_count", "sqsize", "numa_node",
	}
	spec := sysfstest.Spec{Subsystems: []sysfstest.Subsystem{{
		NQN:         nqnVol0,
		Model:       "RDS",
		Serial:      "S",
		Controllers: []sysfstest.Controller{{Instance: 4, Attrs: map[string]string{"transport": "pcie"}, Omit: optional}},
	}}}
	fs, _ := build(t, spec)
	got, err := fs.Controller("nvme4")
	if err != nil {
		t.Fatal(err)
	}
	want := sysfs.Controller{
		Name:        "nvme4",
		Instance:    4,
		State:       sysfs.StateLive,
		StateRaw:    "live",
		Transport:   "pcie",
		SubsysNQN:   nqnVol0,
		CntlID:      5,
		Model:       "RDS",
		Serial:      "S",
		FirmwareRev: sysfstest.DefaultFirmware,
		Dev:         sysfs.DevNum{Major: 245, Minor: 4},
		Subsystem:   "nvme-subsys0",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Controller(nvme4) mismatch (-want +got):\n%s", diff)
	}
}

func TestControllerState(t *testing.T) {
	t.Parallel()
	fs, root := build(t, smallSpec(true))
	for name, state := range map[string]string{"nvme1": "deleting (no IO)", "nvme10": "frobnicating"} {
		if err := sysfstest.SetState(root, name, state); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		ctrl      string
		wantState sysfs.State
		wantRaw   string
		wantErr   func(error) bool
	}{
		{name: "live", ctrl: "nvme0", wantState: sysfs.StateLive, wantRaw: "live"},
		{name: "connecting", ctrl: "nvme2", wantState: sysfs.StateConnecting, wantRaw: "connecting"},
		{name: "with a space", ctrl: "nvme1", wantState: sysfs.StateDeletingNoIO, wantRaw: "deleting (no IO)"},
		{name: "unknown text", ctrl: "nvme10", wantState: sysfs.StateUnknown, wantRaw: "frobnicating"},
		{name: "absent", ctrl: "nvme9", wantErr: func(err error) bool { return errors.Is(err, sysfs.ErrNotExist) }},
		{name: "invalid name", ctrl: "nvme0/../nvme1", wantErr: func(err error) bool {
			return err != nil && !errors.Is(err, sysfs.ErrNotExist)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, raw, err := fs.ControllerState(tt.ctrl)
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Errorf("ControllerState(%q) error = %v", tt.ctrl, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st != tt.wantState || raw != tt.wantRaw {
				t.Errorf("ControllerState(%q) = %v, %q; want %v, %q", tt.ctrl, st, raw, tt.wantState, tt.wantRaw)
			}
		})
	}
}

func TestWriteControllerAttr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ctrl    string
		attr    string
		value   string
		setup   func(root string) error
		wantErr func(error) bool
		// check reads the result back
		check func(t *testing.T, fs sysfs.FS)
	}{
		{
			name: "ctrl_loss_tmo over a longer value", ctrl: "nvme0", attr: "ctrl_loss_tmo", value: "5",
			check: func(t *testing.T, fs sysfs.FS) {
				c, err := fs.Controller("nvme0")
				if err != nil || c.CtrlLossTmo != 5 {
					t.Errorf("after write: CtrlLossTmo = %d, %v; want 5", c.CtrlLossTmo, err)
				}
			},
		},
		{
			name: "fast_io_fail_tmo", ctrl: "nvme0", attr: "fast_io_fail_tmo", value: "2\n",
			check: func(t *testing.T, fs sysfs.FS) {
				c, err := fs.Controller("nvme0")
				if err != nil || c.FastIOFailTmo != 2 {
					t.Errorf("after write: FastIOFailTmo = %d, %v; want 2", c.FastIOFailTmo, err)
				}
			},
		},
		{name: "reconnect_delay", ctrl: "nvme2", attr: "reconnect_delay", value: "1"},
		{name: "delete_controller", ctrl: "nvme2", attr: "delete_controller", value: "1"},
		{name: "reset_controller", ctrl: "nvme0", attr: "reset_controller", value: "1"},
		{name: "rescan_controller", ctrl: "nvme0", attr: "rescan_controller", value: "1"},
		{
			name: "controller gone", ctrl: "nvme7", attr: "delete_controller", value: "1",
			wantErr: func(err error) bool {
				return errors.Is(err, sysfs.ErrNotExist) && errors.Is(err, iofs.ErrNotExist) && errors.Is(err, syscall.ENOENT)
			},
		},
		{
			name: "attribute this kernel lacks", ctrl: "nvme1", attr: "fast_io_fail_tmo", value: "1",
			wantErr: func(err error) bool { return errors.Is(err, sysfs.ErrNotExist) },
			check: func(t *testing.T, fs sysfs.FS) {
				if _, err := os.Stat(filepath.Join(fs.Root(), "class/nvme/nvme1/fast_io_fail_tmo")); !errors.Is(err, iofs.ErrNotExist) {
					t.Errorf("the write created the attribute: stat error %v", err)
				}
			},
		},
		{
			name: "errno is kept", ctrl: "nvme0", attr: "reconnect_delay", value: "1",
			setup: func(root string) error {
				p := filepath.Join(sysfstest.ControllerDir(root, "nvme0"), "reconnect_delay")
				if err := os.Remove(p); err != nil {
					return err
				}
				return os.Mkdir(p, 0o755)
			},
			wantErr: func(err error) bool {
				var pe *iofs.PathError
				return errors.Is(err, syscall.EISDIR) && errors.As(err, &pe) && !errors.Is(err, sysfs.ErrNotExist)
			},
		},
		{name: "read-only attribute", ctrl: "nvme0", attr: "state", value: "dead", wantErr: notNotExist},
		{name: "unknown attribute", ctrl: "nvme0", attr: "uevent", value: "add", wantErr: notNotExist},
		{name: "traversal in attribute", ctrl: "nvme0", attr: "../nvme1/delete_controller", value: "1", wantErr: notNotExist},
		{name: "traversal in name", ctrl: "..", attr: "delete_controller", value: "1", wantErr: notNotExist},
		{name: "value over a page", ctrl: "nvme0", attr: "ctrl_loss_tmo", value: strings.Repeat("1", 4096), wantErr: notNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, root := build(t, smallSpec(true))
			if tt.setup != nil {
				if err := tt.setup(root); err != nil {
					t.Fatal(err)
				}
			}
			err := fs.WriteControllerAttr(tt.ctrl, tt.attr, tt.value)
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Errorf("WriteControllerAttr(%q, %q) error = %v", tt.ctrl, tt.attr, err)
				}
			} else if err != nil {
				t.Fatalf("WriteControllerAttr(%q, %q): %v", tt.ctrl, tt.attr, err)
			} else {
				b, err := os.ReadFile(filepath.Join(sysfstest.ControllerDir(root, tt.ctrl), tt.attr))
				if err != nil || string(b) != tt.value {
					t.Errorf("attribute holds %q, %v; want %q", b, err, tt.value)
				}
			}
			if tt.check != nil {
				tt.check(t, fs)
			}
		})
	}
}

// notNotExist: an error, and not ErrNotExist (a refused request).
func notNotExist(err error) bool { return err != nil && !errors.Is(err, sysfs.ErrNotExist) }

func TestNewFS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fs   sysfs.FS
		want string
	}{
		{"default", sysfs.NewFS(""), "/sys"},
		{"zero value", sysfs.FS{}, "/sys"},
		{"cleaned", sysfs.NewFS("/tmp/x/../sys/"), "/tmp/sys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.fs.Root(); got != tt.want {
				t.Errorf("Root() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestScanWhileRemoving removes controllers one file at a time while scans
// run: whatever state of teardown a scan meets, it must not fail.
func TestScanWhileRemoving(t *testing.T) {
	t.Parallel()
	spec := sysfstest.Generate(40, true)
	fs, root := build(t, spec)
	done := make(chan error)
	go func() {
		defer close(done)
		for i := range 40 {
			if err := sysfstest.RemoveController(root, "nvme"+strconv.Itoa(i)); err != nil {
				done <- err
				return
			}
		}
	}()
	for scans := 0; ; scans++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d scans during removal", scans)
			ctrls, err := fs.Controllers()
			if err != nil || len(ctrls) != 0 {
				t.Errorf("after removal: Controllers() = %d controllers, %v", len(ctrls), err)
			}
			return
		default:
		}
		ctrls, err := fs.Controllers()
		if err != nil {
			t.Fatalf("Controllers() during removal: %v", err)
		}
		for _, c := range ctrls {
			if c.Instance < 0 || c.Name != "nvme"+strconv.Itoa(c.Instance) {
				t.Fatalf("bad controller %+v", c)
			}
		}
		if _, err := fs.Subsystems(); err != nil {
			t.Fatalf("Subsystems() during removal: %v", err)
		}
		if _, err := fs.FindNamespace(spec.Subsystems[20].NQN, 1); err != nil && !errors.Is(err, sysfs.ErrNotExist) {
			t.Fatalf("FindNamespace during removal: %v", err)
		}
		if _, _, err := fs.ControllerState("nvme30"); err != nil && !errors.Is(err, sysfs.ErrNotExist) {
			t.Fatalf("ControllerState during removal: %v", err)
		}
	}
}
