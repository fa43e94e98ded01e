package csi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/routeros"
)

// Attach (ControllerPublishVolume) records which nodes may use a volume, on
// the RDS itself: the disk's comment holds the publish record
// (routeros.PublishedComment: the node names), so it survives a controller
// restart and needs no state of the controller's own. Only disks of ours
// carry one; a disk whose comment is anything else is never changed.
//
// A volume is published to one node at a time, except a block volume with
// access mode MULTI_NODE_MULTI_WRITER (live migration: two nodes while both
// are published) and MULTI_NODE_READER_ONLY (readers); at most
// routeros.MaxPublished nodes. A second node for a single-node volume is
// FailedPrecondition naming the node that holds it.
//
// Target fencing (StorageClass targetFencing=true, off by default because
// RouterOS's semantics are unverified): publish makes the node's host NQN
// (from its node id) the one host the disk allows
// (nvme-tcp-server-allow-host-name), unpublish replaces it by
// routeros.FencedHostNQN, a host that does not exist. A node whose volume
// was unpublished (after it died or was force-deleted) can then no longer
// reconnect: its stale writes never reach the disk. A fenced volume is
// published to one node at a time (MULTI_NODE modes included: whether
// RouterOS takes a list of hosts is unverified).

// multiNode reports whether a capability lets a volume be published to more
// than one node at once. checkCapability has already refused the
// multi-node writer modes for filesystem volumes.
func multiNode(vc *csi.VolumeCapability) bool {
	switch vc.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		return vc.GetBlock() != nil
	case csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return true
	}
	return false
}

// ControllerPublishVolume records the node (by the name in its node id) in
// the volume's publish record. Idempotent: a node already recorded is
// success. A volume id that is not ours with the volume context of a static
// PV (valid node parameters, written by no controller) is published without
// a record (attachRequired must not strand static PVs); without such a
// context it is NotFound. The node id must carry the host NQN (NodeID): one that does not
// names no node of this driver version (NotFound). readonly is accepted and
// not enforced here (the node mounts read-only; PUBLISH_READONLY is not
// advertised).
func (c *Controller) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if req.GetNodeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "node_id is required")
	}
	if _, err := checkCapability(req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	node, err := ParseNodeID(req.GetNodeId())
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "publish volume: %v", err)
	}
	if node.HostNQN == "" {
		return nil, status.Errorf(codes.NotFound, "publish volume: node id %s carries no host NQN: not a node plugin of this version (upgrade the node plugin DaemonSet first)", quoteBounded(req.GetNodeId()))
	}
	id, cl, err := c.volume("publish volume", req.GetVolumeId(), req.GetSecrets())
	if status.Code(err) == codes.NotFound && staticShaped(req.GetVolumeContext()) {
		if _, perr := ParseParams(req.GetVolumeContext()); perr != nil {
			// A static PV's attributes the node would refuse: say which
			// key now (the VolumeAttachment's error and the pod's
			// FailedAttachVolume event carry it), not that the handle is
			// unknown.
			return nil, status.Errorf(codes.InvalidArgument, "publish volume %s: static volume's attributes: %v", quoteBounded(req.GetVolumeId()), perr)
		}
	}
	if status.Code(err) == codes.NotFound && staticVolume(req.GetVolumeContext()) {
		// A static PV's volume (a hand-written volumeHandle and
		// volumeAttributes the node stages with): no disk of ours to
		// record it on, nothing to fence. Kubernetes' own Multi-Attach
		// check still holds it to one node.
		c.log.Info("publish of a static volume: not recorded on the RDS, not fenced", "volume_id", quoteBounded(req.GetVolumeId()), "node", node.Name)
		return &csi.ControllerPublishVolumeResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	op := "publish volume " + req.GetVolumeId() + " to node " + node.Name
	release, ok := c.inflight.claim(ID{RDS: id.RDS, Slot: id.Slot}.String())
	if !ok {
		return nil, status.Errorf(codes.Aborted, "%s: an operation on the volume is in progress", op)
	}
	defer release()
	d, err := cl.Disk(ctx, id.Slot)
	if err != nil {
		return nil, controllerStatus(op, err)
	}
	nodes, err := routeros.ParsePublished(d.Comment)
	if err != nil {
		return nil, controllerStatus(op, err)
	}
	fence, err := fencing(req.GetVolumeContext(), d, nodes)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%s: %v", op, err)
	}
	if fence {
		if err := routeros.ValidateNQN(node.HostNQN); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "%s: target fencing: the node's host NQN %s cannot be granted on RouterOS: %v", op, quoteBounded(node.HostNQN), err)
		}
	}
	if slices.Contains(nodes, node.Name) {
		if fence {
			// A retry after the record was written, or the node's host
			// NQN changed: grant it.
			if _, err := cl.SetAllowedHost(ctx, id.Slot, node.HostNQN); err != nil {
				return nil, controllerStatus(op+": target fencing", err)
			}
		}
		return &csi.ControllerPublishVolumeResponse{}, nil
	}
	if len(nodes) > 0 && fence {
		return nil, status.Errorf(codes.FailedPrecondition, "%s: the volume is published to node %s and fenced on the target, which allows one host (whether RouterOS takes a list of hosts is unverified)", op, strings.Join(nodes, " and "))
	}
	if len(nodes) > 0 {
		if !multiNode(req.GetVolumeCapability()) {
			return nil, status.Errorf(codes.FailedPrecondition, "%s: the volume is published to node %s; a single-node volume is published to one node at a time (a MULTI_NODE_MULTI_WRITER block volume to two)", op, strings.Join(nodes, " and "))
		}
		if len(nodes) >= routeros.MaxPublished {
			return nil, status.Errorf(codes.FailedPrecondition, "%s: the volume is published to nodes %s: at most %d at once", op, strings.Join(nodes, " and "), routeros.MaxPublished)
		}
	}
	// The record first: a failure between the two leaves the node
	// recorded and not yet granted, which the retry finishes.
	if _, err := cl.SetPublished(ctx, id.Slot, append(nodes, node.Name)); err != nil {
		return nil, controllerStatus(op, err)
	}
	if fence {
		if _, err := cl.SetAllowedHost(ctx, id.Slot, node.HostNQN); err != nil {
			return nil, controllerStatus(op+": target fencing", err)
		}
	}
	return &csi.ControllerPublishVolumeResponse{}, nil
}

// staticVolume reports whether a volume context is a static PV's: the node
// stages it from its own attributes (they parse), and no controller wrote it
// (no KeyContextVersion).
func staticVolume(vctx map[string]string) bool {
	if !staticShaped(vctx) {
		return false
	}
	_, err := ParseParams(vctx)
	return err == nil
}

// staticShaped: attributes written by hand (a static PV's), not a context
// this controller made (those carry KeyContextVersion).
func staticShaped(vctx map[string]string) bool {
	return len(vctx) > 0 && vctx[KeyContextVersion] == ""
}

// fencing decides whether a publish fences the disk: when the volume
// context asks for it (KeyTargetFencing), and always on a disk that is
// fenced already (its allow-host-name is set: fencing, once on, stays on).
// A disk that allows a host no publish of ours granted (set by hand:
// allow-host-name neither empty nor FencedHostNQN while no node is
// recorded) is an error: never overwritten.
func fencing(vctx map[string]string, d routeros.Disk, nodes []string) (bool, error) {
	switch v := vctx[KeyTargetFencing]; v {
	case "", "false", "true":
	default:
		return false, fmt.Errorf("volume context %s=%s: want true or false", KeyTargetFencing, quoteBounded(v))
	}
	if d.AllowHostName != "" && d.AllowHostName != routeros.FencedHostNQN && len(nodes) == 0 {
		return false, fmt.Errorf("the disk allows host %s, which no publish of rds-csi granted; never changed", quoteBounded(d.AllowHostName))
	}
	return vctx[KeyTargetFencing] == "true" || d.AllowHostName != "", nil
}

// ControllerUnpublishVolume removes the node (by name: a node id with or
// without host NQN) from the volume's publish record; without node_id, every
// node. A volume, node or record that does not exist is success (the volume
// is not published there).
func (c *Controller) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	var node NodeID
	if req.GetNodeId() != "" {
		var err error
		if node, err = ParseNodeID(req.GetNodeId()); err != nil {
			// No record can hold a node of this id.
			return &csi.ControllerUnpublishVolumeResponse{}, nil
		}
	}
	id, cl, err := c.volume("unpublish volume", req.GetVolumeId(), req.GetSecrets())
	if status.Code(err) == codes.NotFound {
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	op := "unpublish volume " + req.GetVolumeId()
	if node.Name != "" {
		op += " from node " + node.Name
	}
	release, ok := c.inflight.claim(ID{RDS: id.RDS, Slot: id.Slot}.String())
	if !ok {
		return nil, status.Errorf(codes.Aborted, "%s: an operation on the volume is in progress", op)
	}
	defer release()
	d, err := cl.Disk(ctx, id.Slot)
	switch {
	case errors.Is(err, routeros.ErrNotFound):
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	case err != nil:
		return nil, controllerStatus(op, err)
	}
	nodes, err := routeros.ParsePublished(d.Comment)
	if err != nil {
		return nil, controllerStatus(op, err)
	}
	keep := slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return node.Name == "" || n == node.Name })
	if len(keep) == len(nodes) {
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	}
	if d.AllowHostName != "" && len(keep) == 0 {
		// Fenced: revoke before the record goes, so that a failure in
		// between leaves the node recorded (the retry revokes again),
		// never unrecorded and still allowed. The disk then allows only
		// a host that does not exist.
		if _, err := cl.SetAllowedHost(ctx, id.Slot, routeros.FencedHostNQN); err != nil {
			return nil, controllerStatus(op+": revoking the node's host on the target", err)
		}
	}
	if _, err := cl.SetPublished(ctx, id.Slot, keep); err != nil {
		return nil, controllerStatus(op, err)
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}
