package csi

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

const (
	nodeA = "node-a/nqn.2014-08.org.nvmexpress:uuid:0000000a-0000-4000-8000-000000000001"
	nodeB = "node-b/nqn.2014-08.org.nvmexpress:uuid:0000000b-0000-4000-8000-000000000002"
	nodeC = "node-c/nqn.2014-08.org.nvmexpress:uuid:0000000c-0000-4000-8000-000000000003"
)

// restartController is another Controller on the same emulator: one with
// no memory of what the first did.
func restartController(t *testing.T, srv *rdstest.Server) *Controller {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run, err := routeros.NewSSH(routeros.SSHConfig{Address: srv.Addr(), User: srv.User(),
		PrivateKey: srv.ClientKeyPEM(), KnownHosts: srv.KnownHosts(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Close() })
	c, err := NewController(ControllerConfig{Client: routeros.NewClient(run, nil), RDSAddress: srv.Addr(),
		VolumeDir: testVolumeDir, NQNBase: "nqn.2000-02.com.mikrotik", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func capOf(block bool, mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	vc := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
	if block {
		vc.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		vc.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}
	}
	return vc
}

func createForPublish(t *testing.T, c *Controller, name string, vc *csi.VolumeCapability) string {
	t.Helper()
	resp, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: name,
		VolumeCapabilities: []*csi.VolumeCapability{vc}, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetVolume().GetVolumeId()
}

func publish(c *Controller, vol, node string, vc *csi.VolumeCapability) error {
	_, err := c.ControllerPublishVolume(context.Background(), &csi.ControllerPublishVolumeRequest{
		VolumeId: vol, NodeId: node, VolumeCapability: vc})
	return err
}

func unpublish(c *Controller, vol, node string) error {
	_, err := c.ControllerUnpublishVolume(context.Background(), &csi.ControllerUnpublishVolumeRequest{VolumeId: vol, NodeId: node})
	return err
}

func wantPubCode(t *testing.T, what string, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), contains) {
		t.Errorf("%s: %v, want %s naming %q", what, err, code, contains)
	}
}

// TestPublishSingleNode: a single-node volume is published to one node;
// publish is idempotent; a second node is FailedPrecondition naming the
// node that holds it, also for a restarted controller (the record is on
// the RDS); unpublish with the node id of an older node plugin (the bare
// name) releases it; a published volume is not deleted.
func TestPublishSingleNode(t *testing.T) {
	c, srv := newTestController(t)
	vc := capOf(false, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	vol := createForPublish(t, c, "pvc-pub", vc)
	for i := 0; i < 2; i++ {
		if err := publish(c, vol, nodeA, vc); err != nil {
			t.Fatalf("publish to A (%d): %v", i, err)
		}
	}
	if d := srv.Disks(); len(d) != 1 || d[0].Comment != routeros.PublishedPrefix+"node-a" {
		t.Fatalf("disks %+v, want one with the record of node-a", d)
	}
	wantPubCode(t, "publish to B", publish(c, vol, nodeB, vc), codes.FailedPrecondition, "node-a")
	c2 := restartController(t, srv)
	wantPubCode(t, "publish to B after a restart", publish(c2, vol, nodeB, vc), codes.FailedPrecondition, "node-a")
	_, err := c2.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: vol})
	wantPubCode(t, "delete while published", err, codes.FailedPrecondition, "node-a")
	if err := unpublish(c2, vol, nodeB); err != nil {
		t.Errorf("unpublish from a node that does not hold it: %v", err)
	}
	if err := unpublish(c2, vol, "node-a"); err != nil {
		t.Fatalf("unpublish with the old node id form: %v", err)
	}
	if err := publish(c2, vol, nodeB, vc); err != nil {
		t.Fatalf("publish to B after A's unpublish: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := unpublish(c, vol, nodeB); err != nil {
			t.Fatalf("unpublish from B (%d): %v", i, err)
		}
	}
	if d := srv.Disks(); d[0].Comment != "" {
		t.Errorf("comment %q after the last unpublish, want none", d[0].Comment)
	}
	if _, err := c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: vol}); err != nil {
		t.Fatal(err)
	}
	if err := unpublish(c, vol, nodeB); err != nil {
		t.Errorf("unpublish of a deleted volume: %v", err)
	}
}

// TestPublishMultiNode: a MULTI_NODE_MULTI_WRITER block volume is published
// to two nodes at once, not three, and back to one when the source
// unpublishes; a filesystem volume is refused that mode.
func TestPublishMultiNode(t *testing.T) {
	c, _ := newTestController(t)
	vc := capOf(true, csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	vol := createForPublish(t, c, "pvc-migrate", vc)
	for _, n := range []string{nodeA, nodeB, nodeB} {
		if err := publish(c, vol, n, vc); err != nil {
			t.Fatalf("publish to %s: %v", n, err)
		}
	}
	wantPubCode(t, "publish to a third node", publish(c, vol, nodeC, vc), codes.FailedPrecondition, "at most 2")
	if err := unpublish(c, vol, nodeA); err != nil {
		t.Fatal(err)
	}
	if err := publish(c, vol, nodeC, vc); err != nil {
		t.Errorf("publish to C after A left: %v", err)
	}
	fs := capOf(false, csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	if err := publish(c, vol, nodeA, fs); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("filesystem MULTI_NODE_MULTI_WRITER: %v, want FailedPrecondition", err)
	}
	// All nodes at once (node_id empty).
	if err := unpublish(c, vol, ""); err != nil {
		t.Fatal(err)
	}
	if err := publish(c, vol, nodeA, capOf(true, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)); err != nil {
		t.Errorf("publish after unpublish from all: %v", err)
	}
}

// TestPublishRefusals: a node id without host NQN (a node plugin before
// attach) or malformed is NotFound; a volume that does not exist is
// NotFound; a disk whose comment is not ours is never changed.
func TestPublishRefusals(t *testing.T) {
	c, srv := newTestController(t)
	vc := capOf(false, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	vol := createForPublish(t, c, "pvc-refuse", vc)
	wantPubCode(t, "bare node name", publish(c, vol, "node-a", vc), codes.NotFound, "no host NQN")
	wantPubCode(t, "bad node id", publish(c, vol, "node a/nqn.x", vc), codes.NotFound, "node")
	slot, _ := routeros.SlotFor("pvc-gone")
	id, _ := FormatVolumeID(srv.Addr(), slot)
	wantPubCode(t, "missing volume", publish(c, id, nodeA, vc), codes.NotFound, "")
	wantPubCode(t, "no capability", publish(c, vol, nodeA, nil), codes.InvalidArgument, "")
	d := srv.Disks()[0]
	if _, stderr, st := srv.Exec(`/disk set [find slot="` + d.Slot + `"] comment="hand made"`); st != 0 {
		t.Fatal(stderr)
	}
	wantPubCode(t, "publish on a foreign comment", publish(c, vol, nodeA, vc), codes.FailedPrecondition, "not a publish record")
	wantPubCode(t, "unpublish on a foreign comment", unpublish(c, vol, nodeA), codes.FailedPrecondition, "not a publish record")
	if got := srv.Disks()[0].Comment; got != "hand made" {
		t.Errorf("comment %q, want the hand-made one kept", got)
	}
}

func TestNodeID(t *testing.T) {
	nqn := "nqn.2014-08.org.nvmexpress:uuid:0000000a-0000-4000-8000-000000000001"
	id, err := FormatNodeID("worker-1", nqn)
	if err != nil || id != "worker-1/"+nqn {
		t.Fatalf("FormatNodeID: %q, %v", id, err)
	}
	if n, err := ParseNodeID(id); err != nil || n != (NodeID{Name: "worker-1", HostNQN: nqn}) {
		t.Errorf("ParseNodeID(%q) = %+v, %v", id, n, err)
	}
	if n, err := ParseNodeID("worker-1"); err != nil || n != (NodeID{Name: "worker-1"}) {
		t.Errorf("old node id: %+v, %v", n, err)
	}
	for _, bad := range []string{"", "a b", "-x", "x/", "x/nqn", "x/" + nqn + "/y", strings.Repeat("a", 150) + "/" + nqn} {
		if _, err := ParseNodeID(bad); err == nil {
			t.Errorf("ParseNodeID(%q) accepted", bad)
		}
	}
	if _, err := FormatNodeID(strings.Repeat("a", 150), nqn); err == nil || !strings.Contains(err.Error(), "192") {
		t.Errorf("an id over 192 bytes: %v", err)
	}
	if _, err := FormatNodeID("a/b", nqn); err == nil {
		t.Error("a name with '/' accepted")
	}
}

func createFenced(t *testing.T, c *Controller, name string, vc *csi.VolumeCapability) (string, map[string]string) {
	t.Helper()
	resp, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: name,
		Parameters:         map[string]string{KeyTargetFencing: "true"},
		VolumeCapabilities: []*csi.VolumeCapability{vc}, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVolume().GetVolumeContext()[KeyTargetFencing] != "true" {
		t.Fatalf("VolumeContext %v lacks %s", resp.GetVolume().GetVolumeContext(), KeyTargetFencing)
	}
	return resp.GetVolume().GetVolumeId(), resp.GetVolume().GetVolumeContext()
}

func publishCtx(c *Controller, vol, node string, vc *csi.VolumeCapability, vctx map[string]string) error {
	_, err := c.ControllerPublishVolume(context.Background(), &csi.ControllerPublishVolumeRequest{
		VolumeId: vol, NodeId: node, VolumeCapability: vc, VolumeContext: vctx})
	return err
}

func hostOf(id string) string { _, nqn, _ := strings.Cut(id, "/"); return nqn }

// TestPublishFencing: with targetFencing the disk allows exactly the
// published node's host; unpublish (also with an old node id, and by a
// restarted controller) leaves it allowing only routeros.FencedHostNQN,
// never any host; a fenced disk stays fenced for a publish without the
// key; a second node is refused even for a multi-node block volume; a host
// set by hand is never overwritten.
func TestPublishFencing(t *testing.T) {
	c, srv := newTestController(t)
	vc := capOf(false, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	vol, vctx := createFenced(t, c, "pvc-fence", vc)
	allowed := func() string { t.Helper(); return srv.Disks()[0].AllowHostName }
	if got := allowed(); got != "" {
		t.Fatalf("a new disk allows %q, want any host until published", got)
	}
	for i := 0; i < 2; i++ {
		if err := publishCtx(c, vol, nodeA, vc, vctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := allowed(); got != hostOf(nodeA) {
		t.Fatalf("published to A: allows %q, want %q", got, hostOf(nodeA))
	}
	wantPubCode(t, "publish to B", publishCtx(c, vol, nodeB, vc, vctx), codes.FailedPrecondition, "node-a")
	if err := unpublish(restartController(t, srv), vol, "node-a"); err != nil {
		t.Fatal(err)
	}
	if got := allowed(); got != routeros.FencedHostNQN {
		t.Fatalf("after unpublish: allows %q, want only %q", got, routeros.FencedHostNQN)
	}
	// A publish without the key (a static PV copied without it) on a
	// fenced disk still fences.
	if err := publishCtx(c, vol, nodeB, vc, nil); err != nil {
		t.Fatal(err)
	}
	if got := allowed(); got != hostOf(nodeB) {
		t.Errorf("published to B: allows %q, want %q", got, hostOf(nodeB))
	}
	// The node's host NQN changed (reinstalled): the retry grants the new one.
	nodeB2 := "node-b/nqn.2014-08.org.nvmexpress:uuid:0000000b-0000-4000-8000-0000000000b2"
	if err := publishCtx(c, vol, nodeB2, vc, vctx); err != nil || allowed() != hostOf(nodeB2) {
		t.Errorf("publish with B's new host NQN: %v, allows %q", err, allowed())
	}
	if err := unpublish(c, vol, nodeB2); err != nil || allowed() != routeros.FencedHostNQN || srv.Disks()[0].Comment != "" {
		t.Errorf("unpublish B: %v, allows %q, comment %q", err, allowed(), srv.Disks()[0].Comment)
	}
	wantPubCode(t, "bad targetFencing", publishCtx(c, vol, nodeA, vc, map[string]string{KeyTargetFencing: "yes"}), codes.FailedPrecondition, KeyTargetFencing)

	// Multi-node block with fencing: one host only.
	bvc := capOf(true, csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	bvol, bctx := createFenced(t, c, "pvc-fence-block", bvc)
	if err := publishCtx(c, bvol, nodeA, bvc, bctx); err != nil {
		t.Fatal(err)
	}
	wantPubCode(t, "fenced multi-node publish to B", publishCtx(c, bvol, nodeB, bvc, bctx), codes.FailedPrecondition, "one host")

	// A host allowed by hand, with no node recorded: never overwritten.
	hvol, hctx := createFenced(t, c, "pvc-fence-hand", vc)
	slot, _ := routeros.SlotFor("pvc-fence-hand")
	if _, stderr, st := srv.Exec(`/disk set [find slot="` + slot + `"] nvme-tcp-server-allow-host-name="nqn.2000-01.org.example:admin"`); st != 0 {
		t.Fatal(stderr)
	}
	wantPubCode(t, "publish over a hand-set host", publishCtx(c, hvol, nodeA, vc, hctx), codes.FailedPrecondition, "no publish of rds-csi granted")
	for _, d := range srv.Disks() {
		if d.Slot == slot && (d.AllowHostName != "nqn.2000-01.org.example:admin" || d.Comment != "") {
			t.Errorf("hand-set disk changed: %+v", d)
		}
	}
	_, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-bad", Parameters: map[string]string{KeyTargetFencing: "on"},
		VolumeCapabilities: []*csi.VolumeCapability{vc}})
	wantPubCode(t, "CreateVolume targetFencing=on", err, codes.InvalidArgument, KeyTargetFencing)
}

// TestPublishStaticVolume: a static PV's volume (a handle that is not ours,
// attributes the node stages with) is published and unpublished without a
// record; the same handle without attributes, or with a controller's
// context-version, is NotFound; with attributes the node would refuse, it
// is InvalidArgument naming the key.
func TestPublishStaticVolume(t *testing.T) {
	c, srv := newTestController(t)
	vc := capOf(false, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	attrs := map[string]string{KeyNVMeAddress: "10.0.0.5", KeyNQN: "nqn.2000-02.com.mikrotik:static-1"}
	if err := publishCtx(c, "static-1", nodeA, vc, attrs); err != nil {
		t.Errorf("static PV: %v", err)
	}
	if err := unpublish(c, "static-1", nodeA); err != nil {
		t.Errorf("static PV unpublish: %v", err)
	}
	wantPubCode(t, "no attributes", publishCtx(c, "static-1", nodeA, vc, nil), codes.NotFound, "")
	attrs[KeyContextVersion] = ContextVersion
	wantPubCode(t, "a controller's context", publishCtx(c, "static-1", nodeA, vc, attrs), codes.NotFound, "")
	// Attributes the node would refuse: InvalidArgument naming the key
	// (what the VolumeAttachment and the pod's events show).
	wantPubCode(t, "bad attributes", publishCtx(c, "static-1", nodeA, vc, map[string]string{KeyNQN: "x"}), codes.InvalidArgument, KeyNVMeAddress)
	bad := map[string]string{KeyNVMeAddress: "10.0.0.5", KeyNQN: "nqn.2000-02.com.mikrotik:static-1", KeyReconnectDelay: "5s"}
	wantPubCode(t, "a typo'd reconnectDelay", publishCtx(c, "static-1", nodeA, vc, bad), codes.InvalidArgument, KeyReconnectDelay)
	if len(srv.Commands()) != 0 {
		t.Errorf("commands %q for a static volume", srv.Commands())
	}
}
