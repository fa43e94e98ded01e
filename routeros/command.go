package routeros

import (
	"strconv"
	"strings"
)

// Command is one RouterOS command line. Commands are built only by the
// constructors below, from validated values, so no caller can add a
// command or an argument: every string value is allow-listed to characters
// that need no escaping in RouterOS ([A-Za-z0-9._:/-]) and then written
// inside double quotes; numbers are formatted by strconv.
type Command struct {
	verb  string // fixed, for metrics: "disk-add", "disk-print", ...
	line  string
	print bool // prints `print detail` output; else prints nothing on success
}

// Verb names the command for metrics and logs ("disk-add", "disk-print",
// "disk-set", "disk-remove", "disk-copy", "file-print", "file-remove"). The
// set is fixed.
func (c Command) Verb() string { return c.verb }

// String is the command line as sent.
func (c Command) String() string { return c.line }

// Verbs lists every name Command.Verb can return.
func Verbs() []string {
	return []string{"disk-add", "disk-copy", "disk-print", "disk-set", "disk-remove", "file-print", "file-remove"}
}

func quote(s string) string { return `"` + s + `"` }

func findSlot(slot string) string { return `[find slot=` + quote(slot) + `]` }

// DiskSpec describes a new file-backed disk exported over NVMe/TCP.
type DiskSpec struct {
	Slot     string // ValidateSlot
	FilePath string // ValidatePath, directly inside VolumeDir
	Size     int64  // bytes, exact
	Port     int    // nvme-tcp-server-port
	NQN      string // nvme-tcp-server-nqn
}

// Validate checks every field, naming the first bad one.
func (s DiskSpec) Validate() error {
	if err := ValidateSlot(s.Slot); err != nil {
		return err
	}
	if err := ValidatePath("file-path", s.FilePath); err != nil {
		return err
	}
	if err := ValidateSize("file-size", s.Size); err != nil {
		return err
	}
	if err := ValidatePort(s.Port); err != nil {
		return err
	}
	return ValidateNQN(s.NQN)
}

// AddDiskCommand creates a file-backed disk, its file of exactly Size bytes,
// exported over NVMe/TCP, never mounted by RouterOS:
//
//	/disk add type=file file-path="<path>" file-size=<bytes> slot="<slot>" mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=<port> nvme-tcp-server-nqn="<nqn>"
func AddDiskCommand(s DiskSpec) (Command, error) {
	if err := s.Validate(); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-add", line: "/disk add type=file file-path=" + quote(s.FilePath) +
		" file-size=" + strconv.FormatInt(s.Size, 10) + " slot=" + quote(s.Slot) +
		" mount-filesystem=no" + exportArgs(s.Port, s.NQN)}, nil
}

func exportArgs(port int, nqn string) string {
	return " nvme-tcp-export=yes nvme-tcp-server-port=" + strconv.Itoa(port) +
		" nvme-tcp-server-nqn=" + quote(nqn)
}

// CopySpec describes a disk made by copying another: a snapshot (not
// exported) or a clone (exported afterwards with ExportDiskCommand).
type CopySpec struct {
	From     string // slot of the source disk
	Slot     string // slot of the copy
	FilePath string // backing file of the copy
}

// Validate checks every field, naming the first bad one.
func (s CopySpec) Validate() error {
	if err := ValidateSlot(s.From); err != nil {
		return &ArgError{Field: "copy-from", Value: s.From, Allowed: ruleSlot}
	}
	if err := ValidateSlot(s.Slot); err != nil {
		return err
	}
	return ValidatePath("file-path", s.FilePath)
}

// CopyDiskCommand copies a disk into a new file-backed disk, not exported
// and never mounted (syntax from ROUTEROS.md, unverified on hardware):
//
//	/disk add type=file copy-from=[find slot="<from>"] file-path="<path>" slot="<slot>" mount-filesystem=no
func CopyDiskCommand(s CopySpec) (Command, error) {
	if err := s.Validate(); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-copy", line: "/disk add type=file copy-from=" + findSlot(s.From) +
		" file-path=" + quote(s.FilePath) + " slot=" + quote(s.Slot) + " mount-filesystem=no"}, nil
}

// ExportDiskCommand exports an existing disk over NVMe/TCP:
//
//	/disk set [find slot="<slot>"] nvme-tcp-export=yes nvme-tcp-server-port=<port> nvme-tcp-server-nqn="<nqn>"
func ExportDiskCommand(slot string, port int, nqn string) (Command, error) {
	if err := ValidateSlot(slot); err != nil {
		return Command{}, err
	}
	if err := ValidatePort(port); err != nil {
		return Command{}, err
	}
	if err := ValidateNQN(nqn); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-set", line: "/disk set " + findSlot(slot) + exportArgs(port, nqn)}, nil
}

// UnexportDiskCommand stops exporting a disk over NVMe/TCP:
//
//	/disk set [find slot="<slot>"] nvme-tcp-export=no
func UnexportDiskCommand(slot string) (Command, error) {
	if err := ValidateSlot(slot); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-set", line: "/disk set " + findSlot(slot) + " nvme-tcp-export=no"}, nil
}

// ResizeDiskCommand sets a disk's file size to exactly size bytes:
//
//	/disk set [find slot="<slot>"] file-size=<bytes>
func ResizeDiskCommand(slot string, size int64) (Command, error) {
	if err := ValidateSlot(slot); err != nil {
		return Command{}, err
	}
	if err := ValidateSize("file-size", size); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-set", line: "/disk set " + findSlot(slot) + " file-size=" + strconv.FormatInt(size, 10)}, nil
}

// RemoveDiskCommand removes a disk entry (RouterOS leaves its file):
//
//	/disk remove [find slot="<slot>"]
func RemoveDiskCommand(slot string) (Command, error) {
	if err := ValidateSlot(slot); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-remove", line: "/disk remove " + findSlot(slot)}, nil
}

// PrintDiskCommand prints one disk by slot:
//
//	/disk print detail where slot="<slot>"
func PrintDiskCommand(slot string) (Command, error) {
	if err := ValidateSlot(slot); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-print", print: true, line: "/disk print detail where slot=" + quote(slot)}, nil
}

// PrintDisksCommand prints every disk whose slot starts with prefix
// (ValidateSlot syntax; "" for all disks):
//
//	/disk print detail where slot~"^<prefix>"
func PrintDisksCommand(prefix string) (Command, error) {
	if prefix == "" {
		return Command{verb: "disk-print", print: true, line: "/disk print detail"}, nil
	}
	if err := ValidateSlot(prefix); err != nil {
		return Command{}, err
	}
	// [a-z0-9-] are literal in a regular expression outside brackets.
	return Command{verb: "disk-print", print: true, line: "/disk print detail where slot~" + quote("^"+prefix)}, nil
}

// PrintDisksByFileCommand prints the disks backed by a file:
//
//	/disk print detail where file-path="<path>"
func PrintDisksByFileCommand(path string) (Command, error) {
	if err := ValidatePath("file-path", path); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-print", print: true, line: "/disk print detail where file-path=" + quote(path)}, nil
}

// PrintPoolCommand prints the pool disk (size and free space):
//
//	/disk print detail where mount-point="<pool>"
func PrintPoolCommand(pool string) (Command, error) {
	if err := ValidatePool(pool); err != nil {
		return Command{}, err
	}
	return Command{verb: "disk-print", print: true, line: "/disk print detail where mount-point=" + quote(pool)}, nil
}

// fileName is a path as /file names it: without the leading '/'.
func fileName(path string) string { return strings.TrimPrefix(path, "/") }

// PrintFileCommand prints one file by path:
//
//	/file print detail where name="<path without leading />"
func PrintFileCommand(path string) (Command, error) {
	if err := ValidatePath("file-path", path); err != nil {
		return Command{}, err
	}
	return Command{verb: "file-print", print: true, line: "/file print detail where name=" + quote(fileName(path))}, nil
}

// PrintFilesCommand prints the files directly or indirectly under dir:
//
//	/file print detail where name~"^<dir without leading />/"
//
// '.' in dir is written as "[.]" so the regular expression matches it
// literally without a backslash (a RouterOS string escape).
func PrintFilesCommand(dir string) (Command, error) {
	if err := ValidatePath("volume-dir", dir); err != nil {
		return Command{}, err
	}
	re := "^" + strings.ReplaceAll(fileName(dir), ".", "[.]") + "/"
	return Command{verb: "file-print", print: true, line: "/file print detail where name~" + quote(re)}, nil
}

// PrintSlotFilesCommand prints the files in dir whose name starts with
// slot and a dot (the backing files of one slot, Backing):
//
//	/file print detail where name~"^<dir without leading />/<slot>[.]"
func PrintSlotFilesCommand(dir, slot string) (Command, error) {
	if err := ValidatePath("volume-dir", dir); err != nil {
		return Command{}, err
	}
	if err := ValidateSlot(slot); err != nil {
		return Command{}, err
	}
	re := "^" + strings.ReplaceAll(fileName(dir), ".", "[.]") + "/" + slot + "[.]"
	return Command{verb: "file-print", print: true, line: "/file print detail where name~" + quote(re)}, nil
}

// RemoveFileCommand removes a file:
//
//	/file remove [find name="<path without leading />"]
func RemoveFileCommand(path string) (Command, error) {
	if err := ValidatePath("file-path", path); err != nil {
		return Command{}, err
	}
	return Command{verb: "file-remove", line: "/file remove [find name=" + quote(fileName(path)) + "]"}, nil
}
