package routeros

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits and fixed forms of the values put into commands.
const (
	// MaxSlotLen is the longest slot we create or accept: RouterOS 7.24 is
	// reported to limit a slot to 32 characters (unverified on hardware).
	MaxSlotLen = 32
	// SlotPrefix starts every volume slot SlotFor derives.
	SlotPrefix = "rds-csi-"
	// SnapshotSlotPrefix starts every snapshot slot SnapshotSlotFor derives.
	// A disk whose slot has neither prefix (followed by the hash) was not
	// created by this driver and is never changed or removed.
	SnapshotSlotPrefix = "rds-snap-"
	// MaxNQNLen is the longest NQN the Linux host accepts.
	MaxNQNLen = 222
	// MaxPathLen bounds a file path.
	MaxPathLen = 255
	// MaxSize bounds a disk size in bytes (1 EiB).
	MaxSize int64 = 1 << 60
)

const (
	ruleSlot    = "1 to 32 characters from [a-z0-9-], starting with a letter or digit"
	ruleOurSlot = `"` + SlotPrefix + `" or "` + SnapshotSlotPrefix + `" followed by lowercase hexadecimal digits, 32 characters in all (SlotFor, SnapshotSlotFor)`
	ruleNQN     = `"nqn." followed by characters from [a-z0-9.:-], at most 222 bytes`
	rulePath    = "an absolute path of components from [A-Za-z0-9._-] (no empty, \".\" or \"..\" component), at most 255 bytes"
	rulePort    = "a TCP port 1..65535"
	ruleSize    = "a size in bytes, 1..2^60"
	rulePool    = "a mount point name from [A-Za-z0-9._-], 1 to 64 characters"
	ruleCSIName = "a non-empty name"
)

// SlotFor derives the slot of the volume a CSI name asks for: SlotPrefix
// followed by the first 24 hexadecimal digits of SHA-256 of the name (32
// characters in all). The same name always gives the same slot, and the
// slot never contains anything the user wrote, so it needs no escaping. The
// name itself is not recoverable from the slot.
func SlotFor(csiName string) (string, error) { return slotFor(SlotPrefix, csiName) }

// SnapshotSlotFor derives the slot of a snapshot from its CSI name:
// SnapshotSlotPrefix followed by the first 23 hexadecimal digits of SHA-256
// of the name (32 characters). Volumes and snapshots never share a slot,
// and Disks(SlotPrefix) and Disks(SnapshotSlotPrefix) list them apart.
func SnapshotSlotFor(csiName string) (string, error) { return slotFor(SnapshotSlotPrefix, csiName) }

func slotFor(prefix, csiName string) (string, error) {
	if csiName == "" {
		return "", invalid("name", csiName, ruleCSIName)
	}
	sum := sha256.Sum256([]byte(csiName))
	return prefix + hex.EncodeToString(sum[:])[:MaxSlotLen-len(prefix)], nil
}

// ValidateSlot checks a slot put into a command: 1 to 32 characters from
// [a-z0-9-], not starting with '-'.
func ValidateSlot(slot string) error {
	if len(slot) == 0 || len(slot) > MaxSlotLen || slot[0] == '-' {
		return invalid("slot", slot, ruleSlot)
	}
	for i := 0; i < len(slot); i++ {
		c := slot[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return invalid("slot", slot, ruleSlot)
		}
	}
	return nil
}

// IsOwnedSlot reports whether slot has a form SlotFor or SnapshotSlotFor
// produces: only such disks are ever changed or removed.
func IsOwnedSlot(slot string) bool { return IsVolumeSlot(slot) || IsSnapshotSlot(slot) }

// IsVolumeSlot reports whether slot has the form SlotFor produces.
func IsVolumeSlot(slot string) bool { return hashed(slot, SlotPrefix) }

// IsSnapshotSlot reports whether slot has the form SnapshotSlotFor produces.
func IsSnapshotSlot(slot string) bool { return hashed(slot, SnapshotSlotPrefix) }

func hashed(slot, prefix string) bool {
	h, ok := strings.CutPrefix(slot, prefix)
	if !ok || len(prefix)+len(h) != MaxSlotLen {
		return false
	}
	for i := 0; i < len(h); i++ {
		if !(h[i] >= '0' && h[i] <= '9' || h[i] >= 'a' && h[i] <= 'f') {
			return false
		}
	}
	return true
}

func checkOwnedSlot(slot string) error {
	if err := ValidateSlot(slot); err != nil {
		return err
	}
	if !IsOwnedSlot(slot) {
		return &CommandError{Command: "slot " + slot, ExitStatus: -1, Kind: ErrNotOwned,
			Text: "want " + ruleOurSlot}
	}
	return nil
}

// ValidateNQN checks an NQN put into a command: "nqn." then characters from
// [a-z0-9.:-], at most MaxNQNLen bytes. Stricter than the NVMe specification
// on purpose: nothing that needs quoting in RouterOS.
func ValidateNQN(nqn string) error {
	if len(nqn) <= len("nqn.") || len(nqn) > MaxNQNLen || !strings.HasPrefix(nqn, "nqn.") {
		return invalid("nvme-tcp-server-nqn", nqn, ruleNQN)
	}
	for i := 0; i < len(nqn); i++ {
		c := nqn[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == ':' || c == '-') {
			return invalid("nvme-tcp-server-nqn", nqn, ruleNQN)
		}
	}
	return nil
}

// NQNFor is the subsystem NQN of a slot: base, ':' and the slot. base is an
// NQN such as "nqn.2000-02.com.mikrotik" (a StorageClass parameter above
// this package); the result is validated.
func NQNFor(base, slot string) (string, error) {
	if err := ValidateSlot(slot); err != nil {
		return "", err
	}
	nqn := base + ":" + slot
	if err := ValidateNQN(nqn); err != nil {
		return "", err
	}
	return nqn, nil
}

// ValidatePath checks a file or directory path put into a command:
// absolute, components from [A-Za-z0-9._-], no empty, "." or ".."
// component, no trailing slash, at most MaxPathLen bytes.
func ValidatePath(field, p string) error {
	if len(p) < 2 || len(p) > MaxPathLen || p[0] != '/' {
		return invalid(field, p, rulePath)
	}
	for _, comp := range strings.Split(p[1:], "/") {
		if comp == "" || comp == "." || comp == ".." {
			return invalid(field, p, rulePath)
		}
		for i := 0; i < len(comp); i++ {
			if !pathChar(comp[i]) {
				return invalid(field, p, rulePath)
			}
		}
	}
	return nil
}

func pathChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// FilePathFor is the backing file of a slot in a volume directory:
// <dir>/<slot>.img. Both are validated.
func FilePathFor(volumeDir, slot string) (string, error) {
	if err := ValidatePath("volume-dir", volumeDir); err != nil {
		return "", err
	}
	if err := ValidateSlot(slot); err != nil {
		return "", err
	}
	p := volumeDir + "/" + slot + ".img"
	if err := ValidatePath("file-path", p); err != nil {
		return "", err
	}
	return p, nil
}

// Backing is what the name of one of our backing files records: the marker
// that proves a disk is ours, and for a copy, of which source. The forms
// (every part validated, the file directly inside the volume directory):
//
//	<dir>/<slot>.img                  a volume created empty (FilePathFor)
//	<dir>/<slot>.<source>.img         a volume copied from the volume or
//	                                  snapshot <source> (a clone, a restore)
//	<dir>/<slot>.<source>.<unix>.img  a snapshot of the volume <source>,
//	                                  taken at <unix> seconds (UTC)
//
// RouterOS keeps no other field we know of for such data (a disk has no
// creation time and no comment we have seen printed), and the file path is
// one we set and read back anyway.
type Backing struct {
	Slot    string    // IsOwnedSlot
	Source  string    // "" for a volume created empty; else IsOwnedSlot
	Created time.Time // snapshots only: whole seconds, after 1970
}

// maxCreated bounds a snapshot's creation time (about year 36812).
const maxCreated = 1 << 40

const ruleBacking = "a volume: <slot>.img or <slot>.<source slot>.img; a snapshot: <slot>.<volume slot>.<unix seconds>.img"

// check validates b's combination of fields.
func (b Backing) check() error {
	bad := func() error {
		return invalid("backing", b.Slot+" "+b.Source+" "+strconv.FormatInt(b.Created.Unix(), 10), ruleBacking)
	}
	switch {
	case IsVolumeSlot(b.Slot):
		if !b.Created.IsZero() || b.Source != "" && !IsOwnedSlot(b.Source) {
			return bad()
		}
	case IsSnapshotSlot(b.Slot):
		if sec := b.Created.Unix(); b.Created.IsZero() || sec < 1 || sec > maxCreated || !IsVolumeSlot(b.Source) {
			return bad()
		}
	default:
		return bad()
	}
	return nil
}

// BackingPath is the backing file recording b in volumeDir (forms above).
func BackingPath(volumeDir string, b Backing) (string, error) {
	if err := ValidatePath("volume-dir", volumeDir); err != nil {
		return "", err
	}
	if err := b.check(); err != nil {
		return "", err
	}
	name := b.Slot
	if b.Source != "" {
		name += "." + b.Source
	}
	if !b.Created.IsZero() {
		name += "." + strconv.FormatInt(b.Created.Unix(), 10)
	}
	p := volumeDir + "/" + name + ".img"
	if err := ValidatePath("file-path", p); err != nil {
		return "", err
	}
	return p, nil
}

// ParseBacking reads a backing file path of one of the forms above. It
// reports false for anything else: a file or disk not created by this
// driver.
func ParseBacking(volumeDir, p string) (Backing, bool) {
	if ValidatePath("volume-dir", volumeDir) != nil || ValidatePath("file-path", p) != nil || !InDir(volumeDir, p) {
		return Backing{}, false
	}
	name, ok := strings.CutSuffix(p[len(volumeDir)+1:], ".img")
	if !ok {
		return Backing{}, false
	}
	parts := strings.Split(name, ".")
	if slices.Contains(parts, "") {
		return Backing{}, false
	}
	b := Backing{Slot: parts[0]}
	switch len(parts) {
	case 1:
	case 2:
		b.Source = parts[1]
	case 3:
		b.Source = parts[1]
		sec, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil || parts[2][0] == '0' || strconv.FormatInt(sec, 10) != parts[2] {
			return Backing{}, false
		}
		b.Created = time.Unix(sec, 0).UTC()
	default:
		return Backing{}, false
	}
	if b.check() != nil {
		return Backing{}, false
	}
	return b, true
}

// InDir reports whether the valid path p lies directly inside the valid
// directory dir (one level: <dir>/<name>).
func InDir(dir, p string) bool {
	rest, ok := strings.CutPrefix(p, dir+"/")
	return ok && rest != "" && !strings.Contains(rest, "/")
}

// ValidateSize checks a size in bytes: 1..MaxSize.
func ValidateSize(field string, n int64) error {
	if n < 1 || n > MaxSize {
		return invalid(field, strconv.FormatInt(n, 10), ruleSize)
	}
	return nil
}

// RoundUp rounds n bytes up to a multiple of unit (unit <= 1: n unchanged).
// It never rounds down; it fails if the result would exceed MaxSize.
func RoundUp(n, unit int64) (int64, error) {
	if err := ValidateSize("size", n); err != nil {
		return 0, err
	}
	if unit <= 1 {
		return n, nil
	}
	r := n % unit
	if r == 0 {
		return n, nil
	}
	if n > MaxSize-(unit-r) {
		return 0, invalid("size", strconv.FormatInt(n, 10), ruleSize+" after rounding up to "+strconv.FormatInt(unit, 10))
	}
	return n + unit - r, nil
}

// ValidatePort checks a TCP port.
func ValidatePort(port int) error {
	if port < 1 || port > 65535 {
		return invalid("nvme-tcp-server-port", strconv.Itoa(port), rulePort)
	}
	return nil
}

// ValidatePool checks the pool's mount point name ("storage-pool").
func ValidatePool(name string) error {
	if name == "" || len(name) > 64 {
		return invalid("mount-point", name, rulePool)
	}
	for i := 0; i < len(name); i++ {
		if !pathChar(name[i]) {
			return invalid("mount-point", name, rulePool)
		}
	}
	if name == "." || name == ".." {
		return invalid("mount-point", name, rulePool)
	}
	return nil
}
