package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/srvlab/rds-csi/sysfs"
)

// nsKey names a namespace the way the kernel cannot rename it.
type nsKey struct {
	nqn  string
	nsid uint32
}

// waiters are the Attach calls waiting for a namespace's block device,
// keyed by (subsystem NQN, nsid). Block uevents and re-reads wake them; each
// then checks sysfs itself (level-triggered: a wake-up carries no data).
type waiters struct {
	mu sync.Mutex
	m  map[nsKey]map[chan struct{}]struct{}
}

func (w *waiters) subscribe(k nsKey) chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[nsKey]map[chan struct{}]struct{}{}
	}
	if w.m[k] == nil {
		w.m[k] = map[chan struct{}]struct{}{}
	}
	w.m[k][ch] = struct{}{}
	return ch
}

func (w *waiters) unsubscribe(k nsKey, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m[k], ch)
	if len(w.m[k]) == 0 {
		delete(w.m, k)
	}
}

// wakeAll wakes every waiter (a block uevent names a disk, not a namespace:
// each waiter checks whether its own namespace has appeared).
func (w *waiters) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, set := range w.m {
		for ch := range set {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func (w *waiters) any() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m) > 0
}

// waitDevice returns the visible block disk of namespace nsid of subsystem
// nqn: it subscribes first, then checks sysfs, then re-checks on each
// wake-up until the disk is there, Config.DeviceTimeout passes
// (ErrDeviceTimeout) or ctx ends (its error).
func (d *Daemon) waitDevice(ctx context.Context, nqn string, nsid uint32) (sysfs.Namespace, error) {
	k := nsKey{nqn, nsid}
	wake := d.waiters.subscribe(k)
	defer d.waiters.unsubscribe(k, wake)
	timeout, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.DeviceTimeout)
	defer cancel()
	for {
		ns, err := d.cfg.FS.FindNamespace(nqn, nsid)
		if err == nil {
			return ns, nil
		}
		if !errors.Is(err, sysfs.ErrNotExist) {
			return sysfs.Namespace{}, fmt.Errorf("daemon: look for namespace %d of %s: %w", nsid, nqn, err)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return sysfs.Namespace{}, fmt.Errorf("daemon: waiting for the block device of namespace %d of %s: %w", nsid, nqn, ctx.Err())
		case <-timeout.Done():
			return sysfs.Namespace{}, fmt.Errorf("%w: namespace %d of %s within %v (wrong nsid, or namespace disabled on the target?)",
				ErrDeviceTimeout, nsid, nqn, d.cfg.DeviceTimeout)
		}
	}
}
