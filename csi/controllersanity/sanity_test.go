package controllersanity

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	csispec "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	"github.com/onsi/gomega"

	"github.com/srvlab/rds-csi/csi"
	"github.com/srvlab/rds-csi/routeros"
	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// controllerSpecs are the csi-sanity containers counted as Controller
// specs; snapshotSpecs those counted as snapshot specs (CreateVolume from a
// snapshot or a volume is counted among the Controller specs, by name below).
var (
	controllerSpecs = map[string]bool{
		"Controller Service [Controller Server]": true,
		"ExpandVolume [Controller Server]":       true,
	}
	snapshotSpecs = map[string]bool{
		"CreateSnapshot [Controller Server]": true,
		"DeleteSnapshot [Controller Server]": true,
		"ListSnapshots [Controller Server]":  true,
	}
	// copySpecs must pass: they are skipped unless snapshots and clones are
	// advertised.
	// publishSpecs must pass: they are skipped unless
	// PUBLISH_UNPUBLISH_VOLUME is advertised.
	publishSpecs = []string{
		"should fail when the node does not exist",
		"should fail when the volume does not exist",
		"should work",
		"should be idempotent",
	}
	copySpecs = []string{
		"should create volume from an existing source snapshot",
		"should fail when the volume source snapshot is not found",
		"should create volume from an existing source volume",
		"should fail when the volume source volume is not found",
	}
)

// TestControllerSanity runs csi-sanity's Controller, snapshot and Identity
// specs against the Controller on a unix socket, driving an rdstest
// emulator over SSH. It fails if no Controller spec or no snapshot spec
// passed, if any failed, or if a CreateVolume-from-source spec did not pass.
func TestControllerSanity(t *testing.T) {
	srv, err := rdstest.Start(rdstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run, err := routeros.NewSSH(routeros.SSHConfig{Address: srv.Addr(), User: srv.User(),
		PrivateKey: srv.ClientKeyPEM(), KnownHosts: srv.KnownHosts(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Close() })
	ctrl, err := csi.NewController(csi.ControllerConfig{Client: routeros.NewClient(run, nil),
		RDSAddress: srv.Addr(), VolumeDir: "/storage-pool/rds-csi", NQNBase: "nqn.2000-02.com.mikrotik", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock := "unix://" + filepath.Join(dir, "ctrl.sock")
	gs := csi.NewControllerServer(log, csi.ControllerIdentity{Identity: csi.NewIdentity("", "v0.0.0-test", nil)}, ctrl)
	csispec.RegisterNodeServer(gs, noNode{})
	l, err := csi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(l)
	t.Cleanup(gs.Stop)

	cfg := sanity.NewTestConfig()
	cfg.Address = sock
	cfg.ControllerAddress = sock
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeParameters = map[string]string{
		csi.KeyCtrlLossTmo:    "-1",
		csi.KeyReconnectDelay: "5",
		csi.KeyRDSAddress:     srv.Addr(),
	}
	cfg.TestVolumeSize = 16 << 20
	cfg.TestVolumeExpandSize = 32 << 20
	cfg.IdempotentCount = 3
	var finalize func()
	ginkgo.Describe("rds-csi controller", func() {
		finalize = sanity.GinkgoTest(&cfg).Finalize
	})

	var (
		mu     sync.Mutex
		report types.Report
	)
	gomega.RegisterFailHandler(ginkgo.Fail)
	ginkgo.ReportAfterSuite("count executed specs", func(r ginkgo.Report) {
		mu.Lock()
		report = r
		mu.Unlock()
	})
	suite, reporter := ginkgo.GinkgoConfiguration()
	suite.FocusStrings = []string{`(Controller Service|ExpandVolume|CreateSnapshot|DeleteSnapshot|ListSnapshots) \[Controller Server\]|Identity Service`}
	reporter.Verbose = testing.Verbose()
	ok := ginkgo.RunSpecs(t, "rds-csi controller sanity", suite, reporter)
	finalize()
	if !ok {
		t.Fatal("csi-sanity failed")
	}
	mu.Lock()
	defer mu.Unlock()
	type count struct{ passed, failed, skipped int }
	var ctrlN, snap count
	copyPassed := map[string]bool{}
	for _, s := range report.SpecReports {
		h := s.ContainerHierarchyTexts
		if s.LeafNodeType != types.NodeTypeIt || len(h) < 2 {
			continue
		}
		n := &ctrlN
		switch {
		case snapshotSpecs[h[1]]:
			n = &snap
		case !controllerSpecs[h[1]]:
			continue
		}
		switch {
		case s.State.Is(types.SpecStatePassed):
			n.passed++
			copyPassed[s.LeafNodeText] = true
		case s.State.Is(types.SpecStateSkipped | types.SpecStatePending):
			n.skipped++
		case s.State.Is(types.SpecStateFailureStates):
			n.failed++
		}
	}
	for name, c := range map[string]count{"controller": ctrlN, "snapshot": snap} {
		t.Logf("csi-sanity %s specs: %d passed, %d failed, %d skipped", name, c.passed, c.failed, c.skipped)
		if c.passed == 0 || c.failed > 0 {
			t.Errorf("csi-sanity %s specs: %d passed, %d failed; want > 0 and 0", name, c.passed, c.failed)
		}
	}
	for _, name := range append(copySpecs, publishSpecs...) {
		if !copyPassed[name] {
			t.Errorf("csi-sanity spec %q did not pass", name)
		}
	}
	if d := srv.Disks(); len(d) != 0 {
		t.Errorf("disks left on the emulator after the specs: %v", d)
	}
}

// noNode answers csi-sanity's clean-up, which asks the node for its
// capabilities after every spec: a node without STAGE_UNSTAGE, so the
// clean-up only unpublishes (ControllerUnpublishVolume) and deletes the
// volumes the Controller specs created; and NodeGetInfo, whose node id the
// publish specs publish to.
type noNode struct {
	csispec.UnimplementedNodeServer
}

func (noNode) NodeGetCapabilities(context.Context, *csispec.NodeGetCapabilitiesRequest) (*csispec.NodeGetCapabilitiesResponse, error) {
	return &csispec.NodeGetCapabilitiesResponse{}, nil
}

// sanityNodeID is a node id of the form node plugins report (NodeID).
const sanityNodeID = "sanity-node/nqn.2014-08.org.nvmexpress:uuid:5a1b0c1e-0000-4000-8000-000000000001"

func (noNode) NodeGetInfo(context.Context, *csispec.NodeGetInfoRequest) (*csispec.NodeGetInfoResponse, error) {
	return &csispec.NodeGetInfoResponse{NodeId: sanityNodeID}, nil
}

// NodeUnpublishVolume: csi-sanity's clean-up calls it for every volume it
// created; the controller specs publish nothing, so there is nothing to do.
func (noNode) NodeUnpublishVolume(context.Context, *csispec.NodeUnpublishVolumeRequest) (*csispec.NodeUnpublishVolumeResponse, error) {
	return &csispec.NodeUnpublishVolumeResponse{}, nil
}
