package csi

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
	testingexec "k8s.io/utils/exec/testing"

	"github.com/srvlab/rds-csi/daemon"
	"github.com/srvlab/rds-csi/internal/mountinfo"
)

// fakeVolumes is an in-memory daemon.
type fakeVolumes struct {
	mu       sync.Mutex
	vols     map[string]*fakeVol
	devices  map[string]string // volume id -> device, stable across attaches
	attaches int
	detaches int

	attachErr error                          // returned by every Attach when set
	health    map[string]daemon.VolumeHealth // volume health by id (default healthy)
	targets   []daemon.TargetHealth
}

type fakeVol struct {
	spec        daemon.Spec
	staged      bool
	stagingPath string
	block       bool
}

func newFakeVolumes() *fakeVolumes {
	return &fakeVolumes{vols: map[string]*fakeVol{}, devices: map[string]string{}, health: map[string]daemon.VolumeHealth{}}
}

func (f *fakeVolumes) Attach(ctx context.Context, spec daemon.Spec) (daemon.Attachment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attaches++
	if err := ctx.Err(); err != nil {
		return daemon.Attachment{}, err
	}
	if f.attachErr != nil {
		return daemon.Attachment{}, f.attachErr
	}
	if v, ok := f.vols[spec.VolumeID]; ok && v.staged && (v.spec.Options.NQN != spec.Options.NQN || v.spec.NSID != spec.NSID) {
		return daemon.Attachment{}, fmt.Errorf("%w: %s", daemon.ErrConflict, spec.VolumeID)
	}
	dev, ok := f.devices[spec.VolumeID]
	if !ok {
		dev = fmt.Sprintf("/dev/nvme%dn1", len(f.devices))
		f.devices[spec.VolumeID] = dev
	}
	updated := false
	isNew := true
	if v, ok := f.vols[spec.VolumeID]; ok {
		isNew = !v.staged
	}
	if v, ok := f.vols[spec.VolumeID]; ok {
		updated = !v.spec.Options.CtrlLossTmo.Equal(spec.Options.CtrlLossTmo)
		v.spec = spec
	} else {
		f.vols[spec.VolumeID] = &fakeVol{spec: spec}
	}
	return daemon.Attachment{
		Controller: "nvme" + strings.TrimSuffix(strings.TrimPrefix(dev, "/dev/nvme"), "n1"), Device: dev, TimeoutsUpdated: updated,
		NewVolume: isNew,
		Timing:    daemon.AttachTiming{Attempts: 1},
	}, nil
}

func (f *fakeVolumes) MarkStaged(volumeID, stagingPath string, block bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vols[volumeID]
	if !ok {
		return fmt.Errorf("%w: %s", daemon.ErrUnknownVolume, volumeID)
	}
	v.staged, v.stagingPath, v.block = true, stagingPath, block
	return nil
}

func (f *fakeVolumes) Volume(volumeID string) (daemon.VolumeInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vols[volumeID]
	if !ok {
		return daemon.VolumeInfo{}, false
	}
	vi := daemon.VolumeInfo{ID: volumeID, State: daemon.VolumeAttached, Device: f.devices[volumeID]}
	if v.staged {
		vi.State, vi.StagingPath, vi.Block = daemon.VolumeStaged, v.stagingPath, v.block
	}
	return vi, true
}

func (f *fakeVolumes) Detach(ctx context.Context, volumeID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detaches++
	delete(f.vols, volumeID) // an unknown volume is a success, as in the daemon
	return nil
}

func (f *fakeVolumes) VolumeHealth(volumeID string) (daemon.VolumeHealth, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h, ok := f.health[volumeID]; ok {
		return h, nil
	}
	if _, ok := f.vols[volumeID]; !ok {
		return daemon.VolumeHealth{}, fmt.Errorf("%w: %s", daemon.ErrUnknownVolume, volumeID)
	}
	return daemon.VolumeHealth{Condition: daemon.Healthy}, nil
}

func (f *fakeVolumes) StorageHealth() []daemon.TargetHealth {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.targets)
}

func (f *fakeVolumes) attachCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attaches
}

func (f *fakeVolumes) snapshot() map[string]fakeVol {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]fakeVol{}
	for k, v := range f.vols {
		out[k] = *v
	}
	return out
}

// fakeExec answers the commands of mount-utils: blkid reports the
// filesystem a fake mkfs wrote, everything else succeeds.
type fakeExec struct {
	mu        sync.Mutex
	formatted map[string]string // device -> fs type
	log       []string
}

func newFakeExec() *fakeExec { return &fakeExec{formatted: map[string]string{}} }

var _ utilexec.Interface = (*fakeExec)(nil)

func (f *fakeExec) Command(cmd string, args ...string) utilexec.Cmd {
	c := &testingexec.FakeCmd{Argv: append([]string{cmd}, args...)}
	run := func() ([]byte, []byte, error) { return f.run(cmd, args) }
	c.CombinedOutputScript = []testingexec.FakeAction{run}
	c.OutputScript = []testingexec.FakeAction{run}
	c.RunScript = []testingexec.FakeAction{run}
	return c
}

func (f *fakeExec) CommandContext(_ context.Context, cmd string, args ...string) utilexec.Cmd {
	return f.Command(cmd, args...)
}

func (f *fakeExec) LookPath(file string) (string, error) { return "/usr/sbin/" + file, nil }

func (f *fakeExec) run(cmd string, args []string) ([]byte, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, cmd+" "+strings.Join(args, " "))
	last := ""
	if len(args) > 0 {
		last = args[len(args)-1]
	}
	switch {
	case cmd == "blkid":
		if t, ok := f.formatted[last]; ok {
			return []byte("TYPE=" + t + "\n"), nil, nil
		}
		return nil, nil, testingexec.FakeExitError{Status: 2}
	case strings.HasPrefix(cmd, "mkfs."):
		f.formatted[last] = strings.TrimPrefix(cmd, "mkfs.")
	}
	return nil, nil, nil
}

func (f *fakeExec) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// fakeStats returns fixed numbers.
type fakeStats struct {
	mu   sync.Mutex
	size int64
}

func (s *fakeStats) Filesystem(string) (FSStats, error) {
	return FSStats{TotalBytes: 10 << 30, AvailableBytes: 9 << 30, UsedBytes: 1 << 30, TotalInodes: 1000, FreeInodes: 900, UsedInodes: 100}, nil
}

func (s *fakeStats) DeviceSize(string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size, nil
}

// fakeRescanner records rescans and grows the fake device.
type fakeRescanner struct {
	mu      sync.Mutex
	devices []string
	stats   *fakeStats
	grow    int64
}

func (r *fakeRescanner) Rescan(device string) error {
	r.mu.Lock()
	r.devices = append(r.devices, device)
	r.mu.Unlock()
	r.stats.mu.Lock()
	r.stats.size += r.grow
	r.stats.mu.Unlock()
	return nil
}

// testHost is a valid host identity.
var testHost = HostIdentity{
	NQN: "nqn.2014-08.org.nvmexpress:uuid:8f6c4d2a-1b3e-4c5d-9e7f-0a1b2c3d4e5f",
	ID:  "8f6c4d2a-1b3e-4c5d-9e7f-0a1b2c3d4e5f",
}

// testEnv is a Node over fakes.
type testEnv struct {
	node    *Node
	vols    *fakeVolumes
	mounter *kernelMounter
	exec    *fakeExec
	stats   *fakeStats
	rescan  *fakeRescanner
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	e := newTestEnvWith(t, newFakeVolumes())
	e.vols = e.node.vols.(*fakeVolumes)
	return e
}

// newTestEnvWith is a Node over vols, with the mount layer and the kernel
// faked; its vols field is nil.
func newTestEnvWith(t testing.TB, vols Volumes) *testEnv {
	t.Helper()
	e := &testEnv{
		mounter: &kernelMounter{FakeMounter: mount.NewFakeMounter(nil)},
		exec:    newFakeExec(),
		stats:   &fakeStats{size: 20 << 30},
	}
	e.rescan = &fakeRescanner{stats: e.stats}
	n, err := NewNode(NodeConfig{
		NodeID:    "node-1",
		Host:      testHost,
		Volumes:   vols,
		Mounter:   e.mounter,
		Exec:      e.exec,
		Stats:     e.stats,
		Rescanner: e.rescan,
		Logger:    discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	n.mountTable = e.mounter.table
	e.node = n
	return e
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// mountPaths lists the fake mount table's paths (decoded), sorted.
func (e *testEnv) mountPaths() []string {
	mps, _ := e.mounter.FakeMounter.List()
	set := map[string]bool{}
	for _, mp := range mps {
		set[mp.Path] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// kernelMounter is mount-utils' fake mounter whose List answers as the
// real mounter's does: from the kernel's mount table text, where space,
// tab, newline and backslash in a path are octal escapes (\040, \011, \012,
// \134), left undecoded by mount-utils. With noOpenat2 its IsMountPoint
// answers as mount-utils' does where openat2(2) is refused (an old seccomp
// profile) and stat(2) cannot see a bind mount: from List.
type kernelMounter struct {
	*mount.FakeMounter
	noOpenat2 bool
}

func (k *kernelMounter) IsMountPoint(file string) (bool, error) {
	if !k.noOpenat2 {
		return k.FakeMounter.IsMountPoint(file)
	}
	if _, err := os.Stat(file); err != nil {
		return false, err
	}
	mps, err := k.List()
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(mps, func(mp mount.MountPoint) bool { return mp.Path == file }), nil
}

func (k *kernelMounter) List() ([]mount.MountPoint, error) {
	mps, err := k.FakeMounter.List()
	mps = slices.Clone(mps) // the fake's own slice: not ours to change
	for i := range mps {
		mps[i].Path, mps[i].Device = escapeMountPath(mps[i].Path), escapeMountPath(mps[i].Device)
	}
	return mps, err
}

// table is the fake's mount table as the kernel's mountinfo gives it
// (from List: paths escaped), read by package mountinfo's parser.
func (k *kernelMounter) table() ([]mountinfo.Entry, error) {
	mps, err := k.List()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for i, mp := range mps {
		fmt.Fprintf(&b, "%d 1 0:0 / %s %s - %s %s rw\n", 100+i, mp.Path,
			cmp.Or(strings.Join(mp.Opts, ","), "rw"), cmp.Or(mp.Type, "none"), cmp.Or(mp.Device, "none"))
	}
	return mountinfo.Parse([]byte(b.String())), nil
}

// escapeMountPath escapes a path as the kernel's mount tables do
// (fs/proc_namespace.c, mangle()).
func escapeMountPath(s string) string {
	return strings.NewReplacer(" ", `\040`, "\t", `\011`, "\n", `\012`, `\`, `\134`).Replace(s)
}

// validContext is a minimal valid VolumeContext.
func validContext() map[string]string {
	return map[string]string{
		KeyNVMeAddress: "10.0.0.5",
		KeyNQN:         "nqn.2000-02.com.mikrotik:pvc-1",
	}
}
