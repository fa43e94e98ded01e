// Package csi implements the CSI Identity and Node services of the rds-csi
// node plugin for NVMe/TCP volumes. It owns the gRPC contract and is the only
// package that knows gRPC status codes: errors from the daemon and from
// package fabrics are mapped to codes here, with errors.Is, in one place
// (Status).
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
// silently taking the default. DH-HMAC-CHAP secrets are read only from the
// NodeStageVolume secrets (ParseSecrets), never from the VolumeContext, and
// never logged.
//
// # Staging
//
// A filesystem volume is formatted if blank (ext4 or xfs) and mounted on the
// staging path. A block volume is staged by bind-mounting its device node
// onto the file "<staging_target_path>/device" (BlockDeviceFile): the mount
// table then records which device is staged, across restarts of the plugin,
// and NodePublishVolume bind-mounts that file onto the target. The daemon is
// told about both kinds with MarkStaged.
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
