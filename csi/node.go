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
	"github.com/srvlab/rds-csi/internal/mountinfo"
)

// Volumes is what the node service needs from the daemon. *daemon.Daemon
// implements it.
//
// Attach is idempotent per volume id: a repeated Attach of a volume the
// daemon already knows returns its attachment (updating the controller's
// timeouts if the spec changed them). Detach of a volume the daemon does
// not know succeeds (nil): unstage and the stage's rollback are idempotent,
// and no caller has to tell "gone" from "done".
//
// Volume returns what the daemon records about a volume (its device, and
// once MarkStaged, its staging path and access type); the node acts only on
// mounts it can prove are the volume's by this record.
type Volumes interface {
	Attach(ctx context.Context, spec daemon.Spec) (daemon.Attachment, error)
	MarkStaged(volumeID, stagingPath string, block bool) error
	Volume(volumeID string) (daemon.VolumeInfo, bool)
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
	// NodeID is the node's name (--node-id: the Kubernetes node name);
	// NodeGetInfo reports it with the host NQN (FormatNodeID).
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
	nodeID   string // NodeGetInfo's: FormatNodeID
	vols     Volumes
	mounter  *mount.SafeFormatAndMount
	resizer  resizer
	stats    Stats
	log      *slog.Logger
	inflight *inflight
	// mountTable reads the mount table, paths decoded; default
	// mountinfo.Read of mountinfo.SelfPath (tests set a fake's).
	mountTable func() ([]mountinfo.Entry, error)
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
	id, err := FormatNodeID(cfg.NodeID, cfg.Host.NQN)
	if err != nil {
		return nil, fmt.Errorf("csi: %w", err)
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
		nodeID:   id,
		cfg:      cfg,
		vols:     cfg.Volumes,
		mounter:  mount.NewSafeFormatAndMount(cfg.Mounter, cfg.Exec),
		resizer:  mount.NewResizeFs(cfg.Exec),
		stats:    cfg.Stats,
		log:      cfg.Logger,
		inflight: newInflight(),
		mountTable: func() ([]mountinfo.Entry, error) {
			return mountinfo.Read(mountinfo.SelfPath)
		},
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

// NodeGetInfo returns the node id: the node name and the host NQN
// (FormatNodeID), from which the controller learns whom to grant a volume.
// NVMe/TCP volumes have no topology.
func (n *Node) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: n.nodeID, MaxVolumesPerNode: n.cfg.MaxVolumesPerNode}, nil
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
			return volumeCap{}, status.Errorf(codes.InvalidArgument, "volume_capability.mount.fs_type %s is not supported: want ext4 or xfs", quoteBounded(m.GetFsType()))
		}
		if mode == csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER || mode == csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER {
			return volumeCap{}, status.Errorf(codes.FailedPrecondition, "access mode %s needs a cluster filesystem; ext4 and xfs volumes are single-node (use a block volume)", mode)
		}
		if n := flagsSize(m.GetMountFlags()); n > MaxMountFlagsBytes {
			return volumeCap{}, status.Errorf(codes.InvalidArgument, "volume_capability.mount.mount_flags: %d flags of %d bytes: the CSI spec allows at most %d bytes", len(m.GetMountFlags()), n, MaxMountFlagsBytes)
		}
		for _, f := range m.GetMountFlags() {
			if !mountOptionOK(f) {
				return volumeCap{}, status.Errorf(codes.InvalidArgument, "volume_capability.mount.mount_flags: %s holds whitespace, quotes or control characters", quoteBounded(f))
			}
		}
		vc.fsType, vc.mountFlags = m.GetFsType(), m.GetMountFlags()
	default:
		return volumeCap{}, status.Error(codes.InvalidArgument, "volume_capability needs an access type (block or mount)")
	}
	return vc, nil
}

// MaxMountFlagsBytes bounds a capability's mount_flags, all flags together:
// the CSI spec's own bound on that field (4 KiB).
const MaxMountFlagsBytes = 4096

// MaxVolumeIDBytes bounds a volume id (it is logged, recorded in the
// registry and the state file, and quoted in messages). The CSI spec's
// general bound on a string is 128 bytes; Kubernetes does not check a PV's
// volumeHandle against it, so the bound here is generous.
const MaxVolumeIDBytes = 4096

// pathMax is Linux's PATH_MAX: a path name with its terminating NUL.
const pathMax = 4096

// flagsSize is the total size of a list of flags: the bytes of its strings.
func flagsSize(flags []string) int {
	n := 0
	for _, f := range flags {
		n += len(f)
	}
	return n
}

// requirePath checks a required, absolute path field no longer than PATH_MAX.
func requirePath(field, p string) error {
	switch {
	case p == "":
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	case len(p) >= pathMax:
		return status.Errorf(codes.InvalidArgument, "%s %s is longer than Linux allows a path (PATH_MAX %d, with its NUL)", field, quoteBounded(p), pathMax)
	case !filepath.IsAbs(p):
		return status.Errorf(codes.InvalidArgument, "%s %s must be an absolute path", field, quoteBounded(p))
	case strings.ContainsRune(p, 0):
		return status.Errorf(codes.InvalidArgument, "%s holds a NUL byte", field)
	}
	return nil
}

func requireVolumeID(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if len(id) > MaxVolumeIDBytes {
		return status.Errorf(codes.InvalidArgument, "volume_id %s: at most %d bytes", quoteBounded(id), MaxVolumeIDBytes)
	}
	return nil
}

// isMountPoint reports whether path is a mount point (bind mounts on the
// same filesystem included); a missing path is not. A "no" from mount-utils
// is checked against the decoded mount table: where openat2(2) is refused
// and stat(2) cannot see a bind mount, mount-utils answers from its own
// reading of the table, which leaves escapes in (a path with a space is
// never found there).
func (n *Node) isMountPoint(path string) (bool, error) {
	mounted, err := n.mounter.IsMountPoint(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil || mounted {
		return mounted, err
	}
	_, listed, err := n.mountEntry(path)
	return listed, err
}

// mountEntry returns the mount table entry for path, read through package
// mountinfo (the one parser that decodes the kernel's escapes: mount-utils'
// List leaves "\040" in a path with a space).
func (n *Node) mountEntry(path string) (mountinfo.Entry, bool, error) {
	mps, err := n.mountTable()
	if err != nil {
		return mountinfo.Entry{}, false, err
	}
	// The mount table holds resolved paths; resolve the parent only, never
	// a link at path itself.
	abs := path
	if dir, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		abs = filepath.Join(dir, filepath.Base(path))
	}
	for i := len(mps) - 1; i >= 0; i-- { // the last mount on a path is the visible one
		if mps[i].MountPoint == abs || mps[i].MountPoint == path {
			return mps[i], true, nil
		}
	}
	return mountinfo.Entry{}, false, nil
}

// mountedDevice reports whether the mount at path serves device: the disk
// the mount table names for it (its source, or the root of a device node
// bound from devtmpfs: mountinfo.Entry.Disk) is device, or both are the
// same device node.
func (n *Node) mountedDevice(path, device string) (bool, error) {
	mp, ok, err := n.mountEntry(path)
	if err != nil || !ok {
		return false, err
	}
	if name, _ := mp.Disk(); name != "" && "/dev/"+name == device {
		return true, nil
	}
	if a, err := filepath.EvalSymlinks(mp.Source); err == nil {
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
	seen := make(map[string]struct{}, len(opts)+len(more)) // a set: linear, however many items
	for _, o := range opts {
		seen[o] = struct{}{}
	}
	for _, o := range more {
		if _, ok := seen[o]; !ok {
			seen[o] = struct{}{}
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
