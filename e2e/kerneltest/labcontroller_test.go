//go:build linux

package kerneltest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/e2e/nvmet"
)

// labController is a test-only CSI Controller (and Identity) whose
// CreateVolume makes a real volume: a memory-backed null_blk exported by the
// nvmet target as a new subsystem on a shared loopback port, returned with
// the VolumeContext the node plugin parses.
type labController struct {
	csipb.UnimplementedControllerServer
	csipb.UnimplementedIdentityServer
	tg   *nvmet.Target
	port int

	mu     sync.Mutex
	byName map[string]*csipb.Volume
	byID   map[string]labVolume
	n      int
}

type labVolume struct {
	nqn  string
	loop nvmet.Loop
}

func startLabController(t *testing.T, tg *nvmet.Target) string {
	t.Helper()
	c := &labController{tg: tg, port: nextPort(), byName: map[string]*csipb.Volume{}, byID: map[string]labVolume{}}
	must(t, tg.AddPort(nvmet.Port{ID: c.port, Traddr: "127.0.0.1", Trsvcid: c.port}))
	sock := filepath.Join(t.TempDir(), "controller.sock")
	l, err := net.Listen("unix", sock)
	must(t, err)
	srv := grpc.NewServer()
	csipb.RegisterControllerServer(srv, c)
	csipb.RegisterIdentityServer(srv, c)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return "unix://" + sock
}

func (c *labController) GetPluginInfo(context.Context, *csipb.GetPluginInfoRequest) (*csipb.GetPluginInfoResponse, error) {
	return &csipb.GetPluginInfoResponse{Name: "lab.controller.srvlab.io", VendorVersion: "0.0.0"}, nil
}

func (c *labController) GetPluginCapabilities(context.Context, *csipb.GetPluginCapabilitiesRequest) (*csipb.GetPluginCapabilitiesResponse, error) {
	return &csipb.GetPluginCapabilitiesResponse{Capabilities: []*csipb.PluginCapability{{
		Type: &csipb.PluginCapability_Service_{Service: &csipb.PluginCapability_Service{Type: csipb.PluginCapability_Service_CONTROLLER_SERVICE}},
	}}}, nil
}

func (c *labController) Probe(context.Context, *csipb.ProbeRequest) (*csipb.ProbeResponse, error) {
	return &csipb.ProbeResponse{}, nil
}

func (c *labController) ControllerGetCapabilities(context.Context, *csipb.ControllerGetCapabilitiesRequest) (*csipb.ControllerGetCapabilitiesResponse, error) {
	return &csipb.ControllerGetCapabilitiesResponse{Capabilities: []*csipb.ControllerServiceCapability{{
		Type: &csipb.ControllerServiceCapability_Rpc{Rpc: &csipb.ControllerServiceCapability_RPC{Type: csipb.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME}},
	}, {
		Type: &csipb.ControllerServiceCapability_Rpc{Rpc: &csipb.ControllerServiceCapability_RPC{Type: csipb.ControllerServiceCapability_RPC_EXPAND_VOLUME}},
	}}}, nil
}

func (c *labController) CreateVolume(_ context.Context, req *csipb.CreateVolumeRequest) (*csipb.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities required")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	size := req.GetCapacityRange().GetRequiredBytes()
	if size == 0 {
		size = 64 << 20
	}
	mb := int((size + (1<<20 - 1)) >> 20)
	if v, ok := c.byName[req.GetName()]; ok {
		if v.CapacityBytes != int64(mb)<<20 {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with %d bytes", req.GetName(), v.CapacityBytes)
		}
		return &csipb.CreateVolumeResponse{Volume: v}, nil
	}
	// A sparse file on the guest's tmpfs behind a loop device, so that
	// ControllerExpandVolume can grow it the way an RDS grows a file disk.
	loop, err := c.tg.LoopFile("/tmp", mb)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	c.n++
	id := fmt.Sprintf("lab-vol-%d", c.n)
	nqn := uniqueNQN(id)
	for _, err := range []error{
		c.tg.AddSubsystem(nvmet.Subsystem{NQN: nqn, AllowAnyHost: true}),
		c.tg.AddNamespace(nqn, nvmet.Namespace{NSID: 1, Device: loop.Device}),
		c.tg.Link(c.port, nqn),
	} {
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	v := &csipb.Volume{
		VolumeId:      id,
		CapacityBytes: int64(mb) << 20,
		VolumeContext: map[string]string{
			"nvmeAddress":    "127.0.0.1",
			"nvmePort":       strconv.Itoa(c.port),
			"nqn":            nqn,
			"ctrlLossTmo":    "-1",
			"reconnectDelay": "1",
		},
	}
	c.byName[req.GetName()] = v
	c.byID[id] = labVolume{nqn: nqn, loop: loop}
	return &csipb.CreateVolumeResponse{Volume: v}, nil
}

func (c *labController) DeleteVolume(_ context.Context, req *csipb.DeleteVolumeRequest) (*csipb.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id required")
	}
	// The subsystems stay until the test's target cleanup; nothing to do.
	return &csipb.DeleteVolumeResponse{}, nil
}

func (c *labController) ValidateVolumeCapabilities(_ context.Context, req *csipb.ValidateVolumeCapabilitiesRequest) (*csipb.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" || len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume id and capabilities required")
	}
	c.mu.Lock()
	_, ok := c.byID[req.GetVolumeId()]
	c.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no volume %s", req.GetVolumeId())
	}
	return &csipb.ValidateVolumeCapabilitiesResponse{Confirmed: &csipb.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeCapabilities: req.GetVolumeCapabilities(),
	}}, nil
}

// ControllerExpandVolume grows the volume's file and tells the target, which
// tells connected hosts; the node plugin then rescans and grows the filesystem.
func (c *labController) ControllerExpandVolume(_ context.Context, req *csipb.ControllerExpandVolumeRequest) (*csipb.ControllerExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetCapacityRange() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume id and capacity range required")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.byID[req.GetVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no volume %s", req.GetVolumeId())
	}
	size := req.GetCapacityRange().GetRequiredBytes()
	mb := int((size + (1<<20 - 1)) >> 20)
	if err := c.tg.Grow(v.nqn, 1, v.loop, mb); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csipb.ControllerExpandVolumeResponse{CapacityBytes: int64(mb) << 20, NodeExpansionRequired: true}, nil
}

// rdsCSIBinary is the host path of the rds-csi binary the harness built (the
// daemon runs chrooted into the host root, where that path is valid).
func rdsCSIBinary(t *testing.T) string {
	t.Helper()
	requireLab(t)
	bin := os.Getenv("RDS_CSI_BINARY")
	if bin == "" {
		t.Fatal("RDS_CSI_BINARY not set: the lab harness passes the rds-csi binary's host path")
	}
	return bin
}
