// Package netwatch reports network link and address changes from rtnetlink:
// Watch calls a function on every change until its context ends. It says
// only that something changed, not what; the caller re-reads what it cares
// about (a link going down or an address moving is a reason to re-read NVMe
// controller states at once rather than at the next poll).
//
// Watch is Linux-only; elsewhere it returns an error that wraps
// errors.ErrUnsupported.
package netwatch
