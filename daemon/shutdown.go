package daemon

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
)

// LowerLossTimeout sets ctrl_loss_tmo to tmo seconds (>= 0) on every
// controller this driver owns or a volume holds whose target has not been
// live for at least unreachableFor, so that a node drain or shutdown does
// not wait forever on a dead target (ctrl_loss_tmo -1 reconnects forever,
// and unmounting a file system on it hangs). It returns the controllers
// changed, sorted; a controller that vanished meanwhile is skipped; other
// failures are joined into the error.
func (d *Daemon) LowerLossTimeout(unreachableFor time.Duration, tmo int) ([]string, error) {
	if tmo < 0 {
		return nil, fmt.Errorf("daemon: lower ctrl_loss_tmo to %d: %w (want >= 0)", tmo, fabrics.ErrInvalidOption)
	}
	now := d.now()
	var names []string
	d.mu.Lock()
	refs := d.refsLocked()
	for name, e := range d.ctrls {
		if e.ctrl.State.Live() || e.downSince.IsZero() || now.Sub(e.downSince) < unreachableFor {
			continue
		}
		if !d.ownedLocked(e) && refs[name] == 0 {
			continue
		}
		if cur := e.ctrl.CtrlLossTmo; cur >= 0 && cur <= tmo {
			continue // already as low
		}
		names = append(names, name)
	}
	d.mu.Unlock()
	slices.Sort(names)

	var changed []string
	var errs []error
	for _, name := range names {
		t := fabrics.Timeouts{CtrlLossTmo: fabrics.Int(tmo)}
		err := d.conn.UpdateTimeouts(name, t)
		switch {
		case errors.Is(err, fabrics.ErrControllerGone):
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		}
		d.log.Warn("lowered ctrl_loss_tmo of an unreachable controller", "controller", name, "ctrl_loss_tmo", tmo,
			"not_live_for", unreachableFor)
		changed = append(changed, name)
		d.rereadChanged(name)
	}
	return changed, errors.Join(errs...)
}
