package uevent

import "errors"

// Event is a kernel uevent, reduced to what its readers look at.
type Event struct {
	Action    string // add, remove, change, ...
	DevPath   string // /devices/virtual/nvme-fabrics/ctl/nvme0
	Subsystem string // nvme, nvme-subsystem, block, ...
	DevName   string // nvme0, nvme0n1
	Env       map[string]string
}

// Source delivers kernel uevents. Read blocks until an event, an error, or
// Close; after Close it returns ErrClosed. An overflow of the socket
// (events lost) is ErrOverflow, and reading may go on after it.
type Source interface {
	Read() (Event, error)
	Close() error
}

var (
	// ErrClosed: the source was closed.
	ErrClosed = errors.New("uevent: source closed")
	// ErrOverflow: the socket overflowed (ENOBUFS) and events were lost.
	ErrOverflow = errors.New("uevent: socket overflow (ENOBUFS): events lost")
)
