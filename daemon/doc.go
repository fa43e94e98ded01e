// Package daemon is the event-driven core of the node daemon: it owns the
// connection registry (volumes, controllers, ownership), makes and removes
// NVMe/TCP controllers through package fabrics, watches them through package
// sysfs and kernel events, cleans up orphans, and answers health questions.
// Package csi drives it through the types in api.go; a metrics collector
// reads Snapshot.
//
// # Life cycle
//
// New checks a Config; Start loads the ownership file, rebuilds the registry
// from sysfs and the mount table, runs the first orphan cleanup (after an
// optional start-up jitter), starts the event goroutines and marks the daemon
// Ready. Attach, MarkStaged and Detach fail with ErrNotReady before that.
// The goroutines stop when Start's context ends or Close is called; Close
// never touches a connection.
//
// # Registry rebuild (the rule)
//
// Controllers come from sysfs. Ownership comes from the state file
// (StateDir/ownership.json): a recorded controller is owned only if a
// controller of that name still exists with the same subsystem NQN, traddr,
// trsvcid and host NQN (instance numbers are reused by the kernel); records
// that do not match are dropped from the file.
//
// Staged volumes come from the mount table (Config.MountInfo). A mount is a
// staged NVMe volume when its mount point is StagingRoot or below it and
//   - filesystem mode: its device number (mountinfo field 3) is that of a
//     visible NVMe block disk in sysfs, or its source is /dev/nvmeXnY;
//   - block mode: it is a bind mount of a devtmpfs node whose root is
//     /nvmeXnY (a file bind-mounted from /dev).
//
// The disk gives the subsystem NQN and nsid, and so the controllers that
// serve the volume. The volume id is taken from the state file, where
// MarkStaged records it (kubelet's staging paths hash the volume id, so it
// cannot be recovered from the path): a recorded volume whose staging path
// (or a path below it) is still mounted with a disk of the recorded NQN and
// nsid is restored as staged; a recorded volume with no such mount is
// dropped. A staged NVMe mount that no record explains is kept as a
// "recovered" volume with the id "mount:<mount point>": it cannot be
// detached by id, but it keeps its controllers referenced, so cleanup never
// disconnects a controller under a mounted file system. Recovered volumes are
// recomputed from the mount table at every cleanup pass and on Detach of an
// unknown id, so they disappear once the mount does.
//
// # Ownership
//
// A controller is owned when this daemon created it, or when it adopted it
// (the kernel answered EALREADY, or the registry already had a matching
// controller) and the controller's host NQN equals the spec's non-empty host
// NQN. A controller connected by hand with another host NQN, or an NVMe/TCP
// root disk, is never owned, so never disconnected. Ownership is written to
// the state file (temporary file in the same directory, fsync, rename, fsync
// of the directory) before Attach returns.
//
// # Events
//
// Kernel uevents (nvme, nvme-subsystem and nvme* block devices), netlink
// link and address changes, a poller and Attach/Detach all funnel into one
// coalescing trigger consumed by a single goroutine that re-reads sysfs,
// diffs against the registry and records transitions. A uevent socket
// overflow (ENOBUFS) is counted and forces a full re-read. A reconnect is
// counted once, whether it is seen as a transition to live by a re-read, as
// an NVME_EVENT=connected uevent, or both.
//
// # Kernel log
//
// The NVMe host driver logs every controller event with the controller's
// char device in the record's dictionary (DEVICE=c245:0), within
// milliseconds of a fault, while the poller may look a second later. A
// reader of Config.KmsgPath (/dev/kmsg; it starts at the end, history is
// not replayed) maps the device to a registry controller through its dev
// attribute and asks the loop for a state-only re-read of that controller;
// records about other devices, or unknown texts, only cost a parse. A
// sequence gap (EPIPE, or a jump in the record numbers) forces a full
// re-read. The text gives the reconnect attempt, which sysfs does not
// expose ("Failed reconnect attempt 3/-1" on 6.12, "Failed reconnect
// attempt 3" on 6.1): ControllerInfo.Attempt is the last failed attempt of
// the current outage, reset by "starting error recovery", by "Successfully
// reconnected" and by the transition to live. Reconnects are still counted
// from transitions and uevents only. Without CAP_SYSLOG or without the
// device the daemon logs once and relies on uevents and the poller;
// Counters.KmsgActive says which mode it is in.
//
// # Orphans
//
// An orphan is an owned controller that backs no staged, attached or
// attaching volume. Its grace clock starts when the daemon first sees it
// unreferenced (at Start for every unreferenced owned controller, so a
// restart never disconnects anything at once); cleanup disconnects it after
// Config.OrphanGrace, unless Config.CleanupDryRun.
//
// # Errors
//
// Attach returns errors wrapping the fabrics sentinels (ErrUnreachable,
// ErrRejected, ErrAuth, ErrInvalidOption, ...) or this package's
// (ErrDeviceTimeout, ErrNotReady, ErrConflict), and context errors. No gRPC
// codes here: package csi maps them.
package daemon
