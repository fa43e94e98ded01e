package csi

import (
	"strings"

	"github.com/srvlab/rds-csi/routeros"
)

// MaxIDBytes is the CSI spec's bound on a string field, which volume and
// snapshot ids this controller writes never exceed.
const MaxIDBytes = 128

// An ID names a volume (or a snapshot) of this driver: the RDS that holds
// it and its RouterOS slot. Its string form, the volume_id (snapshot_id)
// the controller returns, is
//
//	<slot>@<rdsAddress>        rds-csi-0123456789abcdef01234567@10.0.0.1:22
//
// with rdsAddress in ParseRDSAddress's canonical form (port always there,
// IPv6 in brackets), so the id alone, with the secrets of the request,
// finds the volume again on the right RDS. The slot is one SlotFor
// (SnapshotSlotFor) derives; nothing in an id a user could write reaches a
// command other than through routeros's own validation.
//
// Ids of the controller preview (before multi-RDS) were the bare slot. A
// bare volume slot is still accepted and means the controller's default RDS
// (--rds-address), which is the only RDS the preview could have created it
// on (Legacy is set); the controller never returns one.
type ID struct {
	RDS    string // canonical host:port; "" only for a Legacy id
	Slot   string
	Legacy bool // a bare slot from the preview: the default RDS
}

// String formats the id; a Legacy id formats as its bare slot.
func (id ID) String() string {
	if id.Legacy {
		return id.Slot
	}
	return id.Slot + "@" + id.RDS
}

// FormatVolumeID returns the volume id of a volume slot on an RDS. The
// address must already be canonical (ParseRDSAddress) and the slot one
// SlotFor derives; anything else is an error, never a malformed id.
func FormatVolumeID(rds, slot string) (string, error) {
	return formatID(rds, slot, routeros.IsVolumeSlot)
}

// FormatSnapshotID is FormatVolumeID for a snapshot slot.
func FormatSnapshotID(rds, slot string) (string, error) {
	return formatID(rds, slot, routeros.IsSnapshotSlot)
}

func formatID(rds, slot string, isSlot func(string) bool) (string, error) {
	if !isSlot(slot) {
		return "", &ParamError{Key: "slot", Value: slot, Allowed: "a slot of this driver's form"}
	}
	if c, err := ParseRDSAddress(rds); err != nil || c != rds {
		return "", &ParamError{Key: KeyRDSAddress, Value: rds, Allowed: "a canonical address (ParseRDSAddress)"}
	}
	return ID{RDS: rds, Slot: slot}.String(), nil
}

// ParseVolumeID parses a volume id strictly: exactly the form
// FormatVolumeID writes (a canonical address, a volume slot), or a bare
// volume slot (Legacy). Anything else is an error: such an id names no
// volume of this driver (callers answer NotFound, or success for a
// delete).
func ParseVolumeID(s string) (ID, error) { return parseID(s, "volume", routeros.IsVolumeSlot, true) }

// ParseSnapshotID parses a snapshot id strictly, like ParseVolumeID; there
// is no legacy form (the preview had no snapshots).
func ParseSnapshotID(s string) (ID, error) {
	return parseID(s, "snapshot", routeros.IsSnapshotSlot, false)
}

func parseID(s, what string, isSlot func(string) bool, legacy bool) (ID, error) {
	bad := &ParamError{Key: what + " id", Value: s, Allowed: "an id this driver returned (<slot>@<host>:<port>)"}
	if len(s) > MaxIDBytes {
		return ID{}, bad
	}
	slot, rds, found := strings.Cut(s, "@")
	if !isSlot(slot) {
		return ID{}, bad
	}
	if !found {
		if !legacy {
			return ID{}, bad
		}
		return ID{Slot: slot, Legacy: true}, nil
	}
	if c, err := ParseRDSAddress(rds); err != nil || c != rds {
		return ID{}, bad
	}
	return ID{RDS: rds, Slot: slot}, nil
}
