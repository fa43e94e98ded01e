package sysfs

import (
	"fmt"
	iofs "io/fs"
)

// ErrNotExist reports that a controller, subsystem, namespace or attribute is
// not (or no longer) present in sysfs. It matches fs.ErrNotExist too:
// errors.Is(ErrNotExist, fs.ErrNotExist) is true, and so it is for every error
// that wraps it.
var ErrNotExist error = notExistError{}

// notExistError is the type of ErrNotExist. A comparable struct rather than
// errors.New, so that it can also claim to be fs.ErrNotExist.
type notExistError struct{}

func (notExistError) Error() string { return "sysfs: does not exist" }

// Is makes errors.Is(ErrNotExist, fs.ErrNotExist) true.
func (notExistError) Is(target error) bool { return target == iofs.ErrNotExist }

// State is a controller's state as the kernel reports it in the state
// attribute. Values the package does not know are kept as StateUnknown, with
// the raw text in Controller.StateRaw; they are never an error.
type State uint8

// Controller states, in the order the kernel's nvme_ctrl_state enum lists them.
const (
	StateUnknown      State = iota
	StateNew                // "new"
	StateLive               // "live"
	StateResetting          // "resetting"
	StateConnecting         // "connecting"
	StateDeleting           // "deleting"
	StateDeletingNoIO       // "deleting (no IO)"
	StateDead               // "dead"
)

var stateNames = [...]string{
	StateUnknown:      "unknown",
	StateNew:          "new",
	StateLive:         "live",
	StateResetting:    "resetting",
	StateConnecting:   "connecting",
	StateDeleting:     "deleting",
	StateDeletingNoIO: "deleting (no IO)",
	StateDead:         "dead",
}

// States lists every State, StateUnknown first; metrics use it as a state set.
func States() []State {
	out := make([]State, len(stateNames))
	for i := range stateNames {
		out[i] = State(i)
	}
	return out
}

// ParseState maps the text of a state attribute (trailing newline allowed) to
// a State. Text it does not know gives StateUnknown.
func ParseState(s string) State {
	s = trimNewline(s)
	for i, n := range stateNames {
		if i != int(StateUnknown) && n == s {
			return State(i)
		}
	}
	return StateUnknown
}

// String returns the kernel's spelling of the state ("unknown" for StateUnknown).
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Live reports whether I/O can flow through the controller.
func (s State) Live() bool { return s == StateLive }

func trimNewline(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// DevNum is a device number as the dev attribute prints it ("MAJ:MIN").
type DevNum struct {
	Major, Minor uint32
}

func (d DevNum) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// Address is a fabrics controller's address attribute, split into fields.
// For TCP: traddr and trsvcid always; src_addr only while a connection is up
// (absent while connecting); host_traddr and host_iface only when they were
// given at connect time.
type Address struct {
	Traddr     string
	Trsvcid    string
	SrcAddr    string
	HostTraddr string
	HostIface  string
}

// Controller is one /sys/class/nvme/nvmeN directory, parsed.
type Controller struct {
	Name     string // "nvme3"
	Instance int    // 3

	State    State
	StateRaw string // the state attribute as read, without the newline

	Transport string // "tcp", "rdma", "fc", "loop", "pcie"
	Address   Address
	CntrlType string // "io", "discovery" or "admin"; "" when the kernel lacks the attribute

	// SubsysNQN, and Model, Serial and FirmwareRev, come from the
	// subsystem: "" before the first connect completes (state new or
	// connecting), when the kernel prints "(efault)" for them.
	SubsysNQN string
	HostNQN   string
	HostID    string
	CntlID    int

	// CtrlLossTmo, FastIOFailTmo: seconds, -1 when the kernel prints "off".
	// ReconnectDelay and KATO: seconds. Zero values for a transport that lacks them.
	CtrlLossTmo    int
	ReconnectDelay int
	FastIOFailTmo  int
	KATO           int

	QueueCount  int
	SQSize      int
	Model       string // trailing padding removed
	Serial      string
	FirmwareRev string
	NUMANode    int
	Dev         DevNum

	// Subsystem is the name of the nvme-subsysK directory that links to this
	// controller ("" when no subsystem links to it, for example mid-teardown).
	Subsystem string
	// Namespaces are the block disks under the controller directory itself:
	// the visible disks with nvme_core.multipath=N, or the hidden per-path
	// disks (nvmeXcYnZ) with native multipath; sorted by NSID.
	Namespaces []Namespace
}

// Subsystem is one /sys/class/nvme-subsystem/nvme-subsysK directory.
type Subsystem struct {
	Name     string // "nvme-subsys0"
	Instance int
	NQN      string
	Type     string // "nvm" or "discovery"; "" on kernels without subsystype
	IOPolicy string // "numa", "round-robin", "queue-depth"
	Model    string
	Serial   string
	// Controllers are the controller names the subsystem links to, sorted by
	// instance. The kernel drops a link only after the controller's own
	// directory, so a controller being removed may still be listed briefly.
	Controllers []string
	// Namespaces are the multipath head disks (nvmeKnM) under the subsystem,
	// sorted by NSID; none with nvme_core.multipath=N.
	Namespaces []Namespace
}

// Namespace is a block disk serving an NVMe namespace: a multipath head
// (under the subsystem), a per-path disk (under a controller, hidden), or a
// plain disk with multipath off (under the controller, visible).
type Namespace struct {
	Name     string // "nvme0n1" or "nvme0c1n1"
	NSID     uint32
	UUID     string
	WWID     string
	NGUID    string
	Sectors  uint64 // size in 512-byte sectors
	ANAState string // "" when the kernel or target has no ANA
	ANAGrpID int
	Hidden   bool
	Dev      DevNum // zero for a hidden per-path disk, which has no device number
	// Parent is the controller ("nvme0") or subsystem ("nvme-subsys0") the
	// disk sits under.
	Parent string
}

// SizeBytes is the namespace size in bytes.
func (n Namespace) SizeBytes() uint64 { return n.Sectors * 512 }

// DevPath is the /dev path of a visible disk ("/dev/nvme0n1").
func (n Namespace) DevPath() string { return "/dev/" + n.Name }
