//go:build linux

package uevent

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/pilebones/go-udev/netlink"
	"golang.org/x/sys/unix"
)

// rcvBuf is the receive buffer asked for on the uevent socket: a burst
// of connects or a target failure with hundreds of controllers emits
// thousands of uevents at once.
const rcvBuf = 16 << 20

// netlinkUEvents reads kernel uevents (NETLINK_KOBJECT_UEVENT, the kernel
// group: no udev needed) through go-udev's UEventConn. The socket is
// non-blocking and waited on with poll(2) together with a pipe, so Close
// wakes a blocked Read without closing a descriptor under it.
type netlinkUEvents struct {
	conn  netlink.UEventConn
	wakeR int
	wakeW int

	closeOnce sync.Once
	mu        sync.Mutex
	closed    bool
	released  bool
}

// Open opens a uevent socket with a 16 MiB receive buffer (forced past
// rmem_max with CAP_NET_ADMIN, else as large as rmem_max allows).
func Open() (Source, error) {
	s := &netlinkUEvents{}
	if err := s.conn.Connect(netlink.KernelEvent); err != nil {
		return nil, fmt.Errorf("uevent: socket: %w", err)
	}
	fd := s.conn.Fd
	// SO_RCVBUFFORCE needs CAP_NET_ADMIN (a privileged pod has it) and
	// ignores rmem_max; SO_RCVBUF is capped by it.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		s.conn.Close()
		return nil, fmt.Errorf("uevent: socket: %w", err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		s.conn.Close()
		return nil, fmt.Errorf("uevent: wake pipe: %w", err)
	}
	s.wakeR, s.wakeW = p[0], p[1]
	return s, nil
}

// Read returns the next uevent.
func (s *netlinkUEvents) Read() (Event, error) {
	for {
		if s.isClosed() {
			s.release()
			return Event{}, ErrClosed
		}
		fds := []unix.PollFd{{Fd: int32(s.conn.Fd), Events: unix.POLLIN}, {Fd: int32(s.wakeR), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return Event{}, fmt.Errorf("uevent: poll socket: %w", err)
		}
		if fds[1].Revents != 0 {
			continue // closed: the check above returns
		}
		msg, err := s.conn.ReadMsg()
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			return Event{}, ErrOverflow
		case err != nil:
			return Event{}, fmt.Errorf("uevent: read: %w", err)
		}
		if ev, ok := Parse(msg); ok {
			return ev, nil
		}
	}
}

func (s *netlinkUEvents) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// release closes the descriptors; only the reader calls it, so no Read is
// using them.
func (s *netlinkUEvents) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return
	}
	s.released = true
	s.conn.Close()
	unix.Close(s.wakeR)
	unix.Close(s.wakeW)
}

// Close makes a blocked or later Read return ErrClosed (which also
// releases the socket).
func (s *netlinkUEvents) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		if !s.released {
			unix.Write(s.wakeW, []byte{1})
		}
		s.mu.Unlock()
	})
	return nil
}

// Parse parses a kernel uevent message: "action@devpath\0KEY=value\0...";
// false when it has no "action@devpath" header.
// It is netlink.ParseUEvent made tolerant of values that contain '=' (the
// library drops such events whole).
func Parse(msg []byte) (Event, bool) {
	if ev, err := netlink.ParseUEvent(msg); err == nil {
		return fromLib(ev), true
	}
	fields := bytes.Split(msg, []byte{0})
	action, devpath, ok := strings.Cut(string(fields[0]), "@")
	if !ok {
		return Event{}, false
	}
	ev := Event{Action: action, DevPath: devpath, Env: map[string]string{}}
	for _, f := range fields[1:] {
		if k, v, ok := strings.Cut(string(f), "="); ok {
			ev.Env[k] = v
		}
	}
	ev.Subsystem, ev.DevName = ev.Env["SUBSYSTEM"], ev.Env["DEVNAME"]
	return ev, true
}

func fromLib(ev *netlink.UEvent) Event {
	return Event{
		Action:    string(ev.Action),
		DevPath:   ev.KObj,
		Subsystem: ev.Env["SUBSYSTEM"],
		DevName:   ev.Env["DEVNAME"],
		Env:       ev.Env,
	}
}
