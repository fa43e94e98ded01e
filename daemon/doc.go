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
// # Reconnect spread
//
// Attach connects (or updates the timeouts of an existing controller) with
// reconnect_delay = the spec's reconnect_delay + a per-controller offset in
// 0..Spec.ReconnectSpread seconds, a SHA-256 of the host NQN, host id and
// the connection (spread.go), so that controllers that lose their target in
// the same instant do not retry in lockstep. ctrl_loss_tmo is then written
// as ceil(tmo/delay)*delay: the kernel, which keeps it as that many
// attempts, gives up no earlier than asked and less than one delay later
// (-1 and 0 unchanged). The spread an Attach set is kept in the registry
// (ControllerInfo.Spread, health messages, metrics) for the life of the
// process; after a restart it is known again from the next Attach.
//
// # Several paths (native NVMe multipath)
//
// A spec may name several target addresses of one subsystem (Spec.Paths).
// Attach then starts one goroutine per path (paths.go), tracked by the
// daemon's WaitGroup and cancelled by Detach, a new Attach of the volume,
// or Close; each connects its path as a one-path Attach does (connection
// lock, intent, ownership, timeouts) and enters the controller among the
// volume's controllers. Attach returns once one path is connected and the
// multipath head's block device is there; a path whose first round of
// connect attempts failed with a retryable error keeps trying, a new round
// of the same backoff after a pause of its longest step (at most a
// minute). Its last error is kept per path for VolumeHealth (Degraded, the
// paths down and why) and StorageHealth (an address with no controller at
// all is TargetUnreachable). Detach waits for the goroutines to end before
// it looks at the volume's controllers, then takes every path's connection
// lock (sorted) and disconnects the owned ones. The state file keeps the
// other paths of a staged volume (volumes[].paths), so a restart finds
// every path's controller; a path never connected before the restart is
// not retried until the volume is staged again. With
// nvme_core.multipath=N each path would be a block device of its own:
// Attach connects the first path only, logs a warning, and VolumeHealth
// reports Degraded (MultipathDisabled). Spec.IOPolicy is written to the
// subsystem (sysfs.FS.SetIOPolicy) once the head's device is there, and
// read back; EINVAL from the kernel (a policy it lacks: queue-depth before
// Linux 6.11) fails the Attach with fabrics.ErrUnsupportedOption. Snapshot
// gives each volume's named and live paths (VolumeInfo.Paths, LivePaths).
//
// # Registry rebuild (the rule)
//
// Controllers come from sysfs. Ownership comes from the state file
// (StateDir/ownership.json): a recorded controller is owned only if a
// controller of that name still exists with the same subsystem NQN, traddr,
// trsvcid and host NQN (instance numbers are reused by the kernel); records
// that do not match are dropped from the file. Connect intents left in the
// file are resolved then (see Ownership).
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
// dropped. A mount of the disk of a known volume is explained by it
// wherever it is: a block volume's publish target and kubelet's own bind of
// the device lie under the staging root too. A staged NVMe mount that no
// record explains is kept as a "recovered" volume with the id "mount:<mount point>": it cannot be
// detached by id, but it keeps its controllers referenced, so cleanup never
// disconnects a controller under a mounted file system. Recovered volumes are
// recomputed from the mount table at every cleanup pass and on Detach of an
// unknown id, so they disappear once the mount does.
//
// # Ownership
//
// A controller is owned only if this driver created it: a connect write of
// this driver returned it, or it is the controller of a connect intent (below)
// that a crash left unresolved. Every other controller the daemon uses is
// borrowed: one adopted on EALREADY, or found in the registry (a matching
// controller: fabrics.Options.Matches, the kernel's own rule, host ID
// included), connected by hand with nvme-cli, by another tool, an NVMe/TCP
// root disk, whatever its host NQN, even ours (nvme-cli reads /etc/nvme/hostnqn too). A volume stages
// on a borrowed controller and health covers it, but the driver never
// disconnects it: not at Detach, not by orphan cleanup. Only owned
// controllers are disconnected.
//
// Before its first connect write for a volume, Attach records a connect
// intent in the state file: the connection's identity (transport, subsystem
// NQN, traddr, trsvcid, host NQN, host ID, host_traddr, host_iface; matched
// with fabrics.Options.Matches), not a controller name, which is only known once the write returns. The state
// file is written atomically (temporary file in the same directory, fsync,
// rename, fsync of the directory); if it cannot be written there is no
// connect. When the writes are over the intent is resolved in one more
// write of the file, before Attach uses the controller: a created
// controller becomes owned; an adopted one stays borrowed; after a failed
// write the intent is dropped, except when the kernel accepted the write
// but its reply did not parse (or the created controller could not be read
// back), where it is resolved as at Start. At Start every intent left by a
// killed daemon is resolved against sysfs: the one controller with the
// intent's identity that is not being deleted (live, or reconnecting)
// becomes owned; with none, or more than one, nothing does; the intent is
// dropped either way. So a crash between the kernel's connect and the
// ownership record leaves the controller owned, and orphan cleanup removes
// it after the grace period if no retried stage takes it.
//
// What stays ambiguous: the daemon only connects when its registry has no
// controller with that identity, and the kernel refuses a second controller
// with the same identity, so at Start a controller matching an intent was
// made by the killed daemon's write, unless someone else connected the same
// identity by hand between the intent and the restart while the daemon's
// write never happened or failed (or just before the intent, when the
// registry had not seen it yet): that controller is taken as owned. An
// intent without a host NQN (the kernel's default host, which sysfs does not
// name) matches a controller of any host NQN (likewise for the host ID); with more than one candidate
// it claims none. Instance names play no part in an intent, so their reuse
// by the kernel cannot mislead it. An ownership record names the controller
// and its identity: at Start and on every re-read a record whose name now
// belongs to a controller of another identity is dropped. Ownership records
// written by earlier versions (which also owned a controller adopted with
// our host NQN) are kept as they are.
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
// The kernel interfaces are read through small packages of their own, which
// know the formats and nothing of the registry: internal/uevent (the uevent
// socket and its parser), internal/netwatch (rtnetlink link and address
// changes), internal/kmsg (the kernel log below) and internal/mountinfo
// (the mount table, escapes decoded). This package has no build tags and
// no raw system calls.
//
// A re-read can meet a controller before its first connect completes (the
// kernel adds it, and sends its add uevent, before connecting): it has no
// subsystem yet, and the kernel prints "(efault)" for its subsysnqn. Package
// sysfs reads that as no NQN, so the registry records the controller without
// one (no key, health message or metric label carries the kernel's text),
// and the poller reads such a controller again in full once it is live.
// Whichever read first finds its NQN keeps the entry (its transitions) and
// logs "controller connected" with it.
//
// # Who writes the registry, and in which lock order
//
// The registry (Daemon.ctrls, vols, owned, byDev, touched and
// pendingConnected) is guarded by Daemon.mu and written by:
//   - Start's rebuild, before any goroutine runs;
//   - the loop goroutine (consume -> pass: pollStates, rereadControllers,
//     rescan): controller states and transitions, controllers that appear or
//     vanish, queued connected uevents;
//   - the callers of Attach, MarkStaged and Detach (package csi's request
//     goroutines): volumes, ownership, and the controllers they connect
//     (register) or disconnect;
//   - cleanup (its ticker goroutine, and Start): orphan grace clocks,
//     disconnected orphans, and recovered volumes (refreshMounts, also run by
//     Detach of an unknown id);
//   - LowerLossTimeout (the controllers it changed, read again);
//   - the kernel log reader (a controller's attempt number) and the uevent
//     reader (pendingConnected).
//
// Everyone else (VolumeHealth, StorageHealth, Snapshot, Volume, Volumes)
// only reads it. Nobody holds mu across I/O: sysfs, the connect and
// disconnect writes, the mount table and the state file are read or written
// with mu released, and the Observer is called after it is released.
//
// Locks are taken in this order, never the other way round:
//
//	lifeMu -> mu                                       (Start)
//	keyLocks "volume:<id>" -> keyLocks "conn:<key>" -> connSem (Attach)
//	keyLocks "volume:<id>" -> keyLocks "conn:<key>"... sorted  (Detach)
//	keyLocks "conn:<key>" -> connSem                   (a path's goroutine)
//	keyLocks -> persistMu -> mu                        (Attach, Detach, cleanup)
//	scanMu -> persistMu -> mu                          (a pass that forgets an owner)
//
// Attach and Detach take the volume's lock, then its connection keys'
// (Attach one at a time, through the paths' goroutines, which never hold
// the volume's lock; Detach every path's, in sorted order, after those
// goroutines ended);
// cleanup takes only connection keys' locks (the controller's key, then the
// same key without host NQN). mu, pendingMu and the waiters' lock are leaves:
// nothing else is locked while one is held.
//
// A pass reads sysfs with mu released, so an Attach or Detach may change a
// controller in between: register one it just connected, remove one it just
// disconnected. Applying the older read afterwards would undo that (remove
// the new controller as vanished, or bring the disconnected one back). So
// whenever Attach, Detach, cleanup or LowerLossTimeout enters or removes a
// controller they bump a generation (Daemon.mutation) and record it for the
// controller's name (touchLocked -> touched); a pass
// notes the generation when it starts and leaves alone every controller
// touched since, which the next pass then reads afresh. Generations older
// than the pass's start are pruned at its end.
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
