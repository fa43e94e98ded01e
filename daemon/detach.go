package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
)

// MarkStaged records that the volume is staged at stagingPath (block: a
// block-mode volume, the device bind-mounted to a file there), after a
// successful Attach. The volume is written to the state file, so a restart
// knows it by id. It fails with ErrUnknownVolume when the volume has not been
// attached.
func (d *Daemon) MarkStaged(volumeID, stagingPath string, block bool) error {
	if !d.Ready() {
		return ErrNotReady
	}
	d.mu.Lock()
	v := d.vols[volumeID]
	if v == nil || v.recovered || (v.state != VolumeAttached && v.state != VolumeStaged) {
		d.mu.Unlock()
		return fmt.Errorf("%w: %s is not attached", ErrUnknownVolume, volumeID)
	}
	if v.state != VolumeStaged || v.stagingPath != stagingPath || v.block != block {
		v.stagedAt = d.now()
	}
	v.state, v.stagingPath, v.block = VolumeStaged, stagingPath, block
	d.mu.Unlock()
	return d.persist()
}

// Detach stops the background connects of the volume's paths, forgets
// the volume and disconnects each of its controllers when nothing
// else holds it (no other staged, attached or attaching volume) and this
// driver owns it; a controller that is already gone counts as disconnected.
// A controller the driver does not own is left connected. Detach of a volume
// the registry does not know is a success (unstage is idempotent); it also
// re-reads the mount table, so a recovered volume whose mount is gone stops
// holding its controllers (cleanup then removes them after the grace
// period). If the disconnect fails the volume stays in the registry and the
// error is returned, so a retry tries again.
func (d *Daemon) Detach(ctx context.Context, volumeID string) error {
	if !d.Ready() {
		return ErrNotReady
	}
	unlockVol, err := d.locks.lock(ctx, "volume:"+volumeID)
	if err != nil {
		return fmt.Errorf("daemon: detach %s: waiting for another operation on the volume: %w", volumeID, err)
	}
	defer unlockVol()

	// The volume's background path connects end first, so that none adds
	// a controller after the look below.
	d.stopPaths(volumeID)
	d.mu.Lock()
	v := d.vols[volumeID]
	var keys []string
	if v != nil {
		keys = v.lockKeys()
	}
	d.mu.Unlock()
	if v == nil {
		if err := d.refreshMounts(); err != nil {
			d.log.Warn("mount table not re-read", "error", err)
		}
		return nil
	}
	for _, k := range keys {
		unlockKey, err := d.locks.lock(ctx, "conn:"+k)
		if err != nil {
			return fmt.Errorf("daemon: detach %s: waiting for another operation on a path of the volume: %w", volumeID, err)
		}
		defer unlockKey()
	}

	// Which controllers would be left unreferenced, and which of those do
	// we own?
	d.mu.Lock()
	v = d.vols[volumeID]
	if v == nil {
		d.mu.Unlock()
		return nil
	}
	var drop []string
	for _, name := range v.controllers {
		e := d.ctrls[name]
		if e == nil || !d.ownedLocked(e) || d.referencedByOthersLocked(name, volumeID) {
			continue
		}
		drop = append(drop, name)
	}
	d.mu.Unlock()

	var mounted map[string][]string
	if len(drop) > 0 {
		if mounted, err = d.mountedDisks(drop); err != nil {
			return fmt.Errorf("daemon: detach %s: not disconnecting without knowing what is mounted: %w", volumeID, err)
		}
	}
	var errs []error
	for _, name := range drop {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if at := mounted[name]; len(at) > 0 {
			// The volume goes; the controller stays, unreferenced, and
			// orphan cleanup takes it once nothing is mounted.
			d.log.Warn("controller kept connected: a disk it serves is still mounted", "controller", name,
				"volume", volumeID, "mounted_at", at)
			continue
		}
		err := d.conn.Disconnect(name)
		if err != nil && !errors.Is(err, fabrics.ErrControllerGone) {
			errs = append(errs, err)
			continue
		}
		d.log.Info("disconnected controller", "controller", name, "volume", volumeID, "reason", "last volume detached")
		d.mu.Lock()
		d.removeControllerLocked(name)
		d.touchLocked(name)
		d.mu.Unlock()
	}
	if err := errors.Join(errs...); err != nil {
		d.persistLogged()
		return fmt.Errorf("daemon: detach %s: %w", volumeID, err)
	}
	d.mu.Lock()
	if v := d.vols[volumeID]; v != nil {
		delete(d.vols, volumeID)
		d.unreferencedLocked(v.controllers)
	}
	d.mu.Unlock()
	return d.persist()
}

// lockKeys are the connection lock names of every path of the volume,
// sorted (locks of several keys are always taken in that order).
func (v *volEntry) lockKeys() []string {
	keys := []string{v.key.String()}
	for _, k := range v.keys {
		keys = append(keys, k.String())
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// referencedByOthersLocked reports whether a volume other than id holds
// controller name.
func (d *Daemon) referencedByOthersLocked(name, id string) bool {
	for _, v := range d.vols {
		if v.id != id && v.holds() && slices.Contains(v.controllers, name) {
			return true
		}
	}
	return false
}

// persistLogged persists and logs a failure (for paths that already return
// another error).
func (d *Daemon) persistLogged() {
	if err := d.persist(); err != nil {
		d.log.Error("state file not updated", "error", err)
	}
}

// VolumeInfo is a copy of what the registry knows about a volume.
type VolumeInfo struct {
	ID          string
	State       VolumeState
	SubsysNQN   string
	NSID        uint32
	Traddr      string
	Trsvcid     string
	HostNQN     string
	Controllers []string // the controllers the volume holds
	Device      string   // "/dev/nvme3n1" once known
	StagingPath string
	StagedAt    time.Time
	Block       bool
	// Recovered: rebuilt from a mount that no volume record explains; the
	// ID is "mount:<mount point>".
	Recovered bool
	// Paths is how many paths the volume names (Spec.Paths; 1 for a
	// one-path volume); LivePaths how many controllers of its subsystem
	// are live. Only Snapshot fills them.
	Paths     int
	LivePaths int
	// The last Attach failure, if the last Attach failed.
	FailureReason  string
	FailureMessage string
	FailedAt       time.Time
}

// Volumes returns every volume the registry knows, sorted by id.
func (d *Daemon) Volumes() []VolumeInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]VolumeInfo, 0, len(d.vols))
	for _, v := range d.vols {
		out = append(out, v.info())
	}
	slices.SortFunc(out, func(a, b VolumeInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Volume returns one volume.
func (d *Daemon) Volume(id string) (VolumeInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.vols[id]
	if v == nil {
		return VolumeInfo{}, false
	}
	return v.info(), true
}

func (v *volEntry) info() VolumeInfo {
	vi := VolumeInfo{
		ID: v.id, State: v.state, SubsysNQN: v.nqn, NSID: v.nsid,
		Traddr: v.key.traddr, Trsvcid: v.key.trsvcid, HostNQN: v.key.hostNQN,
		Controllers: slices.Clone(v.controllers), Device: v.device,
		StagingPath: v.stagingPath, StagedAt: v.stagedAt, Block: v.block, Recovered: v.recovered,
	}
	if f := v.failure; f != nil {
		vi.FailureReason, vi.FailureMessage, vi.FailedAt = f.reason, f.message, f.at
	}
	return vi
}
