package sysfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// smallSubsystems is what Subsystems returns for smallSpec(multipath).
func smallSubsystems(multipath bool) []sysfs.Subsystem {
	const uuid2 = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	subs := []sysfs.Subsystem{
		{
			Name: "nvme-subsys0", Instance: 0, NQN: nqnVol0, Type: "nvm", IOPolicy: "numa",
			Model: "RDS", Serial: "SER0", Controllers: []string{"nvme0", "nvme2"},
		},
		{
			Name: "nvme-subsys1", Instance: 1, NQN: nqnVol1, Type: "nvm", IOPolicy: "numa",
			Model: "RDS", Serial: "SER1", Controllers: []string{"nvme1"},
		},
		{
			Name: "nvme-subsys2", Instance: 2, NQN: sysfstest.DiscoveryNQN, Type: "discovery", IOPolicy: "numa",
			Model: sysfstest.DefaultModel, Serial: "0000000000000003", Controllers: []string{"nvme10"},
		},
	}
	if multipath {
		subs[0].Namespaces = []sysfs.Namespace{
			disk("nvme0n1", "nvme-subsys0", 0, 1, 0),
			withUUID(disk("nvme0n2", "nvme-subsys0", 0, 2, 2), uuid2, 4096),
		}
		subs[1].Namespaces = []sysfs.Namespace{disk("nvme1n1", "nvme-subsys1", 1, 1, 4)}
	}
	return subs
}

func TestSubsystems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		spec   sysfstest.Spec
		mutate func(root string) error
		want   []sysfs.Subsystem
	}{
		{name: "native multipath", spec: smallSpec(true), want: smallSubsystems(true)},
		{name: "multipath off: no heads", spec: smallSpec(false), want: smallSubsystems(false)},
		{
			name: "one of two paths removed", spec: smallSpec(true),
			mutate: func(root string) error { return sysfstest.RemoveController(root, "nvme0") },
			want: func() []sysfs.Subsystem {
				s := smallSubsystems(true)
				s[0].Controllers = []string{"nvme2"}
				return s
			}(),
		},
		{
			name: "last path removed: subsystem gone", spec: smallSpec(true),
			mutate: func(root string) error { return sysfstest.RemoveController(root, "nvme1") },
			want: func() []sysfs.Subsystem {
				s := smallSubsystems(true)
				return []sysfs.Subsystem{s[0], s[2]}
			}(),
		},
		{
			name: "subsystem directory gone, class link dangling", spec: smallSpec(true),
			mutate: func(root string) error { return os.RemoveAll(sysfstest.SubsystemDir(root, "nvme-subsys1")) },
			want: func() []sysfs.Subsystem {
				s := smallSubsystems(true)
				return []sysfs.Subsystem{s[0], s[2]}
			}(),
		},
		{
			name: "head disk removed (namespace disabled)", spec: smallSpec(true),
			mutate: func(root string) error { return sysfstest.RemoveDisk(root, "nvme0n2") },
			want: func() []sysfs.Subsystem {
				s := smallSubsystems(true)
				s[0].Namespaces = s[0].Namespaces[:1]
				return s
			}(),
		},
		{
			name: "kernel without subsystype and iopolicy",
			spec: sysfstest.Spec{Subsystems: []sysfstest.Subsystem{{
				Instance: 3, NQN: nqnVol0, Model: "RDS", Serial: "S", Omit: []string{"subsystype", "iopolicy"},
			}}},
			want: []sysfs.Subsystem{{Name: "nvme-subsys3", Instance: 3, NQN: nqnVol0, Model: "RDS", Serial: "S"}},
		},
		{
			name: "instances sort numerically",
			spec: sysfstest.Spec{Subsystems: []sysfstest.Subsystem{
				{Instance: 10, NQN: "nqn.a", Model: "M", Serial: "S"},
				{Instance: 9, NQN: "nqn.b", Model: "M", Serial: "S"},
			}},
			want: []sysfs.Subsystem{
				{Name: "nvme-subsys9", Instance: 9, NQN: "nqn.b", Type: "nvm", IOPolicy: "numa", Model: "M", Serial: "S"},
				{Name: "nvme-subsys10", Instance: 10, NQN: "nqn.a", Type: "nvm", IOPolicy: "numa", Model: "M", Serial: "S"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, root := build(t, tt.spec)
			if tt.mutate != nil {
				if err := tt.mutate(root); err != nil {
					t.Fatal(err)
				}
			}
			got, err := fs.Subsystems()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Subsystems() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSubsystem(t *testing.T) {
	t.Parallel()
	fs, root := build(t, smallSpec(true))
	bad := filepath.Join(sysfstest.SubsystemDir(root, "nvme-subsys2"), "subsysnqn")
	if err := os.WriteFile(bad, []byte("nqn.x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sysfstest.SubsystemDir(root, "nvme-subsys2"), "model"), []byte("Linux\x00\x00  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	all := smallSubsystems(true)
	discovery := all[2]
	discovery.NQN = "nqn.x"

	tests := []struct {
		name    string
		sub     string
		want    sysfs.Subsystem
		wantErr func(error) bool
	}{
		{name: "with heads", sub: "nvme-subsys0", want: all[0]},
		{name: "NUL and space padding trimmed", sub: "nvme-subsys2", want: discovery},
		{name: "absent", sub: "nvme-subsys7", wantErr: func(err error) bool { return errors.Is(err, sysfs.ErrNotExist) }},
		{name: "traversal", sub: "nvme-subsys0/..", wantErr: notNotExist},
		{name: "controller name", sub: "nvme0", wantErr: notNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := fs.Subsystem(tt.sub)
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Errorf("Subsystem(%q) error = %v", tt.sub, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Subsystem(%q) mismatch (-want +got):\n%s", tt.sub, diff)
			}
		})
	}
}

func TestSubsystemsMalformedHead(t *testing.T) {
	t.Parallel()
	fs, root := build(t, smallSpec(true))
	path := filepath.Join(sysfstest.SubsystemDir(root, "nvme-subsys1"), "nvme1n1", "dev")
	if err := os.WriteFile(path, []byte("259\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root, "class/nvme-subsystem/nvme-subsys1/nvme1n1/dev")
	if _, err := fs.Subsystems(); err == nil || !strings.Contains(err.Error(), want) || errors.Is(err, sysfs.ErrNotExist) {
		t.Errorf("Subsystems() error = %v, want a parse error naming %s", err, want)
	}
}
