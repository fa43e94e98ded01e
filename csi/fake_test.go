package csi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
	testingexec "k8s.io/utils/exec/testing"

	"github.com/srvlab/rds-csi/daemon"
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
	if v, ok := f.vols[spec.VolumeID]; ok && v.spec.Options.NQN != spec.Options.NQN {
		return daemon.Attachment{}, fmt.Errorf("%w: %s", daemon.ErrConflict, spec.VolumeID)
	}
	dev, ok := f.devices[spec.VolumeID]
	if !ok {
		dev = fmt.Sprintf("/dev/nvme%dn1", len(f.devices))
		f.devices[spec.VolumeID] = dev
	}
	updated := false
	if v, ok := f.vols[spec.VolumeID]; ok {
		updated = !v.spec.Options.CtrlLossTmo.Equal(spec.Options.CtrlLossTmo)
		v.spec = spec
	} else {
		f.vols[spec.VolumeID] = &fakeVol{spec: spec}
	}
	return daemon.Attachment{
		Controller: "nvme" + strings.TrimSuffix(strings.TrimPrefix(dev, "/dev/nvme"), "n1"), Device: dev, TimeoutsUpdated: updated,
		Timing: daemon.AttachTiming{Attempts: 1},
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

func (f *fakeVolumes) Detach(ctx context.Context, volumeID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detaches++
	if _, ok := f.vols[volumeID]; !ok {
		return fmt.Errorf("%w: %s", daemon.ErrUnknownVolume, volumeID)
	}
	delete(f.vols, volumeID)
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
	mounter *mount.FakeMounter
	exec    *fakeExec
	stats   *fakeStats
	rescan  *fakeRescanner
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	e := &testEnv{
		vols:    newFakeVolumes(),
		mounter: mount.NewFakeMounter(nil),
		exec:    newFakeExec(),
		stats:   &fakeStats{size: 20 << 30},
	}
	e.rescan = &fakeRescanner{stats: e.stats}
	n, err := NewNode(NodeConfig{
		NodeID:    "node-1",
		Host:      testHost,
		Volumes:   e.vols,
		Mounter:   e.mounter,
		Exec:      e.exec,
		Stats:     e.stats,
		Rescanner: e.rescan,
		Logger:    discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.node = n
	return e
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// mountPaths lists the fake mount table's paths, sorted.
func (e *testEnv) mountPaths() []string {
	mps, _ := e.mounter.List()
	set := map[string]bool{}
	for _, mp := range mps {
		set[mp.Path] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// validContext is a minimal valid VolumeContext.
func validContext() map[string]string {
	return map[string]string{
		KeyNVMeAddress: "10.0.0.5",
		KeyNQN:         "nqn.2000-02.com.mikrotik:pvc-1",
	}
}
