package csi

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/fabrics"
)

// NodeGetVolumeHealth reports the daemon's view of one volume: no entries
// when healthy, one DEGRADED or INACCESSIBLE entry with the daemon's
// CamelCase reason and message otherwise. A volume the daemon does not know
// is NotFound. The paths of the request are not needed: the daemon knows
// the volume by id (also one whose stage failed recently).
func (n *Node) NodeGetVolumeHealth(_ context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	if err := requireVolumeID(req.GetVolumeId()); err != nil {
		return nil, err
	}
	h, err := n.vols.VolumeHealth(req.GetVolumeId())
	if err != nil {
		return nil, Status("volume health of "+req.GetVolumeId(), err)
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: volumeHealth(req.GetVolumeId(), h)}, nil
}

// volumeHealth converts the daemon's health of a volume.
func volumeHealth(volumeID string, h daemon.VolumeHealth) *csi.VolumeHealth {
	out := &csi.VolumeHealth{VolumeId: volumeID}
	var t csi.VolumeHealthErrorType
	switch h.Condition {
	case daemon.Healthy:
		return out
	case daemon.Degraded:
		t = csi.VolumeHealthErrorType_DEGRADED
	case daemon.Inaccessible:
		t = csi.VolumeHealthErrorType_INACCESSIBLE
	default:
		t = csi.VolumeHealthErrorType_UNKNOWN_VOLUME_HEALTH_TYPE
	}
	out.HealthStatuses = []*csi.VolumeHealth_VolumeHealthEntry{{
		Status:  t,
		Reason:  cmp.Or(h.Reason, defaultReason(h.Condition)),
		Message: h.Message,
	}}
	return out
}

func defaultReason(c daemon.Condition) string {
	switch c {
	case daemon.Degraded:
		return "Degraded"
	case daemon.Inaccessible:
		return "Inaccessible"
	}
	return "Unknown"
}

// NodeGetStorageHealth reports every unhealthy target: STORAGE_UNREACHABLE
// for an inaccessible one, STORAGE_DEGRADED for a degraded one. The spec
// forbids two entries with the same (status, reason), so targets that share
// both are reported in one entry whose message lists each target; entries
// are sorted (unreachable first, then by reason).
func (n *Node) NodeGetStorageHealth(context.Context, *csi.NodeGetStorageHealthRequest) (*csi.NodeGetStorageHealthResponse, error) {
	return &csi.NodeGetStorageHealthResponse{BackendHealth: storageHealth(n.vols.StorageHealth())}, nil
}

func storageHealth(targets []daemon.TargetHealth) []*csi.NodeGetStorageHealthResponse_StorageBackendHealth {
	type key struct {
		status csi.StorageHealthErrorType
		reason string
	}
	groups := map[key][]string{}
	for _, t := range targets {
		var st csi.StorageHealthErrorType
		switch t.Condition {
		case daemon.Healthy:
			continue
		case daemon.Degraded:
			st = csi.StorageHealthErrorType_STORAGE_DEGRADED
		case daemon.Inaccessible:
			st = csi.StorageHealthErrorType_STORAGE_UNREACHABLE
		default:
			st = csi.StorageHealthErrorType_UNKNOWN_STORAGE_HEALTH_ERROR_TYPE
		}
		k := key{st, cmp.Or(t.Reason, defaultReason(t.Condition))}
		groups[k] = append(groups[k], targetMessage(t))
	}
	keys := make([]key, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(b.status, a.status), strings.Compare(a.reason, b.reason))
	})
	out := make([]*csi.NodeGetStorageHealthResponse_StorageBackendHealth, 0, len(keys))
	for _, k := range keys {
		msgs := groups[k]
		slices.Sort(msgs)
		out = append(out, &csi.NodeGetStorageHealthResponse_StorageBackendHealth{
			Status:  k.status,
			Reason:  k.reason,
			Message: strings.Join(msgs, "; "),
		})
	}
	return out
}

// targetMessage is "10.0.0.5:4420: <message> (controllers nvme1, nvme2)".
func targetMessage(t daemon.TargetHealth) string {
	s := fabrics.HostPort(t.Traddr, t.Trsvcid)
	if t.Message != "" {
		s += ": " + t.Message
	}
	if len(t.Controllers) > 0 {
		s += " (controllers " + strings.Join(t.Controllers, ", ") + ")"
	}
	return s
}
