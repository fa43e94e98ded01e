package csi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/routeros"
)

// StorageClass keys only the controller reads. The node's parser accepts
// and ignores them (ignoredKeys), so a VolumeContext carrying one is still
// valid on a node.
const (
	KeyRDSAddress = "rdsAddress" // the RDS's SSH management address (ParseRDSAddress); default: the controller's
	KeyVolumePath = "volumePath" // directory of backing files; must match the controller's
	// KeyTargetFencing ("true" or "false", default false) turns on target
	// fencing (csi/attach.go): publish lets only the node's host connect
	// to the disk, unpublish revokes it. Kept in the VolumeContext, which
	// ControllerPublishVolume receives.
	KeyTargetFencing = "targetFencing"
)

// Controller defaults.
const (
	DefaultNVMePort   = 4420
	DefaultVolumeSize = 1 << 30 // bytes, when a request gives no capacity
	DefaultPool       = "storage-pool"
)

// ControllerConfig configures the Controller service. Client reaches the
// default RDS (the controller's flags): a StorageClass without rdsAddress
// provisions there, and ids of the preview (bare slots) name volumes there.
type ControllerConfig struct {
	Client *routeros.Client
	// RDSAddress is the SSH address (host or host:port, port 22 if
	// omitted) of the RDS the Client talks to. NewController keeps its
	// canonical form (ParseRDSAddress), the form volume ids carry.
	RDSAddress string
	// VolumeDir is the absolute RouterOS directory of backing files
	// (FilePathFor); a StorageClass volumePath must equal it.
	VolumeDir string
	NQNBase   string // NQNFor(NQNBase, slot)
	Pool      string // mount point of the pool GetCapacity reads ("" = DefaultPool)
	// ListRDS are further RDSs (addresses as ParseRDSAddress takes them)
	// that ListVolumes and an unfiltered ListSnapshots read besides the
	// default one.
	// NewController keeps them canonical, sorted, without the default.
	ListRDS []string
	// Credentials are the controller's own (the Client's): used for a
	// request without secrets on another RDS than the default, and
	// the defaults of a secret's username and knownHosts. Zero: a request
	// without secrets reaches the default RDS only.
	Credentials Credentials
	// MaxSessions bounds concurrent sessions per pooled SSH client
	// (routeros.DefaultMaxSessions if 0); MaxClients bounds the pooled
	// clients (DefaultMaxClients if 0).
	MaxSessions int
	MaxClients  int
	Observer    routeros.Observer // of the pooled clients' commands; may be nil
	// Metrics, if not nil, gives the observers of the RDS at addr (a
	// canonical address) for the pooled clients: of its commands (instead
	// of Observer) and of its SSH connections (metrics.RouterOS.For).
	Metrics func(addr string) (routeros.Observer, routeros.SSHEvents)
	Logger  *slog.Logger
}

// Controller is the CSI Controller service on RDSs driven over SSH. A
// volume id names the RDS and the RouterOS slot of its disk (ID).
type Controller struct {
	csi.UnimplementedControllerServer
	cfg      ControllerConfig
	log      *slog.Logger
	pool     *sshPool
	inflight *inflight // by volume or snapshot id: one operation on each at a time
}

// NewController checks cfg and returns the service.
func NewController(cfg ControllerConfig) (*Controller, error) {
	if cfg.Client == nil {
		return nil, errors.New("csi: controller: no routeros client")
	}
	addr, err := ParseRDSAddress(cfg.RDSAddress)
	if err != nil {
		return nil, fmt.Errorf("csi: controller: default RDS address: %w", err)
	}
	cfg.RDSAddress = addr
	var list []string
	for _, a := range cfg.ListRDS {
		c, err := ParseRDSAddress(a)
		if err != nil {
			return nil, fmt.Errorf("csi: controller: RDS to list: %w", err)
		}
		if c != addr && !slices.Contains(list, c) {
			list = append(list, c)
		}
	}
	slices.Sort(list)
	cfg.ListRDS = list
	if err := routeros.ValidatePath("volume-dir", cfg.VolumeDir); err != nil {
		return nil, fmt.Errorf("csi: controller: %w", err)
	}
	if cfg.Pool == "" {
		cfg.Pool = DefaultPool
	}
	if err := routeros.ValidatePool(cfg.Pool); err != nil {
		return nil, fmt.Errorf("csi: controller: %w", err)
	}
	if _, err := routeros.NQNFor(cfg.NQNBase, routeros.SlotPrefix+strings.Repeat("0", routeros.MaxSlotLen-len(routeros.SlotPrefix))); err != nil {
		return nil, fmt.Errorf("csi: controller: nqn base: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Controller{cfg: cfg, log: log, inflight: newInflight()}
	c.pool = newSSHPool(cfg.MaxClients, func(addr string, cr Credentials) routeros.SSHConfig {
		var events routeros.SSHEvents
		if cfg.Metrics != nil {
			_, events = cfg.Metrics(addr)
		}
		return routeros.SSHConfig{Address: addr, User: cr.User, PrivateKey: cr.PrivateKey, KnownHosts: cr.KnownHosts,
			MaxSessions: cfg.MaxSessions, Logger: log.With("component", "routeros", "rds", addr), Events: events}
	})
	return c, nil
}

// Close closes the pooled SSH clients (not cfg.Client, the caller's).
func (c *Controller) Close() { c.pool.close() }

// controllerCaps are the RPCs implemented below, and no others.
var controllerCaps = []csi.ControllerServiceCapability_RPC_Type{
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
	csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	csi.ControllerServiceCapability_RPC_GET_CAPACITY,
	csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
	csi.ControllerServiceCapability_RPC_GET_VOLUME,
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
	csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
}

// ControllerGetCapabilities lists exactly the implemented RPCs.
func (c *Controller) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	out := &csi.ControllerGetCapabilitiesResponse{}
	for _, t := range controllerCaps {
		out.Capabilities = append(out.Capabilities, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return out, nil
}

// volumePlan is what CreateVolume derives from a request.
type volumePlan struct {
	rds     string // canonical address of the RDS (ParseRDSAddress)
	spec    routeros.DiskSpec
	context map[string]string
}

// plan validates the StorageClass parameters with the node's parser
// (strictly: unknown keys refused) and derives the slot, NQN, file path and
// the VolumeContext, which carries KeyContextVersion.
func (c *Controller) plan(name string, params map[string]string, size int64) (volumePlan, error) {
	slot, err := routeros.SlotFor(name)
	if err != nil {
		return volumePlan{}, status.Error(codes.InvalidArgument, err.Error())
	}
	rds := c.cfg.RDSAddress
	if v, ok := params[KeyRDSAddress]; ok {
		if rds, err = ParseRDSAddress(v); err != nil {
			return volumePlan{}, Status("parameters", err)
		}
	}
	if v, ok := params[KeyVolumePath]; ok && v != c.cfg.VolumeDir {
		return volumePlan{}, status.Errorf(codes.InvalidArgument, "invalid parameter %s=%s: this controller keeps volumes in %s", KeyVolumePath, quoteBounded(v), c.cfg.VolumeDir)
	}
	if _, ok := params[KeyContextVersion]; ok {
		return volumePlan{}, status.Errorf(codes.InvalidArgument, "invalid parameter %s: the controller writes it into every VolumeContext; a StorageClass must not set it", KeyContextVersion)
	}
	if _, ok := params[KeyNQN]; ok {
		return volumePlan{}, status.Errorf(codes.InvalidArgument, "invalid parameter %s: the controller derives the NQN from the volume name; remove it from the StorageClass", KeyNQN)
	}
	nqn, err := routeros.NQNFor(c.cfg.NQNBase, slot)
	if err != nil {
		return volumePlan{}, status.Error(codes.Internal, err.Error())
	}
	vc := map[string]string{}
	for k, v := range params {
		if k == KeyRDSAddress || k == KeyVolumePath || ignoredKey(k) {
			continue
		}
		vc[k] = v
	}
	vc[KeyNQN] = nqn
	if v, ok := params[KeyTargetFencing]; ok {
		if v != "true" && v != "false" {
			return volumePlan{}, status.Errorf(codes.InvalidArgument, "invalid parameter %s=%s: want true or false", KeyTargetFencing, quoteBounded(v))
		}
		vc[KeyTargetFencing] = v
	}
	if vc[KeyNVMeAddress] == "" && vc[KeyNVMeAddresses] == "" {
		host := HostOf(rds)
		if _, err := netip.ParseAddr(host); err != nil {
			return volumePlan{}, status.Errorf(codes.InvalidArgument, "invalid parameter %s: missing: %s is the name %s, and nodes connect to an IP literal; set %s (or %s)", KeyNVMeAddress, KeyRDSAddress, host, KeyNVMeAddress, KeyNVMeAddresses)
		}
		vc[KeyNVMeAddress] = host
	}
	p, err := ParseParams(vc)
	if err != nil {
		return volumePlan{}, Status("parameters", err)
	}
	port := p.Options.Trsvcid
	if port == 0 {
		port = DefaultNVMePort
	}
	vc[KeyNVMePort] = strconv.Itoa(port)
	vc[KeyContextVersion] = ContextVersion // validated above: nodes may ignore keys they do not know
	file, err := routeros.FilePathFor(c.cfg.VolumeDir, slot)
	if err != nil {
		return volumePlan{}, status.Error(codes.Internal, err.Error())
	}
	return volumePlan{rds: rds, spec: routeros.DiskSpec{Slot: slot, FilePath: file, Size: size, Port: port, NQN: nqn}, context: vc}, nil
}

// requestedSize picks the size of a new volume: required_bytes exactly
// (never rounded down), else DefaultVolumeSize bounded by limit_bytes.
func requestedSize(r *csi.CapacityRange) (int64, error) {
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	switch {
	case req < 0 || lim < 0:
		return 0, status.Error(codes.InvalidArgument, "capacity_range: negative bytes")
	case lim > 0 && req > lim:
		return 0, status.Errorf(codes.InvalidArgument, "capacity_range: required_bytes %d above limit_bytes %d", req, lim)
	case req > 0:
		return req, nil
	case lim > 0 && lim < DefaultVolumeSize:
		return lim, nil
	}
	return DefaultVolumeSize, nil
}

// fits reports whether an existing size satisfies a capacity range.
func fits(size int64, r *csi.CapacityRange) bool {
	return size >= r.GetRequiredBytes() && (r.GetLimitBytes() == 0 || size <= r.GetLimitBytes())
}

// checkCapabilities validates every capability with the node's rules.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume_capabilities are required")
	}
	for _, vc := range caps {
		if _, err := checkCapability(vc); err != nil {
			return err
		}
	}
	return nil
}

// CreateVolume creates (or finds, for a retry) the disk of a CSI name.
func (c *Controller) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	size, err := requestedSize(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	p, err := c.plan(req.GetName(), req.GetParameters(), size)
	if err != nil {
		return nil, err
	}
	id, err := FormatVolumeID(p.rds, p.spec.Slot)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	src, err := c.contentSource(req.GetVolumeContentSource(), p.rds)
	if err != nil {
		return nil, err
	}
	if src != "" {
		// A copy's file names its source: the marker that tells a retry
		// from a conflicting request.
		if p.spec.FilePath, err = routeros.BackingPath(c.cfg.VolumeDir, routeros.Backing{Slot: p.spec.Slot, Source: src}); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	cl, err := c.rds(p.rds, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	release, ok := c.inflight.claim(id)
	if !ok {
		return nil, status.Errorf(codes.Aborted, "create volume %s: an operation on it is in progress", id)
	}
	defer release()
	d, err := cl.Disk(ctx, p.spec.Slot)
	switch {
	case errors.Is(err, routeros.ErrNotFound) && src != "":
		if d, err = c.createCopy(ctx, cl, p.spec, src, req.GetCapacityRange()); err != nil {
			return nil, err
		}
	case src != "" && err == nil && d.FilePath == p.spec.FilePath:
		// A copy of this source that an earlier call left unfinished
		// (not grown or not exported): finish it.
		if d, err = c.finishClone(ctx, cl, d, p.spec, req.GetCapacityRange().GetRequiredBytes()); err != nil {
			return nil, err
		}
	case errors.Is(err, routeros.ErrNotFound):
		d, err = cl.CreateDisk(ctx, p.spec)
		if errors.Is(err, routeros.ErrExists) || errors.Is(err, routeros.ErrUnreachable) {
			// Created concurrently, or the answer was lost: read what
			// exists. Nothing there means the add did not run: the
			// create's own error stands (Unavailable: retry).
			createErr := err
			if d, err = cl.Disk(ctx, p.spec.Slot); errors.Is(err, routeros.ErrNotFound) {
				err = createErr
			}
		}
		if err != nil {
			return nil, controllerStatus("create volume "+p.spec.Slot, err)
		}
	case err != nil:
		return nil, controllerStatus("create volume "+p.spec.Slot, err)
	}
	// An existing disk (a retry) must be the one this request describes.
	want := p.spec
	want.Size = 0
	if err := routeros.Matches(d, want); err != nil {
		return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with other parameters: %v", req.GetName(), err)
	}
	if !fits(d.Size, req.GetCapacityRange()) || (src == "" && req.GetCapacityRange().GetRequiredBytes() == 0 && d.Size < size) {
		return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with %d bytes, outside the requested range", req.GetName(), d.Size)
	}
	v := &csi.Volume{VolumeId: id, CapacityBytes: d.Size, VolumeContext: p.context}
	if b, ok := routeros.ParseBacking(c.cfg.VolumeDir, d.FilePath); ok {
		if v.ContentSource, err = contentSourceOf(p.rds, b); err != nil {
			return nil, err
		}
	}
	return &csi.CreateVolumeResponse{Volume: v}, nil
}

// rds returns the client of an RDS (a canonical address) for a request
// with these secrets (ParseCredentials). Without secrets, or with the
// controller's own, the default RDS is cfg.Client, and another RDS is
// reached with the controller's own credentials; with other secrets, a
// client pooled per address and credentials. The secret's key and
// known_hosts are checked here (InvalidArgument); the RDS is contacted at
// the first command. Host keys are always verified.
func (c *Controller) rds(addr string, secrets map[string]string) (*routeros.Client, error) {
	cred, err := ParseCredentials(secrets, c.cfg.Credentials)
	if err != nil {
		return nil, err
	}
	if cred.zero() || cred.equal(c.cfg.Credentials) {
		if addr == c.cfg.RDSAddress {
			return c.cfg.Client, nil
		}
		if c.cfg.Credentials.zero() {
			return nil, status.Errorf(codes.FailedPrecondition, "RDS %s: the request has no secrets and the controller no credentials of its own for another RDS than %s", addr, c.cfg.RDSAddress)
		}
		cred = c.cfg.Credentials
	}
	if _, err := c.pool.get(addr, cred, false); err != nil {
		return nil, controllerStatus("RDS "+addr+" secret", err)
	}
	obs := c.cfg.Observer
	if c.cfg.Metrics != nil {
		obs, _ = c.cfg.Metrics(addr)
	}
	return routeros.NewClient(pooledRunner{pool: c.pool, addr: addr, cred: cred}, obs), nil
}

// volume parses a volume id and returns it, with a Legacy id's RDS set to
// the default, and the client of its RDS. An id that is not one of ours is
// NotFound.
func (c *Controller) volume(op, s string, secrets map[string]string) (ID, *routeros.Client, error) {
	if s == "" {
		return ID{}, nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	id, err := ParseVolumeID(s)
	if err != nil {
		return ID{}, nil, status.Errorf(codes.NotFound, "%s: volume %s: not a volume id of rds-csi", op, quoteBounded(s))
	}
	if id.Legacy {
		id.RDS = c.cfg.RDSAddress
	}
	cl, err := c.rds(id.RDS, secrets)
	if err != nil {
		return ID{}, nil, err
	}
	return id, cl, nil
}

// DeleteVolume removes the disk of a volume id and then its backing file,
// each confirmed by a re-read. An id that is not one this driver writes,
// and names no disk, is already deleted; one that names a disk not created
// by this driver (a slot of another form, bare or with an RDS address) is
// refused.
func (c *Controller) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	s := req.GetVolumeId()
	if s == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	id, cl, err := c.volume("delete volume", s, req.GetSecrets())
	if status.Code(err) == codes.NotFound {
		return c.deleteForeign(ctx, s, req.GetSecrets())
	}
	if err != nil {
		return nil, err
	}
	release, ok := c.inflight.claim(ID{RDS: id.RDS, Slot: id.Slot}.String())
	if !ok {
		return nil, status.Errorf(codes.Aborted, "delete volume %s: an operation on it is in progress", s)
	}
	defer release()
	d, err := cl.Disk(ctx, id.Slot)
	switch {
	case errors.Is(err, routeros.ErrNotFound):
		// The disk is gone; a backing file left by an interrupted delete
		// (<slot>.img, or <slot>.<source>.img for a copy) is removed too.
		if err := c.removeSlotFiles(ctx, cl, id.Slot); err != nil {
			return nil, controllerStatus("delete volume "+s, err)
		}
		return &csi.DeleteVolumeResponse{}, nil
	case err != nil:
		return nil, controllerStatus("delete volume "+s, err)
	}
	if b, ok := routeros.ParseBacking(c.cfg.VolumeDir, d.FilePath); d.Type != "file" || !ok || b.Slot != d.Slot {
		return nil, status.Errorf(codes.FailedPrecondition, "delete volume %s: backing file %q is not a file of ours under %s; refusing to remove it", s, d.FilePath, c.cfg.VolumeDir)
	}
	switch nodes, err := routeros.ParsePublished(d.Comment); {
	case err != nil:
		return nil, controllerStatus("delete volume "+s, err)
	case len(nodes) > 0:
		return nil, status.Errorf(codes.FailedPrecondition, "delete volume %s: published to node %s; unpublish it first", s, strings.Join(nodes, " and "))
	}
	if err := cl.RemoveDisk(ctx, id.Slot); err != nil {
		return nil, controllerStatus("delete volume "+s, err)
	}
	if err := cl.RemoveFile(ctx, c.cfg.VolumeDir, d.FilePath); err != nil {
		return nil, controllerStatus("delete volume "+s+": disk removed, file", err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// deleteForeign answers DeleteVolume for an id this driver never writes.
// When it could still name a disk (a valid slot, bare on the default RDS or
// "@" a canonical address) and that disk exists, the delete is refused,
// never reported done; otherwise nothing can have the id: deleted.
func (c *Controller) deleteForeign(ctx context.Context, s string, secrets map[string]string) (*csi.DeleteVolumeResponse, error) {
	slot, rds, found := strings.Cut(s, "@")
	if !found {
		rds = c.cfg.RDSAddress
	}
	if routeros.ValidateSlot(slot) != nil {
		return &csi.DeleteVolumeResponse{}, nil
	}
	if canon, err := ParseRDSAddress(rds); err != nil || canon != rds {
		return &csi.DeleteVolumeResponse{}, nil
	}
	cl, err := c.rds(rds, secrets)
	if err != nil {
		return nil, err
	}
	switch _, err := cl.Disk(ctx, slot); {
	case errors.Is(err, routeros.ErrNotFound):
		return &csi.DeleteVolumeResponse{}, nil
	case err != nil:
		return nil, controllerStatus("delete volume "+quoteBounded(s), err)
	}
	return nil, status.Errorf(codes.FailedPrecondition, "delete volume %s: disk not created by rds-csi; refusing to remove it", quoteBounded(s))
}

// volumeDisk reads the disk of a volume id: NotFound for an id that is not
// one of ours or names no disk.
func (c *Controller) volumeDisk(ctx context.Context, op, s string, secrets map[string]string) (ID, *routeros.Client, routeros.Disk, error) {
	id, cl, err := c.volume(op, s, secrets)
	if err != nil {
		return ID{}, nil, routeros.Disk{}, err
	}
	d, err := cl.Disk(ctx, id.Slot)
	if err != nil {
		return ID{}, nil, routeros.Disk{}, controllerStatus(op+" "+s, err)
	}
	return id, cl, d, nil
}

// ControllerExpandVolume grows a volume's file to at least required_bytes;
// it never shrinks. A filesystem volume (or one whose capability is not
// given) needs the node to grow its filesystem.
func (c *Controller) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	r := req.GetCapacityRange()
	if r == nil || r.GetRequiredBytes() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "capacity_range.required_bytes is required")
	}
	if r.GetLimitBytes() > 0 && r.GetRequiredBytes() > r.GetLimitBytes() {
		return nil, status.Errorf(codes.InvalidArgument, "capacity_range: required_bytes %d above limit_bytes %d", r.GetRequiredBytes(), r.GetLimitBytes())
	}
	vid, cl, _, err := c.volumeDisk(ctx, "expand volume", id, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	d, err := cl.ResizeDisk(ctx, vid.Slot, r.GetRequiredBytes())
	if err != nil {
		return nil, controllerStatus("expand volume "+id, err)
	}
	if r.GetLimitBytes() > 0 && d.Size > r.GetLimitBytes() {
		return nil, status.Errorf(codes.OutOfRange, "expand volume %s: already %d bytes, above limit_bytes %d (volumes never shrink)", id, d.Size, r.GetLimitBytes())
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: d.Size,
		NodeExpansionRequired: req.GetVolumeCapability().GetBlock() == nil}, nil
}

// GetCapacity answers the pool's free space in bytes.
func (c *Controller) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	for _, vc := range req.GetVolumeCapabilities() {
		if _, err := checkCapability(vc); err != nil {
			return nil, err
		}
	}
	rds := c.cfg.RDSAddress
	if len(req.GetParameters()) > 0 {
		p, err := c.plan("capacity", req.GetParameters(), 1)
		if err != nil {
			return nil, err
		}
		rds = p.rds
	}
	// GetCapacity carries no secrets: the controller's own credentials
	// (the default RDS, or another one with the same user and key).
	cl, err := c.rds(rds, nil)
	if err != nil {
		return nil, err
	}
	p, err := cl.Pool(ctx, c.cfg.Pool)
	if err != nil {
		return nil, controllerStatus("get capacity", err)
	}
	return &csi.GetCapacityResponse{AvailableCapacity: p.Free}, nil
}

// ListVolumes lists this driver's volumes on the default RDS and every RDS
// of ControllerConfig.ListRDS (ListVolumes carries no secrets and names no
// RDS: the controller knows no others), with the controller's own
// credentials, ordered by volume id. An RDS that cannot be read fails the
// call (a list that silently left one out would page wrongly). The
// starting_token is the last volume id of the previous page: the next page
// starts after it in the order of ids across all RDSs read, so volumes
// created or deleted between pages, or a token whose volume is gone, never
// make a page skip or repeat one that stayed.
func (c *Controller) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	tok := req.GetStartingToken()
	if tok != "" {
		id, err := ParseVolumeID(tok)
		if err != nil || id.Legacy || !slices.Contains(c.listRDS(), id.RDS) {
			return nil, status.Errorf(codes.Aborted, "starting_token %s is not one this driver returned", quoteBounded(tok))
		}
	}
	sizes := map[string]int64{} // volume id -> size
	for _, rds := range c.listRDS() {
		cl, err := c.rds(rds, nil)
		if err != nil {
			return nil, err
		}
		disks, err := cl.Disks(ctx, routeros.SlotPrefix)
		if err != nil {
			return nil, controllerStatus("list volumes on "+rds, err)
		}
		for _, d := range disks {
			if !routeros.IsVolumeSlot(d.Slot) {
				continue
			}
			id, err := FormatVolumeID(rds, d.Slot)
			if err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			}
			sizes[id] = d.Size
		}
	}
	sorted := slices.Sorted(maps.Keys(sizes))
	start := 0
	if tok != "" {
		start, _ = slices.BinarySearch(sorted, tok)
		if start < len(sorted) && sorted[start] == tok {
			start++
		}
	}
	out := &csi.ListVolumesResponse{}
	for _, id := range sorted[start:] {
		if req.GetMaxEntries() > 0 && len(out.Entries) == int(req.GetMaxEntries()) {
			out.NextToken = out.Entries[len(out.Entries)-1].GetVolume().GetVolumeId()
			break
		}
		out.Entries = append(out.Entries, &csi.ListVolumesResponse_Entry{Volume: &csi.Volume{VolumeId: id, CapacityBytes: sizes[id]}})
	}
	return out, nil
}

// ControllerGetVolume reads one volume: its id and size. Its status is
// empty: the publish record holds node names, not node ids, so no
// published_node_ids are reported (LIST_VOLUMES_PUBLISHED_NODES is not
// advertised), and no volume condition is reported.
func (c *Controller) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	// ControllerGetVolume carries no secrets: the controller's own.
	_, _, d, err := c.volumeDisk(ctx, "get volume", req.GetVolumeId(), nil)
	if err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeResponse{Volume: &csi.Volume{VolumeId: req.GetVolumeId(), CapacityBytes: d.Size},
		Status: &csi.ControllerGetVolumeResponse_VolumeStatus{}}, nil
}

// ValidateVolumeCapabilities confirms capabilities the node supports for
// an existing volume; parameters are checked with the node's parser.
func (c *Controller) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume_capabilities are required")
	}
	if _, _, _, err := c.volumeDisk(ctx, "validate volume capabilities", req.GetVolumeId(), req.GetSecrets()); err != nil {
		return nil, err
	}
	for _, vc := range req.GetVolumeCapabilities() {
		if _, err := checkCapability(vc); err != nil {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
		}
	}
	if vctx := req.GetVolumeContext(); len(vctx) > 0 {
		if _, err := ParseParams(vctx); err != nil {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
		}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// ControllerIdentity is the Identity of the controller: it advertises
// CONTROLLER_SERVICE, and no topology (every node may reach the RDS).
type ControllerIdentity struct {
	*Identity
}

// GetPluginCapabilities advertises CONTROLLER_SERVICE and online expansion.
func (s ControllerIdentity) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{
		{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}}},
		{Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{Type: csi.PluginCapability_VolumeExpansion_ONLINE}}},
	}}, nil
}

// NewControllerServer returns a gRPC server with the Identity and
// Controller services and the logging interceptor.
func NewControllerServer(log *slog.Logger, id ControllerIdentity, ctrl *Controller) *grpc.Server {
	s := NewServer(log, id, nil)
	csi.RegisterControllerServer(s, ctrl)
	return s
}

// routerosRules map routeros sentinels to codes, most specific first.
var routerosRules = []codeRule{
	{routeros.ErrInvalidArgument, codes.InvalidArgument, ""},
	{routeros.ErrNotOwned, codes.FailedPrecondition, " (not created by rds-csi; never changed)"},
	{routeros.ErrInUse, codes.FailedPrecondition, ""},
	{routeros.ErrNotFound, codes.NotFound, ""},
	{routeros.ErrExists, codes.AlreadyExists, ""},
	{routeros.ErrNoSpace, codes.ResourceExhausted, ""},
	{routeros.ErrAuth, codes.FailedPrecondition, " (check the RDS user and key: the StorageClass's secret, or the controller's --rds-user and --rds-key-file)"},
	{routeros.ErrHostKey, codes.FailedPrecondition, " (check known_hosts: the secret's knownHosts, or the controller's --rds-known-hosts-file)"},
	{routeros.ErrBusy, codes.Unavailable, ""},
	{routeros.ErrUnreachable, codes.Unavailable, ""},
	{routeros.ErrUnconfirmed, codes.Internal, ""},
	{routeros.ErrUnexpectedOutput, codes.Internal, ""},
	{routeros.ErrUnknown, codes.Internal, ""},
}

// controllerStatus converts a routeros error into a status with its code.
func controllerStatus(op string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, r := range routerosRules {
		if errors.Is(err, r.target) {
			return status.Error(r.code, op+": "+err.Error()+r.hint)
		}
	}
	return Status(op, err)
}

// HostOf returns the host of a host:port address, or the address itself
// when it has no port.
func HostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
