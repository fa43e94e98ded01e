// Package uevent reads kernel uevents from a NETLINK_KOBJECT_UEVENT socket
// (the kernel's multicast group: no udev needed). Open returns a Source
// whose Read blocks until the next event; Close wakes a blocked Read, which
// then returns ErrClosed. When the socket's buffer overflows (ENOBUFS:
// events were lost) Read returns ErrOverflow and the caller must re-read
// whatever the lost events described. Parse decodes one message; it keeps
// events whose values contain '=' (the go-udev parser it wraps drops
// them).
//
// Filtering is the caller's: every event the kernel sends is returned.
// Open and Parse are Linux-only; elsewhere Open returns an error that wraps
// errors.ErrUnsupported.
package uevent
