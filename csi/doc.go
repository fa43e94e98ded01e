// Package csi implements the CSI Identity and Node services of the rds-csi
// node plugin for NVMe/TCP volumes, the Controller service on package
// routeros (controller.go and snapshot.go; tested only against the rdstest
// emulator, never against a real RDS), and kubelet's plugin registration
// service (Registration, on a socket ListenAtomic creates), which stands in
// for the node-driver-registrar sidecar. It owns the gRPC contract and is
// the only package that knows gRPC status codes: errors from the daemon and
// from package fabrics are mapped to codes here, with errors.Is, in one place
// (Status); routeros errors in one table beside it (routerosRules).
//
// # Controller: ids, RDSs and credentials
//
// A volume id is "<slot>@<host>:<port>" (ID, FormatVolumeID, ParseVolumeID):
// the RouterOS slot and the canonical SSH address of the RDS that holds it
// (ParseRDSAddress, the StorageClass's rdsAddress, default the controller's
// own). A request's secrets (ParseCredentials: privateKey, knownHosts,
// username) select the credentials for that RDS; without secrets the
// controller uses its own. Clients for other RDSs or credentials are pooled
// per address and credentials (at most MaxClients); host keys are always
// verified against known_hosts.
//
// # Parameters
//
// StorageClass parameters, PV volumeAttributes and the VolumeContext of
// NodeStageVolume are all read by one parser, ParseParams. Every key it
// accepts is listed in Keys; keys Kubernetes adds (prefix
// "csi.storage.k8s.io/" or "storage.kubernetes.io/") and the controller's
// own keys rdsAddress and volumePath are accepted and ignored. Any other key
// is refused (codes.InvalidArgument naming the key and listing the accepted
// ones), so that a typo such as "ctrlLosTmo" fails loudly instead of
// silently taking the default, except in a map carrying KeyContextVersion,
// which the controller writes into every VolumeContext after validating it:
// there unknown keys (a newer controller's) are ignored and the stage logs
// their names. The work per request is bounded: a map over
// MaxVolumeContextBytes, a value over MaxParamValueBytes and mount_flags
// over MaxMountFlagsBytes are InvalidArgument before anything is parsed,
// mount options are merged in one pass, and messages and log lines quote
// only a bounded prefix of a value. DH-HMAC-CHAP secrets are read only from the
// NodeStageVolume secrets (ParseSecrets), never from the VolumeContext, and
// never logged.
//
// # Staging
//
// A filesystem volume is formatted if blank (ext4 or xfs) and mounted on the
// staging path. A block volume is staged by bind-mounting its device node
// onto the file "<staging_target_path>/rds-csi-device" (BlockDeviceFile):
// the mount table then records which device is staged, across restarts of
// the plugin, and NodePublishVolume bind-mounts that file onto the target.
// The daemon is told about both kinds with MarkStaged.
//
// # Ownership
//
// The plugin runs as root on every node, so it acts only on what it can
// prove is its own. NodePublishVolume binds only from the staging path the
// daemon recorded for the volume (with the same access type), and only onto
// a target that is missing or empty. NodeUnpublishVolume and
// NodeUnstageVolume unmount only mounts whose source is the volume's device
// as the daemon records it (a bind of its staging mount included), and
// delete only the target under such a mount or the plugin's own
// BlockDeviceFile. A symlink at a staging or target path is never followed.
// Anything else is FailedPrecondition and left alone; a path that holds no
// mount is success. A volume staged at a path is not staged there again with
// the other access type (AlreadyExists), and not at a second path while it
// is staged (FailedPrecondition; two static PersistentVolumes with one
// volumeHandle would do that); an unstage at a path other than the recorded
// one unmounts only the volume's mounts there and leaves the volume staged
// and its controller connected. own.go says what remains of the
// check-then-mount race.
//
// # Error codes
//
// See Status for the full table. In short: invalid parameters and options
// are InvalidArgument; an unreachable target is Unavailable; a target that
// refuses the host or does not export the NQN is FailedPrecondition; failed
// DH-HMAC-CHAP authentication is Unauthenticated; a block device that does
// not appear in time is DeadlineExceeded; a daemon that has not finished its
// first reconcile is Unavailable; an operation already running for the same
// volume is Aborted.
package csi
