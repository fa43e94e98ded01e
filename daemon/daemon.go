package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/internal/kmsg"
	"github.com/srvlab/rds-csi/internal/mountinfo"
	"github.com/srvlab/rds-csi/internal/netwatch"
	"github.com/srvlab/rds-csi/internal/uevent"
	"github.com/srvlab/rds-csi/sysfs"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Defaults for zero Config values.
const (
	DefaultMountInfo             = "/proc/self/mountinfo"
	DefaultStagingRoot           = "/var/lib/kubelet/plugins"
	DefaultPollInterval          = time.Second
	DefaultOrphanGrace           = 5 * time.Minute
	DefaultCleanupInterval       = time.Minute
	DefaultDeviceTimeout         = 30 * time.Second
	DefaultMaxConcurrentConnects = 4
)

// defaultBackoff is the connect retry schedule for retryable errors.
var defaultBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 5}

// Daemon is the node daemon's core. Create it with New, then Start it.
type Daemon struct {
	cfg  Config
	conn Connector
	obs  Observer
	log  *slog.Logger
	now  func() time.Time

	connSem  chan struct{} // node-wide bound on concurrent connects
	locks    keyLocks      // per volume id and per connection key
	waiters  waiters       // device waiters
	counters counters

	trigger     chan struct{} // coalescing "something changed"
	pendingFull atomic.Bool   // the next pass re-reads everything
	pendingAll  atomic.Bool   // the next pass re-reads the state of every known controller
	scanMu      sync.Mutex    // one re-read at a time
	persistMu   sync.Mutex    // one state file writer at a time
	ownersDirty bool          // under mu: a stale ownership record was dropped; persist soon

	// pendingNames: controllers whose state the next pass re-reads (a
	// kernel log record named them), when no wider pass is pending.
	pendingMu    sync.Mutex
	pendingNames map[string]struct{}

	mu       sync.Mutex // guards the registry below
	ctrls    map[string]*ctrlEntry
	vols     map[string]*volEntry
	owned    map[string]owner
	intents  map[string]connectIntent // connects not resolved yet, by connection key
	mutation uint64                   // counts registry changes made outside the loop
	touched  map[string]uint64        // controller name -> mutation that last changed it
	// pendingConnected counts NVME_EVENT=connected uevents per controller
	// name until the loop accounts for them.
	pendingConnected map[string]int
	// byDev maps a controller's char device (its dev attribute) to its
	// name: kernel log records name the device.
	byDev map[sysfs.DevNum]string

	// runs are the background path connects of multipath volumes, by
	// volume id (under mu).
	runs map[string]*pathRun

	lifeMu  sync.Mutex
	lifeCtx context.Context // the goroutines' context, set by Start
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ready   atomic.Bool
}

// New checks cfg, applies defaults and returns a Daemon that has not
// started: nothing is read or opened until Start.
func New(cfg Config) (*Daemon, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("daemon: Config.StateDir is required")
	}
	conn := cfg.Connector
	if conn == nil && cfg.Fabrics != nil {
		conn = cfg.Fabrics
	}
	if conn == nil {
		return nil, errors.New("daemon: Config.Fabrics (or Connector) is required")
	}
	cfg.MountInfo = cmp.Or(cfg.MountInfo, DefaultMountInfo)
	cfg.StagingRoot = cmp.Or(cfg.StagingRoot, DefaultStagingRoot)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, DefaultPollInterval)
	cfg.OrphanGrace = cmp.Or(cfg.OrphanGrace, DefaultOrphanGrace)
	cfg.CleanupInterval = cmp.Or(cfg.CleanupInterval, DefaultCleanupInterval)
	cfg.DeviceTimeout = cmp.Or(cfg.DeviceTimeout, DefaultDeviceTimeout)
	cfg.MaxConcurrentConnects = cmp.Or(cfg.MaxConcurrentConnects, DefaultMaxConcurrentConnects)
	cfg.KmsgPath = cmp.Or(cfg.KmsgPath, DefaultKmsgPath)
	for name, v := range map[string]time.Duration{
		"PollInterval": cfg.PollInterval, "OrphanGrace": cfg.OrphanGrace,
		"CleanupInterval": cfg.CleanupInterval, "DeviceTimeout": cfg.DeviceTimeout,
	} {
		if v < 0 {
			return nil, fmt.Errorf("daemon: Config.%s is negative (%v)", name, v)
		}
	}
	if cfg.MaxConcurrentConnects < 0 || cfg.StartupJitter < 0 {
		return nil, errors.New("daemon: Config.MaxConcurrentConnects and StartupJitter must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.backoff == nil {
		b := defaultBackoff
		cfg.backoff = &b
	}
	if cfg.openUEvents == nil {
		cfg.openUEvents = uevent.Open
	}
	if cfg.watchNet == nil {
		cfg.watchNet = netwatch.Watch
	}
	if cfg.openKmsg == nil {
		cfg.openKmsg = kmsg.Open
	}
	obs := cfg.Observer
	if obs == nil {
		obs = NopObserver{}
	}
	d := &Daemon{
		cfg:     cfg,
		conn:    conn,
		obs:     obs,
		log:     cfg.Logger.With("component", "daemon"),
		now:     cfg.now,
		connSem: make(chan struct{}, cfg.MaxConcurrentConnects),
		trigger: make(chan struct{}, 1),
		ctrls:   map[string]*ctrlEntry{},
		vols:    map[string]*volEntry{},
		owned:   map[string]owner{},
		intents: map[string]connectIntent{},
		touched: map[string]uint64{},
		byDev:   map[sysfs.DevNum]string{},
		runs:    map[string]*pathRun{},

		pendingConnected: map[string]int{},
		pendingNames:     map[string]struct{}{},
	}
	d.counters.init()
	return d, nil
}

// Start loads the state file, rebuilds the registry from sysfs and the mount
// table, runs the first orphan cleanup (after the start-up jitter), starts
// the event goroutines and marks the daemon ready. The goroutines run until
// ctx ends or Close is called, so ctx must live as long as the daemon. Close
// during Start makes it return ErrClosed. A second Start fails unless the
// first one failed.
func (d *Daemon) Start(ctx context.Context) (err error) {
	d.lifeMu.Lock()
	switch {
	case d.closed:
		d.lifeMu.Unlock()
		return ErrClosed
	case d.started:
		d.lifeMu.Unlock()
		return errors.New("daemon: already started")
	}
	loopCtx, cancel := context.WithCancel(ctx)
	d.started, d.cancel, d.lifeCtx = true, cancel, loopCtx
	d.lifeMu.Unlock()
	defer func() {
		if err != nil {
			cancel()
			d.lifeMu.Lock()
			d.started = false
			d.lifeMu.Unlock()
		}
	}()

	st, err := d.loadState()
	if err != nil {
		return err
	}
	if err := d.rebuild(st); err != nil {
		return err
	}
	if j := d.cfg.StartupJitter; j > 0 {
		delay := rand.N(j)
		d.log.Info("first orphan cleanup after start-up jitter", "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-loopCtx.Done():
			t.Stop()
			return loopCtx.Err()
		case <-t.C:
		}
	}
	d.cleanup(loopCtx)

	d.lifeMu.Lock()
	if d.closed {
		d.lifeMu.Unlock()
		return ErrClosed
	}
	d.goLoop(loopCtx)
	d.kick(true)
	d.ready.Store(true)
	d.goFunc(func() { d.resumePaths(loopCtx) })
	d.lifeMu.Unlock()
	d.mu.Lock()
	nc, no, nv := len(d.ctrls), len(d.owned), len(d.vols)
	d.mu.Unlock()
	d.log.Info("daemon ready", "controllers", nc, "owned", no, "volumes", nv)
	return nil
}

// Ready reports whether Start has finished and Close has not been called.
func (d *Daemon) Ready() bool { return d.ready.Load() }

// Close stops the goroutines and waits for them. Connections are left as
// they are. Close is idempotent.
func (d *Daemon) Close() error {
	d.lifeMu.Lock()
	if d.closed {
		d.lifeMu.Unlock()
		return nil
	}
	d.closed = true
	d.ready.Store(false)
	if d.cancel != nil {
		d.cancel()
	}
	d.lifeMu.Unlock()
	d.wg.Wait()
	d.waiters.wakeAll()
	return nil
}

// rebuild fills the registry from sysfs, the state file and the mount
// table (the rule is in doc.go).
func (d *Daemon) rebuild(st stateFile) error {
	ctrls, idx, err := d.readDevices()
	if err != nil {
		return fmt.Errorf("daemon: rebuild from sysfs: %w", err)
	}
	mounts, err := mountinfo.Read(d.cfg.MountInfo)
	if err != nil {
		return err
	}
	staged := stagedMounts(mounts, d.cfg.StagingRoot, idx)
	now := d.now()

	d.mu.Lock()
	changed := false
	var evs []event
	for _, c := range ctrls {
		d.observeLocked(c, now, false, &evs)
	}
	for _, o := range st.Controllers {
		e := d.ctrls[o.Name]
		if e == nil || !o.describes(&e.ctrl) {
			d.log.Info("owned controller is gone; dropping it from the state file", "controller", o.Name, "subsysnqn", o.SubsysNQN)
			changed = true
			continue
		}
		d.owned[o.Name] = o
	}
	for _, in := range st.Intents {
		d.resolveIntentLocked(in, now)
		changed = true
	}
	used := make([]bool, len(staged))
	for _, vs := range st.Volumes {
		i := slices.IndexFunc(staged, func(m stagedMount) bool {
			return m.dev.nqn == vs.SubsysNQN && m.dev.ns.NSID == vs.NSID && within(m.mountPoint, vs.StagingPath)
		})
		if i < 0 {
			d.log.Info("staged volume is no longer mounted; forgetting it", "volume", vs.ID, "staging_path", vs.StagingPath)
			changed = true
			continue
		}
		used[i] = true
		d.vols[vs.ID] = d.restoredVolumeLocked(vs, staged[i])
	}
	for i, m := range staged {
		if !used[i] && !d.explainedLocked(m) {
			d.log.Info("staged NVMe mount without a volume record; keeping its controllers referenced",
				"mount", m.mountPoint, "device", m.dev.ns.DevPath(), "subsysnqn", m.dev.nqn)
			d.addRecoveredLocked(m)
		}
	}
	refs := d.refsLocked()
	for name := range d.owned {
		if refs[name] == 0 {
			d.ctrls[name].unrefSince = now
		}
	}
	d.mu.Unlock()
	if changed {
		return d.persist()
	}
	return nil
}

// restoredVolumeLocked rebuilds a staged volume from its record and mount.
func (d *Daemon) restoredVolumeLocked(vs volumeState, m stagedMount) *volEntry {
	key := connKey{
		transport: cmp.Or(vs.Transport, "tcp"), nqn: vs.SubsysNQN, traddr: vs.Traddr, trsvcid: vs.Trsvcid,
		hostNQN: vs.HostNQN, hostID: vs.HostID, hostTraddr: vs.HostTraddr, hostIface: vs.HostIface,
	}
	keys := []connKey{key}
	for _, p := range vs.Paths {
		k := key
		k.traddr, k.hostTraddr, k.hostIface = fabrics.CanonicalIP(p.Traddr), fabrics.CanonicalIP(p.HostTraddr), p.HostIface
		keys = append(keys, k)
	}
	var ctrls []string
	for _, name := range m.dev.controllers {
		e := d.ctrls[name]
		if e != nil && slices.ContainsFunc(keys, func(k connKey) bool { return k.matches(&e.ctrl) }) {
			ctrls = append(ctrls, name)
		}
	}
	if len(ctrls) == 0 {
		ctrls = append(ctrls, m.dev.controllers...)
	}
	o, ok := key.options()
	if !ok {
		d.log.Warn("state file: the volume's record has a port that is not a decimal number; the volume is restored without it",
			"volume", vs.ID, "trsvcid", vs.Trsvcid)
	}
	spec := specFromKey(vs.ID, key, vs.NSID, o.Trsvcid)
	if vs.Connect != nil {
		vs.Connect.apply(&spec)
	}
	if len(keys) > 1 {
		for _, k := range keys {
			spec.Paths = append(spec.Paths, Path{Traddr: k.traddr, HostTraddr: k.hostTraddr, HostIface: k.hostIface})
		}
	}
	return &volEntry{
		id:          vs.ID,
		spec:        spec,
		key:         key,
		keys:        keys,
		pathsAsked:  len(keys),
		connect:     vs.Connect,
		nqn:         vs.SubsysNQN,
		nsid:        vs.NSID,
		controllers: ctrls,
		ns:          m.dev.ns,
		device:      m.dev.ns.DevPath(),
		stagingPath: vs.StagingPath,
		stagedAt:    vs.StagedAt,
		block:       vs.Block,
		state:       VolumeStaged,
	}
}

// goLoop starts the event goroutines under ctx.
func (d *Daemon) goLoop(ctx context.Context) {
	d.goFunc(func() { d.consume(ctx) })
	d.goFunc(func() { d.ticker(ctx, d.cfg.PollInterval, func() { d.kick(false) }) })
	d.goFunc(func() { d.ticker(ctx, d.cfg.CleanupInterval, func() { d.cleanup(ctx) }) })
	if d.cfg.NoEvents {
		return
	}
	d.startKmsg(ctx)
	src, err := d.cfg.openUEvents()
	if err != nil {
		d.log.Warn("kernel uevents unavailable; relying on polling", "error", err)
	} else {
		d.goFunc(func() { d.readUEvents(ctx, src) })
		d.goFunc(func() { <-ctx.Done(); src.Close() })
	}
	d.goFunc(func() {
		if err := d.cfg.watchNet(ctx, func() { d.kick(false) }); err != nil && ctx.Err() == nil {
			d.log.Warn("netlink link/address events unavailable; relying on polling", "error", err)
		}
	})
}

func (d *Daemon) goFunc(f func()) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f()
	}()
}

func (d *Daemon) ticker(ctx context.Context, every time.Duration, f func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// readController reads one controller in full.
func (d *Daemon) readController(name string) (sysfs.Controller, error) {
	return d.cfg.FS.Controller(name)
}

// rereadChanged re-reads a controller the daemon has just changed (its
// timeouts) and registers what it finds. A failed read is logged, not
// returned: the change itself is done, and the next pass reads the
// controller again.
func (d *Daemon) rereadChanged(name string) {
	fresh, err := d.readController(name)
	switch {
	case errors.Is(err, sysfs.ErrNotExist):
		d.log.Debug("controller gone before its re-read after a change", "controller", name)
	case err != nil:
		d.log.Warn("controller not re-read after a change; the next pass reads it", "controller", name, "error", err)
	default:
		d.register(fresh)
	}
}
