package routeros

import (
	"path"
	"strconv"
	"strings"
)

// The `rds-csi check` subcommand creates a few disks of its own on a real
// RDS to learn how it behaves where ROUTEROS.md says unverified. Its disks
// are told apart from volumes and from anything else by their slot:
// CheckSlotPrefix followed by [a-z0-9-], at most MaxCheckSlotLen
// characters (longer than MaxSlotLen: the check probes the limit), and its
// files by their place: directly inside the volume directory, named
// <slot>.img. The Check*Command constructors refuse anything else, so the
// check can change or remove nothing but its own objects. A check slot is
// never IsOwnedSlot, so the Client and the controller never touch check
// disks, and the check never touches volumes.
const (
	CheckSlotPrefix = "rds-csi-check-"
	MaxCheckSlotLen = 40
)

const ruleCheckSlot = `"` + CheckSlotPrefix + `" followed by characters from [a-z0-9-], at most 40 characters in all`

// IsCheckSlot reports whether slot is one the check creates.
func IsCheckSlot(slot string) bool {
	rest, ok := strings.CutPrefix(slot, CheckSlotPrefix)
	if !ok || rest == "" || len(slot) > MaxCheckSlotLen {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// IsCheckFile reports whether p is a file the check creates: directly
// inside the valid volumeDir, named <slot>.img for an IsCheckSlot slot.
func IsCheckFile(volumeDir, p string) bool {
	if ValidatePath("volume-dir", volumeDir) != nil || ValidatePath("file-path", p) != nil || !InDir(volumeDir, p) {
		return false
	}
	slot, ok := strings.CutSuffix(path.Base(p), ".img")
	return ok && IsCheckSlot(slot)
}

func checkSlot(slot string) error {
	if !IsCheckSlot(slot) {
		return invalid("slot", slot, ruleCheckSlot)
	}
	return nil
}

func checkFile(p string) error {
	if err := ValidatePath("file-path", p); err != nil {
		return err
	}
	if !IsCheckFile(path.Dir(p), p) {
		return invalid("file-path", p, "<volume dir>/<check slot>.img")
	}
	return nil
}

// CheckAddDiskCommand is AddDiskCommand for a check disk: the same command
// line, with a slot IsCheckSlot (up to MaxCheckSlotLen characters) whose
// file is <dir>/<slot>.img.
func CheckAddDiskCommand(s DiskSpec) (Command, error) {
	if err := checkSlot(s.Slot); err != nil {
		return Command{}, err
	}
	if err := checkFile(s.FilePath); err != nil {
		return Command{}, err
	}
	if path.Base(s.FilePath) != s.Slot+".img" {
		return Command{}, invalid("file-path", s.FilePath, "<volume dir>/"+s.Slot+".img")
	}
	if err := ValidateSize("file-size", s.Size); err != nil {
		return Command{}, err
	}
	if err := ValidatePort(s.Port); err != nil {
		return Command{}, err
	}
	if err := ValidateNQN(s.NQN); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-add", line: "/disk add type=file file-path=" + quote(s.FilePath) +
		" file-size=" + strconv.FormatInt(s.Size, 10) + " slot=" + quote(s.Slot) +
		" mount-filesystem=no" + exportArgs(s.Port, s.NQN)}, nil
}

// CheckPrintDiskCommand is PrintDiskCommand for a check slot.
func CheckPrintDiskCommand(slot string) (Command, error) {
	if err := checkSlot(slot); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-print", print: true, line: "/disk print detail where slot=" + quote(slot)}, nil
}

// CheckRemoveDiskCommand is RemoveDiskCommand for a check slot.
func CheckRemoveDiskCommand(slot string) (Command, error) {
	if err := checkSlot(slot); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-remove", line: "/disk remove " + findSlot(slot)}, nil
}

// CheckResizeDiskCommand is ResizeDiskCommand for a check slot.
func CheckResizeDiskCommand(slot string, size int64) (Command, error) {
	if err := checkSlot(slot); err != nil {
		return Command{}, err
	}
	return ResizeDiskCommand(slot, size)
}

// CheckCopyDiskCommand is CopyDiskCommand between check disks.
func CheckCopyDiskCommand(s CopySpec) (Command, error) {
	if err := checkSlot(s.From); err != nil {
		return Command{}, err
	}
	if err := checkSlot(s.Slot); err != nil {
		return Command{}, err
	}
	if err := checkFile(s.FilePath); err != nil {
		return Command{}, err
	}
	return CopyDiskCommand(s)
}

// CheckRemoveFileCommand is RemoveFileCommand for a check file: one that
// IsCheckFile(volumeDir, p).
func CheckRemoveFileCommand(volumeDir, p string) (Command, error) {
	if err := ValidatePath("volume-dir", volumeDir); err != nil {
		return Command{}, err
	}
	if err := ValidatePath("file-path", p); err != nil {
		return Command{}, err
	}
	if !IsCheckFile(volumeDir, p) {
		return Command{}, invalid("file-path", p, volumeDir+"/<check slot>.img")
	}
	return RemoveFileCommand(p)
}

// CheckAllowHostsCommand sets the hosts allowed to connect to a check
// disk's export, joined by commas (whether RouterOS takes a list is what
// the check asks):
//
//	/disk set [find slot="<slot>"] nvme-tcp-server-allow-host-name="<nqn>[,<nqn>...]"
func CheckAllowHostsCommand(slot string, hostNQNs []string) (Command, error) {
	if err := checkSlot(slot); err != nil {
		return Command{}, err
	}
	if len(hostNQNs) == 0 {
		return Command{}, invalid("nvme-tcp-server-allow-host-name", "", "one or more host NQNs")
	}
	for _, n := range hostNQNs {
		if err := ValidateNQN(n); err != nil {
			return Command{}, err
		}
	}
	return Command{verb: "disk-set", line: "/disk set " + findSlot(slot) +
		" nvme-tcp-server-allow-host-name=" + quote(strings.Join(hostNQNs, ","))}, nil
}

// CheckBadCommand is a command RouterOS does not have, to see how it
// reports an error; it changes nothing. Its verb is "check" (not one of
// Verbs: the controller never sends it).
func CheckBadCommand() Command {
	return Command{verb: "check", line: "/disk " + CheckSlotPrefix + "no-such-command"}
}
