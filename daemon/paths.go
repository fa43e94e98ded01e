package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
)

// maxPathPause bounds the pause between two rounds of a background path
// connect.
const maxPathPause = time.Minute

// pathRun is the background work of one volume's paths (Attach of a spec
// with several paths): one goroutine per path until it connects.
type pathRun struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// pathResult is the outcome of one path's first connect round.
type pathResult struct {
	i   int
	att Attachment
	err error
}

// attachMulti connects every path at once and returns when the first is
// connected and the block device is there; see Attach. The paths'
// goroutines live on (under the daemon's life, not ctx) until each
// connects, the volume is detached or attached again, or the daemon closes.
func (d *Daemon) attachMulti(ctx context.Context, spec Spec, paths []fabrics.Options) (Attachment, error) {
	run, results, err := d.startPaths(spec, paths)
	if err != nil {
		return Attachment{}, err
	}
	errs := make([]error, len(paths))
	var first *pathResult
	for failed := 0; first == nil && failed < len(paths); {
		select {
		case r := <-results:
			if r.err == nil {
				first = &r
				break
			}
			errs[r.i] = fmt.Errorf("path %s: %w", fabrics.HostPort(paths[r.i].Traddr, strconv.Itoa(cmp.Or(paths[r.i].Trsvcid, fabrics.DefaultPort))), r.err)
			failed++
		case <-ctx.Done():
			d.stopRun(spec.VolumeID, run)
			return Attachment{}, fmt.Errorf("daemon: attach %s: no path connected: %w", spec.VolumeID, ctx.Err())
		}
	}
	if first == nil {
		d.stopRun(spec.VolumeID, run)
		return Attachment{}, fmt.Errorf("daemon: attach %s: no path of %d connected: %w", spec.VolumeID, len(paths), errors.Join(errs...))
	}
	att, err := d.attachDevice(ctx, spec, first.att)
	if err != nil {
		d.stopRun(spec.VolumeID, run)
		return att, err
	}
	d.mu.Lock()
	if v := d.vols[spec.VolumeID]; v != nil {
		att.PathsPending = max(len(paths)-len(v.controllers), 0)
	}
	d.mu.Unlock()
	return att, nil
}

// startPaths starts one goroutine per path. Each sends its first round's
// outcome to the returned channel (buffered: nobody needs to read it).
func (d *Daemon) startPaths(spec Spec, paths []fabrics.Options) (*pathRun, chan pathResult, error) {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	if d.closed || d.lifeCtx == nil {
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(d.lifeCtx)
	run := &pathRun{cancel: cancel}
	results := make(chan pathResult, len(paths))
	for i := range paths {
		run.wg.Add(1)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer run.wg.Done()
			d.runPath(ctx, spec, i, paths[i], results)
		}()
	}
	d.mu.Lock()
	d.runs[spec.VolumeID] = run
	d.mu.Unlock()
	return run, results, nil
}

// runPath connects one path: a first round (reported on results), then,
// while the errors are retryable, further rounds after a pause, until the
// path connects or ctx ends.
func (d *Daemon) runPath(ctx context.Context, spec Spec, i int, o fabrics.Options, results chan<- pathResult) {
	key := keyOf(&o)
	target := fabrics.HostPort(key.traddr, key.trsvcid)
	for round := 1; ; round++ {
		att, err := d.attachPath(ctx, spec, o)
		if round == 1 {
			results <- pathResult{i: i, att: att, err: err}
		}
		if err == nil {
			if round > 1 {
				d.log.Info("path of a volume connected in the background", "volume", spec.VolumeID,
					"controller", att.Controller, "target", target, "round", round)
			}
			d.kick(false)
			return
		}
		if ctx.Err() != nil {
			return
		}
		d.pathFailed(spec.VolumeID, key, err)
		if !fabrics.Retryable(err) {
			d.log.Warn("path of a volume not connected; not retrying (the error is not retryable)", "volume", spec.VolumeID,
				"target", target, "error", err)
			return
		}
		pause := d.pathPause()
		d.log.Warn("path of a volume not connected; retrying in the background", "volume", spec.VolumeID,
			"target", target, "round", round, "next_round_in", pause, "error", err)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// pathFailed records a path's connect failure for VolumeHealth.
func (d *Daemon) pathFailed(volumeID string, key connKey, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.vols[volumeID]
	if v == nil {
		return
	}
	if v.pathErrs == nil {
		v.pathErrs = map[string]*failure{}
	}
	v.pathErrs[key.String()] = &failure{reason: failureReason(err), message: err.Error(), at: d.now()}
}

// pathPause is the pause between two connect rounds of a background path:
// the backoff's longest step, at most maxPathPause.
func (d *Daemon) pathPause() time.Duration {
	b := *d.cfg.backoff
	step := b.Duration
	for i := 1; i < b.Steps; i++ {
		step = time.Duration(float64(step) * b.Factor)
		if b.Cap > 0 && step > b.Cap {
			step = b.Cap
		}
	}
	return min(step, maxPathPause)
}

// stopPaths stops the background connects of a volume and waits for them.
func (d *Daemon) stopPaths(volumeID string) {
	d.mu.Lock()
	run := d.runs[volumeID]
	d.mu.Unlock()
	if run != nil {
		d.stopRun(volumeID, run)
	}
}

func (d *Daemon) stopRun(volumeID string, run *pathRun) {
	run.cancel()
	run.wg.Wait()
	d.mu.Lock()
	if d.runs[volumeID] == run {
		delete(d.runs, volumeID)
	}
	d.mu.Unlock()
}

// resumePaths goes on connecting, after a restart, the paths of restored
// multipath volumes that have no controller: each in the background as
// Attach's paths are (runPath), with the options the state file kept
// (connectState). A volume whose stage had secrets is not resumed (they
// are not kept): its missing paths are reported in health until the next
// stage. With native multipath off nothing is resumed (Attach connects the
// first path only then). A volume attached again since the start keeps
// the paths of that Attach.
func (d *Daemon) resumePaths(ctx context.Context) {
	d.mu.Lock()
	var ids []string
	for id, v := range d.vols {
		if v.state == VolumeStaged && !v.recovered && len(v.keys) > 1 {
			ids = append(ids, id)
		}
	}
	d.mu.Unlock()
	if len(ids) == 0 || !d.multipath() {
		return
	}
	slices.Sort(ids)
	for _, id := range ids {
		d.resumeVolume(ctx, id)
	}
}

func (d *Daemon) resumeVolume(ctx context.Context, id string) {
	unlock, err := d.locks.lock(ctx, "volume:"+id)
	if err != nil {
		return // the daemon is closing
	}
	defer unlock()
	d.mu.Lock()
	v := d.vols[id]
	if v == nil || v.state != VolumeStaged || d.runs[id] != nil || v.connect == nil {
		d.mu.Unlock()
		return
	}
	spec := v.spec
	secrets := v.connect.Secrets
	var missing []fabrics.Options
	var names []string
	for _, k := range v.keys {
		if slices.ContainsFunc(v.controllers, func(name string) bool {
			e := d.ctrls[name]
			return e != nil && k.samePath(&e.ctrl)
		}) {
			continue
		}
		o, ok := k.options()
		if !ok {
			continue
		}
		p := spec.Options
		p.Traddr, p.HostTraddr, p.HostIface = o.Traddr, o.HostTraddr, o.HostIface
		missing = append(missing, p)
		names = append(names, fabrics.HostPort(k.traddr, k.trsvcid))
		if secrets {
			if v.pathErrs == nil {
				v.pathErrs = map[string]*failure{}
			}
			v.pathErrs[k.String()] = &failure{reason: "NotRetriedAfterRestart", at: d.now(),
				message: "not connected after the node plugin restarted: the volume's DH-CHAP secrets are not kept across restarts; it is connected at the next stage"}
		}
	}
	d.mu.Unlock()
	if len(missing) == 0 {
		return
	}
	if secrets {
		d.log.Warn("paths of a restored volume not connected: its DH-CHAP secrets are not kept across restarts", "volume", id, "paths", names)
		return
	}
	d.log.Info("connecting the missing paths of a restored volume in the background", "volume", id, "paths", names)
	if _, _, err := d.startPaths(spec, missing); err != nil {
		d.log.Warn("missing paths of a restored volume not resumed", "volume", id, "error", err)
	}
}
