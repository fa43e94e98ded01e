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
// the real Node and Identity services over unix sockets, twice: once over
// a fake daemon (fakeVolumes) and once over the real daemon (daemon.New with
// a connector that plays the kernel on a synthetic sysfs tree, see
// realdaemon_test.go), so the fake and the daemon cannot drift apart
// unnoticed. The mount layer is faked in both. A test-only controller on a
// second socket stands in for the rds-csi controller: its CreateVolume runs
// the StorageClass parameters through ParseParams and returns them, plus the
// volume's NQN, as the VolumeContext, so the node sees exactly what the real
// controller would pass.
//
// The node-only Identity advertises no CONTROLLER_SERVICE (the controller
// does that on its own socket); csi-sanity asks the node socket, so the
// test wraps the Identity to advertise it, which lets the end-to-end specs
// ("should work", "should be idempotent") run instead of being skipped.
//
// Ginkgo runs one suite per process, so both daemons' specs are registered
// in one suite, each under a container naming its daemon.
func TestSanity(t *testing.T) {
	daemons := []string{"fake daemon", "real daemon"}
	nodes := map[string]*Node{
		"fake daemon": newTestEnv(t).node,
		"real daemon": newRealEnv(t).node,
	}
	var finalize []func()
	for _, name := range daemons {
		cfg := sanityConfig(t, nodes[name])
		ginkgo.Describe(name, func() {
			finalize = append(finalize, sanity.GinkgoTest(cfg).Finalize)
		})
	}

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
	focus := []string{"Node Service", "Identity Service"}
	suite.FocusStrings = focus
	reporter.Verbose = testing.Verbose()
	ok := ginkgo.RunSpecs(t, "rds-csi node sanity", suite, reporter)
	for _, f := range finalize {
		f()
	}
	if !ok {
		t.Fatal("csi-sanity failed")
	}

	mu.Lock()
	defer mu.Unlock()
	type counts struct{ passed, failed, skipped int }
	per := map[string]*counts{}
	for _, name := range daemons {
		per[name] = &counts{}
	}
	for _, s := range report.SpecReports {
		h := s.ContainerHierarchyTexts
		if s.LeafNodeType != types.NodeTypeIt || len(h) < 2 || per[h[0]] == nil || !slices.Contains(focus, h[1]) {
			continue // not a node or identity spec
		}
		c := per[h[0]]
		switch {
		case s.State.Is(types.SpecStatePassed):
			c.passed++
		case s.State.Is(types.SpecStateSkipped | types.SpecStatePending):
			c.skipped++
		case s.State.Is(types.SpecStateFailureStates):
			c.failed++
		}
	}
	for _, name := range daemons {
		c := per[name]
		t.Logf("csi-sanity node and identity specs over the %s: %d passed, %d failed, %d skipped", name, c.passed, c.failed, c.skipped)
		if c.passed == 0 || c.failed > 0 {
			t.Errorf("csi-sanity over the %s executed %d specs successfully and %d failed; want > 0 and 0", name, c.passed, c.failed)
		}
		// Every applicable node spec runs: only the single-node-multi-writer
		// one is skipped (the plugin does not advertise that capability).
		if c.skipped > 1 {
			t.Errorf("csi-sanity over the %s: %d specs skipped, want at most 1", name, c.skipped)
		}
	}
	if per[daemons[0]].passed != per[daemons[1]].passed {
		t.Errorf("csi-sanity passed %d specs over the %s and %d over the %s: want the same specs over both",
			per[daemons[0]].passed, daemons[0], per[daemons[1]].passed, daemons[1])
	}
}

// sanityConfig serves node on a unix socket beside a test controller and
// returns the csi-sanity configuration for them.
func sanityConfig(t *testing.T, node *Node) *sanity.TestConfig {
	dir := t.TempDir()
	nodeSock := filepath.Join(dir, "node.sock")
	ctrlSock := filepath.Join(dir, "ctrl.sock")
	nodeSrv := NewServer(discardLogger(), sanityIdentity{NewIdentity("", "v0.0.0-test", nil)}, node)
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
	return &cfg
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
