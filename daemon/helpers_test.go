package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/fabrics"
	"github.com/srvlab/rds-csi/sysfs"
	"github.com/srvlab/rds-csi/sysfs/sysfstest"
	"k8s.io/apimachinery/pkg/util/wait"
)

const (
	hostNQN  = "nqn.2014-08.org.nvmexpress:uuid:5f1e0d3c-2b4a-4c6d-8e9f-0a1b2c3d4e5f"
	hostID   = "5f1e0d3c-2b4a-4c6d-8e9f-0a1b2c3d4e5f"
	otherNQN = sysfstest.DefaultHostNQN // a host NQN that is not ours
)

func volNQN(i int) string { return fmt.Sprintf("nqn.2000-02.com.mikrotik:pvc-%d", i) }

// spec is a volume on 127.0.0.1:4420 with our host NQN.
func spec(id, nqn string, nsid uint32) Spec {
	return Spec{VolumeID: id, NSID: nsid, Options: fabrics.Options{
		Traddr: "127.0.0.1", Trsvcid: 4420, NQN: nqn, HostNQN: hostNQN, HostID: hostID,
	}}
}

// fakeClock is the daemon's clock in tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeConn is a Connector that lays out controllers in a synthetic sysfs
// tree as the kernel would: one subsystem per NQN with the namespaces asked
// for, multipath on.
type fakeConn struct {
	root string

	mu           sync.Mutex
	errs         []error          // returned by the next Connect calls, in order
	failAlways   error            // returned by every Connect when set
	failTraddr   map[string]error // returned by every Connect to that address
	noNamespace  bool             // connect without the namespace (it never appears)
	gate         chan struct{}
	inflight     int
	maxInflight  int
	connects     int
	connected    []fabrics.Options // the options of every Connect call
	disconnects  []string
	updates      map[string]fabrics.Timeouts
	entered      chan struct{} // receives when a Connect starts (if set)
	onConnect    func()        // called when a Connect starts (if set), as the kernel sees the write
	disconnectFn func(name string) error
}

func newFakeConn(root string) *fakeConn {
	return &fakeConn{root: root, updates: map[string]fabrics.Timeouts{}}
}

func (f *fakeConn) Connect(ctx context.Context, o fabrics.Options) (fabrics.Controller, error) {
	f.mu.Lock()
	f.connects++
	f.connected = append(f.connected, o)
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	gate, entered, onConnect := f.gate, f.entered, f.onConnect
	f.mu.Unlock()
	if onConnect != nil {
		onConnect()
	}
	defer func() {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	if err := ctx.Err(); err != nil {
		return fabrics.Controller{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAlways != nil {
		return fabrics.Controller{}, f.failAlways
	}
	if err := f.failTraddr[o.Traddr]; err != nil {
		return fabrics.Controller{}, err
	}
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return fabrics.Controller{}, err
	}
	fs := sysfs.NewFS(f.root)
	ctrls, err := fs.Controllers()
	if err != nil {
		return fabrics.Controller{}, err
	}
	k := keyOf(&o)
	for _, c := range ctrls {
		if k.matches(&c) {
			return fabrics.Controller{Name: c.Name, Instance: c.Instance, CntlID: c.CntlID, Adopted: true}, nil
		}
	}
	n := 0
	for exists(filepath.Join(f.root, "class/nvme", "nvme"+strconv.Itoa(n))) ||
		exists(filepath.Join(f.root, "class/nvme-subsystem", "nvme-subsys"+strconv.Itoa(n))) {
		n++
	}
	subInst := n
	if subs, err := fs.Subsystems(); err == nil {
		for _, s := range subs {
			if s.NQN == o.NQN { // another path to a known subsystem
				subInst = s.Instance
			}
		}
	}
	sub := sysfstest.Subsystem{
		Instance: subInst, NQN: o.NQN,
		Controllers: []sysfstest.Controller{{
			Instance: n,
			Address:  fmt.Sprintf("traddr=%s,trsvcid=%d,src_addr=127.0.0.1", o.Traddr, o.Trsvcid),
			Attrs:    map[string]string{"hostnqn": o.HostNQN, "hostid": cmp.Or(o.HostID, sysfstest.DefaultHostID)},
		}},
	}
	if !f.noNamespace {
		sub.Namespaces = []sysfstest.Namespace{{NSID: 1}, {NSID: 2}}
	}
	if err := sysfstest.Build(f.root, sysfstest.Spec{Multipath: true, Subsystems: []sysfstest.Subsystem{sub}}); err != nil {
		return fabrics.Controller{}, err
	}
	return fabrics.Controller{Name: "nvme" + strconv.Itoa(n), Instance: n}, nil
}

func (f *fakeConn) Disconnect(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.disconnectFn != nil {
		if err := f.disconnectFn(name); err != nil {
			return err
		}
	}
	if err := sysfstest.RemoveController(f.root, name); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("fake disconnect %s: %w: %w", name, fabrics.ErrControllerGone, err)
		}
		return err
	}
	f.disconnects = append(f.disconnects, name)
	return nil
}

func (f *fakeConn) UpdateTimeouts(name string, t fabrics.Timeouts) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates[name] = t
	if v, ok := t.ReconnectDelay.Get(); ok {
		if err := sysfstest.SetAttr(f.root, name, "reconnect_delay", strconv.Itoa(v)); err != nil {
			return fmt.Errorf("%w: %w", fabrics.ErrControllerGone, err)
		}
	}
	if v, ok := t.CtrlLossTmo.Get(); ok {
		if err := sysfstest.SetAttr(f.root, name, "ctrl_loss_tmo", timeoutText(v)); err != nil {
			return fmt.Errorf("%w: %w", fabrics.ErrControllerGone, err)
		}
	}
	if v, ok := t.FastIOFailTmo.Get(); ok {
		if err := sysfstest.SetAttr(f.root, name, "fast_io_fail_tmo", timeoutText(v)); err != nil {
			return fmt.Errorf("%w: %w", fabrics.ErrControllerGone, err)
		}
	}
	return nil
}

func (f *fakeConn) disconnected() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.disconnects...)
}

func (f *fakeConn) connectedOpts() []fabrics.Options {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.connected)
}

func (f *fakeConn) connectCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connects
}

func timeoutText(v int) string {
	if v < 0 {
		return "off"
	}
	return strconv.Itoa(v)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// env is a daemon on a synthetic tree with a fake connector and clock.
type env struct {
	t       testing.TB
	root    string // sysfs root
	state   string // state dir
	mounts  string // mountinfo file
	staging string // staging root
	clock   *fakeClock
	conn    *fakeConn
	cfg     Config
	d       *Daemon
}

// newEnv builds spec into a fresh tree and prepares (but does not start) a
// daemon.
func newEnv(t testing.TB, spec sysfstest.Spec) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		t:       t,
		root:    filepath.Join(dir, "sys"),
		state:   filepath.Join(dir, "state"),
		mounts:  filepath.Join(dir, "mountinfo"),
		staging: filepath.Join(dir, "kubelet", "plugins"),
		clock:   newClock(),
	}
	if err := sysfstest.Build(e.root, spec); err != nil {
		t.Fatal(err)
	}
	e.writeMounts()
	e.conn = newFakeConn(e.root)
	e.cfg = Config{
		FS:              sysfs.NewFS(e.root),
		Connector:       e.conn,
		StateDir:        e.state,
		MountInfo:       e.mounts,
		StagingRoot:     e.staging,
		PollInterval:    time.Hour, // tests drive the loop themselves
		CleanupInterval: time.Hour,
		OrphanGrace:     5 * time.Minute,
		DeviceTimeout:   time.Minute,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		NoEvents:        true,
		now:             e.clock.Now,
		backoff:         &wait.Backoff{Duration: time.Microsecond, Factor: 1, Steps: 5},
	}
	if testing.Verbose() {
		e.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return e
}

// start creates and starts the daemon with e.cfg.
func (e *env) start() *Daemon {
	e.t.Helper()
	d, err := New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { d.Close() })
	e.d = d
	// Let the loop's first full re-read finish, so that tests that change
	// the tree do not race with it (a synthetic attribute is not written
	// atomically as a real one is).
	waitFor(e.t, "the first re-read", func() bool { return d.counters.resyncs.Load() >= 1 })
	d.resync(false) // waits for the pass in progress (scanMu)
	return d
}

// writeMounts writes a mount table with the usual root entries plus lines.
func (e *env) writeMounts(lines ...string) {
	e.t.Helper()
	base := []string{
		"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
		"23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw,size=8000k",
		"24 22 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw",
	}
	content := strings.Join(append(base, lines...), "\n") + "\n"
	if err := os.WriteFile(e.mounts, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// fsMount is a mountinfo line for a file system on disk (maj:min) mounted at
// path.
func fsMount(id int, dev, path string) string {
	return fmt.Sprintf("%d 22 %s / %s rw,relatime shared:%d - ext4 /dev/nvme0n1 rw", id, dev, path, id)
}

// blockMount is a mountinfo line for a bind mount of /dev/<disk> at path.
func blockMount(id int, disk, path string) string {
	return fmt.Sprintf("%d 22 0:5 /%s %s rw,nosuid shared:%d - devtmpfs udev rw,size=8000k", id, disk, path, id)
}

// writeState writes a state file.
func (e *env) writeState(st stateFile) {
	e.t.Helper()
	st.Version = stateVersion
	b, err := jsonMarshal(st)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.MkdirAll(e.state, 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.state, stateFileName), b, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// readState reads the state file.
func (e *env) readState() stateFile {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.state, stateFileName))
	if err != nil {
		e.t.Fatal(err)
	}
	var st stateFile
	if err := jsonUnmarshal(b, &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// ownedNames lists the controllers in the state file.
func (e *env) ownedNames() []string {
	var out []string
	for _, o := range e.readState().Controllers {
		out = append(out, o.Name)
	}
	return out
}

// controllerInfo returns one controller from the snapshot.
func controllerInfo(t *testing.T, d *Daemon, name string) ControllerInfo {
	t.Helper()
	for _, c := range d.Snapshot().Controllers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("controller %s not in the registry", name)
	return ControllerInfo{}
}

// waitFor waits until cond holds (the goroutines under test run on their
// own schedule); it fails the test after a generous bound.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ownerRec is an ownership record for controller c of the default tree.
func ownerRec(name, nqn, hostnqn string) owner {
	return owner{Name: name, Transport: "tcp", SubsysNQN: nqn, Traddr: "127.0.0.1", Trsvcid: "4420", HostNQN: hostnqn}
}

// ctrlSpec is a live controller with our host NQN.
func ctrlSpec(inst int, state string) sysfstest.Controller {
	c := sysfstest.Controller{Instance: inst, State: state, Attrs: map[string]string{"hostnqn": hostNQN, "hostid": hostID}}
	return c
}

func isUnknown(err error) bool { return errors.Is(err, ErrUnknownVolume) }
