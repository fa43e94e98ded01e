package sysfs_test

import (
	"errors"
	iofs "io/fs"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
)

// twoPathSpec is one subsystem reached over nvme3 and nvme5, in the given
// states, with one namespace.
func twoPathSpec(multipath bool, state3, state5 string) sysfstest.Spec {
	return sysfstest.Spec{
		Multipath: multipath,
		Subsystems: []sysfstest.Subsystem{{
			Instance: 4,
			NQN:      nqnVol0,
			Model:    "RDS",
			Serial:   "S",
			Controllers: []sysfstest.Controller{
				{Instance: 3, State: state3},
				{Instance: 5, State: state5},
			},
			Namespaces: []sysfstest.Namespace{{NSID: 7}},
		}},
	}
}

func TestFindNamespace(t *testing.T) {
	t.Parallel()
	heads := smallSubsystems(true)
	// Two paths, multipath off: minors nvme3n1 0, nvme5n1 2.
	plain3 := disk("nvme3n1", "nvme3", 4, 7, 0)
	plain5 := disk("nvme5n1", "nvme5", 4, 7, 2)

	type find func(sysfs.FS) (sysfs.Namespace, error)
	byNSID := func(nqn string, nsid uint32) find {
		return func(fs sysfs.FS) (sysfs.Namespace, error) { return fs.FindNamespace(nqn, nsid) }
	}
	notExist := func(err error) bool { return errors.Is(err, sysfs.ErrNotExist) && errors.Is(err, iofs.ErrNotExist) }

	tests := []struct {
		name    string
		spec    sysfstest.Spec
		find    find
		want    sysfs.Namespace
		wantErr func(error) bool
	}{
		{name: "head by nsid", spec: smallSpec(true), find: byNSID(nqnVol0, 1), want: heads[0].Namespaces[0]},
		{name: "second head by nsid", spec: smallSpec(true), find: byNSID(nqnVol0, 2), want: heads[0].Namespaces[1]},
		{name: "head of another subsystem", spec: smallSpec(true), find: byNSID(nqnVol1, 1), want: heads[1].Namespaces[0]},
		{
			name: "multipath off: disk of the live controller", spec: smallSpec(false), find: byNSID(nqnVol0, 1),
			want: disk("nvme0n1", "nvme0", 0, 1, 0),
		},
		{
			name: "multipath off: live path preferred over a lower instance", spec: twoPathSpec(false, "connecting", "live"),
			find: byNSID(nqnVol0, 7), want: plain5,
		},
		{
			name: "multipath off: both live, lowest instance", spec: twoPathSpec(false, "live", "live"),
			find: byNSID(nqnVol0, 7), want: plain3,
		},
		{
			name: "multipath off: none live, lowest instance", spec: twoPathSpec(false, "resetting", "connecting"),
			find: byNSID(nqnVol0, 7), want: plain3,
		},
		{
			name: "multipath on: head even when no path is live", spec: twoPathSpec(true, "connecting", "connecting"),
			find: byNSID(nqnVol0, 7), want: disk("nvme4n1", "nvme-subsys4", 4, 7, 0),
		},
		{name: "unknown nsid", spec: smallSpec(true), find: byNSID(nqnVol0, 3), wantErr: notExist},
		{name: "unknown NQN", spec: smallSpec(true), find: byNSID("nqn.2024-01.io.test:nope", 1), wantErr: notExist},
		{name: "nsid of the wrong subsystem", spec: smallSpec(false), find: byNSID(nqnVol1, 2), wantErr: notExist},
		{name: "empty tree", spec: sysfstest.Spec{}, find: byNSID(nqnVol0, 1), wantErr: notExist},
		{name: "nsid 0", spec: smallSpec(true), find: byNSID(nqnVol0, 0), wantErr: notNotExist},
		{name: "empty NQN", spec: smallSpec(true), find: byNSID("", 1), wantErr: notNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := sharedTree(t, tt.spec)
			got, err := tt.find(fs)
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Errorf("error = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("namespace mismatch (-want +got):\n%s", diff)
			}
			if got.Hidden {
				t.Errorf("found hidden disk %s", got.Name)
			}
		})
	}
}

// TestFindNamespaceAfterRemoval: a namespace found through the surviving
// path once the preferred one is gone.
func TestFindNamespaceAfterRemoval(t *testing.T) {
	t.Parallel()
	fs, root := build(t, twoPathSpec(false, "live", "live"))
	if err := sysfstest.RemoveController(root, "nvme3"); err != nil {
		t.Fatal(err)
	}
	got, err := fs.FindNamespace(nqnVol0, 7)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(disk("nvme5n1", "nvme5", 4, 7, 2), got); diff != "" {
		t.Errorf("FindNamespace mismatch (-want +got):\n%s", diff)
	}
	if err := sysfstest.RemoveController(root, "nvme5"); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.FindNamespace(nqnVol0, 7); !errors.Is(err, sysfs.ErrNotExist) {
		t.Errorf("FindNamespace after removing both paths: error = %v, want ErrNotExist", err)
	}
}
