package routeros

import (
	"errors"
	"strings"
	"testing"
)

func TestIsCheckSlot(t *testing.T) {
	for slot, want := range map[string]bool{
		"rds-csi-check-disk-xxxxxxxxxxxxx":          true,
		"rds-csi-check-len40-xxxxxxxxxxxxxxxxxxxx":  true,
		"rds-csi-check-a":                           true,
		"rds-csi-check-":                            false, // nothing after the prefix
		"rds-csi-check-len41-xxxxxxxxxxxxxxxxxxxxx": false,
		"rds-csi-check-Disk":                        false,
		"rds-csi-check-a\"b":                        false,
		"rds-csi-check-a b":                         false,
		"rds-csi-0123456789abcdef01234567":          false, // a volume
		"rds-snap-0123456789abcdef0123456":          false, // a snapshot
		"pvc-rds-csi-check-a":                       false,
		"":                                          false,
	} {
		if got := IsCheckSlot(slot); got != want {
			t.Errorf("IsCheckSlot(%q) = %v, want %v", slot, got, want)
		}
	}
	vol, _ := SlotFor("pvc-1")
	if IsCheckSlot(vol) || IsOwnedSlot("rds-csi-check-disk-xxxxxxxxxxxxx") {
		t.Error("check slots and volume slots overlap")
	}
}

// TestCheckCommandsRefuse: the check's constructors build commands only for
// check disks and check files; volumes, other files and anything needing
// quoting are refused before a command exists.
func TestCheckCommandsRefuse(t *testing.T) {
	vol, _ := SlotFor("pvc-1")
	volPath, _ := FilePathFor(testDir, vol)
	good := DiskSpec{Slot: "rds-csi-check-disk-xxxxxxxxxxxxx", FilePath: testDir + "/rds-csi-check-disk-xxxxxxxxxxxxx.img",
		Size: 1 << 20, Port: 4420, NQN: testNQN}
	if _, err := CheckAddDiskCommand(good); err != nil {
		t.Fatalf("check disk refused: %v", err)
	}
	refused := map[string]func() error{
		"add a volume slot": func() error { s := good; s.Slot = vol; _, err := CheckAddDiskCommand(s); return err },
		"add with another file name": func() error {
			s := good
			s.FilePath = testDir + "/rds-csi-check-other.img"
			_, err := CheckAddDiskCommand(s)
			return err
		},
		"add with a quote in the slot": func() error { s := good; s.Slot = `rds-csi-check-a"]`; _, err := CheckAddDiskCommand(s); return err },
		"print a volume":               func() error { _, err := CheckPrintDiskCommand(vol); return err },
		"remove a volume":              func() error { _, err := CheckRemoveDiskCommand(vol); return err },
		"resize a volume":              func() error { _, err := CheckResizeDiskCommand(vol, 2<<20); return err },
		"remove a volume's file":       func() error { _, err := CheckRemoveFileCommand(testDir, volPath); return err },
		"remove a check-named file elsewhere": func() error {
			_, err := CheckRemoveFileCommand(testDir, testDir+"/sub/rds-csi-check-a.img")
			return err
		},
		"remove a check-named non-image": func() error { _, err := CheckRemoveFileCommand(testDir, testDir+"/rds-csi-check-a.txt"); return err },
		"copy from a volume": func() error {
			_, err := CheckCopyDiskCommand(CopySpec{From: vol, Slot: "rds-csi-check-copy", FilePath: testDir + "/rds-csi-check-copy.img"})
			return err
		},
		"allow a host with a space": func() error {
			_, err := CheckAllowHostsCommand(good.Slot, []string{"nqn.2014-08.a b"})
			return err
		},
		"allow no host": func() error { _, err := CheckAllowHostsCommand(good.Slot, nil); return err },
	}
	for name, f := range refused {
		if err := f(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	cmd, _ := CheckAllowHostsCommand(good.Slot, []string{"nqn.2014-08.a:h1", "nqn.2014-08.a:h2"})
	if want := `/disk set [find slot="rds-csi-check-disk-xxxxxxxxxxxxx"] nvme-tcp-server-allow-host-name="nqn.2014-08.a:h1,nqn.2014-08.a:h2"`; cmd.String() != want {
		t.Errorf("allow hosts: %s, want %s", cmd, want)
	}
	long := "rds-csi-check-len40-xxxxxxxxxxxxxxxxxxxx"
	cmd, err := CheckAddDiskCommand(DiskSpec{Slot: long, FilePath: testDir + "/" + long + ".img", Size: 1 << 20, Port: 4420, NQN: testNQN})
	if err != nil || !strings.Contains(cmd.String(), `slot="`+long+`"`) {
		t.Errorf("40-character check slot: %v %v", cmd, err)
	}
}
