package csi

import "sync"

// inflight is the per-volume guard: one operation per volume id at a time.
// A second operation on a busy volume is refused (codes.Aborted), as the CSI
// spec suggests; the CO retries it.
type inflight struct {
	mu   sync.Mutex
	busy map[string]struct{}
}

func newInflight() *inflight { return &inflight{busy: make(map[string]struct{})} }

// claim marks key busy and returns a release function, or false if key is
// already busy.
func (f *inflight) claim(key string) (release func(), ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, busy := f.busy[key]; busy {
		return nil, false
	}
	f.busy[key] = struct{}{}
	return func() {
		f.mu.Lock()
		delete(f.busy, key)
		f.mu.Unlock()
	}, true
}
