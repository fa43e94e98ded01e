package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/internal/uevent"
	"github.com/srvlab/rds-csi/sysfs"
	"k8s.io/apimachinery/pkg/util/wait"
)

// This file is the seam between the daemon and its callers (the CSI node
// service in package csi, main.go, the metrics collector). Keep it stable.

// Spec is what a volume needs from the kernel: the complete connect options
// (address, port, subsystem NQN, host identity, timeouts) and which
// namespace of the subsystem is the volume.
type Spec struct {
	VolumeID string
	Options  fabrics.Options
	NSID     uint32 // namespace id; 0 means 1
	// ReconnectSpread (seconds, 0..MaxReconnectSpread; 0 is off) spreads
	// the kernel's reconnect timer: the controller is connected (or its
	// timeouts updated) with reconnect_delay = Options.ReconnectDelay plus
	// a per-controller offset in 0..ReconnectSpread derived from the host
	// and the connection, and ctrl_loss_tmo converted so the kernel still
	// gives up no earlier than asked (see Spread). Ignored when
	// Options.ReconnectDelay is unset.
	ReconnectSpread int
	// Paths are every target address of a multipath volume, in order (at
	// most MaxPaths): Paths[0] is the address in Options (its Traddr,
	// HostTraddr and HostIface), and each other path is connected with a
	// copy of Options whose Traddr, HostTraddr and HostIface are the path's. Empty (or one path): the
	// volume has the one path of Options. See Attach.
	Paths []Path
	// IOPolicy, when set, is written to the subsystem's iopolicy (one of
	// sysfs.IOPolicies) once the volume's multipath block device is there,
	// and read back; a policy the running kernel lacks fails the Attach
	// with fabrics.ErrUnsupportedOption. Ignored (with a log line) when
	// native multipath is off.
	IOPolicy string
}

// Path is one target address of a volume: the same subsystem (and port)
// reached at another address, optionally from another source address or
// interface.
type Path struct {
	Traddr     string // target IP literal
	HostTraddr string // source IP literal (host_traddr); "" for none
	HostIface  string // source interface; "" for none
}

// MaxPaths bounds the paths of one volume.
const MaxPaths = 8

// pathOptions returns the connect options of every path of the spec, in
// order (one, Options, when the spec names no paths).
func (s *Spec) pathOptions() []fabrics.Options {
	if len(s.Paths) == 0 {
		return []fabrics.Options{s.Options}
	}
	out := make([]fabrics.Options, len(s.Paths))
	for i, p := range s.Paths {
		o := s.Options
		o.Traddr, o.HostTraddr, o.HostIface = p.Traddr, p.HostTraddr, p.HostIface
		out[i] = o
	}
	return out
}

// Attachment is a volume's controller and block device after Attach.
type Attachment struct {
	Controller string          // "nvme3"
	Device     string          // "/dev/nvme3n1"
	Namespace  sysfs.Namespace // the disk that serves the volume
	// Adopted: an existing controller was reused (found in the registry or
	// adopted through EALREADY) instead of created. It is owned only if an
	// earlier Attach of this driver created it; otherwise it is borrowed and
	// never disconnected by the driver.
	Adopted bool
	// NewVolume: this call entered the volume in the registry. Before it
	// the daemon did not know the volume, or knew only what an earlier
	// failed stage left: a failed Attach (which holds nothing) or an
	// Attach never followed by MarkStaged (its caller failed and could not
	// Detach). False when the volume was staged: a caller undoing its own
	// failed step after such an Attach must not Detach, which would forget
	// a staged volume.
	NewVolume bool
	// PathsPending counts the volume's other paths (Spec.Paths) not
	// connected when Attach returned: the daemon keeps connecting them in
	// the background (see Attach).
	PathsPending int
	// MultipathOff: the volume names several paths but native NVMe
	// multipath is off on this node (nvme_core.multipath=N), so only one
	// path was connected.
	MultipathOff bool
	// TimeoutsUpdated: the controller existed with other resilience
	// parameters and they were changed through sysfs.
	TimeoutsUpdated bool
	// Timing splits the call's time, for the stage's log line and the
	// lab's latency proofs.
	Timing AttachTiming
}

// AttachTiming is where an Attach spent its time. What is not in a field
// (locks, registry, state file, sysfs reads) is Attach's own overhead.
type AttachTiming struct {
	ConnectWrite time.Duration // in connect writes to the fabrics device (all attempts)
	Backoff      time.Duration // between failed connect attempts (and waiting for a connect slot)
	Device       time.Duration // waiting for the namespace's block device
	Attempts     int           // connect writes made (0: a known controller was reused)
	// Parts of Attach's own overhead: reading the controller back from
	// sysfs, and writing the state file (the ownership record).
	SysfsRead time.Duration
	StateFile time.Duration
}

// Condition is the health of a volume or a target as the daemon sees it.
type Condition int

// Conditions, from good to bad.
const (
	Healthy      Condition = iota
	Degraded               // some paths down, I/O still flows
	Inaccessible           // no live path (for a target: unreachable)
)

func (c Condition) String() string {
	switch c {
	case Healthy:
		return "healthy"
	case Degraded:
		return "degraded"
	case Inaccessible:
		return "inaccessible"
	}
	return "unknown"
}

// VolumeHealth is one volume's condition with a CamelCase reason
// ("ControllerConnecting", "TargetRejected") and a plain message
// ("nvme3 connecting for 42s to 10.0.0.5:4420, attempt 9").
type VolumeHealth struct {
	Condition Condition
	Reason    string
	Message   string
}

// TargetHealth is the condition of one target address (traddr:trsvcid) over
// every controller this node has to it.
type TargetHealth struct {
	Traddr      string
	Trsvcid     string
	Condition   Condition // Inaccessible means unreachable
	Reason      string
	Message     string
	Controllers []string
}

// Config configures a Daemon. Zero values take the defaults noted.
type Config struct {
	FS      sysfs.FS        // the sysfs tree (normally sysfs.NewFS("/sys"))
	Fabrics *fabrics.Client // creates and removes controllers
	// StateDir holds the ownership file (which controllers this driver
	// created). Required.
	StateDir string
	// MountInfo is the mount table to rebuild staged volumes from; default
	// /proc/self/mountinfo.
	MountInfo string
	// StagingRoot: staging paths live under it (kubelet's plugins dir);
	// default /var/lib/kubelet/plugins.
	StagingRoot string
	// PollInterval: how often the state of known controllers is re-read;
	// default 1s.
	PollInterval time.Duration
	// OrphanGrace: how long an owned controller must be unreferenced before
	// cleanup disconnects it; default 5m. CleanupInterval default 1m.
	OrphanGrace     time.Duration
	CleanupInterval time.Duration
	CleanupDryRun   bool
	// DeviceTimeout bounds the wait for a namespace's block device after a
	// connect; default 30s (the request context may end it sooner).
	DeviceTimeout time.Duration
	// MaxConcurrentConnects bounds concurrent connect writes node-wide;
	// default 4.
	MaxConcurrentConnects int
	Logger                *slog.Logger // default slog.Default()
	// NoEvents disables the uevent and netlink subscriptions and the
	// kernel log reader (tests, or hosts where they are unavailable); the
	// poller still runs.
	NoEvents bool
	// KmsgPath is the kernel log device read for NVMe controller records
	// (each one triggers an immediate re-read of that controller's state,
	// and reconnect attempts are taken from their text); default
	// /dev/kmsg. Reading it needs CAP_SYSLOG: without it, or without the
	// device, the daemon logs once and relies on uevents and polling
	// (Counters.KmsgActive says which). NoKmsg disables the reader.
	KmsgPath string
	NoKmsg   bool

	// Connector creates and removes controllers instead of Fabrics (tests,
	// or a wrapper that adds tracing). One of the two is required; when both
	// are set Connector wins.
	Connector Connector
	// Observer is told about connects, outages, reconnects, orphans and
	// uevents as they happen (a metrics package turns them into
	// histograms); nil means none. The counters in Snapshot move regardless.
	Observer Observer
	// StartupJitter bounds the random delay before the first orphan cleanup
	// at Start, so that a DaemonSet rollout does not make every node act at
	// once; 0 (the default) means no delay.
	StartupJitter time.Duration

	// Test seams (unexported: only this package's tests set them).
	now         func() time.Time                    // the clock of grace periods, health ages and transitions; default time.Now
	backoff     *wait.Backoff                       // connect retry schedule; default defaultBackoff
	openUEvents func() (uevent.Source, error)       // default uevent.Open
	watchNet    func(context.Context, func()) error // default netwatch.Watch
	openKmsg    func(string) (io.ReadCloser, error) // default kmsg.Open
}

// Connector is what the daemon needs from package fabrics;
// *fabrics.Client implements it.
type Connector interface {
	Connect(ctx context.Context, opts fabrics.Options) (fabrics.Controller, error)
	Disconnect(name string) error
	UpdateTimeouts(name string, t fabrics.Timeouts) error
}

var _ Connector = (*fabrics.Client)(nil)

// Errors of the daemon layer (the fabrics sentinels pass through as well).
var (
	// ErrDeviceTimeout: connected, but the namespace's block device did not
	// appear in time (wrong nsid, namespace disabled on the target).
	ErrDeviceTimeout = errors.New("daemon: block device did not appear")
	// ErrNotReady: the first reconcile has not finished.
	ErrNotReady = errors.New("daemon: not ready")
	// ErrUnknownVolume: the registry does not know the volume (MarkStaged
	// of a volume that is not attached, VolumeHealth). Detach never returns
	// it: detaching an unknown volume succeeds.
	ErrUnknownVolume = errors.New("daemon: unknown volume")
	// ErrConflict: the volume is staged with another subsystem NQN or
	// namespace than the one asked for.
	ErrConflict = errors.New("daemon: volume is staged with another spec")
	// ErrClosed: the daemon has been closed.
	ErrClosed = errors.New("daemon: closed")
)
