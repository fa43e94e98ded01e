package csi

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// DefaultDriverName is the CSI driver name (GetPluginInfo).
const DefaultDriverName = "rds.csi.srvlab.io"

// Identity is the CSI Identity service.
type Identity struct {
	csi.UnimplementedIdentityServer

	name    string
	version string
	ready   func() bool
}

// NewIdentity returns the Identity service for the driver name ("" means
// DefaultDriverName) and version. ready reports whether the plugin can
// serve (the daemon's first reconcile is done); nil means always ready.
func NewIdentity(name, version string, ready func() bool) *Identity {
	if name == "" {
		name = DefaultDriverName
	}
	if version == "" {
		version = "dev"
	}
	return &Identity{name: name, version: version, ready: ready}
}

// GetPluginInfo returns the driver name and version.
func (s *Identity) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	if s.name == "" {
		return nil, status.Error(codes.Unavailable, "driver name not configured")
	}
	return &csi.GetPluginInfoResponse{Name: s.name, VendorVersion: s.version}, nil
}

// GetPluginCapabilities returns no capabilities: this is a node-only plugin
// (the controller service is served by the rds-csi controller, which
// advertises CONTROLLER_SERVICE itself), and NVMe/TCP volumes have no
// topology constraints (every node may reach the target).
func (s *Identity) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{}, nil
}

// Probe reports ready=false until the daemon has finished its first
// reconcile. It never fails: the plugin is alive while it answers.
func (s *Identity) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	ready := s.ready == nil || s.ready()
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(ready)}, nil
}
