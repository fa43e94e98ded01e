package sysfs

import (
	"path/filepath"
	"slices"
	"sync"
)

// Reading a controller's address attribute while the kernel tears the
// controller's admin queue down can oops the kernel: nvme-tcp's
// nvme_tcp_get_address tests that queue 0 is live, then calls
// kernel_getsockname on its socket, which the teardown may have released in
// between (a NULL dereference in kernel_getsockname, seen in the lab on
// 6.12.117 with this process as the reader, 75 ms after "Removing ctrl";
// openebs/mayastor#1330 reports it on 6.1.14). The reader dies holding the
// queue's lock and everything that later needs it hangs.
//
// So a controller's address is read only when no teardown can be running:
//   - never while this process is deleting or resetting the controller
//     (WriteControllerAttr marks the controller for the length of the write,
//     which the kernel completes synchronously, and waits for reads already
//     under way);
//   - not in the states the kernel enters before a teardown (resetting,
//     connecting, deleting, deleting (no IO), dead) when an earlier read of
//     the same controller instance is known: that read is used instead, less
//     src_addr, which the kernel shows only while the admin queue is up.
//
// The fields an address has besides src_addr are fixed at connect time, so
// the earlier read is exact for them. A controller first seen in such a state
// (a process that starts during an outage) is still read: without its address
// it could not be recognised as the driver's own. In these states src_addr is
// always left out, so that a read and a stand-in look the same. An instance
// is its directory's inode, not its name, since the kernel reuses names.

// addrGuard is the process's record of controller teardowns it is running
// and of the addresses it has read.
type addrGuard struct {
	// rw orders reads against the start of a teardown: a read holds it
	// shared; starting or ending a teardown holds it exclusively, so a
	// teardown starts only after the reads under way have finished.
	rw       sync.RWMutex
	tearing  map[string]int // controller directory path -> teardowns running
	mu       sync.Mutex
	lastRead map[string]readAddress // controller directory path -> last read
}

type readAddress struct {
	ino  uint64
	addr Address
}

var guard = addrGuard{tearing: map[string]int{}, lastRead: map[string]readAddress{}}

// beginTeardown marks the controller at path as being torn down by this
// process until the returned function is called.
func (g *addrGuard) beginTeardown(path string) (end func()) {
	g.rw.Lock()
	g.tearing[path]++
	g.rw.Unlock()
	return func() {
		g.rw.Lock()
		if g.tearing[path]--; g.tearing[path] <= 0 {
			delete(g.tearing, path)
		}
		g.rw.Unlock()
	}
}

// tearingDown reports whether the kernel may be tearing down a controller
// in state st.
func tearingDown(st State) bool {
	switch st {
	case StateResetting, StateConnecting, StateDeleting, StateDeletingNoIO, StateDead:
		return true
	}
	return false
}

// readAddress sets c.Address for the controller directory d, whose state c
// already holds: from the attribute when that is safe, else from the last
// read of the same instance (or not at all: the zero Address, when this
// process is tearing the controller down and never read it).
func (g *addrGuard) readAddress(d *dir, c *Controller) error {
	ino, inoErr := d.h.ino()
	g.rw.RLock()
	defer g.rw.RUnlock()
	if g.tearing[d.path] > 0 || tearingDown(c.State) {
		if last, ok := g.last(d.path, ino, inoErr); ok {
			c.Address = last
			return nil
		}
		if g.tearing[d.path] > 0 {
			return nil
		}
	}
	b, ok, err := d.attr("address")
	if err != nil || !ok {
		return err
	}
	if c.Address, err = ParseAddress(string(b)); err != nil {
		return parseError(d.path+"/address", err)
	}
	if inoErr == nil {
		g.remember(d.path, ino, c.Address)
	}
	if tearingDown(c.State) {
		// As a stand-in read shows it: the same address whichever way.
		c.Address.SrcAddr = ""
	}
	return nil
}

// last returns the last address read of the instance ino at path, without
// src_addr.
func (g *addrGuard) last(path string, ino uint64, inoErr error) (Address, bool) {
	if inoErr != nil {
		return Address{}, false
	}
	g.mu.Lock()
	r, ok := g.lastRead[path]
	g.mu.Unlock()
	if !ok || r.ino != ino {
		return Address{}, false
	}
	a := r.addr
	a.SrcAddr = ""
	return a, true
}

func (g *addrGuard) remember(path string, ino uint64, a Address) {
	g.mu.Lock()
	g.lastRead[path] = readAddress{ino: ino, addr: a}
	g.mu.Unlock()
}

// forgetExcept drops the remembered addresses of the controllers under
// classDir that are not in present (a full scan's names).
func (g *addrGuard) forgetExcept(classDir string, present []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for path := range g.lastRead {
		if filepath.Dir(path) == classDir && !slices.Contains(present, filepath.Base(path)) {
			delete(g.lastRead, path)
		}
	}
}
