// Package kmsg reads the Linux kernel log through /dev/kmsg: Open starts a
// reader at the log's end (no history is replayed), Parse turns one read(2)
// of it into a Record (header, text and dictionary, the kernel's \xNN
// escapes decoded), Device returns the character device a record's
// dictionary names, and Classify reads what an NVMe controller record says
// (error recovery, reconnect attempts, a new controller), tolerating the
// texts of both the 6.1 and the 6.12 kernels. A read that fails with
// ErrLost (EPIPE) means records were overwritten before they were read.
//
// The package knows the record format and the NVMe texts, nothing about
// what a reader does with them: the daemon keeps the registry and decides.
// Open is Linux-only; elsewhere it returns an error that wraps
// errors.ErrUnsupported.
package kmsg
