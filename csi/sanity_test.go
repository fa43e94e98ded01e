package csi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	"github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestSanity runs the csi-sanity Identity and Node specs in-process against
// the real Node and Identity services over a unix socket, with the daemon,
// the mount layer and the kernel faked. A test-only controller on a second
// socket stands in for the rds-csi controller: its CreateVolume runs the
// StorageClass parameters through ParseParams and returns them, plus the
// volume's NQN, as the VolumeContext, so the node sees exactly what the
// real controller would pass.
//
// The node-only Identity advertises no CONTROLLER_SERVICE (the controller
// does that on its own socket); csi-sanity asks the node socket, so the
// test wraps the Identity to advertise it, which lets the end-to-end specs
// ("should work", "should be idempotent") run instead of being skipped.
func TestSanity(t *testing.T) {
	dir := t.TempDir()
	e := newTestEnv(t)

	nodeSock := filepath.Join(dir, "node.sock")
	ctrlSock := filepath.Join(dir, "ctrl.sock")
	nodeSrv := NewServer(discardLogger(), sanityIdentity{NewIdentity("", "v0.0.0-test", nil)}, e.node)
	serveOn(t, nodeSrv, "unix://"+nodeSock)
	ctrlSrv := grpc.NewServer()
	csi.RegisterControllerServer(ctrlSrv, &testController{vols: map[string]*csi.Volume{}})
	csi.RegisterIdentityServer(ctrlSrv, sanityIdentity{NewIdentity("", "v0.0.0-test", nil)})
	serveOn(t, ctrlSrv, "unix://"+ctrlSock)

	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + nodeSock
	cfg.ControllerAddress = "unix://" + ctrlSock
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeParameters = map[string]string{
		KeyNVMeAddress:    "10.0.0.5",
		KeyNVMePort:       "4420",
		KeyCtrlLossTmo:    "-1",
		KeyReconnectDelay: "5",
		"rdsAddress":      "10.0.0.1",
		"volumePath":      "/storage-pool/kubernetes-volumes",
		KeyNQN:            "nqn.2000-02.com.mikrotik:placeholder", // replaced per volume
	}
	cfg.IdempotentCount = 3

	var (
		mu     sync.Mutex
		report types.Report
	)
	gomega.RegisterFailHandler(ginkgo.Fail)
	sc := sanity.GinkgoTest(&cfg)
	ginkgo.ReportAfterSuite("count executed specs", func(r ginkgo.Report) {
		mu.Lock()
		report = r
		mu.Unlock()
	})
	suite, reporter := ginkgo.GinkgoConfiguration()
	suite.FocusStrings = []string{"Node Service", "Identity Service"}
	reporter.Verbose = testing.Verbose()
	ok := ginkgo.RunSpecs(t, "rds-csi node sanity", suite, reporter)
	sc.Finalize()
	if !ok {
		t.Fatal("csi-sanity failed")
	}

	mu.Lock()
	defer mu.Unlock()
	passed, failed, skipped := 0, 0, 0
	for _, s := range report.SpecReports {
		if s.LeafNodeType != types.NodeTypeIt || len(s.ContainerHierarchyTexts) == 0 ||
			!slices.Contains(suite.FocusStrings, s.ContainerHierarchyTexts[0]) {
			continue // not a node or identity spec
		}
		switch {
		case s.State.Is(types.SpecStatePassed):
			passed++
		case s.State.Is(types.SpecStateSkipped | types.SpecStatePending):
			skipped++
		case s.State.Is(types.SpecStateFailureStates):
			failed++
		}
	}
	t.Logf("csi-sanity node and identity specs: %d passed, %d failed, %d skipped", passed, failed, skipped)
	if passed == 0 || failed > 0 {
		t.Fatalf("csi-sanity executed %d specs successfully and %d failed; want > 0 and 0", passed, failed)
	}
	// Every applicable node spec runs: only the single-node-multi-writer one
	// is skipped (the plugin does not advertise that capability).
	if skipped > 1 {
		t.Errorf("%d specs skipped, want at most 1", skipped)
	}
}

func serveOn(t *testing.T, s *grpc.Server, endpoint string) {
	t.Helper()
	l, err := Listen(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(s.Stop)
}

// sanityIdentity advertises the test controller (see TestSanity).
type sanityIdentity struct{ *Identity }

func (s sanityIdentity) GetPluginCapabilities(ctx context.Context, req *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	resp, err := s.Identity.GetPluginCapabilities(ctx, req)
	if err != nil {
		return nil, err
	}
	resp.Capabilities = append(resp.Capabilities, &csi.PluginCapability{
		Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}},
	})
	return resp, nil
}

// testController is the stand-in controller: CreateVolume and DeleteVolume.
type testController struct {
	csi.UnimplementedControllerServer
	mu   sync.Mutex
	vols map[string]*csi.Volume // by name
}

func (c *testController) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: []*csi.ControllerServiceCapability{{
		Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME}},
	}}}, nil
}

func (c *testController) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.vols[req.GetName()]; ok {
		return &csi.CreateVolumeResponse{Volume: v}, nil
	}
	sum := sha256.Sum256([]byte(req.GetName()))
	id := "pvc-" + hex.EncodeToString(sum[:8])
	vc := map[string]string{}
	for k, v := range req.GetParameters() {
		vc[k] = v
	}
	vc[KeyNQN] = "nqn.2000-02.com.mikrotik:" + id
	vc["storage.kubernetes.io/csiProvisionerIdentity"] = "1700000000000-8081-" + DefaultDriverName
	if _, err := ParseParams(vc); err != nil { // the one parser, controller side
		return nil, Status("parameters", err)
	}
	v := &csi.Volume{VolumeId: id, CapacityBytes: req.GetCapacityRange().GetRequiredBytes(), VolumeContext: vc}
	c.vols[req.GetName()] = v
	return &csi.CreateVolumeResponse{Volume: v}, nil
}

func (c *testController) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, v := range c.vols {
		if v.GetVolumeId() == req.GetVolumeId() {
			delete(c.vols, name)
		}
	}
	return &csi.DeleteVolumeResponse{}, nil
}
