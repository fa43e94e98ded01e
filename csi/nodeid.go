package csi

import (
	"fmt"
	"strings"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/routeros"
)

// MaxNodeIDBytes is the longest node id Kubernetes keeps in a CSINode
// (spec.drivers[].nodeID).
const MaxNodeIDBytes = 192

// A NodeID is what a node plugin reports in NodeGetInfo: the node's name
// and the host NQN it connects with, so that the controller learns, from
// the node id alone, which host to grant a volume on the target:
//
//	<name>/<hostnqn>        worker-1/nqn.2014-08.org.nvmexpress:uuid:6f0c...
//
// Node plugins before attach reported the bare name (the host name, or
// --node-id): such an id parses with an empty HostNQN, so a volume
// published to it can still be unpublished, but it is never published to
// (ControllerPublishVolume says NotFound: upgrade the node plugin first).
type NodeID struct {
	Name    string // routeros.ValidateNodeName
	HostNQN string // "" for an id of a node plugin before attach
}

// String formats the id.
func (n NodeID) String() string {
	if n.HostNQN == "" {
		return n.Name
	}
	return n.Name + "/" + n.HostNQN
}

// FormatNodeID returns the node id of a node name and host NQN: an error if
// either is invalid or the id is longer than MaxNodeIDBytes.
func FormatNodeID(name, hostNQN string) (string, error) {
	if err := routeros.ValidateNodeName(name); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	if err := fabrics.ValidateNQN(hostNQN); err != nil || strings.Contains(hostNQN, "/") {
		return "", fmt.Errorf("node id: host NQN %q is not valid", hostNQN)
	}
	id := NodeID{Name: name, HostNQN: hostNQN}.String()
	if len(id) > MaxNodeIDBytes {
		return "", fmt.Errorf("node id %q: %d bytes, above the %d Kubernetes keeps in a CSINode (a shorter --node-id, or a shorter host NQN)", id, len(id), MaxNodeIDBytes)
	}
	return id, nil
}

// ParseNodeID reads a node id: <name>/<hostnqn>, or a bare <name> (a node
// plugin before attach).
func ParseNodeID(s string) (NodeID, error) {
	if len(s) > MaxNodeIDBytes {
		return NodeID{}, fmt.Errorf("node id of %d bytes: at most %d", len(s), MaxNodeIDBytes)
	}
	name, nqn, found := strings.Cut(s, "/")
	if err := routeros.ValidateNodeName(name); err != nil {
		return NodeID{}, fmt.Errorf("node id %s: %w", quoteBounded(s), err)
	}
	if !found {
		return NodeID{Name: name}, nil
	}
	if err := fabrics.ValidateNQN(nqn); err != nil || strings.Contains(nqn, "/") {
		return NodeID{}, fmt.Errorf("node id %s: host NQN is not valid", quoteBounded(s))
	}
	return NodeID{Name: name, HostNQN: nqn}, nil
}
