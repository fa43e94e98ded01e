package routeros

import (
	"context"
	"errors"
	"fmt"
)

// FencedHostNQN is the one host a fenced disk allows when no node holds it
// (after ControllerUnpublishVolume): a host NQN no host uses, so no host
// may connect. nvme-tcp-server-allow-host-name="" would allow every host.
// Whether RouterOS accepts a host NQN that never connected, and refuses
// every other host then, is unverified on hardware (ROUTEROS.md).
const FencedHostNQN = "nqn.2014-08.io.srvlab.rds-csi:fenced"

// SetAllowedHostCommand lets one host (a host NQN) connect to a disk's
// export:
//
//	/disk set [find slot="<slot>"] nvme-tcp-server-allow-host-name="<nqn>"
func SetAllowedHostCommand(slot, hostNQN string) (Command, error) {
	if err := ValidateSlot(slot); err != nil {
		return Command{}, err
	}
	if err := ValidateNQN(hostNQN); err != nil {
		return Command{}, &ArgError{Field: "nvme-tcp-server-allow-host-name", Value: hostNQN, Allowed: ruleNQN}
	}
	return Command{verb: "disk-set", line: "/disk set " + findSlot(slot) + " nvme-tcp-server-allow-host-name=" + quote(hostNQN)}, nil
}

// SetAllowedHost makes hostNQN the only host allowed to connect to a volume
// disk (IsVolumeSlot) and reads the disk back: an allow-host-name that does
// not read back exactly is ErrUnconfirmed. A disk that allows it already is
// left alone (no command). The semantics of nvme-tcp-server-allow-host-name
// are unverified on hardware: whether it takes effect for hosts already
// connected, and whether it refuses every other host.
func (c *Client) SetAllowedHost(ctx context.Context, slot, hostNQN string) (Disk, error) {
	if err := checkOwnedSlot(slot); err != nil {
		return Disk{}, err
	}
	if !IsVolumeSlot(slot) {
		return Disk{}, invalid("slot", slot, "a volume's slot (SlotFor)")
	}
	cmd, err := SetAllowedHostCommand(slot, hostNQN)
	if err != nil {
		return Disk{}, err
	}
	d, err := c.Disk(ctx, slot)
	if err != nil {
		return Disk{}, err
	}
	if d.AllowHostName == hostNQN {
		return d, nil
	}
	if _, err := c.exec(ctx, cmd); err != nil && !errors.Is(err, ErrNotFound) {
		return Disk{}, err
	}
	d, err = c.Disk(ctx, slot)
	if err != nil {
		return Disk{}, confirmErr("set allowed host", slot, err)
	}
	if d.AllowHostName != hostNQN {
		return d, fmt.Errorf("%w: disk %s: nvme-tcp-server-allow-host-name reads %q after setting %q", ErrUnconfirmed, slot, bounded(d.AllowHostName), hostNQN)
	}
	return d, nil
}
