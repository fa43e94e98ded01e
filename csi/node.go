package csi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"

	"github.com/srvlab/rds-csi/daemon"
)

// Volumes is what the node service needs from the daemon. *daemon.Daemon
// implements it.
//
// Attach is idempotent per volume id: a repeated Attach of a volume the
// daemon already knows returns its attachment (updating the controller's
// timeouts if the spec changed them). Detach of a volume the daemon does
// not know returns an error matching daemon.ErrUnknownVolume.
type Volumes interface {
	Attach(ctx context.Context, spec daemon.Spec) (daemon.Attachment, error)
	MarkStaged(volumeID, stagingPath string, block bool) error
	Detach(ctx context.Context, volumeID string) error
	VolumeHealth(volumeID string) (daemon.VolumeHealth, error)
	StorageHealth() []daemon.TargetHealth
}

// BlockDeviceFile is the file inside a block volume's staging directory
// that the volume's device node is bind-mounted onto. NodePublishVolume
// bind-mounts it onto the target; the mount table keeps it across restarts.
const BlockDeviceFile = "rds-csi-device"

// NodeConfig configures a Node. NodeID, Host and Volumes are required.
type NodeConfig struct {
	NodeID  string
	Host    HostIdentity
	Volumes Volumes

	// Mounter and Exec are the mount layer; defaults mount.New("") and
	// NewExec() (children die with the driver). Exec runs blkid, mkfs, fsck, resize2fs, xfs_growfs.
	Mounter mount.Interface
	Exec    utilexec.Interface
	// Stats reads filesystem usage and device sizes; default the operating
	// system's (statfs, BLKGETSIZE64).
	Stats Stats
	// Rescanner makes the kernel re-read a namespace's size
	// (NodeExpandVolume). Required for expansion; nil refuses it.
	Rescanner Rescanner
	// ExpandWait bounds the wait for a rescanned device to reach the
	// requested size; default 15s.
	ExpandWait time.Duration
	// DetachTimeout bounds the rollback Detach after a failed stage; default 30s.
	DetachTimeout time.Duration
	// MaxVolumesPerNode is reported by NodeGetInfo; 0 means no limit.
	MaxVolumesPerNode int64
	Logger            *slog.Logger
}

// Node is the CSI Node service.
type Node struct {
	csi.UnimplementedNodeServer

	cfg      NodeConfig
	vols     Volumes
	mounter  *mount.SafeFormatAndMount
	resizer  resizer
	stats    Stats
	log      *slog.Logger
	inflight *inflight
}

// resizer grows a mounted filesystem (mount.ResizeFs).
type resizer interface {
	Resize(devicePath, deviceMountPath string) (bool, error)
}

// NewNode returns the Node service.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("csi: node id is required")
	}
	if cfg.Volumes == nil {
		return nil, errors.New("csi: Volumes is required")
	}
	if err := cfg.Host.Validate(); err != nil {
		return nil, err
	}
	if cfg.Mounter == nil {
		cfg.Mounter = mount.New("")
	}
	if cfg.Exec == nil {
		cfg.Exec = NewExec()
	}
	if cfg.Stats == nil {
		cfg.Stats = OSStats{}
	}
	cfg.ExpandWait = cmp.Or(cfg.ExpandWait, 15*time.Second)
	cfg.DetachTimeout = cmp.Or(cfg.DetachTimeout, 30*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Node{
		cfg:      cfg,
		vols:     cfg.Volumes,
		mounter:  mount.NewSafeFormatAndMount(cfg.Mounter, cfg.Exec),
		resizer:  mount.NewResizeFs(cfg.Exec),
		stats:    cfg.Stats,
		log:      cfg.Logger,
		inflight: newInflight(),
	}, nil
}

// claim takes the per-volume guard or returns codes.Aborted.
func (n *Node) claim(volumeID string) (func(), error) {
	release, ok := n.inflight.claim(volumeID)
	if !ok {
		return nil, status.Errorf(codes.Aborted, "an operation on volume %s is already in progress", volumeID)
	}
	return release, nil
}

// NodeGetCapabilities lists the node RPCs this plugin implements.
func (n *Node) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	types := []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.NodeServiceCapability_RPC_GET_STORAGE_HEALTH,
	}
	out := make([]*csi.NodeServiceCapability, 0, len(types))
	for _, t := range types {
		out = append(out, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}},
		})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: out}, nil
}

// NodeGetInfo returns the node id. NVMe/TCP volumes have no topology.
func (n *Node) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: n.cfg.NodeID, MaxVolumesPerNode: n.cfg.MaxVolumesPerNode}, nil
}

// volumeCap is a checked volume capability.
type volumeCap struct {
	block      bool
	fsType     string // capability's fs_type ("" if none)
	mountFlags []string
	readOnly   bool // a reader-only access mode
}

// checkCapability validates a volume capability: an access type (block or
// mount), a known access mode, a supported filesystem, and no multi-node
// writer mode for a filesystem (ext4 and xfs are not cluster filesystems).
func checkCapability(c *csi.VolumeCapability) (volumeCap, error) {
	if c == nil {
		return volumeCap{}, status.Error(codes.InvalidArgument, "volume_capability is required")
	}
	mode := c.GetAccessMode().GetMode()
	if mode == csi.VolumeCapability_AccessMode_UNKNOWN {
		return volumeCap{}, status.Error(codes.InvalidArgument, "volume_capability.access_mode is required")
	}
	if _, ok := csi.VolumeCapability_AccessMode_Mode_name[int32(mode)]; !ok {
		return volumeCap{}, status.Errorf(codes.InvalidArgument, "volume_capability.access_mode %d is not known", mode)
	}
	vc := volumeCap{readOnly: mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY ||
		mode == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY}
	switch {
	case c.GetBlock() != nil:
		vc.block = true
	case c.GetMount() != nil:
		m := c.GetMount()
		if m.GetFsType() != "" && !slices.Contains(FSTypes, m.GetFsType()) {
			return volumeCap{}, status.Errorf(codes.InvalidArgument, "volume_capability.mount.fs_type %q is not supported: want ext4 or xfs", m.GetFsType())
		}
		if mode == csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER || mode == csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER {
			return volumeCap{}, status.Errorf(codes.FailedPrecondition, "access mode %s needs a cluster filesystem; ext4 and xfs volumes are single-node (use a block volume)", mode)
		}
		for _, f := range m.GetMountFlags() {
			if !mountOptionOK(f) {
				return volumeCap{}, status.Errorf(codes.InvalidArgument, "volume_capability.mount.mount_flags: %q holds whitespace, quotes or control characters", f)
			}
		}
		vc.fsType, vc.mountFlags = m.GetFsType(), m.GetMountFlags()
	default:
		return volumeCap{}, status.Error(codes.InvalidArgument, "volume_capability needs an access type (block or mount)")
	}
	return vc, nil
}

// requirePath checks a required, absolute path field.
func requirePath(field, p string) error {
	switch {
	case p == "":
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	case !filepath.IsAbs(p):
		return status.Errorf(codes.InvalidArgument, "%s %q must be an absolute path", field, p)
	case strings.ContainsRune(p, 0):
		return status.Errorf(codes.InvalidArgument, "%s holds a NUL byte", field)
	}
	return nil
}

func requireVolumeID(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "volume_id is required")
	}
	return nil
}

// isMountPoint reports whether path is a mount point (bind mounts on the
// same filesystem included); a missing path is not.
func (n *Node) isMountPoint(path string) (bool, error) {
	mounted, err := n.mounter.IsMountPoint(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return mounted, err
}

// mountEntry returns the mount table entry for path.
func (n *Node) mountEntry(path string) (mount.MountPoint, bool, error) {
	mps, err := n.mounter.List()
	if err != nil {
		return mount.MountPoint{}, false, err
	}
	abs, err := filepath.EvalSymlinks(path)
	if err != nil {
		abs = path
	}
	for i := len(mps) - 1; i >= 0; i-- { // the last mount on a path is the visible one
		if mps[i].Path == abs || mps[i].Path == path {
			return mps[i], true, nil
		}
	}
	return mount.MountPoint{}, false, nil
}

// mountedDevice reports whether the mount at path serves device: the mount
// table names it, or (for a bind-mounted device node, which the table shows
// as its devtmpfs) both are the same device number.
func (n *Node) mountedDevice(path, device string) (bool, error) {
	mp, ok, err := n.mountEntry(path)
	if err != nil || !ok {
		return false, err
	}
	if mp.Device == device {
		return true, nil
	}
	if a, err := filepath.EvalSymlinks(mp.Device); err == nil {
		if b, err := filepath.EvalSymlinks(device); err == nil && a == b {
			return true, nil
		}
	}
	return sameDeviceNode(path, device), nil
}

// hasOption reports whether opts holds o.
func hasOption(opts []string, o string) bool { return slices.Contains(opts, o) }

// mergeOptions appends the items of more that opts lacks.
func mergeOptions(opts []string, more ...string) []string {
	out := slices.Clone(opts)
	for _, o := range more {
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// errorAttr logs an error value.
func errorAttr(err error) slog.Attr { return slog.String("error", err.Error()) }

// internal wraps a local failure (mount, file system) as codes.Internal.
func internal(format string, args ...any) error {
	return status.Error(codes.Internal, fmt.Sprintf(format, args...))
}

// ensureDir creates a directory (and parents).
func ensureDir(p string) error {
	if err := os.MkdirAll(p, 0o750); err != nil {
		return internal("create %s: %v", p, err)
	}
	return nil
}

// ensureFile creates an empty regular file (and its parent directories) as
// a bind-mount target.
func ensureFile(p string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return internal("create %s: %v", filepath.Dir(p), err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o640)
	if err != nil {
		return internal("create %s: %v", p, err)
	}
	return f.Close()
}
